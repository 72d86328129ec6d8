"""The Train page's view model (no Streamlit): the training job, the round history table, the
audit set's state and the device the next round will use.

:class:`JobBusy` is re-exported for the page's "already training" answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from activekd_core.display_text import MESSAGE_MAX, short_time, visible
from activekd_core.jobs import JobBusy, JobStatus

if TYPE_CHECKING:
    from activekd_core.project import Project

__all__ = [
    "JobBusy",
    "JobStatus",
    "TrainingStatus",
    "RoundHistory",
    "fmt_seconds",
    "device_guess",
    "training_status",
    "cancel_training",
    "round_history",
    "has_audit_set",
    "default_audit_size",
]


@dataclass(frozen=True)
class TrainingStatus:
    """The project's training job.

    Attributes:
        running: The running training job, or None.
        latest: The running job, else the latest one (None before the first round).
    """

    running: JobStatus | None
    latest: JobStatus | None


@dataclass
class RoundHistory:
    """The Train page's round table.

    Attributes:
        rows: One dict per round (column name -> cell), oldest first; empty before round 1.
        recover_error: Why interrupted rounds could not be checked (the history is still read), or None.
        audit_error: Why the audit scores could not be computed, or None.
        audit_scored: Whether audit scores fill the table's audit columns.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    recover_error: str | None = None
    audit_error: str | None = None
    audit_scored: bool = False


def fmt_seconds(s: float | None) -> str:
    """A duration as ``"1m 05s"`` or ``"42s"`` ("—" when unknown)."""
    if s is None:
        return "—"
    s = int(round(s))
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def device_guess() -> str:
    """The device the next round will use (the training config's ``auto`` choice), as a name."""
    try:
        from activekd_core.devices import device_name, pick_device  # torch: imported when asked

        return device_name(pick_device("auto"))
    except Exception as exc:  # noqa: BLE001 - torch missing or broken: say so instead of failing the page
        return f"unknown ({exc})"


def training_status(project: Project) -> TrainingStatus:
    """The running training job and the latest one."""
    jobs = project.jobs()
    running = jobs.running("train")
    return TrainingStatus(running, running or jobs.latest("train"))


def cancel_training(project: Project, job_id: int) -> None:
    """Ask the training job ``job_id`` to stop at its next step (labels and models stay as they are)."""
    project.jobs().cancel(job_id)


def _loss_text(value: object) -> str:
    """A round's final loss for the table ("—" when the round has none, e.g. failed or cancelled)."""
    return f"{value:.4f}" if isinstance(value, (int, float)) else "—"


def _score_text(d: dict | None) -> str | None:
    """An audit score stored in a round's metrics as text (None when absent or empty)."""
    if not d or not d.get("n") or d.get("accuracy") is None:
        return None
    return f"{100 * d['accuracy']:.1f}% ({100 * d['low']:.1f}-{100 * d['high']:.1f}%, n={d['n']})"


def _stored_balanced_text(d: dict | None) -> str | None:
    """A stored audit score's balanced accuracy as text (None when absent, e.g. older rounds)."""
    if not d or d.get("balanced_accuracy") is None:
        return None
    return f"{100 * d['balanced_accuracy']:.1f}% ({100 * d['balanced_low']:.1f}-{100 * d['balanced_high']:.1f}%)"


def round_history(project: Project) -> RoundHistory:
    """Every round as a table row, with audit accuracy, balanced accuracy and macro-F1 per model.

    Rounds whose process died (killed, disk full) are first marked interrupted, so none is
    shown as running for ever. Student scores are each round's model on the audit labels as
    they are now; teacher scores as stored with the round (the zero-shot teacher's otherwise).
    """
    history = RoundHistory()
    try:
        project.recover()
    except Exception as exc:  # noqa: BLE001 - e.g. the database is busy: the history is still worth showing
        history.recover_error = str(exc)
    rounds = project.store.rounds()
    if not rounds:
        return history
    audit: dict = {}
    balanced: dict = {}
    macro: dict = {}
    if project.store.audit_ids():
        try:
            for score in project.audit_report():
                audit[(score.model, score.round)] = score.text()
                balanced[(score.model, score.round)] = score.balanced_text()
                macro[(score.model, score.round)] = score.macro_f1_text()
        except Exception as exc:  # noqa: BLE001 - shown; the table is still drawn
            history.audit_error = str(exc)
    history.audit_scored = bool(audit)
    for r in rounds:
        m = r.metrics or {}
        history.rows.append({
            "round": r.id,
            "status": r.status,
            "labels": r.n_labeled,
            "strategy": r.strategy,
            "space": r.space,
            "steps": m.get("steps"),
            "student init": m.get("init", ""),
            "training time": fmt_seconds(m.get("train_seconds") or m.get("seconds") or m.get("time")),
            "device": m.get("device_name") or m.get("device", ""),
            "final loss": _loss_text(m.get("final_loss", m.get("loss"))),
            "student audit acc": audit.get(("student", r.id), "—"),
            "student audit balanced acc": balanced.get(("student", r.id), "—"),
            "student audit macro-F1": macro.get(("student", r.id), "—"),
            "teacher audit acc": _score_text((m.get("audit") or {}).get("teacher")) or audit.get(("teacher", 0), "—"),
            "teacher audit balanced acc": _stored_balanced_text((m.get("audit") or {}).get("teacher"))
            or balanced.get(("teacher", 0), "—"),
            "started": short_time(r.started),
            "left out (undecodable)": int(((m.get("undecodable") or {}).get("count")) or 0),
            "error": visible(r.error or "", MESSAGE_MAX),
        })
    return history


def has_audit_set(project: Project) -> bool:
    """Whether the project has an audit set (a random sample labeled only to measure accuracy)."""
    return bool(project.store.audit_ids())


def default_audit_size(project: Project) -> int:
    """The suggested audit set size for this pool and number of classes."""
    from activekd_core.audit import default_audit_size as suggested  # audit loads scipy: when asked

    return suggested(len(project.pool()), len(project.classes))
