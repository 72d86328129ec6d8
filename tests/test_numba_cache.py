"""numba's compiled UMAP code is kept under the app's home so a restarted worker skips compiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from activekd_core import numba_cache as nc

ROOT = Path(__file__).resolve().parents[1]


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "ACTIVEKD_NUMBA_CACHE")}
    env.update(ACTIVEKD_HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return env


def test_cache_dir_follows_activekd_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACTIVEKD_HOME", str(tmp_path / "home"))
    assert nc.numba_cache_dir() == tmp_path / "home" / "numba_cache"
    monkeypatch.delenv("ACTIVEKD_HOME")
    assert nc.numba_cache_dir() == Path("~/.activekd").expanduser() / "numba_cache"


def test_operator_setting_and_switch_are_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert nc.configure_numba_cache() == tmp_path  # an existing choice wins
    monkeypatch.setenv("ACTIVEKD_NUMBA_CACHE", "0")
    assert nc.configure_numba_cache() is None
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "missing"))
    monkeypatch.delenv("ACTIVEKD_NUMBA_CACHE")
    assert nc.configure_numba_cache() is None  # not writable: no caching rather than a failing fit


def test_configure_sets_the_variable_before_numba_is_imported(tmp_path: Path) -> None:
    code = ("import sys; from activekd_core import numba_cache as nc; import activekd_core.projection; "
            "assert 'numba' not in sys.modules; print(nc.configure_numba_cache()); "
            "import numba; print(numba.config.CACHE_DIR)")
    out = subprocess.run([sys.executable, "-c", code], env=_clean_env(tmp_path), capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    assert out == [str(tmp_path / "numba_cache")] * 2


_FIT = """
import json, numpy as np
from activekd_core import projection as pj
p = np.random.default_rng(0).dirichlet(np.ones(4), 60).astype(np.float32)
pj.umap_layout(p, pj.LayoutParams())
import sys
from numba.core.dispatcher import Dispatcher
# functions compiled on first call (a few with explicit signatures compile at import, uncached)
used = {f for name, m in list(sys.modules.items()) if name.startswith("umap.")
        for f in vars(m).values() if isinstance(f, Dispatcher) and f.overloads and type(f._cache).__name__ != "NullCache"}
hit = sorted(f.__name__ for f in used if sum(f.stats.cache_hits.values()))
print(json.dumps([sorted(f.__name__ for f in used), hit, sum(sum(f.stats.cache_misses.values()) for f in used)]))
"""


@pytest.mark.slow
def test_second_process_loads_umap_code_from_the_cache(tmp_path: Path) -> None:
    def run(**extra: str) -> list:
        out = subprocess.run([sys.executable, "-c", _FIT], env=_clean_env(tmp_path, **extra), capture_output=True,
                             text=True, check=True, cwd=ROOT)
        return json.loads(out.stdout.strip().splitlines()[-1])

    core = {"smooth_knn_dist", "compute_membership_strengths", "_optimize_layout_euclidean_single_epoch"}
    used, hit, misses = run()
    assert core <= set(used) and hit == [] and misses >= len(used)  # compiled, and written to the cache
    assert list((tmp_path / "numba_cache").rglob("*umap_*.nbi"))
    used, hit, misses = run()
    assert hit == used and misses == 0  # a restart loads every one of them instead of compiling
    used, hit, misses = run(ACTIVEKD_NUMBA_CACHE="0")
    assert not core & set(used)  # switched off: umap's functions compile as before (numba's defaults apply)
