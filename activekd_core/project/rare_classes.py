"""Rare classes: classes a model predicts for (almost) nothing or everything, and labels found per round."""

from __future__ import annotations

from typing import Any

import numpy as np

from activekd_core.project.context import ProjectContext, ProjectError
from activekd_core.project.labels import Labels
from activekd_core.project.rounds import Rounds
from activekd_core.project.teacher_probs import TeacherProbs, uniform


class RareClasses:
    """Collapse warnings and per-round label counts of one project."""

    def __init__(self, ctx: ProjectContext, teacher: TeacherProbs, rounds: Rounds, labels: Labels) -> None:
        self.ctx = ctx
        self.teacher = teacher
        self.rounds = rounds
        self.labels = labels
        self._pred_counts_cache: tuple[tuple[Any, ...], list[tuple[str, np.ndarray]]] | None = None

    def collapse_warnings(self) -> list[Any]:
        """Classes the teacher or the active student predicts for (almost) nothing or everything.

        Uses the cached teacher probabilities (never computes them) and the active round's
        stored student predictions over the whole pool; see :mod:`activekd_core.collapse`
        for the thresholds. Returns :class:`activekd_core.collapse.CollapseWarning` items.
        """
        from activekd_core.collapse import collapse_from_counts

        per_class = self.labels.counts()["per_class"]
        labeled = [per_class.get(c, 0) for c in self.ctx.classes]
        out = []
        for model, counts in self._predicted_counts():
            out += collapse_from_counts(counts, self.ctx.classes, model, labeled_counts=labeled)
        return out

    def _predicted_counts(self) -> list[tuple[str, np.ndarray]]:
        """Images predicted per class by the cached teacher and the active student.

        Cached on the newest teacher cache file (name, mtime) and the active round, so the
        Label page's reruns do not re-read the pool's probabilities.
        """
        ctx = self.ctx
        teacher_files = sorted(ctx.path("cache", "teacher").glob("probs_*.npy"))
        active = self.rounds.active()
        key = (tuple((f.name, f.stat().st_mtime_ns) for f in teacher_files), active.id if active else None,
               tuple(ctx.classes))
        cached = self._pred_counts_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        c = len(ctx.classes)
        found: list[tuple[str, np.ndarray]] = []
        teacher = self.teacher.cached()
        if teacher is not None and not uniform(teacher):  # an unfitted stand-in's argmax means nothing
            found.append(("the teacher", np.bincount(np.asarray(teacher).argmax(axis=1), minlength=c)))
        if active is not None:
            try:
                probs, _ = self.rounds.student_outputs(active.id)
            except ProjectError:
                probs = None
            if probs is not None and probs.shape == (len(ctx.pool()), c) and not uniform(probs):
                found.append((f"the student (round {active.id})",
                              np.bincount(np.asarray(probs).argmax(axis=1), minlength=c)))
        self._pred_counts_cache = (key, found)
        return found

    def labels_per_round(self) -> list[dict[str, Any]]:
        """Training labels per class at each successful round, then now (how fast each class was found).

        Returns:
            One dict per round (``{"round": id, "strategy": ..., "labels": n, <class>: count, ...}``;
            rounds trained before this was recorded have None per class), and a last row
            ``round = "now"`` with the current training labels (audit set excluded). A class
            named like a fixed column (``round``, ``strategy``, ``labels``) gets `` (class)``
            appended to its column name.
        """
        classes = self.ctx.classes
        fixed = ("round", "strategy", "labels")
        columns = [f"{c} (class)" if c in fixed else c for c in classes]  # a class may be named "round"
        rows: list[dict[str, Any]] = []
        for rec in self.ctx.store.rounds():
            if rec.status != "done":
                continue
            counts = (rec.metrics or {}).get("labels_per_class")
            ok = isinstance(counts, list) and len(counts) == len(classes)
            row: dict[str, Any] = {"round": str(rec.id), "strategy": rec.strategy, "labels": rec.n_labeled}
            row.update({col: (int(counts[i]) if ok else None) for i, col in enumerate(columns)})
            rows.append(row)
        now = self.ctx.training_label_counts()  # kept counts: no pass over every label per rerun
        rows.append({"round": "now", "strategy": self.ctx.strategy, "labels": int(now.sum()),
                     **{col: int(now[i]) for i, col in enumerate(columns)}})
        return rows
