"""What the Explore page draws, read from a project as arrays in pool row order, and the
selection linked across its charts.

Nothing here computes beyond indexing and grouping: probabilities come from the project's
caches, selection and coverage from :mod:`activekd_core.selection` and
:mod:`activekd_core.coverage`. :class:`LinkedSelection` is the click/box/lasso selection made on
any chart, which every chart highlights; :func:`display_rows` picks the rows to draw so that
the highlighted, labeled and picked images are drawn on every panel even when the pool is
subsampled for display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from activekd_core import coverage as cov
from activekd_core import projection_sample
from activekd_core.figures.common import UNLABELED
from activekd_core.project import Project, ProjectError
from activekd_core.projection import DisplaySubset, display_subset


@dataclass
class PoolState:
    """Everything the page draws, as arrays in pool row order.

    Attributes:
        ids: Image id per pool row.
        classes: Class names (column order of every probability matrix).
        teacher: ``(N, C)`` teacher probabilities.
        student: ``(N, C)`` probabilities of the active student, or None before round 1.
        student_round: Id of the active round, or None.
        student_features: The active student's pooled features (CoreSet's space), or None.
        human_rows: Pool rows with a human label (audit images included).
        human_y: Class index per ``human_rows``.
        seed_rows: Labeled rows that seed selection (audit excluded).
        candidates: Rows a strategy may pick (no state, not in the audit set).
        picked_rounds: Model round -> rows picked in a batch of that round and labeled since.
        query: Rows of the open query batch.
        rounds: Ids of finished rounds in order, with their student probabilities.
        label_round: Per seed row, the model round active when it was labeled.
        fit_rows: For a pool above ``projection_sample.LARGE_POOL`` images, the seeded sample
            its layouts are fitted on and its drawn random points come from; None otherwise
            (layouts then cover every image). Probability arrays are read-only memory maps:
            read rows of them, never the whole array, for large pools.
    """

    ids: list[str]
    classes: list[str]
    teacher: np.ndarray
    student: np.ndarray | None
    student_round: int | None
    student_features: np.ndarray | None
    human_rows: np.ndarray
    human_y: np.ndarray
    seed_rows: np.ndarray
    candidates: np.ndarray
    picked_rounds: dict[int, np.ndarray]
    query: np.ndarray
    rounds: list[tuple[int, np.ndarray]] = field(default_factory=list)
    label_round: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fit_rows: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Pool size."""
        return len(self.ids)

    @property
    def sampled(self) -> bool:
        """Whether layouts are fitted on a sample (a pool above ``projection_sample.LARGE_POOL``)."""
        return self.fit_rows is not None

    def human_names(self, rows: Any = None) -> list[str]:
        """Human label name per pool row, or per row of ``rows`` (``"unlabeled"`` where none)."""
        if rows is not None:
            label = dict(zip(self.human_rows.tolist(), self.human_y.tolist()))
            return [self.classes[label[r]] if r in label else UNLABELED
                    for r in np.asarray(rows, dtype=np.int64).reshape(-1).tolist()]
        names = [UNLABELED] * self.n
        for r, c in zip(self.human_rows, self.human_y):
            names[int(r)] = self.classes[int(c)]
        return names


def read_pool_state(project: Project) -> PoolState:
    """Collect the arrays the page needs from the project (teacher probs come from its cache)."""
    ids = project.pool().ids
    row_of = project.row_of()
    classes = project.classes
    current = project.store.current()
    human_rows, human_y = project.human_labels("all")
    seed_rows, candidates = project.candidate_rows()
    label_round = np.asarray([int(current[ids[r]].round or 0) for r in seed_rows], dtype=np.int64)

    teacher = np.asarray(project.teacher_probs(), dtype=np.float32)
    active = project.active_round()
    student = feats = None
    rounds: list[tuple[int, np.ndarray]] = []
    for rec in project.store.rounds():
        if rec.status != "done":
            continue
        try:
            probs, f = project.student_outputs(rec.id)
        except ProjectError:
            continue
        rounds.append((rec.id, np.asarray(probs, dtype=np.float32)))
        if active is not None and rec.id == active.id:
            student, feats = np.asarray(probs, dtype=np.float32), f
    open_batch = project.store.open_batch_current()
    query = np.asarray([row_of[it.image_id] for it in open_batch.items if it.image_id in row_of]
                       if open_batch else [], dtype=np.int64)
    picked: dict[int, list[int]] = {}
    for batch in project.store.batches():
        if open_batch is not None and batch.id == open_batch.id:
            continue
        for it in batch.items:
            ev = current.get(it.image_id)
            if ev is not None and ev.event == "label" and it.image_id in row_of:
                picked.setdefault(int(batch.round), []).append(row_of[it.image_id])
    return PoolState(
        ids=ids, classes=classes, teacher=teacher, student=student,
        student_round=active.id if (active is not None and student is not None) else None,
        student_features=feats, human_rows=human_rows, human_y=human_y, seed_rows=seed_rows,
        candidates=candidates,
        picked_rounds={r: np.unique(np.asarray(v, dtype=np.int64)) for r, v in sorted(picked.items())},
        query=query, rounds=rounds, label_round=label_round,
        fit_rows=projection_sample.fit_rows(len(ids)) if len(ids) > projection_sample.LARGE_POOL else None,
    )


def selection_space_probs(state: PoolState) -> tuple[str, np.ndarray]:
    """PCoreSet's space: the active student's probabilities, or the teacher's before round 1."""
    if state.student is not None:
        return f"student (round {state.student_round})", state.student
    return "teacher", state.teacher


def greedy_steps(state: PoolState, k: int) -> cov.GreedyTrace:
    """PCoreSet's greedy picks over the candidate pool (labeled rows seed it), in pool rows."""
    _, points = selection_space_probs(state)
    subset = np.sort(np.concatenate([state.seed_rows, state.candidates]))
    pos = np.searchsorted(subset, state.seed_rows)
    trace = cov.greedy_trace(points[subset], pos, k)
    trace.indices = subset[trace.indices]
    return trace


def coverage_rows(state: PoolState) -> np.ndarray | None:
    """The rows coverage is measured over: every row (None), or for a large pool its fit sample
    plus every labeled row (so the curve is an estimate over a seeded sample)."""
    if state.fit_rows is None:
        return None
    return np.union1d(state.fit_rows, state.seed_rows)


def coverage_inputs(state: PoolState) -> tuple[list[np.ndarray], dict[str, Any], list[str]]:
    """Labeled rows and spaces per round for :func:`coverage.coverage_curve`.

    Round 0 is the teacher-only phase; round ``r`` uses the labels made while model ``r``
    (or an earlier one) was active, i.e. the picks that model's queries produced. A large pool
    is measured over :func:`coverage_rows` only (labeled rows renumbered within them).
    """
    round_ids = [0] + [rid for rid, _ in state.rounds]
    labeled = [state.seed_rows[state.label_round <= rid] for rid in round_ids]
    names = ["teacher only"] + [f"round {rid}" for rid in round_ids[1:]]
    rows = coverage_rows(state)
    if rows is not None:  # a large pool: measured over its fit sample plus the labeled rows
        labeled = [np.searchsorted(rows, lab) for lab in labeled]
    take = (lambda p: p) if rows is None else (lambda p: projection_sample.rows_of(p, rows))
    student = [None] + [take(p) for _, p in state.rounds]
    spaces: dict[str, Any] = {"teacher": take(state.teacher)}
    if state.rounds:
        spaces["student"] = student
    keep = [i for i, lab in enumerate(labeled) if lab.size > 0]
    return [labeled[i] for i in keep], {k: (v if isinstance(v, np.ndarray) else [v[i] for i in keep])
                                         for k, v in spaces.items()}, [names[i] for i in keep]


def _rows(values: Any) -> tuple[int, ...]:
    return tuple(sorted({int(v) for v in np.asarray(values if values is not None else [], dtype=np.int64).reshape(-1)}))


@dataclass
class LinkedSelection:
    """The images selected on one Explore chart, highlighted on every chart (teacher and student
    maps, teacher and student simplex).

    A chart reports its selection as pool rows (its points' ``customdata``). The page feeds each
    report to :meth:`observe`: a selection the person made (``user=True``, from the chart's
    selection callback) replaces the highlight, and an empty one clears it; a value merely read
    back from a chart (``user=False``) counts only when it differs from what that chart last
    reported and is not empty, because redrawing a chart with the highlight gives it a fresh,
    empty selection that must not clear what was just selected elsewhere.

    Attributes:
        rows: Highlighted pool rows, sorted.
        source: The chart whose selection they are, or None.
        seen: Per chart, the rows it last reported.
    """

    rows: tuple[int, ...] = ()
    source: str | None = None
    seen: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def observe(self, chart: str, rows: Any, *, user: bool = False) -> bool:
        """Take ``chart``'s reported selection into account.

        Args:
            chart: The chart's name (its widget key).
            rows: Pool rows it reports selected.
            user: True when the person just changed that chart's selection.

        Returns:
            Whether the highlighted rows changed.
        """
        new = _rows(rows)
        if not user and new == self.seen.get(chart, ()):
            return False
        self.seen[chart] = new
        if not new and not user:
            return False
        before = self.rows
        self.rows, self.source = new, (chart if new else None)
        return self.rows != before

    def clear(self) -> None:
        """Nothing highlighted (what every chart last reported is kept)."""
        self.rows, self.source = (), None

    def to_state(self) -> dict[str, Any]:
        """Plain data for a session store."""
        return {"rows": list(self.rows), "source": self.source, "seen": {k: list(v) for k, v in self.seen.items()}}

    @classmethod
    def from_state(cls, data: Mapping[str, Any] | None) -> LinkedSelection:
        """The selection stored by :meth:`to_state` (an empty one for None or malformed data)."""
        if not isinstance(data, Mapping):
            return cls()
        seen = data.get("seen")
        try:
            return cls(_rows(data.get("rows")), data.get("source") if isinstance(data.get("source"), str) else None,
                       {str(k): _rows(v) for k, v in seen.items()} if isinstance(seen, Mapping) else {})
        except (TypeError, ValueError):
            return cls()

    def in_pool(self, n: int) -> np.ndarray:
        """The highlighted rows that exist in a pool of ``n`` images (a rescan may shrink it)."""
        rows = np.asarray(self.rows, dtype=np.int64)
        return rows[(rows >= 0) & (rows < n)]


def display_rows(state: PoolState, max_points: int, *, highlight: Any = None,
                 extra: Sequence[Any] = ()) -> DisplaySubset:
    """The pool rows to draw: at most about ``max_points``, always including the labeled images,
    the picks of every round, the open query, the highlighted selection and ``extra`` rows
    (e.g. overlays), so that each of them is drawn on both panels of every chart.

    Args:
        state: The pool's arrays.
        max_points: Target number of drawn points.
        highlight: Highlighted pool rows.
        extra: More arrays of pool rows to keep.

    Returns:
        The display subset (stable across reruns for the same inputs).
    """
    keep = np.unique(np.concatenate([
        np.asarray(a, dtype=np.int64).reshape(-1)
        for a in (state.human_rows, state.query, *state.picked_rounds.values(),
                  [] if highlight is None else highlight, *extra)
    ]))
    return display_subset(state.n, max_points, keep=keep, within=state.fit_rows)
