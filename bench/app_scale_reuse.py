"""Helpers of ``bench/app_scale.py`` for measuring the app on an existing project without re-creating it.

- :func:`copy_project`: a fresh copy of a project folder made earlier (e.g. by a 1,000,000-image
  ``app_scale.py`` run), so every measurement starts from the same state and the source
  stays untouched;
- :func:`import_fraction`: give a fraction of the copy's images a label (ground truth, one
  import transaction), to measure a project late in its life where most images have a state;
- :func:`share_script_cache`: make ``streamlit.testing.v1.AppTest`` keep compiled scripts
  between runs, as the real server does (AppTest builds a new ``ScriptCache`` for each run,
  so every click otherwise re-reads, rewrites (magic) and compiles ``app.py`` and the page).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np


def copy_project(src: Path, dest: Path) -> None:
    """Replace ``dest`` by a copy of the project folder ``src`` (database through SQLite's backup API).

    The database is copied with ``sqlite3.Connection.backup`` (a consistent copy even when
    its write-ahead log holds commits); the rest of the folder (caches, logs) as files.
    """
    src, dest = Path(src), Path(dest)
    if not (src / "project.db").is_file():
        raise FileNotFoundError(f"{src}: no project.db here")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("project.db", "project.db-wal", "project.db-shm"))
    source = sqlite3.connect(f"file:{src / 'project.db'}?mode=ro", uri=True)
    target = sqlite3.connect(str(dest / "project.db"))
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def import_fraction(project: Any, fraction: float, truth: Any, seed: int = 0) -> int:
    """Label ``fraction`` of the images that have no state (open batch and audit set left alone).

    Args:
        project: An open :class:`activekd_core.project.Project`.
        fraction: Share of the whole pool to label, 0 to 1 (fewer when fewer images are free).
        truth: Image id -> class name.
        seed: Which images are drawn.

    Returns:
        The number of labels written (one ``add_labels`` transaction, strategy ``import``).
    """
    store = project.store
    current = store.current()
    open_b = store.open_batch_current()
    keep = set(store.audit_ids()) | ({it.image_id for it in open_b.items} if open_b else set())
    free = [i for i in project.pool().ids if i not in current and i not in keep]
    n = min(len(free), int(round(fraction * len(project.pool()))))
    if n <= 0:
        return 0
    picks = np.random.default_rng(seed).choice(len(free), size=n, replace=False)
    return store.add_labels([(free[k], truth(free[k])) for k in sorted(picks)], annotator="bench-import")


def share_script_cache() -> None:
    """Give every AppTest run the same ``ScriptCache`` (what one server process does)."""
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import app_test, local_script_runner

    shared = ScriptCache()
    for module in (app_test, local_script_runner):  # the pages manager's and the script runner's
        module.ScriptCache = lambda: shared  # type: ignore[attr-defined]


# What the Label page (and the sidebar) reads from the project on every rerun, in page order.
RERUN_READS = ("undecodable_images", "audit_progress", "current_batch", "counts", "class_keys",
               "collapse_warnings", "labels_per_round", "new_labels_since_model")


def rerun_reads(project: Any, truth: Any, clicks: int = 5) -> dict[str, list[float]]:
    """Milliseconds of each facade read of a Label rerun, measured right after each of ``clicks`` labels.

    Labels the open batch's images (or, without one, images that have no state; ground
    truth), then undoes them so the project is left as it was; the first pass after
    opening (which builds the caches) is not counted.

    Returns:
        Read name -> wall milliseconds per click (``counts`` runs twice per rerun: page and sidebar).
    """
    import itertools
    import time

    for name in RERUN_READS:
        getattr(project, name)()
    view = project.current_batch()
    todo = [it.image_id for it in view.batch.items if view.states.get(it.image_id) is None] if view else []
    todo = todo[:len(todo) - 1]  # the open batch stays open
    if len(todo) < clicks:  # no open batch (or a nearly done one): images without a state elsewhere
        current = project.store.current()
        todo += [i for i in itertools.islice((i for i in project.pool().ids if i not in current), 2 * clicks)
                 if view is None or i not in view.states]
    out: dict[str, list[float]] = {name: [] for name in RERUN_READS}
    done = 0
    for image_id in todo[:clicks]:
        project.label(image_id, truth(image_id))
        done += 1
        for name in RERUN_READS:
            t0 = time.perf_counter()
            getattr(project, name)()
            out[name].append(1000 * (time.perf_counter() - t0))
    for _ in range(done):
        project.undo()
    return out
