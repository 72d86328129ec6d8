"""Uncertainty and calibration: normalised entropy, reliability bins, expected calibration error.

ECE: confidences are put in ``n_bins`` equal-width bins ``(0, 1/B], ..., ((B-1)/B, 1]``
(a confidence of exactly 0 goes to the first bin); ``ECE = sum_b (n_b / n) *
|accuracy_b - mean_confidence_b|`` over non-empty bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from activekd_core.bias.inputs import check_labels, check_probs, class_names


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
