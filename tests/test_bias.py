"""Bias metrics on hand-made cases, including a planted teacher bias."""

from __future__ import annotations

import math

import numpy as np
import pytest

from activekd_core import bias

CLASSES = ["A", "B", "C"]


def planted_bias(n_a: int = 100, n_b: int = 50, n_c: int = 50, share: float = 0.3):
    """A teacher that sends exactly ``share`` of class A to class B; otherwise right.

    Returns (teacher_probs, truth) over a pool of n_a + n_b + n_c images.
    """
    truth = np.array([0] * n_a + [1] * n_b + [2] * n_c, dtype=np.int64)
    n_moved = int(round(share * n_a))
    probs = np.full((truth.size, 3), 0.1)
    probs[np.arange(truth.size), truth] = 0.8
    moved = np.arange(n_moved) * (n_a // n_moved)  # spread over class A rows
    probs[moved] = [0.1, 0.8, 0.1]
    return probs, truth, moved


def test_planted_bias_confusion_exact():
    probs, truth, _ = planted_bias()
    labeled = np.arange(truth.size)
    rep = bias.classification_report(probs, truth, labeled, CLASSES)
    np.testing.assert_array_equal(rep.confusion, [[70, 30, 0], [0, 50, 0], [0, 0, 50]])
    np.testing.assert_allclose(rep.confusion_normalized[0], [0.7, 0.3, 0.0])
    np.testing.assert_allclose(rep.confusion_normalized[1:], [[0, 1, 0], [0, 0, 1]])
    assert rep.correct == 170 and rep.n == 200
    assert rep.accuracy == pytest.approx(0.85)
    pc = rep.per_class.set_index("class")
    assert pc.loc["A", "recall"] == pytest.approx(0.7)
    assert pc.loc["A", "precision"] == pytest.approx(1.0)
    assert pc.loc["B", "precision"] == pytest.approx(50 / 80)
    f1_b = 2 * (50 / 80) * 1.0 / (50 / 80 + 1.0)
    assert pc.loc["B", "f1"] == pytest.approx(f1_b)
    assert list(pc["support"]) == [100, 50, 50]
    assert rep.macro_f1 == pytest.approx(np.mean([2 * 0.7 / 1.7, f1_b, 1.0]))
    lo, hi = rep.accuracy_interval
    assert lo < 0.85 < hi


def test_planted_bias_priors_exact():
    probs, truth, _ = planted_bias()
    labeled = np.arange(truth.size)
    pr = bias.priors(probs, truth, labeled, CLASSES).set_index("class")
    assert list(pr["predicted_count"]) == [70, 80, 50]
    assert list(pr["human_count"]) == [100, 50, 50]
    np.testing.assert_allclose(pr["difference"], [-0.15, 0.15, 0.0])  # 30 of 200 moved A -> B
    np.testing.assert_allclose(pr["ratio"], [0.7, 1.6, 1.0])
    # soft share: A rows lose 0.7 of mass per moved row
    np.testing.assert_allclose(pr["mean_prob"].sum(), 1.0)


def test_priors_use_whole_pool_for_predictions_and_labels_for_humans():
    probs, truth, _ = planted_bias()
    labeled = np.array([0, 1, 150])  # rows 0 (moved A->B), 1 (A), 150 (C)
    pr = bias.priors(probs, truth[labeled], labeled, CLASSES)
    np.testing.assert_allclose(pr["predicted_share"], [70 / 200, 80 / 200, 50 / 200])
    np.testing.assert_allclose(pr["human_share"], [2 / 3, 0, 1 / 3])
    assert math.isinf(pr["ratio"][1])


def test_wilson_interval_known_values():
    lo, hi = bias.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)
    assert bias.wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = bias.wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)
    with pytest.raises(ValueError, match="successes"):
        bias.wilson_interval(11, 10)


def _binary_case(groups):
    """Two-class rows with confidence c, predicted class 0; k of n labeled correct."""
    probs, y = [], []
    for conf, n, k in groups:
        probs += [[conf, 1 - conf]] * n
        y += [0] * k + [1] * (n - k)
    return np.array(probs), np.array(y)


def test_ece_perfectly_calibrated_is_zero():
    probs, y = _binary_case([(0.95, 20, 19), (0.75, 4, 3), (0.55, 20, 11)])
    labeled = np.arange(len(y))
    assert bias.expected_calibration_error(probs, y, labeled, n_bins=10) == pytest.approx(0.0, abs=1e-12)
    bins = bias.reliability_bins(probs, y, labeled, n_bins=10)
    assert bins["count"].sum() == 44
    row = bins[bins["count"] == 4].iloc[0]
    assert row["bin_lower"] == pytest.approx(0.7) and row["accuracy"] == pytest.approx(0.75)


def test_ece_random_calibrated_is_small():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 20000)
    correct = rng.uniform(size=conf.size) < conf
    probs = np.stack([conf, 1 - conf], axis=1)
    y = np.where(correct, 0, 1)
    assert bias.expected_calibration_error(probs, y, np.arange(y.size), n_bins=10) < 0.02


def test_ece_overconfident_hand_value():
    # 10 at 0.9 with 6 right (gap 0.3), 10 at 0.7 with 7 right (gap 0): ECE = 0.5 * 0.3
    probs, y = _binary_case([(0.9, 10, 6), (0.7, 10, 7)])
    labeled = np.arange(len(y))
    assert bias.expected_calibration_error(probs, y, labeled, 10) == pytest.approx(0.15)
    bins = bias.reliability_bins(probs, y, labeled, 10)
    filled = bins[bins["count"] > 0]
    np.testing.assert_allclose(filled["gap"], [0.0, 0.3], atol=1e-12)
    assert bins["confidence"].isna().sum() == 8


def test_bin_edges_are_right_closed():
    # 4 classes so that a confidence lies exactly on the 0.3 edge
    probs = np.array([[0.3, 0.3, 0.2, 0.2], [0.0, 1.0, 0.0, 0.0]])
    bins = bias.reliability_bins(probs, np.array([0, 1]), np.array([0, 1]), 10)
    assert bins.loc[2, "count"] == 1  # (0.2, 0.3]
    assert bins.loc[9, "count"] == 1  # (0.9, 1.0]


def test_normalized_entropy_and_histogram():
    probs = np.array([[1 / 3] * 3, [1.0, 0, 0], [0.5, 0.5, 0.0]])
    h = bias.normalized_entropy(probs)
    np.testing.assert_allclose(h, [1.0, 0.0, math.log(2) / math.log(3)])
    hist = bias.entropy_histogram(probs, n_bins=4, y=np.array([0, 0]), labeled=np.array([1, 2]))
    assert list(hist["count"]) == [1, 0, 1, 1]
    assert list(hist["labeled_correct"]) == [1, 0, 1, 0]  # row 2 argmax 0 == label 0
    assert hist["labeled_wrong"].sum() == 0


def test_confident_mistakes_sorted_with_ties():
    probs = np.array(
        [[0.9, 0.1], [0.6, 0.4], [0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]
    )
    labeled = np.array([4, 2, 0, 1, 3])
    y = np.array([1, 1, 1, 0, 1])  # rows 4, 2, 0 wrong (pred 0, human 1); row 1 right; row 3 right
    m = bias.confident_mistakes(probs, y, labeled, ["x", "y"])
    assert list(m["index"]) == [0, 2, 4]
    np.testing.assert_allclose(m["confidence"], [0.9, 0.9, 0.7])
    np.testing.assert_allclose(m["prob_human"], [0.1, 0.1, 0.3])
    assert set(m["human"]) == {"y"}
    assert list(bias.confident_mistakes(probs, y, labeled, top=1)["index"]) == [0]


def test_disagreement_table_and_summary():
    t = np.array([[0.9, 0.1, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    s = np.array([[0.2, 0.8, 0], [0.9, 0.1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]], dtype=float)
    labeled = np.array([3, 0, 1, 2, 4])
    y = np.array([2, 1, 0, 0, 0])
    tab = bias.disagreement_table(t, s, y, labeled, CLASSES)
    assert list(tab["index"]) == [0, 2, 3, 4]
    assert list(tab["right"]) == ["student", "neither", "teacher", "teacher"]
    assert list(tab["human"]) == ["B", "A", "C", "A"]
    summ = bias.disagreement_summary(t, s, y, labeled)
    assert summ == {
        "both_right": 1,
        "both_wrong_same": 0,
        "both_wrong_different": 1,
        "only_teacher_right": 2,
        "only_student_right": 1,
        "n": 5,
    }


def test_prob_disagreement_bounds_and_top():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.8, 0.2]])
    q = np.array([[0.0, 1.0], [0.5, 0.5], [0.6, 0.4]])
    np.testing.assert_allclose(bias.prob_disagreement(p, q, "tv"), [1.0, 0.0, 0.2])
    js = bias.prob_disagreement(p, q, "js")
    assert js[0] == pytest.approx(1.0) and js[1] == pytest.approx(0.0) and 0 < js[2] < 0.2
    top = bias.top_disagreements(p, q, top=2)
    assert list(top["index"]) == [0, 2]
    assert list(bias.top_disagreements(p, q, top=5, candidates=[1, 2])["index"]) == [2, 1]
    with pytest.raises(ValueError, match="unknown disagreement"):
        bias.prob_disagreement(p, q, "kl")  # type: ignore[arg-type]


def test_confidence_vs_correctness():
    probs, truth, moved = planted_bias()
    df = bias.confidence_vs_correctness(probs, truth[:5], np.arange(5), CLASSES)
    assert list(df["correct"]) == [i not in set(moved) for i in range(5)]
    np.testing.assert_allclose(df["confidence"], 0.8)


def test_bias_report_with_student():
    probs, truth, _ = planted_bias()
    student = np.eye(3)[truth] * 0.9 + 0.1 / 3
    labeled = np.arange(0, 200, 2)
    rep = bias.bias_report(probs, truth[labeled], labeled, CLASSES, student_probs=student)
    assert rep.teacher.n == 100
    assert rep.student is not None and rep.student.accuracy == 1.0
    assert rep.disagreements is not None
    assert (rep.disagreements["right"] == "student").all()
    assert rep.disagreement_counts["only_student_right"] == rep.teacher.n - rep.teacher.correct
    assert rep.ece == pytest.approx(abs(0.8 - rep.teacher.accuracy))


def test_compare_teachers_before_after():
    before, truth, moved = planted_bias()
    after = np.full_like(before, 0.1)
    after[np.arange(truth.size), truth] = 0.8
    labeled = np.arange(truth.size)
    cmp = bias.compare_teachers(before, after, truth, labeled, CLASSES)
    s = cmp.summary.set_index("metric")
    assert s.loc["accuracy", "before"] == pytest.approx(0.85)
    assert s.loc["accuracy", "after"] == pytest.approx(1.0)
    assert s.loc["accuracy", "delta"] == pytest.approx(0.15)
    assert s.loc["recall[A]", "before"] == pytest.approx(0.7)
    assert s.loc["prior_tv", "before"] == pytest.approx(0.15)
    assert s.loc["prior_tv", "after"] == pytest.approx(0.0)
    assert s.loc["changed_pool", "after"] == pytest.approx(30 / 200)
    np.testing.assert_array_equal(cmp.changed, np.sort(moved))
    assert cmp.per_class.loc[0, "recall_after"] == pytest.approx(1.0)


def test_input_errors_are_clear():
    with pytest.raises(ValueError, match="not 1"):
        bias.classification_report(np.array([[2.0, 3.0]]), [0], [0])
    with pytest.raises(ValueError, match="labeled index out of range"):
        bias.classification_report(np.eye(2), [0], [5])
    with pytest.raises(ValueError, match="2 labels but labeled has 1"):
        bias.priors(np.eye(2), [0, 1], [0])
    with pytest.raises(ValueError, match="duplicate"):
        bias.priors(np.eye(2), [0, 1], [0, 0])
    with pytest.raises(ValueError, match="3 class names"):
        bias.priors(np.eye(2), [0], [0], CLASSES)


def test_no_labels_gives_nan_not_crash():
    rep = bias.bias_report(np.eye(3), np.zeros(0, np.int64), np.zeros(0, np.int64), CLASSES)
    assert math.isnan(rep.teacher.accuracy) and math.isnan(rep.ece)
    assert rep.teacher.confusion.sum() == 0 and rep.mistakes.empty
