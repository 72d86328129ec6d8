"""Teacher (and student) bias metrics for the Teacher-bias page and the prompt workshop.

Every function works on plain arrays indexed by the pool's row order:

* ``probs``: float array ``(N, C)`` of class probabilities over the whole pool (rows sum to 1).
* ``labeled``: int64 pool row indices of the human-labeled images.
* ``y``: int64 class indices of the human labels, aligned with ``labeled`` (``y[i]`` is the
  label of pool row ``labeled[i]``).

Metrics on labels use scikit-learn (``confusion_matrix``,
``precision_recall_fscore_support``); pandas DataFrames are returned where a page shows a
table, dataclasses where it shows several related results.

Definitions used throughout (and shown on the page):

* Prediction = argmax of a probability row; confidence = its max probability.
* Accuracy interval = Wilson score interval (``wilson_interval``).
* Expected calibration error (ECE): confidences are put in ``n_bins`` equal-width bins
  ``(0, 1/B], (1/B, 2/B], ..., ((B-1)/B, 1]`` (a confidence of exactly 0 goes to the first
  bin); ``ECE = sum_b (n_b / n) * |accuracy_b - mean_confidence_b|`` over non-empty bins,
  i.e. bins are weighted by how many labeled images they hold.
* Normalised entropy = ``H(p) / log(C)`` in ``[0, 1]`` (natural logs; ``0 log 0 = 0``).
* Disagreement between two probability rows: total variation ``0.5 * ||p - q||_1`` or the
  Jensen-Shannon divergence in bits (both in ``[0, 1]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import norm
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

__all__ = [
    "ClassificationReport",
    "BiasReport",
    "TeacherComparison",
    "check_probs",
    "check_labels",
    "class_names",
    "wilson_interval",
    "classification_report",
    "disagreement_table",
    "disagreement_summary",
    "priors",
    "normalized_entropy",
    "entropy_histogram",
    "reliability_bins",
    "expected_calibration_error",
    "confidence_vs_correctness",
    "confident_mistakes",
    "prob_disagreement",
    "top_disagreements",
    "bias_report",
    "compare_teachers",
]

DisagreementMetric = Literal["tv", "js"]


# ---------------------------------------------------------------------------------------------
# Input guards
# ---------------------------------------------------------------------------------------------


def check_probs(probs: npt.ArrayLike, name: str = "probs", *, atol: float = 1e-3) -> np.ndarray:
    """Validate a probability matrix and return it as float64.

    Args:
        probs: Array ``(N, C)`` with non-negative rows summing to 1.
        name: Argument name used in error messages.
        atol: Tolerance on row sums.

    Returns:
        The matrix as a float64 array.

    Raises:
        ValueError: If the array is not 2-D, has no columns, holds NaN/inf or negative
            values, or a row does not sum to 1.
    """
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"bias: {name} must be a 2-D (N, C) probability array, got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"bias: {name} holds NaN or infinite values")
    if arr.size and arr.min() < -1e-9:
        raise ValueError(f"bias: {name} holds negative probabilities (min {arr.min():.3g})")
    if arr.shape[0]:
        sums = arr.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
        if bad.size:
            raise ValueError(
                f"bias: {name} row {int(bad[0])} sums to {sums[bad[0]]:.6g}, not 1 "
                f"({bad.size} bad rows); pass probabilities, not logits"
            )
    return arr


def check_labels(
    y: npt.ArrayLike, labeled: npt.ArrayLike, n: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate human labels against a pool of ``n`` rows and ``num_classes`` classes.

    Args:
        y: Class index per labeled image.
        labeled: Pool row index per labeled image (same length as ``y``, no duplicates).
        n: Pool size.
        num_classes: Number of classes.

    Returns:
        ``(y, labeled)`` as int64 arrays.

    Raises:
        ValueError: On length mismatch, out-of-range values or duplicate indices.
    """
    y_arr = np.asarray(y).reshape(-1)
    lab = np.asarray(labeled).reshape(-1)
    if y_arr.size and not np.issubdtype(y_arr.dtype, np.integer):
        raise ValueError(f"bias: y must hold integer class indices, got dtype {y_arr.dtype}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"bias: labeled must hold integer pool indices, got dtype {lab.dtype}")
    y_arr = y_arr.astype(np.int64)
    lab = lab.astype(np.int64)
    if y_arr.shape != lab.shape:
        raise ValueError(f"bias: y has {y_arr.size} labels but labeled has {lab.size} indices")
    if lab.size:
        if lab.min() < 0 or lab.max() >= n:
            raise ValueError(f"bias: labeled index out of range [0, {n}): {lab.min()}..{lab.max()}")
        if np.unique(lab).size != lab.size:
            raise ValueError("bias: labeled holds duplicate pool indices")
        if y_arr.min() < 0 or y_arr.max() >= num_classes:
            raise ValueError(f"bias: class index out of range [0, {num_classes}): {y_arr.min()}..{y_arr.max()}")
    return y_arr, lab


def class_names(classes: Sequence[str] | None, num_classes: int) -> list[str]:
    """Return class names, defaulting to ``"0".."C-1"``; checks the count matches."""
    if classes is None:
        return [str(i) for i in range(num_classes)]
    names = [str(c) for c in classes]
    if len(names) != num_classes:
        raise ValueError(f"bias: {len(names)} class names given for {num_classes} probability columns")
    return names


# ---------------------------------------------------------------------------------------------
# Classification metrics on human-labeled images
# ---------------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Args:
        successes: Number of successes (e.g. correct predictions).
        n: Number of trials.
        confidence: Two-sided coverage, e.g. 0.95.

    Returns:
        ``(low, high)``; ``(0.0, 1.0)`` when ``n == 0``.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"bias: need 0 <= successes <= n, got successes={successes}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"bias: confidence must lie in (0, 1), got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + confidence / 2.0))
    phat = successes / n
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class ClassificationReport:
    """Metrics of one model on the human-labeled images.

    Attributes:
        classes: Class names, in column order.
        confusion: Counts ``(C, C)``; row = human label, column = prediction.
        confusion_normalized: ``confusion`` with each row divided by its sum (rows of classes
            with no labeled image are all zero).
        per_class: DataFrame with columns ``class, precision, recall, f1, support``.
        accuracy: Share of labeled images predicted correctly (NaN with no labels).
        accuracy_interval: Wilson interval ``(low, high)`` at ``confidence``.
        n: Number of labeled images.
        correct: Number predicted correctly.
        macro_f1: Unweighted mean F1 over classes that have labeled images.
        confidence: Interval coverage.
        balanced_accuracy: Mean per-class recall over classes with labeled images
            (:func:`activekd_core.metrics.balanced_accuracy`; NaN with no labels). Unlike
            accuracy it does not reward predicting the majority class.
        balanced_interval: Its percentile-bootstrap interval ``(low, high)`` (seeded, 1000 resamples).
        macro_f1_interval: Bootstrap interval of macro-F1 as :mod:`activekd_core.metrics`
            defines it (classes labeled or predicted).
    """

    classes: list[str]
    confusion: np.ndarray
    confusion_normalized: np.ndarray
    per_class: pd.DataFrame
    accuracy: float
    accuracy_interval: tuple[float, float]
    n: int
    correct: int
    macro_f1: float
    confidence: float = 0.95
    balanced_accuracy: float = float("nan")
    balanced_interval: tuple[float, float] = (float("nan"), float("nan"))
    macro_f1_interval: tuple[float, float] = (float("nan"), float("nan"))


def classification_report(
    probs: npt.ArrayLike,
    y: npt.ArrayLike,
    labeled: npt.ArrayLike,
    classes: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
) -> ClassificationReport:
    """Confusion matrix, per-class precision/recall/F1 and accuracy with a Wilson interval.

    Args:
        probs: ``(N, C)`` probabilities over the pool.
        y: Human class index per labeled image.
        labeled: Pool row per labeled image.
        classes: Class names (default ``"0".."C-1"``).
        confidence: Coverage of the accuracy interval.

    Returns:
        A ``ClassificationReport``.
    """
    p = check_probs(probs)
    c = p.shape[1]
    names = class_names(classes, c)
    y_arr, lab = check_labels(y, labeled, p.shape[0], c)
    pred = p[lab].argmax(axis=1) if lab.size else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(y_arr, pred, labels=np.arange(c)) if lab.size else np.zeros((c, c), dtype=np.int64)
    cm = cm.astype(np.int64)
    rows = cm.sum(axis=1, keepdims=True)
    cm_norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    if lab.size:
        prec, rec, f1, sup = precision_recall_fscore_support(
            y_arr, pred, labels=np.arange(c), zero_division=0
        )
    else:
        prec = rec = f1 = np.zeros(c)
        sup = np.zeros(c, dtype=np.int64)
    per_class = pd.DataFrame(
        {"class": names, "precision": prec, "recall": rec, "f1": f1, "support": np.asarray(sup, dtype=np.int64)}
    )
    correct = int(np.trace(cm))
    n = int(lab.size)
    present = np.asarray(sup) > 0
    macro = float(np.mean(np.asarray(f1)[present])) if present.any() else float("nan")
    from activekd_core.metrics import bootstrap_intervals

    ivs = bootstrap_intervals(y_arr, pred, confidence=confidence, seed=0)
    bal, mf1 = ivs["balanced_accuracy"], ivs["macro_f1"]
    return ClassificationReport(
        classes=names,
        confusion=cm,
        confusion_normalized=cm_norm,
        per_class=per_class,
        accuracy=correct / n if n else float("nan"),
        accuracy_interval=wilson_interval(correct, n, confidence),
        n=n,
        correct=correct,
        macro_f1=macro,
        confidence=confidence,
        balanced_accuracy=bal.value,
        balanced_interval=(bal.low, bal.high),
        macro_f1_interval=(mf1.low, mf1.high),
    )


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


# ---------------------------------------------------------------------------------------------
# Priors
# ---------------------------------------------------------------------------------------------


def priors(
    probs: npt.ArrayLike,
    y: npt.ArrayLike,
    labeled: npt.ArrayLike,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Teacher's predicted-class distribution over the whole pool vs the human label distribution.

    Args:
        probs: ``(N, C)`` probabilities over the pool.
        y: Human class index per labeled image.
        labeled: Pool row per labeled image.
        classes: Class names.

    Returns:
        One row per class with columns ``class, predicted_count, predicted_share`` (argmax
        over all N rows), ``mean_prob`` (soft share: column mean of ``probs``), ``human_count,
        human_share``, ``difference = predicted_share - human_share`` (positive: the model
        over-predicts the class), ``ratio = predicted_share / human_share`` (``inf`` when the
        class has no human label but is predicted, NaN when neither).
    """
    p = check_probs(probs)
    n, c = p.shape
    names = class_names(classes, c)
    y_arr, _ = check_labels(y, labeled, n, c)
    pred_counts = np.bincount(p.argmax(axis=1), minlength=c) if n else np.zeros(c, dtype=np.int64)
    human_counts = np.bincount(y_arr, minlength=c)
    pred_share = pred_counts / n if n else np.zeros(c)
    human_share = human_counts / y_arr.size if y_arr.size else np.zeros(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = pred_share / human_share
    return pd.DataFrame(
        {
            "class": names,
            "predicted_count": pred_counts.astype(np.int64),
            "predicted_share": pred_share,
            "mean_prob": p.mean(axis=0) if n else np.zeros(c),
            "human_count": human_counts.astype(np.int64),
            "human_share": human_share,
            "difference": pred_share - human_share,
            "ratio": ratio,
        }
    )


# ---------------------------------------------------------------------------------------------
# Uncertainty and calibration
# ---------------------------------------------------------------------------------------------


def normalized_entropy(probs: npt.ArrayLike) -> np.ndarray:
    """Shannon entropy of each row divided by ``log(C)`` (0 = certain, 1 = uniform).

    With a single class every entropy is 0.
    """
    p = check_probs(probs)
    c = p.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    if c < 2:
        return np.zeros(p.shape[0])
    return np.clip(h / math.log(c), 0.0, 1.0)


def entropy_histogram(
    probs: npt.ArrayLike,
    n_bins: int = 20,
    *,
    y: npt.ArrayLike | None = None,
    labeled: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Histogram of normalised entropy over the pool, in equal-width bins on ``[0, 1]``.

    Args:
        probs: ``(N, C)`` probabilities.
        n_bins: Number of bins.
        y: Optional human labels; with ``labeled``, adds counts of correct/wrong labeled images.
        labeled: Pool rows of ``y``.

    Returns:
        DataFrame with columns ``bin_lower, bin_upper, count`` (and ``labeled_correct,
        labeled_wrong`` when labels are given).
    """
    if n_bins < 1:
        raise ValueError(f"bias: n_bins must be >= 1, got {n_bins}")
    p = check_probs(probs)
    h = normalized_entropy(p)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts, _ = np.histogram(h, bins=edges)
    df = pd.DataFrame({"bin_lower": edges[:-1], "bin_upper": edges[1:], "count": counts.astype(np.int64)})
    if y is not None and labeled is not None:
        y_arr, lab = check_labels(y, labeled, p.shape[0], p.shape[1])
        ok = p[lab].argmax(axis=1) == y_arr
        df["labeled_correct"] = np.histogram(h[lab][ok], bins=edges)[0].astype(np.int64)
        df["labeled_wrong"] = np.histogram(h[lab][~ok], bins=edges)[0].astype(np.int64)
    return df


def _confidence_bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index per confidence for bins ``(0, 1/B], ..., ((B-1)/B, 1]``; 0 goes to bin 0."""
    # Small tolerance so that e.g. 0.3 * 10 = 3.0000000000000004 still lands in (0.2, 0.3].
    b = np.ceil(conf * n_bins - 1e-9).astype(np.int64) - 1
    return np.clip(b, 0, n_bins - 1)


def reliability_bins(
    probs: npt.ArrayLike, y: npt.ArrayLike, labeled: npt.ArrayLike, n_bins: int = 10
) -> pd.DataFrame:
    """Reliability-diagram bins on the labeled images.

    Args:
        probs: ``(N, C)`` probabilities.
        y: Human class index per labeled image.
        labeled: Pool row per labeled image.
        n_bins: Number of equal-width confidence bins on ``[0, 1]``.

    Returns:
        One row per bin (empty bins included): ``bin_lower, bin_upper, confidence`` (mean
        confidence in the bin, NaN if empty), ``accuracy`` (share correct, NaN if empty),
        ``count``, ``gap = confidence - accuracy`` (positive: over-confident).
    """
    if n_bins < 1:
        raise ValueError(f"bias: n_bins must be >= 1, got {n_bins}")
    p = check_probs(probs)
    y_arr, lab = check_labels(y, labeled, p.shape[0], p.shape[1])
    sub = p[lab]
    conf = sub.max(axis=1) if lab.size else np.zeros(0)
    correct = (sub.argmax(axis=1) == y_arr).astype(np.float64) if lab.size else np.zeros(0)
    b = _confidence_bins(conf, n_bins)
    count = np.bincount(b, minlength=n_bins)
    conf_sum = np.bincount(b, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(b, weights=correct, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        acc = np.where(count > 0, acc_sum / count, np.nan)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "confidence": mean_conf,
            "accuracy": acc,
            "count": count.astype(np.int64),
            "gap": mean_conf - acc,
        }
    )


def expected_calibration_error(
    probs: npt.ArrayLike, y: npt.ArrayLike, labeled: npt.ArrayLike, n_bins: int = 10
) -> float:
    """Expected calibration error on the labeled images.

    ``ECE = sum_b (n_b / n) * |accuracy_b - confidence_b|`` over the equal-width bins of
    ``reliability_bins`` (confidence = max probability). NaN with no labeled image.
    """
    bins = reliability_bins(probs, y, labeled, n_bins)
    n = int(bins["count"].sum())
    if n == 0:
        return float("nan")
    filled = bins[bins["count"] > 0]
    return float(np.sum(filled["count"] / n * np.abs(filled["accuracy"] - filled["confidence"])))


def confidence_vs_correctness(
    probs: npt.ArrayLike,
    y: npt.ArrayLike,
    labeled: npt.ArrayLike,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per labeled image: confidence, normalised entropy, prediction, human label, correct.

    Returns:
        DataFrame with columns ``index, confidence, entropy, predicted, human, correct``, in
        the order of ``labeled``.
    """
    p = check_probs(probs)
    names = class_names(classes, p.shape[1])
    y_arr, lab = check_labels(y, labeled, p.shape[0], p.shape[1])
    sub = p[lab]
    pred = sub.argmax(axis=1) if lab.size else np.zeros(0, dtype=np.int64)
    return pd.DataFrame(
        {
            "index": lab,
            "confidence": sub.max(axis=1) if lab.size else np.zeros(0),
            "entropy": normalized_entropy(sub) if lab.size else np.zeros(0),
            "predicted": [names[i] for i in pred],
            "human": [names[i] for i in y_arr],
            "correct": pred == y_arr,
        }
    )


# ---------------------------------------------------------------------------------------------
# Galleries
# ---------------------------------------------------------------------------------------------


def confident_mistakes(
    probs: npt.ArrayLike,
    y: npt.ArrayLike,
    labeled: npt.ArrayLike,
    classes: Sequence[str] | None = None,
    top: int | None = None,
) -> pd.DataFrame:
    """Labeled images the model gets wrong, most confident first.

    Args:
        probs: ``(N, C)`` probabilities.
        y: Human class index per labeled image.
        labeled: Pool row per labeled image.
        classes: Class names.
        top: Keep only the first ``top`` rows (all when None).

    Returns:
        DataFrame with columns ``index, predicted, human, confidence, prob_human`` sorted by
        confidence (descending), ties by pool index (ascending).
    """
    p = check_probs(probs)
    names = class_names(classes, p.shape[1])
    y_arr, lab = check_labels(y, labeled, p.shape[0], p.shape[1])
    sub = p[lab]
    pred = sub.argmax(axis=1) if lab.size else np.zeros(0, dtype=np.int64)
    wrong = pred != y_arr
    idx, yy, pp = lab[wrong], y_arr[wrong], pred[wrong]
    conf = sub[wrong].max(axis=1) if idx.size else np.zeros(0)
    order = np.lexsort((idx, -conf))
    if top is not None:
        order = order[: max(0, int(top))]
    return pd.DataFrame(
        {
            "index": idx[order],
            "predicted": [names[i] for i in pp[order]],
            "human": [names[i] for i in yy[order]],
            "confidence": conf[order],
            "prob_human": p[idx[order], yy[order]] if order.size else np.zeros(0),
        }
    )


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


# ---------------------------------------------------------------------------------------------
# Page-level bundles
# ---------------------------------------------------------------------------------------------


@dataclass
class BiasReport:
    """Everything the Teacher-bias page shows for one teacher (and optionally the student).

    Attributes:
        teacher: Metrics of the teacher on labeled images.
        priors: Output of ``priors`` for the teacher.
        reliability: Output of ``reliability_bins`` for the teacher.
        ece: Teacher expected calibration error.
        entropy: Output of ``entropy_histogram`` (with labeled correct/wrong counts).
        mean_entropy: Mean normalised teacher entropy over the pool.
        mistakes: Output of ``confident_mistakes`` for the teacher.
        student: Student metrics, when student probabilities were given.
        student_ece: Student ECE, when given.
        disagreements: Output of ``disagreement_table``, when given.
        disagreement_counts: Output of ``disagreement_summary``, when given.
        most_disagreeing: Output of ``top_disagreements`` over the pool, when given.
        n_bins: Calibration bins used.
    """

    teacher: ClassificationReport
    priors: pd.DataFrame
    reliability: pd.DataFrame
    ece: float
    entropy: pd.DataFrame
    mean_entropy: float
    mistakes: pd.DataFrame
    student: ClassificationReport | None = None
    student_ece: float | None = None
    disagreements: pd.DataFrame | None = None
    disagreement_counts: dict[str, int] | None = None
    most_disagreeing: pd.DataFrame | None = None
    n_bins: int = 10


def bias_report(
    teacher_probs: npt.ArrayLike,
    y: npt.ArrayLike,
    labeled: npt.ArrayLike,
    classes: Sequence[str] | None = None,
    *,
    student_probs: npt.ArrayLike | None = None,
    n_bins: int = 10,
    top: int = 24,
    disagreement_metric: DisagreementMetric = "tv",
) -> BiasReport:
    """Compute every Teacher-bias page metric in one call.

    Args:
        teacher_probs: ``(N, C)`` teacher probabilities over the pool.
        y: Human class index per labeled image.
        labeled: Pool row per labeled image.
        classes: Class names.
        student_probs: Optional ``(N, C)`` student probabilities (latest round).
        n_bins: Calibration bins.
        top: Rows in the galleries.
        disagreement_metric: ``"tv"`` or ``"js"``.

    Returns:
        A ``BiasReport``.
    """
    t = check_probs(teacher_probs, "teacher_probs")
    names = class_names(classes, t.shape[1])
    rep = BiasReport(
        teacher=classification_report(t, y, labeled, names),
        priors=priors(t, y, labeled, names),
        reliability=reliability_bins(t, y, labeled, n_bins),
        ece=expected_calibration_error(t, y, labeled, n_bins),
        entropy=entropy_histogram(t, y=y, labeled=labeled),
        mean_entropy=float(normalized_entropy(t).mean()) if t.shape[0] else float("nan"),
        mistakes=confident_mistakes(t, y, labeled, names, top=top),
        n_bins=n_bins,
    )
    if student_probs is not None:
        s = check_probs(student_probs, "student_probs")
        rep.student = classification_report(s, y, labeled, names)
        rep.student_ece = expected_calibration_error(s, y, labeled, n_bins)
        rep.disagreements = disagreement_table(t, s, y, labeled, names)
        rep.disagreement_counts = disagreement_summary(t, s, y, labeled)
        rep.most_disagreeing = top_disagreements(t, s, top=top, metric=disagreement_metric, classes=names)
    return rep


@dataclass
class TeacherComparison:
    """Before/after summary of a teacher change (prompt workshop).

    Attributes:
        summary: DataFrame ``metric, before, after, delta`` (``delta = after - before``).
        per_class: DataFrame ``class`` plus ``before``/``after`` columns for precision,
            recall, f1 and predicted_share, and ``human_share``.
        changed: Pool rows whose predicted class changed.
        before: Full report before.
        after: Full report after.
    """

    summary: pd.DataFrame
    per_class: pd.DataFrame
    changed: np.ndarray
    before: BiasReport
    after: BiasReport


def compare_teachers(
    before_probs: npt.ArrayLike,
    after_probs: npt.ArrayLike,
    y: npt.ArrayLike,
    labeled: npt.ArrayLike,
    classes: Sequence[str] | None = None,
    *,
    n_bins: int = 10,
) -> TeacherComparison:
    """Every teacher metric before vs after a change (prompt edit, template set, few-shot refit).

    Summary rows: ``accuracy, accuracy_low, accuracy_high, macro_f1, ece, mean_entropy,
    prior_tv`` (total variation between predicted-class shares and human label shares),
    ``changed_pool`` (share of pool rows whose prediction changed, same in both columns),
    ``changed_labeled`` (likewise on labeled rows), and per class ``recall[<class>]`` and
    ``predicted_share[<class>]``.

    Args:
        before_probs: ``(N, C)`` probabilities of the current teacher.
        after_probs: ``(N, C)`` probabilities of the candidate teacher.
        y: Human class index per labeled image.
        labeled: Pool row per labeled image.
        classes: Class names.
        n_bins: Calibration bins.

    Returns:
        A ``TeacherComparison``.
    """
    b = check_probs(before_probs, "before_probs")
    a = check_probs(after_probs, "after_probs")
    if a.shape != b.shape:
        raise ValueError(f"bias: before_probs {b.shape} and after_probs {a.shape} differ in shape")
    names = class_names(classes, b.shape[1])
    y_arr, lab = check_labels(y, labeled, b.shape[0], b.shape[1])
    rb = bias_report(b, y_arr, lab, names, n_bins=n_bins)
    ra = bias_report(a, y_arr, lab, names, n_bins=n_bins)
    changed = np.flatnonzero(b.argmax(axis=1) != a.argmax(axis=1)) if b.shape[0] else np.zeros(0, np.int64)
    n = b.shape[0]
    changed_lab = float(np.isin(lab, changed).mean()) if lab.size else float("nan")

    def scalars(r: BiasReport) -> dict[str, float]:
        lo, hi = r.teacher.accuracy_interval
        prior_tv = 0.5 * float(np.abs(r.priors["predicted_share"] - r.priors["human_share"]).sum())
        out = {
            "accuracy": r.teacher.accuracy,
            "accuracy_low": lo,
            "accuracy_high": hi,
            "macro_f1": r.teacher.macro_f1,
            "ece": r.ece,
            "mean_entropy": r.mean_entropy,
            "prior_tv": prior_tv if lab.size else float("nan"),
            "changed_pool": changed.size / n if n else float("nan"),
            "changed_labeled": changed_lab,
        }
        for name, rec, share in zip(names, r.teacher.per_class["recall"], r.priors["predicted_share"]):
            out[f"recall[{name}]"] = float(rec)
            out[f"predicted_share[{name}]"] = float(share)
        return out

    sb, sa = scalars(rb), scalars(ra)
    summary = pd.DataFrame(
        {"metric": list(sb), "before": list(sb.values()), "after": [sa[k] for k in sb]}
    )
    summary["delta"] = summary["after"] - summary["before"]
    per_class = pd.DataFrame({"class": names, "human_share": rb.priors["human_share"].to_numpy()})
    for col in ("precision", "recall", "f1"):
        per_class[f"{col}_before"] = rb.teacher.per_class[col].to_numpy()
        per_class[f"{col}_after"] = ra.teacher.per_class[col].to_numpy()
    per_class["predicted_share_before"] = rb.priors["predicted_share"].to_numpy()
    per_class["predicted_share_after"] = ra.priors["predicted_share"].to_numpy()
    return TeacherComparison(summary=summary, per_class=per_class, changed=changed.astype(np.int64), before=rb, after=ra)


def _pair(p: npt.ArrayLike, q: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = check_probs(p, "teacher_probs")
    b = check_probs(q, "student_probs")
    if a.shape != b.shape:
        raise ValueError(f"bias: teacher_probs {a.shape} and student_probs {b.shape} differ in shape")
    return a, b
