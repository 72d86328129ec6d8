"""The architecture the design fixes: layers checked by import-linter, every module placed, none too long."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / ".importlinter"
MAX_LINES = 600


def _layers() -> list[list[str]]:
    config = configparser.ConfigParser()
    config.read(CONTRACTS, encoding="utf-8")
    lines = [ln.strip() for ln in config["importlinter:contract:layers"]["layers"].splitlines() if ln.strip()]
    return [[name.strip() for name in re.split(r"[:|]", ln)] for ln in lines]


def _core_modules() -> set[str]:
    core = ROOT / "activekd_core"
    files = {f"activekd_core.{p.stem}" for p in core.glob("*.py") if p.stem != "__init__"}
    packages = {f"activekd_core.{p.parent.name}" for p in core.glob("*/__init__.py")}
    return files | packages


def test_every_core_module_sits_in_exactly_one_layer() -> None:
    placed = [name for layer in _layers() for name in layer]
    assert len(placed) == len(set(placed)), "a module is listed in two layers"
    assert set(placed) - {"pages"} == _core_modules(), "add new modules to a layer in .importlinter"


def test_layer_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("lint-imports is missing: install requirements.txt (import-linter)")
    done = subprocess.run([lint, "--config", str(CONTRACTS), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_no_module_is_longer_than_600_lines() -> None:
    sources = [*(ROOT / "activekd_core").rglob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "app.py"]
    too_long = {str(p.relative_to(ROOT)): n for p in sources
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert too_long == {}
