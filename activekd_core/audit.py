"""The audit set: a random sample labeled for evaluation only, and accuracy with intervals.

Active learning has no held-out test set; the audit set is one the expert labels on
purpose. Its images are sampled uniformly at random from the pool (so the estimate is
unbiased for the whole pool), are never queried by a strategy and never trained on, and
every round's student and the teacher are scored on the audit images labeled so far.
Accuracy intervals are Wilson score intervals (:func:`activekd_core.bias.wilson_interval`),
which behave well for small samples and for accuracies near 0 or 1. Because accuracy hides
rare classes (a model that answers the majority class scores its share), every score also
carries **balanced accuracy** (mean per-class recall) and **macro-F1** with seeded
percentile-bootstrap intervals over the audit images
(:func:`activekd_core.metrics.bootstrap_intervals`), and the per-class recall.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import numpy.typing as npt

from activekd_core import metrics
from activekd_core.bias import wilson_interval


@dataclass(frozen=True)
class AuditScore:
    """Accuracy of one model on the labeled audit images.

    Attributes:
        model: ``"student"`` or ``"teacher"``.
        round: Training round of the student (0 for the teacher before any round).
        n: Audit images with a human label.
        correct: Of those, predicted correctly (argmax).
        accuracy: ``correct / n`` (NaN when ``n == 0``).
        low: Lower end of the Wilson interval.
        high: Upper end of the Wilson interval.
        confidence: Interval coverage.
        balanced_accuracy: Mean per-class recall over the classes in the audit labels (NaN when empty).
        balanced_low, balanced_high: Its bootstrap interval.
        macro_f1: Unweighted mean F1 (NaN when empty).
        macro_f1_low, macro_f1_high: Its bootstrap interval.
        recall: Per-class recall (None for a class without an audit label).
    """

    model: str
    round: int
    n: int
    correct: int
    accuracy: float
    low: float
    high: float
    confidence: float = 0.95
    balanced_accuracy: float = float("nan")
    balanced_low: float = float("nan")
    balanced_high: float = float("nan")
    macro_f1: float = float("nan")
    macro_f1_low: float = float("nan")
    macro_f1_high: float = float("nan")
    recall: tuple[float | None, ...] = ()

    def as_dict(self) -> dict:
        """A JSON-friendly dict (NaN accuracy becomes None)."""
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, float) and math.isnan(value):
                d[key] = None
        d["recall"] = list(self.recall)
        return d

    def text(self) -> str:
        """E.g. ``"80.0% (49.0-94.3%, n=10)"``."""
        if self.n == 0:
            return "no labeled audit images yet"
        return f"{100 * self.accuracy:.1f}% ({100 * self.low:.1f}-{100 * self.high:.1f}%, n={self.n})"

    def balanced_text(self) -> str:
        """Balanced accuracy with its bootstrap interval, e.g. ``"33.3% (33.3-50.0%)"``; ``"—"`` when unknown."""
        return _pct_interval(self.balanced_accuracy, self.balanced_low, self.balanced_high)

    def macro_f1_text(self) -> str:
        """Macro-F1 with its bootstrap interval; ``"—"`` when unknown."""
        return _pct_interval(self.macro_f1, self.macro_f1_low, self.macro_f1_high)


def _pct_interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None or low is None or high is None or math.isnan(value):
        return "—"
    return f"{100 * value:.1f}% ({100 * low:.1f}-{100 * high:.1f}%)"


def score_counts(model: str, round: int, correct: int, n: int, confidence: float = 0.95) -> AuditScore:
    """An :class:`AuditScore` from counts."""
    low, high = wilson_interval(correct, n, confidence)
    acc = correct / n if n else float("nan")
    return AuditScore(model, round, n, correct, acc, low, high, confidence)


def audit_accuracy(
    probs: npt.ArrayLike,
    rows: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    model: str,
    round: int,
    confidence: float = 0.95,
) -> AuditScore:
    """Score predictions on the labeled audit rows.

    Args:
        probs: ``(N, C)`` probabilities for the whole pool.
        rows: Pool rows of the labeled audit images.
        y: Their human class indices.
        model: ``"student"`` or ``"teacher"``.
        round: The student's round (0 for the teacher).
        confidence: Interval coverage.

    Returns:
        The score with its Wilson interval.

    Raises:
        ValueError: If ``rows`` and ``y`` differ in length or a row is out of range.
    """
    p = np.asarray(probs)
    rows = np.asarray(rows, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if rows.shape != y.shape:
        raise ValueError(f"audit: {rows.size} rows but {y.size} labels")
    if rows.size and (rows.min() < 0 or rows.max() >= p.shape[0]):
        raise ValueError(f"audit: row index out of range for {p.shape[0]} predictions")
    pred = p[rows].argmax(axis=1) if rows.size else np.zeros(0, dtype=np.int64)
    correct = int((pred == y).sum())
    base = score_counts(model, round, correct, int(rows.size), confidence)
    if not rows.size:
        return base
    ivs = metrics.bootstrap_intervals(y, pred, confidence=confidence, seed=round)
    recall = metrics.per_class_recall(y, pred, max(p.shape[1], int(y.max()) + 1))
    bal, f1 = ivs["balanced_accuracy"], ivs["macro_f1"]
    return replace(
        base,
        balanced_accuracy=bal.value,
        balanced_low=bal.low,
        balanced_high=bal.high,
        macro_f1=f1.value,
        macro_f1_low=f1.low,
        macro_f1_high=f1.high,
        recall=tuple(None if math.isnan(v) else float(v) for v in recall),
    )


def sample_audit_set(candidates: Sequence[str], size: int, seed: int = 0) -> list[str]:
    """Draw ``size`` image ids uniformly at random, without replacement.

    Raises:
        ValueError: If ``size`` is not between 1 and the number of candidates.
    """
    if not 1 <= size <= len(candidates):
        raise ValueError(f"audit set size must be between 1 and {len(candidates)} (unlabeled images), got {size}")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(candidates), size=size, replace=False)
    return [candidates[int(i)] for i in picks]


def default_audit_size(n_pool: int, n_classes: int) -> int:
    """A default audit size: 5 per class, at least 30, at most 10% of the pool (and >= 1)."""
    return max(1, min(max(30, 5 * n_classes), n_pool // 10 or 1))


def audit_rows(
    audit_ids: Sequence[str], labels: Mapping[str, str], row_of: Mapping[str, int], class_index: Mapping[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Pool rows and class indices of the audit images that currently have a label."""
    pairs = [(row_of[i], class_index[labels[i]]) for i in audit_ids if i in labels and i in row_of]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows, y = zip(*pairs)
    return np.asarray(rows, dtype=np.int64), np.asarray(y, dtype=np.int64)
