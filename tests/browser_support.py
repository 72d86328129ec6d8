"""Helpers for the page tests: a tiny demo project and a stand-in selection registry.

``activekd_core.selection`` is written by another helper in parallel. When it is not
importable yet, :func:`ensure_selection` installs a minimal local registry (random and
a farthest-first PCoreSet over probability vectors, with the signature of
INTERFACES.md) so that the page tests exercise the pages, not the missing module. As
soon as the real package exists it is used and this fallback is never installed.
"""

from __future__ import annotations

import importlib
import socket
import sys
import types
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class _Selection:
    indices: np.ndarray
    scores: np.ndarray
    strategy: str


@dataclass
class _Strategy:
    name: str
    fn: Any
    needs: frozenset
    description: str
    score_label: str


def _random(*, probs=None, features=None, labeled, k, rng, **kw) -> _Selection:
    n = len(probs if probs is not None else features)
    pool = np.setdiff1d(np.arange(n), labeled)
    picks = rng.permutation(pool)[: min(k, pool.size)]
    return _Selection(picks.astype(np.int64), np.full(picks.size, np.nan), "random")


def _pcoreset(*, probs=None, features=None, labeled, k, rng, **kw) -> _Selection:
    x = np.asarray(probs, dtype=np.float64)
    n = len(x)
    mind = np.full(n, np.inf)
    for i in np.asarray(labeled, dtype=np.int64):
        mind = np.minimum(mind, np.linalg.norm(x - x[i], axis=1))
    if len(labeled) == 0:
        mind[:] = np.linalg.norm(x - x.mean(axis=0), axis=1)
    taken = np.zeros(n, dtype=bool)
    taken[np.asarray(labeled, dtype=np.int64)] = True
    picks, scores = [], []
    for _ in range(min(k, int((~taken).sum()))):
        cand = np.where(taken, -np.inf, mind)
        j = int(cand.argmax())
        picks.append(j)
        scores.append(float(mind[j]))
        taken[j] = True
        mind = np.minimum(mind, np.linalg.norm(x - x[j], axis=1))
    return _Selection(np.asarray(picks, dtype=np.int64), np.asarray(scores), "pcoreset")


def ensure_selection() -> bool:
    """Make ``activekd_core.selection`` importable; True when the real package is used."""
    try:
        importlib.import_module("activekd_core.selection")
        return True
    except ImportError:
        pass
    mod = types.ModuleType("activekd_core.selection")
    mod.STRATEGIES = {
        "pcoreset": _Strategy("pcoreset", _pcoreset, frozenset({"probs"}), "k-center on probabilities",
                              "distance to nearest labeled"),
        "random": _Strategy("random", _random, frozenset(), "uniform random", "none"),
    }

    def select(name: str, **kw: Any) -> _Selection:
        return mod.STRATEGIES[name].fn(**kw)

    mod.select = select
    mod.Selection = _Selection
    sys.modules["activekd_core.selection"] = mod
    import activekd_core

    activekd_core.selection = mod
    return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":  # `python tests/browser_support.py run app.py ...`: streamlit with the fallback
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    ensure_selection()
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    sys.exit(cli.main())
