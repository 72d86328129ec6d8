"""Teacher vs student: where the two predict differently, who was right, and how far their probabilities lie apart.

Row-wise disagreement is total variation ``0.5 * ||p - q||_1`` or the Jensen-Shannon
divergence in bits (both in ``[0, 1]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.spatial.distance import jensenshannon

from activekd_core.bias.inputs import check_labels, check_probs, class_names

DisagreementMetric = Literal["tv", "js"]


def disagreement_table(
    teacher_probs: npt.ArrayLike,
    student_probs: npt.ArrayLike,
    y: npt.ArrayLike,
    labeled: npt.ArrayLike,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Labeled images where teacher and student predict different classes, and who was right.

    Args:
        teacher_probs: ``(N, C)`` teacher probabilities.
        student_probs: ``(N, C)`` student probabilities.
        y: Human class index per labeled image.
        labeled: Pool row per labeled image.
        classes: Class names.

    Returns:
        DataFrame with columns ``index, human, teacher, student, teacher_confidence,
        student_confidence, right`` where ``right`` is ``"teacher"``, ``"student"`` or
        ``"neither"``; sorted by pool index.
    """
    t, s = _pair(teacher_probs, student_probs)
    names = class_names(classes, t.shape[1])
    y_arr, lab = check_labels(y, labeled, t.shape[0], t.shape[1])
    tp, sp = t[lab].argmax(axis=1), s[lab].argmax(axis=1)
    mask = tp != sp
    order = np.argsort(lab[mask], kind="stable")
    idx, yy, tt, ss = lab[mask][order], y_arr[mask][order], tp[mask][order], sp[mask][order]
    right = np.where(tt == yy, "teacher", np.where(ss == yy, "student", "neither"))
    return pd.DataFrame(
        {
            "index": idx.astype(np.int64),
            "human": [names[i] for i in yy],
            "teacher": [names[i] for i in tt],
            "student": [names[i] for i in ss],
            "teacher_confidence": t[idx].max(axis=1) if idx.size else np.zeros(0),
            "student_confidence": s[idx].max(axis=1) if idx.size else np.zeros(0),
            "right": right.astype(object),
        }
    )


def disagreement_summary(
    teacher_probs: npt.ArrayLike, student_probs: npt.ArrayLike, y: npt.ArrayLike, labeled: npt.ArrayLike
) -> dict[str, int]:
    """Counts of labeled images by (teacher correct, student correct).

    Returns:
        Dict with keys ``both_right, both_wrong_same, both_wrong_different, only_teacher_right,
        only_student_right, n``; the first five sum to ``n``.
    """
    t, s = _pair(teacher_probs, student_probs)
    y_arr, lab = check_labels(y, labeled, t.shape[0], t.shape[1])
    tp, sp = t[lab].argmax(axis=1), s[lab].argmax(axis=1)
    tr, sr = tp == y_arr, sp == y_arr
    return {
        "both_right": int(np.sum(tr & sr)),
        "both_wrong_same": int(np.sum(~tr & ~sr & (tp == sp))),
        "both_wrong_different": int(np.sum(~tr & ~sr & (tp != sp))),
        "only_teacher_right": int(np.sum(tr & ~sr)),
        "only_student_right": int(np.sum(~tr & sr)),
        "n": int(lab.size),
    }


def prob_disagreement(
    p: npt.ArrayLike, q: npt.ArrayLike, metric: DisagreementMetric = "tv"
) -> np.ndarray:
    """Row-wise disagreement between two probability matrices.

    Args:
        p: ``(N, C)`` probabilities.
        q: ``(N, C)`` probabilities.
        metric: ``"tv"`` total variation ``0.5 * sum |p - q|`` or ``"js"`` Jensen-Shannon
            divergence in bits (scipy's JS distance squared, base 2). Both lie in ``[0, 1]``.

    Returns:
        ``(N,)`` float64 array.
    """
    a, b = _pair(p, q)
    if metric == "tv":
        return 0.5 * np.abs(a - b).sum(axis=1)
    if metric == "js":
        if a.shape[0] == 0:
            return np.zeros(0)
        return np.clip(jensenshannon(a, b, base=2, axis=1) ** 2, 0.0, 1.0)
    raise ValueError(f"bias: unknown disagreement metric {metric!r}; use 'tv' or 'js'")


def top_disagreements(
    teacher_probs: npt.ArrayLike,
    student_probs: npt.ArrayLike,
    *,
    top: int = 24,
    metric: DisagreementMetric = "tv",
    classes: Sequence[str] | None = None,
    candidates: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Images where teacher and student disagree most.

    Args:
        teacher_probs: ``(N, C)`` teacher probabilities.
        student_probs: ``(N, C)`` student probabilities.
        top: Number of rows to return.
        metric: ``"tv"`` or ``"js"`` (see ``prob_disagreement``).
        classes: Class names.
        candidates: Optional pool rows to restrict to (e.g. the unlabeled ones).

    Returns:
        DataFrame ``index, score, teacher, student, teacher_confidence, student_confidence``
        sorted by score (descending), ties by pool index.
    """
    t, s = _pair(teacher_probs, student_probs)
    names = class_names(classes, t.shape[1])
    score = prob_disagreement(t, s, metric)
    idx = np.arange(t.shape[0]) if candidates is None else np.asarray(candidates, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= t.shape[0]):
        raise ValueError(f"bias: candidates index out of range [0, {t.shape[0]})")
    order = np.lexsort((idx, -score[idx]))[: max(0, int(top))]
    sel = idx[order]
    return pd.DataFrame(
        {
            "index": sel.astype(np.int64),
            "score": score[sel],
            "teacher": [names[i] for i in t[sel].argmax(axis=1)] if sel.size else [],
            "student": [names[i] for i in s[sel].argmax(axis=1)] if sel.size else [],
            "teacher_confidence": t[sel].max(axis=1) if sel.size else np.zeros(0),
            "student_confidence": s[sel].max(axis=1) if sel.size else np.zeros(0),
        }
    )


def _pair(p: npt.ArrayLike, q: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = check_probs(p, "teacher_probs")
    b = check_probs(q, "student_probs")
    if a.shape != b.shape:
        raise ValueError(f"bias: teacher_probs {a.shape} and student_probs {b.shape} differ in shape")
    return a, b
