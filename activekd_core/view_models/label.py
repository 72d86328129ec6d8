"""The Label page's view model (no Streamlit): each on-screen image's decision and the background
jobs the page reports (a failed selection, a training round); the running selection is
:meth:`Project.batch_job`.

Job states come back as :class:`activekd_core.jobs.JobStatus` values (state, progress,
message, error); :class:`JobBusy` is re-exported for the page's "already running" answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from activekd_core.jobs import JobBusy, JobStatus
from activekd_core.store import LabelEvent

if TYPE_CHECKING:
    from activekd_core.project import Project

__all__ = ["JobBusy", "JobStatus", "image_states", "failed_selection", "training_job"]


def image_states(project: Project, ids: Sequence[str]) -> dict[str, LabelEvent | None]:
    """Image id -> its latest decision (label, skip or unsure), None where it has none.

    Read from the store's cached current state (incremental): no scan per click.
    """
    current = project.store.current()
    return {image_id: current.get(image_id) for image_id in ids}


def failed_selection(project: Project) -> JobStatus | None:
    """The latest batch selection when it failed or was interrupted (its error says why), else None."""
    latest = project.jobs().latest("select")
    if latest is not None and latest.state in ("failed", "interrupted"):
        return latest
    return None


def training_job(project: Project) -> JobStatus | None:
    """The running training round's job, or None."""
    return project.jobs().running("train")
