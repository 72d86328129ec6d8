"""Coverage distances, curves and the greedy k-center trace on hand-made points."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from activekd_core import coverage as cv
from activekd_core.selection.kcenter import kcenter_greedy


def line(xs):
    return np.array([[x, 0.0] for x in xs])


def test_nearest_distance_hand_case():
    pts = np.array([[0, 0], [3, 0], [0, 4], [1, 0], [3, 4]], dtype=float)
    d, near = cv.nearest_labeled_distance(pts, [0, 4], return_nearest=True)
    np.testing.assert_allclose(d, [0, 3, 3, 1, 0])
    np.testing.assert_array_equal(near, [0, 0, 4, 0, 4])
    st = cv.coverage(pts, [0, 4])
    assert st.mean == pytest.approx(7 / 5) and st.max == 3 and st.median == 1
    assert (st.n_points, st.n_labeled) == (5, 2)
    un = cv.coverage(pts, [0, 4], include_labeled=False)
    assert un.mean == pytest.approx(7 / 3) and un.n_points == 3


def test_chunking_matches_brute_force():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), 1000)
    lab = rng.choice(1000, 17, replace=False)
    brute = cdist(p, p[lab]).min(axis=1)
    np.testing.assert_allclose(cv.nearest_labeled_distance(p, lab, chunk_size=7), brute, atol=1e-12)
    np.testing.assert_allclose(cv.nearest_labeled_distance(p, lab), brute, atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="at least one labeled"):
        cv.nearest_labeled_distance(np.eye(3), [])
    with pytest.raises(ValueError, match="out of range"):
        cv.coverage(np.eye(3), [3])
    with pytest.raises(ValueError, match="2-D"):
        cv.coverage(np.ones(3), [0])
    with pytest.raises(ValueError, match="2 arrays for 3 rounds"):
        cv.coverage_curve([[0], [0, 1], [0, 1, 2]], {"student": [np.eye(3), np.eye(3)]})


def test_coverage_curve_teacher_fixed_student_per_round():
    teacher = line([0, 1, 2, 10, 11])
    student_r1 = line([0, 0, 0, 0, 5])
    rounds = [np.array([0]), np.array([0, 4])]
    df = cv.coverage_curve(rounds, {"teacher": teacher, "student": [None, student_r1]})
    assert list(df["space"]) == ["teacher", "teacher", "student"]
    assert list(df["round"]) == [0, 1, 1]
    t = df[df.space == "teacher"]
    np.testing.assert_allclose(t["mean_distance"], [(0 + 1 + 2 + 10 + 11) / 5, (0 + 1 + 2 + 1 + 0) / 5])
    np.testing.assert_allclose(t["max_distance"], [11, 2])
    s = df[df.space == "student"].iloc[0]
    assert s["mean_distance"] == 0 and s["n_labeled"] == 2
    # more labels never increase coverage distance in a fixed space
    assert (np.diff(t["mean_distance"]) <= 0).all()


def test_greedy_trace_hand_case():
    pts = line([0, 1, 2, 10, 11])
    tr = cv.greedy_trace(pts, [0], 3)
    assert tr.source == "selection.kcenter_greedy"
    np.testing.assert_array_equal(tr.indices, [4, 2, 1])  # tie (rows 1 and 3 at distance 1) -> row 1
    np.testing.assert_allclose(tr.distances, [11, 2, 1])
    np.testing.assert_allclose(tr.max_after, [2, 1, 1])
    np.testing.assert_allclose(tr.mean_after, [4 / 5, 2 / 5, 1 / 5])
    df = tr.to_frame()
    assert list(df["step"]) == [1, 2, 3] and list(df["index"]) == [4, 2, 1]
    # k larger than the unlabeled pool: every unlabeled point once
    all_tr = cv.greedy_trace(pts, [0, 3], 10)
    assert sorted(all_tr.indices.tolist()) == [1, 2, 4]


def test_greedy_trace_properties_and_kernel_agreement():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), 400)
    lab = np.array([3, 50, 200])
    own = cv.greedy_trace(p, lab, 25)
    assert not set(own.indices.tolist()) & set(lab.tolist())
    assert len(set(own.indices.tolist())) == 25
    assert (np.diff(own.distances) <= 1e-12).all()  # farthest-first distances never increase
    # each pick's distance is its distance to labeled + earlier picks
    for s, i in enumerate(own.indices):
        centres = np.concatenate([lab, own.indices[:s]])
        assert own.distances[s] == pytest.approx(cdist(p[[i]], p[centres]).min())
    # the max coverage after a pick equals the next pick's distance
    np.testing.assert_allclose(own.max_after[:-1], own.distances[1:])
    # the shared kernel's own picks and scores: the page shows exactly what selection does
    picks, scores = kcenter_greedy(p, lab, 25, metric="euclidean", return_scores=True)
    np.testing.assert_array_equal(picks, own.indices)
    np.testing.assert_allclose(scores, own.distances, rtol=1e-5)
