"""CPU time of the Explore page's per-view steps over a whole pool, for a profile of where a view's
time goes at large N (bench/README.md, "Explore at 1,000,000 images after sampling").

It times, on a probability matrix (a ``.npy`` file, memory-mapped as the app reads it): validating
and hashing the whole ``(N, C)`` array (the layout key), PCA over every row, the pair figure with
5,000 of N drawn, coverage over every row with 50 labeled images, and an argmax over every row.
``--code DIR`` times another checkout's ``activekd_core`` (e.g. ``git archive <commit>``), so the
old and the new page functions can be compared on the same input in one sitting.

Usage::

    python bench/explore_steps.py --probs PROJECT/cache/teacher/probs_<key>.npy [--code OLD_TREE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable


def _timed(name: str, fn: Callable[[], Any]) -> Any:
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    print(f"{name:45s} {time.process_time() - cpu:6.2f} s CPU {time.perf_counter() - wall:6.2f} s wall", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probs", type=Path, required=True, help="(N, C) float32 .npy (a project's teacher cache)")
    ap.add_argument("--code", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="tree whose activekd_core is timed (default: this checkout)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.code))
    import numpy as np

    from activekd_core import coverage as cov
    from activekd_core import projection
    from activekd_core.figures import explore as figs

    print(f"explore_steps: code {args.code}, load average {os.getloadavg()}", flush=True)
    probs = np.load(args.probs, mmap_mode="r")
    n, c = probs.shape
    ids = [f"img/{i}.png" for i in range(n)]
    lab = np.sort(np.random.default_rng(1).choice(n, 50, replace=False))
    p = _timed("validate + copy N x C (as_probs)", lambda: projection.as_probs(probs))
    _timed("layout key (hash of N x C)", lambda: projection.layout_key(p, projection.LayoutParams()))
    xy = _timed("PCA layout over all N", lambda: projection.pca_layout(p))
    sub = projection.display_subset(n, 5000, keep=lab)
    _timed("pair figure, 5,000 drawn of N", lambda: figs.scatter_pair(
        xy, None, [str(i) for i in range(c)], teacher_probs=probs, labeled=lab, y=np.zeros(lab.size, int),
        ids=ids, indices=sub.indices))
    _timed("coverage over all N (50 labeled)", lambda: cov.coverage_curve([lab], {"teacher": probs}))
    _timed("argmax over N (image grid)", lambda: probs.argmax(axis=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
