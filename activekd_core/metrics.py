"""Classification metrics that do not hide rare classes, with bootstrap intervals.

On an imbalanced set plain accuracy rewards predicting the majority class: a model that
answers "nominal" for every image of a pool that is 87% nominal scores 87%. Every place
that shows accuracy therefore also shows:

* **balanced accuracy**: the mean of the per-class recalls over the classes present in
  ``y_true`` (scikit-learn's ``balanced_accuracy_score``); the majority-only model above
  scores ``1 / C``;
* **macro-F1**: the unweighted mean of the per-class F1 scores over the classes present
  in ``y_true`` or predicted (a class never predicted has F1 = 0);
* **per-class recall**: the share of each class's images predicted as that class (NaN
  for a class with no image in ``y_true``).

Intervals (:func:`bootstrap_intervals`) are percentile bootstrap intervals: the
evaluation rows are resampled with replacement ``n_boot`` times from a seeded generator
and each metric is recomputed; the interval is the ``(1 - confidence) / 2`` and
``(1 + confidence) / 2`` quantiles. Same inputs and seed, same interval.

Everything here is plain NumPy + scikit-learn (no Streamlit) and works on class
indices ``0 .. C-1``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

METRIC_NAMES = ("accuracy", "balanced_accuracy", "macro_f1")
_MAX_CELLS = 2_000_000  # index cells per bootstrap chunk (16 MB of int64)
METRIC_LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1"}


def _check(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"metrics: {t.size} true labels but {p.size} predictions")
    if t.size and (min(t.min(), p.min()) < 0):
        raise ValueError("metrics: class indices must be >= 0")
    c = int(num_classes) if num_classes is not None else int(max(t.max(initial=-1), p.max(initial=-1)) + 1)
    if t.size and max(t.max(), p.max()) >= c:
        raise ValueError(f"metrics: class index out of range for {c} classes")
    return t, p, c


def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Share of rows predicted correctly (NaN for no rows)."""
    t, p, _ = _check(y_true, y_pred, None)
    return float((t == p).mean()) if t.size else float("nan")


def balanced_accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean recall over the classes present in ``y_true`` (NaN for no rows)."""
    t, p, _ = _check(y_true, y_pred, None)
    if not t.size:
        return float("nan")
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected, handled
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(t, p))


def macro_f1(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` or predicted (NaN for no rows)."""
    t, p, _ = _check(y_true, y_pred, None)
    if not t.size:
        return float("nan")
    return float(f1_score(t, p, average="macro", zero_division=0))


def per_class_recall(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, num_classes: int) -> np.ndarray:
    """Recall of each class ``0 .. C-1`` (float64 ``(C,)``; NaN for a class absent from ``y_true``)."""
    t, p, c = _check(y_true, y_pred, num_classes)
    out = np.full(c, np.nan)
    if not t.size:
        return out
    present = np.unique(t)
    out[present] = recall_score(t, p, labels=present, average=None, zero_division=0)
    return out


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap interval."""

    value: float
    low: float
    high: float

    def text(self, digits: int = 1) -> str:
        """E.g. ``"33.3% (20.1-47.0%)"``; ``"—"`` when NaN."""
        if math.isnan(self.value):
            return "—"
        return f"{100 * self.value:.{digits}f}% ({100 * self.low:.{digits}f}-{100 * self.high:.{digits}f}%)"


@dataclass(frozen=True)
class MetricReport:
    """Accuracy, balanced accuracy, macro-F1 and per-class recall of one model on one set.

    Attributes:
        n: Evaluated rows.
        accuracy, balanced_accuracy, macro_f1: Point estimates with bootstrap intervals.
        recall: Per-class recall ``(C,)`` (NaN for classes absent from the set).
        support: Rows per true class ``(C,)``.
        predicted: Rows per predicted class ``(C,)``.
        confidence: Interval coverage.
    """

    n: int
    accuracy: Interval
    balanced_accuracy: Interval
    macro_f1: Interval
    recall: np.ndarray = field(repr=False)
    support: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)
    confidence: float = 0.95

    def as_dict(self) -> dict:
        """JSON-friendly: NaN becomes None, arrays become lists."""

        def f(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        out: dict = {"n": self.n, "confidence": self.confidence}
        for name in METRIC_NAMES:
            iv: Interval = getattr(self, name)
            out[name] = {"value": f(iv.value), "low": f(iv.low), "high": f(iv.high)}
        out["recall"] = [f(v) for v in self.recall]
        out["support"] = [int(v) for v in self.support]
        out["predicted"] = [int(v) for v in self.predicted]
        return out


def resampled_metrics(t: np.ndarray, p: np.ndarray, idx: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro-F1 of each resample ``t[idx[b]], p[idx[b]]``.

    Vectorised over resamples through one confusion matrix per resample (the same
    definitions as scikit-learn: recall averaged over classes present in the resample's
    ``y_true``; F1 = 2 TP / (2 TP + FP + FN) averaged over classes present in its
    ``y_true`` or ``y_pred``).

    Args:
        t: True class indices ``(n,)``.
        p: Predicted class indices ``(n,)``.
        idx: Row indices ``(B, n)`` of the resamples.
        num_classes: ``C``.

    Returns:
        ``{"accuracy": (B,), "balanced_accuracy": (B,), "macro_f1": (B,)}``.
    """
    c = int(num_classes)
    b = idx.shape[0]
    codes = (t[idx] * c + p[idx]) + (np.arange(b)[:, None] * c * c)
    cm = np.bincount(codes.ravel(), minlength=b * c * c).reshape(b, c, c).astype(np.float64)
    diag = np.diagonal(cm, axis1=1, axis2=2)
    rows, cols = cm.sum(axis=2), cm.sum(axis=1)
    n = cm.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(rows > 0, diag / rows, np.nan)
        f1 = np.where(rows + cols > 0, 2 * diag / (rows + cols), np.nan)
        return {
            "accuracy": diag.sum(axis=1) / n,
            "balanced_accuracy": np.nanmean(recall, axis=1),
            "macro_f1": np.nanmean(f1, axis=1),
        }


def bootstrap_intervals(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of accuracy, balanced accuracy and macro-F1.

    Args:
        y_true: True class indices of the evaluation rows.
        y_pred: Predicted class indices.
        n_boot: Bootstrap resamples.
        confidence: Interval coverage (e.g. 0.95).
        seed: Seed of the resampling (same seed, same interval).

    Returns:
        ``{"accuracy": Interval, "balanced_accuracy": ..., "macro_f1": ...}``; all NaN for no rows.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    t, p, c = _check(y_true, y_pred, None)
    points = {"accuracy": accuracy(t, p), "balanced_accuracy": balanced_accuracy(t, p), "macro_f1": macro_f1(t, p)}
    if not t.size:
        nan = float("nan")
        return {k: Interval(nan, nan, nan) for k in points}
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS // max(t.size, c * c))  # bounded memory for large evaluation sets
    parts = [
        resampled_metrics(t, p, rng.integers(0, t.size, size=(min(chunk, n_boot - s), t.size)), c)
        for s in range(0, n_boot, chunk)
    ]
    samples = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    lo_q, hi_q = (1 - confidence) / 2, (1 + confidence) / 2
    return {
        k: Interval(v, float(np.quantile(samples[k], lo_q)), float(np.quantile(samples[k], hi_q)))
        for k, v in points.items()
    }


def metric_report(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    num_classes: int,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MetricReport:
    """All metrics of this module for one model on one evaluation set (see the module notes)."""
    t, p, c = _check(y_true, y_pred, num_classes)
    ivs = bootstrap_intervals(t, p, n_boot=n_boot, confidence=confidence, seed=seed)
    return MetricReport(
        n=int(t.size),
        accuracy=ivs["accuracy"],
        balanced_accuracy=ivs["balanced_accuracy"],
        macro_f1=ivs["macro_f1"],
        recall=per_class_recall(t, p, c),
        support=np.bincount(t, minlength=c),
        predicted=np.bincount(p, minlength=c),
        confidence=confidence,
    )


def is_imbalanced(counts: Sequence[int] | npt.ArrayLike, ratio: float = 1.5) -> bool:
    """Whether the largest class has more than ``ratio`` times the smallest (present) class.

    Used to decide which metric ranks strategies: balanced accuracy when imbalanced,
    accuracy otherwise (they agree in expectation on a balanced set).
    """
    arr = np.asarray(counts, dtype=np.float64)
    arr = arr[arr > 0]
    return bool(arr.size >= 2 and arr.max() > ratio * arr.min())
