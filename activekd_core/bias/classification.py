"""Classification metrics on human-labeled images: accuracy with intervals, per-class scores, priors, confident mistakes.

Accuracy intervals are Wilson score intervals (:func:`wilson_interval`); per-class
precision, recall and F1 come from scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import norm
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from activekd_core.bias.inputs import check_labels, check_probs, class_names


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
