"""The Review page's view model: filter, sort and page the whole pool (no Streamlit).

Every pool image has a human state (``labeled``, ``skipped``, ``unsure`` or
``unlabeled``; audit images are also ``audit``), the human label with who gave it, when and
in which round, and the teacher's and the active student's prediction and confidence (max
probability) when those exist. :func:`review_page` filters by any combination of those,
sorts, and returns one page of rows plus the ids of *every* matching image (what a bulk
action applies to).

Filtering works on arrays built once per call from the store's cached current state
(incremental, see :meth:`activekd_core.store.Store.current`) and the probability memory
maps: at 100,000 images one call takes tens of milliseconds; only the shown page becomes
row objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["STATES", "SORTS", "ReviewFilter", "ReviewRow", "ReviewPage", "review_page"]

STATES: tuple[str, ...] = ("labeled", "skipped", "unsure", "unlabeled", "audit")
SORTS: dict[str, str] = {
    "pool": "pool order",
    "recent": "most recently labeled first",
    "confidence_asc": "least confident model first",
    "confidence_desc": "most confident model first",
    "margin_asc": "smallest top-2 margin first",
    "id": "image id (A-Z)",
}
_EVENT_STATE = {"label": "labeled", "skip": "skipped", "unsure": "unsure"}


@dataclass(frozen=True)
class ReviewFilter:
    """What to show. Empty tuples mean "any".

    Attributes:
        states: Any of :data:`STATES` (an image matches when it has one of them).
        classes: Human label classes (only labeled images match).
        annotators: Who made the current label/skip/unsure.
        rounds: Round in which the current state was recorded.
        predicted: Classes predicted by the model the confidence refers to.
        disagreement: Only images where teacher and student predict different classes.
        confidence: ``(low, high)`` range of the model's max probability (inclusive).
        sort: A key of :data:`SORTS`.
    """

    states: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    annotators: tuple[str, ...] = ()
    rounds: tuple[int, ...] = ()
    predicted: tuple[str, ...] = ()
    disagreement: bool = False
    confidence: tuple[float, float] = (0.0, 1.0)
    sort: str = "pool"

    def __post_init__(self) -> None:
        bad = [s for s in self.states if s not in STATES]
        if bad:
            raise ValueError(f"unknown review state(s) {bad}: use {', '.join(STATES)}")
        if self.sort not in SORTS:
            raise ValueError(f"unknown sort {self.sort!r}: use one of {', '.join(SORTS)}")
        lo, hi = self.confidence
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"confidence range must satisfy 0 <= low <= high <= 1, got {self.confidence}")


@dataclass(frozen=True)
class ReviewRow:
    """One image as the Review grid shows it."""

    id: str
    row: int
    state: str
    audit: bool
    label: str | None
    annotator: str | None
    time: str | None
    round: int | None
    teacher_pred: str | None
    student_pred: str | None
    confidence: float | None
    margin: float | None


@dataclass
class ReviewPage:
    """One page of matching images.

    Attributes:
        rows: The images of this page.
        total: Matching images in all pages.
        page: This page (0-based, clamped to the last page).
        pages: Number of pages (at least 1).
        matching_ids: Ids of every matching image, in sort order (bulk actions use these).
        model: Which model's confidence is used (``"student"``, ``"teacher"`` or ``""``).
    """

    rows: list[ReviewRow]
    total: int
    page: int
    pages: int
    matching_ids: list[str] = field(default_factory=list)
    model: str = ""


def _top2(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = p.argmax(axis=1)
    if p.shape[1] < 2:
        ones = np.ones(p.shape[0], dtype=np.float32)
        return pred, ones, ones
    part = np.partition(p, -2, axis=1)
    return pred, part[:, -1].astype(np.float32), (part[:, -1] - part[:, -2]).astype(np.float32)


def review_page(
    ids: Sequence[str],
    classes: Sequence[str],
    current: Mapping[str, object],
    flt: ReviewFilter,
    *,
    audit_ids: Sequence[str] = (),
    teacher_probs: npt.ArrayLike | None = None,
    student_probs: npt.ArrayLike | None = None,
    page: int = 0,
    per_page: int = 24,
) -> ReviewPage:
    """Filter, sort and page the pool.

    Args:
        ids: Pool image ids in row order.
        classes: Class names in index order.
        current: Image id -> its current event (``event``, ``class_name``, ``annotator``,
            ``time``, ``round``, ``id`` attributes), as :meth:`Store.current` returns.
        flt: What to show and in which order.
        audit_ids: Audit-set image ids.
        teacher_probs: ``(N, C)`` teacher probabilities (or None).
        student_probs: ``(N, C)`` active student probabilities (or None); when present the
            confidence, margin and ``predicted`` filter refer to the student, else the teacher.
        page: Requested page (0-based).
        per_page: Rows per page (>= 1).

    Returns:
        The :class:`ReviewPage`.
    """
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    n = len(ids)
    cls_index = {c: i for i, c in enumerate(classes)}
    state = np.zeros(n, dtype=np.int8)  # 0 unlabeled, 1 labeled, 2 skipped, 3 unsure
    label = np.full(n, -1, dtype=np.int64)
    event_id = np.zeros(n, dtype=np.int64)
    annot: list[str | None] = [None] * n
    rnd = np.full(n, -1, dtype=np.int64)
    row_of = {image_id: r for r, image_id in enumerate(ids)}
    codes = {"label": 1, "skip": 2, "unsure": 3}
    for image_id, ev in current.items():
        r = row_of.get(image_id)
        code = codes.get(getattr(ev, "event", ""), 0)
        if r is None or code == 0:
            continue
        state[r] = code
        label[r] = cls_index.get(getattr(ev, "class_name", None) or "", -1)
        event_id[r] = int(getattr(ev, "id", 0) or 0)
        annot[r] = getattr(ev, "annotator", None)
        rnd[r] = -1 if getattr(ev, "round", None) is None else int(ev.round)  # type: ignore[attr-defined]
    audit = np.zeros(n, dtype=bool)
    audit[[row_of[i] for i in audit_ids if i in row_of]] = True

    tp = None if teacher_probs is None else np.asarray(teacher_probs, dtype=np.float32)
    sp = None if student_probs is None else np.asarray(student_probs, dtype=np.float32)
    for name, p in (("teacher", tp), ("student", sp)):
        if p is not None and p.shape != (n, len(classes)):
            raise ValueError(f"{name} probabilities have shape {p.shape}, expected {(n, len(classes))}")
    t_pred = _top2(tp)[0] if tp is not None else None
    s_pred = _top2(sp)[0] if sp is not None else None
    model, ref = ("student", sp) if sp is not None else (("teacher", tp) if tp is not None else ("", None))
    if ref is not None:
        pred, conf, margin = _top2(ref)
    else:
        pred = conf = margin = None

    mask = np.ones(n, dtype=bool)
    if flt.states:
        by_state = np.zeros(n, dtype=bool)
        for s in flt.states:
            by_state |= audit if s == "audit" else state == {"unlabeled": 0, "labeled": 1, "skipped": 2, "unsure": 3}[s]
        mask &= by_state
    if flt.classes:
        mask &= np.isin(label, [cls_index[c] for c in flt.classes if c in cls_index]) & (state == 1)
    if flt.annotators:
        wanted = set(flt.annotators)
        mask &= np.fromiter((a in wanted for a in annot), dtype=bool, count=n)
    if flt.rounds:
        mask &= np.isin(rnd, list(flt.rounds))
    if flt.predicted:
        if pred is None:
            mask[:] = False
        else:
            mask &= np.isin(pred, [cls_index[c] for c in flt.predicted if c in cls_index])
    if flt.disagreement:
        if t_pred is None or s_pred is None:
            mask[:] = False
        else:
            mask &= t_pred != s_pred
    lo, hi = flt.confidence
    if conf is not None and (lo > 0.0 or hi < 1.0):
        mask &= (conf >= lo - 1e-7) & (conf <= hi + 1e-7)

    rows = np.flatnonzero(mask)
    if flt.sort == "recent":
        rows = rows[np.argsort(-event_id[rows], kind="stable")]
    elif flt.sort in ("confidence_asc", "confidence_desc") and conf is not None:
        key = conf[rows] if flt.sort == "confidence_asc" else -conf[rows]
        rows = rows[np.argsort(key, kind="stable")]
    elif flt.sort == "margin_asc" and margin is not None:
        rows = rows[np.argsort(margin[rows], kind="stable")]
    elif flt.sort == "id":
        rows = np.asarray(sorted(rows.tolist(), key=lambda r: ids[r]), dtype=np.int64)

    total = int(rows.size)
    pages = max(1, -(-total // per_page))
    page = min(max(0, page), pages - 1)
    shown = rows[page * per_page : (page + 1) * per_page]
    out = []
    for r in shown.tolist():
        ev = current.get(ids[r])
        st_name = {0: "unlabeled", 1: "labeled", 2: "skipped", 3: "unsure"}[int(state[r])]
        out.append(
            ReviewRow(
                id=ids[r],
                row=r,
                state=st_name,
                audit=bool(audit[r]),
                label=classes[label[r]] if label[r] >= 0 else None,
                annotator=annot[r],
                time=getattr(ev, "time", None) if state[r] else None,
                round=None if rnd[r] < 0 else int(rnd[r]),
                teacher_pred=classes[int(t_pred[r])] if t_pred is not None else None,
                student_pred=classes[int(s_pred[r])] if s_pred is not None else None,
                confidence=float(conf[r]) if conf is not None else None,
                margin=float(margin[r]) if margin is not None else None,
            )
        )
    return ReviewPage(out, total, page, pages, [ids[r] for r in rows.tolist()], model)
