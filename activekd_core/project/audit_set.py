"""The audit set: a uniform random sample labeled for measuring accuracy, never trained or selected on.

:mod:`activekd_core.audit` (which imports the bias stack: pandas, scipy.stats) is imported
where it is used, not with the project.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from activekd_core.project.context import ProjectContext, ProjectError
from activekd_core.project.teacher_probs import uninformative

if TYPE_CHECKING:
    from activekd_core.audit import AuditScore
    from activekd_core.project.rounds import Rounds
    from activekd_core.project.teacher_probs import TeacherProbs
    from activekd_core.store import LabelEvent


def create_audit_set(ctx: ProjectContext, size: int | None = None, *, seed: int | None = None) -> list[str]:
    """Sample the audit set uniformly from images that have no state and are not in the open batch.

    Raises:
        ProjectError: If an audit set exists or ``size`` is out of range.
    """
    store = ctx.store
    if store.audit_ids():
        raise ProjectError("an audit set already exists")
    current = store.current()
    open_b = store.open_batch_current()
    in_batch = {it.image_id for it in open_b.items} if open_b else set()
    candidates = [i for i in ctx.pool().ids if i not in current and i not in in_batch]
    if not candidates:
        raise ProjectError("no unlabeled images left to sample an audit set from")
    from activekd_core import audit as audit_mod

    size = size or audit_mod.default_audit_size(len(ctx.pool()), len(ctx.classes))
    try:
        ids = audit_mod.sample_audit_set(candidates, min(size, len(candidates)),
                                         ctx.config.get("seed", 0) if seed is None else seed)
    except ValueError as exc:
        raise ProjectError(str(exc)) from exc
    store.set_audit_set(ids)
    return ids


def audit_chunk(ctx: ProjectContext) -> tuple[int, list[str]]:
    """The audit images to label now: ``(chunk number, ids)``, or ``(-1, [])`` when all are labeled.

    The audit set is cut into chunks of one batch size in its sampled order; the chunk
    shown is the first one with an unlabeled image. It stays the same while it is
    labeled (labeled images keep their place), so the grid does not shift under the
    expert's keys.
    """
    ids = ctx.store.audit_ids()
    current = ctx.store.current()  # looked up per audit image: no pass over every label
    size = max(1, ctx.batch_size)
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        if any(not _labeled(current.get(i)) for i in chunk):
            return start // size, chunk
    return -1, []


def audit_progress(ctx: ProjectContext) -> tuple[int, int]:
    """``(labeled audit images, audit set size)``."""
    ids = ctx.store.audit_ids()
    current = ctx.store.current()
    return sum(1 for i in ids if _labeled(current.get(i))), len(ids)


def _labeled(ev: LabelEvent | None) -> bool:
    """Whether an image's current state (None: none) is a label."""
    return ev is not None and ev.is_label


def _audit_labels(ctx: ProjectContext) -> tuple[np.ndarray, np.ndarray]:
    from activekd_core import audit as audit_mod

    return audit_mod.audit_rows(ctx.store.audit_ids(), ctx.store.current_labels(), ctx.row_of(),
                                {c: i for i, c in enumerate(ctx.classes)})


def audit_metrics(ctx: ProjectContext, round_id: int, student_probs: np.ndarray,
                  teacher_probs: np.ndarray | None) -> dict[str, Any]:
    """A finished round's audit accuracy (student, and the teacher it trained with) for its record."""
    from activekd_core import audit as audit_mod

    rows, y = _audit_labels(ctx)
    out = {"student": audit_mod.audit_accuracy(student_probs, rows, y, model="student", round=round_id).as_dict()}
    if teacher_probs is not None:
        out["teacher"] = audit_mod.audit_accuracy(teacher_probs, rows, y, model="teacher", round=round_id).as_dict()
    return out


def audit_report(ctx: ProjectContext, teacher: TeacherProbs, rounds: Rounds, *,
                 include_teacher: bool = True) -> list[AuditScore]:
    """Accuracy ± Wilson interval on the currently labeled audit images.

    Entries: the teacher as configured (round 0: zero-shot/unfitted predictions; left
    out when they are uniform, e.g. an unfitted stand-in), then per successful round
    its student and the teacher probabilities that round trained with (a teacher that
    learns from labels differs per round). Scores use the audit labels as they are
    now, so labeling more audit images tightens every round's interval.
    """
    from activekd_core import audit as audit_mod

    rows, y = _audit_labels(ctx)
    scores = []
    if include_teacher:
        base = teacher.probs(fit=False)
        if not uninformative(base):  # an unfitted stand-in is uniform: no score to give
            scores.append(audit_mod.audit_accuracy(base, rows, y, model="teacher", round=0))
    for rec in ctx.store.rounds():
        if rec.status != "done":
            continue
        probs, _ = rounds.student_outputs(rec.id)
        scores.append(audit_mod.audit_accuracy(probs, rows, y, model="student", round=rec.id))
        tfile = rec.metrics.get("teacher_probs_file")
        if include_teacher and tfile and ctx.path(tfile).is_file():
            tprobs = np.load(ctx.path(tfile), mmap_mode="r")
            scores.append(audit_mod.audit_accuracy(tprobs, rows, y, model="teacher", round=rec.id))
    return scores
