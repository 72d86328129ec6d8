"""The Label page's view model (no Streamlit): each on-screen image's decision, the background
jobs the page reports (a failed selection, a training round; the running selection is
:meth:`Project.batch_job`), and the texts of a card (plain text, shown literally).

Job states come back as :class:`activekd_core.jobs.JobStatus` values (state, progress,
message, error); :class:`JobBusy` is re-exported for the page's "already running" answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from activekd_core.display_text import SHOW_MAX, visible
from activekd_core.jobs import JobBusy, JobStatus
from activekd_core.store import LabelEvent

if TYPE_CHECKING:
    from activekd_core.project import Project

__all__ = ["JobBusy", "JobStatus", "image_states", "failed_selection", "training_job", "card_detail",
           "state_segments", "pick_reason", "class_button_title", "partial_batch_caption", "CLASS_LABEL_MAX",
           "Segment"]

CLASS_LABEL_MAX = 40  # characters of a class name on a compact card's button (its tooltip holds it whole)


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


def partial_batch_caption(project: Project, batch_id: int) -> str | None:
    """The Label page's line for a batch chosen while the teacher was still encoding images, else None.

    Example: "Chosen from the 1,000 of 10,000 images encoded so far; encoding continues
    (2,345 done, 9.1 images/s)." Once the encoding job has ended, the line says the next
    batch is chosen from every image. Read from the batch's note and the jobs table: cheap.
    """
    note = project.batch_partial_note(batch_id)
    if note is None:
        return None
    try:
        encoded, total = int(note["encoded"]), int(note["total"])
    except (KeyError, TypeError, ValueError):
        return None
    rate = note.get("rate")
    head = f"Chosen from the {encoded:,} of {total:,} images encoded so far"
    job = project.teacher_features_job()
    if job is None:
        return f"{head} (a uniform sample); encoding has ended since, so the next batch is chosen from all images."
    speed = f", {float(rate):,.1f} images/s" if isinstance(rate, (int, float)) and rate > 0 else ""
    now = f"{job.step:,} done" if job.total == total else "in progress"
    return (f"{head} (a uniform sample); encoding continues ({now}{speed}), and the next batches are chosen from "
            "the images encoded by then. Training waits until every image is encoded.")


Segment = tuple[str, str]  # (plain text, style: "" or "strong" or "focus"), shown with textContent


def state_segments(event: LabelEvent | None, limit: int = SHOW_MAX) -> list[Segment]:
    """An image's decision as plain-text segments, e.g. ``labeled`` + **class** + ``by ada``;
    names shown literally (never Markdown), each cut at ``limit`` characters."""
    if event is None:
        return [("not labeled yet", "")]
    if event.event == "label":
        return [("labeled ", ""), (visible(event.class_name, limit), "strong"),
                (f" by {visible(event.annotator, limit)}", "")]
    return [({"skip": "skipped", "unsure": "marked unsure"}.get(event.event) or visible(event.event, 32), "")]


def card_detail(pos: int, focused: bool, event: LabelEvent | None, strategy: str, score: float | None,
                suggestion: tuple[str, float] | None) -> list[Segment]:
    """The compact card's one line, as plain-text segments: position, focus, decision, teacher, score.

    A decision comes right after the position; "not labeled yet" goes last, so a narrow card
    cuts it first. Joined, an open card reads
    ``#3 · focused · Teacher suggests nominal (85%) · score 0.412 · not labeled yet``, with
    ``#3`` and the class name "strong" and "focused" styled "focus". The full "why this
    image" sentence (:func:`pick_reason`) is the line's tooltip.
    """
    state = state_segments(event)
    parts: list[list[Segment]] = [[(f"#{pos + 1}", "strong")]]
    if focused:
        parts.append([("focused", "focus")])
    if event is not None:
        parts.append(state)
    if suggestion is not None:
        cls, p = suggestion
        parts.append([("Teacher suggests ", ""), (visible(cls, CLASS_LABEL_MAX), "strong"), (f" ({100 * p:.0f}%)", "")])
    if strategy == "audit":
        parts.append([("audit image", "")])
    elif score is not None:
        parts.append([(f"score {score:.3g}", "")])
    if event is None:
        parts.append(state)
    out: list[Segment] = []
    for k, part in enumerate(parts):
        out.extend(([(" · ", "")] if k else []) + part)
    return out


def pick_reason(strategy: str, score: float | None, pos: int, score_label: str) -> str:
    """Why an image is on the grid, as plain text (``visible``; escape it for Markdown):
    "Pick #3 of pcoreset. Score 0.4123: distance to nearest labeled." or the audit sentence."""
    if strategy == "audit":
        return "Audit image: a uniform random sample for measuring accuracy (never used to train or select)."
    if score is None:
        return f"Pick #{pos + 1} of {visible(strategy, 64)} (no score recorded)."
    return f"Pick #{pos + 1} of {visible(strategy, 64)}. Score {score:.4f}: {visible(score_label, 120)}."


def class_button_title(name: str, key: str | None) -> str:
    """A class button's tooltip (an HTML ``title``, plain text): the whole class name, shown
    literally and bounded, and its key when it has one."""
    return f"Label as {visible(name)}" + (f" (key {visible(key, 3)} when focused)" if key else "")
