"""Metrics that do not hide rare classes: hand-computed imbalanced cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from activekd_core import metrics

# 8 majority (0), 2 of class 1, 2 of class 2.
Y = np.array([0] * 8 + [1, 1, 2, 2])
ALL_MAJORITY = np.zeros(12, dtype=int)
# rows 0-5 right, rows 6-7 predicted 1; row 8 right, row 9 predicted 0; rows 10-11 right.
MIXED = np.array([0] * 6 + [1, 1] + [1, 0] + [2, 2])


def test_majority_only_model_is_exposed():
    assert metrics.accuracy(Y, ALL_MAJORITY) == pytest.approx(8 / 12)
    assert metrics.balanced_accuracy(Y, ALL_MAJORITY) == pytest.approx(1 / 3)
    # F1: class 0 precision 8/12, recall 1 -> 0.8; classes 1 and 2 never predicted -> 0.
    assert metrics.macro_f1(Y, ALL_MAJORITY) == pytest.approx(0.8 / 3)
    np.testing.assert_allclose(metrics.per_class_recall(Y, ALL_MAJORITY, 3), [1.0, 0.0, 0.0])


def test_mixed_predictions_hand_computed():
    assert metrics.accuracy(Y, MIXED) == pytest.approx(9 / 12)
    # recalls 6/8, 1/2, 2/2
    np.testing.assert_allclose(metrics.per_class_recall(Y, MIXED, 3), [0.75, 0.5, 1.0])
    assert metrics.balanced_accuracy(Y, MIXED) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    # F1: class 0 P 6/7 R 3/4 -> 0.8; class 1 P 1/3 R 1/2 -> 0.4; class 2 -> 1.
    assert metrics.macro_f1(Y, MIXED) == pytest.approx((0.8 + 0.4 + 1.0) / 3)


def test_absent_class_recall_is_nan_and_not_averaged():
    rec = metrics.per_class_recall(Y, MIXED, 4)
    assert math.isnan(rec[3]) and rec[:3].tolist() == pytest.approx([0.75, 0.5, 1.0])
    # A prediction of a class absent from y_true counts in macro-F1 (F1 0) but not in balanced accuracy.
    pred = MIXED.copy()
    pred[0] = 3
    assert metrics.balanced_accuracy(Y, pred) == pytest.approx((5 / 8 + 0.5 + 1.0) / 3)
    assert metrics.macro_f1(Y, pred) == pytest.approx(f1_score(Y, pred, average="macro", zero_division=0))


def test_empty_and_bad_inputs():
    assert math.isnan(metrics.accuracy([], [])) and math.isnan(metrics.balanced_accuracy([], []))
    with pytest.raises(ValueError, match="predictions"):
        metrics.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="out of range"):
        metrics.per_class_recall([0, 3], [0, 0], 3)


def test_bootstrap_resamples_match_sklearn_and_are_seeded():
    rng = np.random.default_rng(5)
    t = rng.choice(3, size=40, p=[0.8, 0.15, 0.05])
    p = np.where(rng.random(40) < 0.7, t, rng.integers(0, 3, 40))
    idx = rng.integers(0, 40, size=(25, 40))
    got = metrics.resampled_metrics(t, p, idx, 3)
    for b in range(25):
        tb, pb = t[idx[b]], p[idx[b]]
        assert got["accuracy"][b] == pytest.approx((tb == pb).mean())
        assert got["balanced_accuracy"][b] == pytest.approx(balanced_accuracy_score(tb, pb))
        assert got["macro_f1"][b] == pytest.approx(f1_score(tb, pb, average="macro", zero_division=0))
    a = metrics.bootstrap_intervals(t, p, n_boot=300, seed=1)
    assert a == metrics.bootstrap_intervals(t, p, n_boot=300, seed=1)
    assert a != metrics.bootstrap_intervals(t, p, n_boot=300, seed=2)
    for iv in a.values():
        assert iv.low <= iv.value <= iv.high and iv.low < iv.high


def test_bootstrap_interval_of_a_perfect_and_of_a_majority_model():
    perfect = metrics.bootstrap_intervals(Y, Y, n_boot=200)
    assert all((iv.low, iv.value, iv.high) == (1.0, 1.0, 1.0) for iv in perfect.values())
    major = metrics.bootstrap_intervals(Y, ALL_MAJORITY, n_boot=200)
    # Every resample's balanced accuracy is 1 / (classes present), at most 1/2 and at least 1/3.
    assert major["balanced_accuracy"].value == pytest.approx(1 / 3)
    assert 1 / 3 - 1e-9 <= major["balanced_accuracy"].low and major["balanced_accuracy"].high <= 0.5 + 1e-9
    assert major["accuracy"].high > major["balanced_accuracy"].high


def test_metric_report_counts_and_dict():
    rep = metrics.metric_report(Y, MIXED, 4, n_boot=100)
    assert rep.n == 12 and rep.support.tolist() == [8, 2, 2, 0] and rep.predicted.tolist() == [7, 3, 2, 0]
    d = rep.as_dict()
    assert d["balanced_accuracy"]["value"] == pytest.approx(0.75) and d["recall"][3] is None
    assert "75.0%" in rep.balanced_accuracy.text()


def test_is_imbalanced():
    assert metrics.is_imbalanced([900, 50, 50]) and not metrics.is_imbalanced([100, 110, 95])
    assert not metrics.is_imbalanced([10, 0])  # one class present: nothing to compare
