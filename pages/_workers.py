"""Job entry points the pages start in a worker process (no Streamlit here).

A worker process keeps long, Python-heavy work (teacher refits, selection over a large
pool) off the Streamlit server's interpreter: in a thread it would hold the GIL and
stall every session's reruns for up to a second at a time.
"""

from __future__ import annotations

import threading

from activekd_core.project import Project, ProgressFn


def select_next_batch(*, progress: ProgressFn, cancel: threading.Event, folder: str) -> int:
    """Select and store the next query batch of the project in ``folder``; returns its id.

    When another process has opened a batch that still has open images meanwhile, that
    batch is kept (nothing is selected twice).
    """
    project = Project.open(folder)
    try:
        view = project.current_batch()
        if view is not None and not view.complete:
            return view.batch.id
        return project.next_batch(progress).batch.id
    finally:
        project.close()
