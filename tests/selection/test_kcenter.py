"""The k-center kernel against the published brute-force algorithm, and lazy == exact."""

from __future__ import annotations

import numpy as np
import pytest

from activekd_core.selection import kcenter_greedy
from activekd_core.selection import kcenter as kc


def brute_force(points: np.ndarray, labeled: list[int], k: int, metric: str, first: int = 0) -> tuple[list[int], list[float]]:
    """Farthest-first as published: every step recomputes all distances to all centers (float64)."""
    x = np.asarray(points, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms == 0, 1.0, norms)
    centers = list(labeled)
    picks, scores = [], []
    for _ in range(k):
        remaining = [i for i in range(len(x)) if i not in centers]
        if not centers:
            i, best = first, np.inf
        else:
            d = np.sqrt(((x[remaining][:, None, :] - x[centers][None, :, :]) ** 2).sum(-1)).min(axis=1)
            j = int(np.argmax(d))  # first maximum = lowest index
            i, best = remaining[j], float(d[j])
        picks.append(i)
        scores.append(best if metric == "euclidean" else best**2 / 2)
        centers.append(i)
    return picks, scores


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("n_labeled", [0, 1, 9])
@pytest.mark.parametrize("method", ["exact", "lazy"])
@pytest.mark.parametrize("block_rows", [None, 7, 16])
def test_matches_brute_force(metric: str, n_labeled: int, method: str, block_rows: int | None) -> None:
    rng = np.random.default_rng(n_labeled + 10 * (metric == "cosine"))
    x = rng.normal(size=(203, 6)).astype(np.float32)  # 203 rows: blocks of 7 and 16 end short
    labeled = sorted(rng.choice(203, n_labeled, replace=False).tolist())
    picks, scores = kcenter_greedy(x, labeled, 40, metric, return_scores=True, method=method, block_rows=block_rows)
    ref_picks, ref_scores = brute_force(x, labeled, 40, metric)
    assert picks.tolist() == ref_picks
    assert picks.dtype == np.int64 and scores.dtype == np.float64
    np.testing.assert_allclose(scores[n_labeled == 0 :], ref_scores[n_labeled == 0 :], rtol=1e-4, atol=1e-5)
    if n_labeled == 0:
        assert scores[0] == np.inf


def test_probability_vectors_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.full(12, 0.3), size=400).astype(np.float32)
    labeled = [0, 17, 300]
    picks = kcenter_greedy(p, labeled, 60)
    assert picks.tolist() == brute_force(p, labeled, 60, "euclidean")[0]


def test_rng_chooses_first_pick_without_labels() -> None:
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    first = int(np.random.default_rng(5).integers(50))
    picks = kcenter_greedy(x, [], 10, rng=5)
    assert picks.tolist() == brute_force(x, [], 10, "euclidean", first=first)[0]
    assert kcenter_greedy(x, None, 10)[0] == 0  # no rng: lowest index


@pytest.mark.parametrize("alpha", [1.0, 0.1])
@pytest.mark.parametrize("block_rows", [None, 16, 100])
def test_lazy_equals_exact_float32_on_dirichlet(alpha: float, block_rows: int | None) -> None:
    rng = np.random.default_rng(int(alpha * 10))
    p = rng.dirichlet(np.full(60, alpha), size=6000).astype(np.float32)
    labeled = rng.choice(6000, 60, replace=False)
    exact = kcenter_greedy(p, labeled, 250, return_scores=True, method="exact", block_rows=block_rows)
    lazy = kcenter_greedy(p, labeled, 250, return_scores=True, method="lazy", block_rows=block_rows)
    np.testing.assert_array_equal(lazy[0], exact[0])
    np.testing.assert_array_equal(lazy[1], exact[1])  # bit-identical scores too
    assert np.all(np.diff(exact[1]) <= 0)  # farthest-first: the pick distance never grows


def test_lazy_equals_exact_with_duplicates_and_ties() -> None:
    rng = np.random.default_rng(1)
    base = rng.dirichlet(np.ones(5), size=30).astype(np.float32)
    p = np.repeat(base, 7, axis=0)  # every point 7 times: many exact ties
    exact = kcenter_greedy(p, [0], 120, method="exact", block_rows=16)
    lazy = kcenter_greedy(p, [0], 120, method="lazy", block_rows=16)
    np.testing.assert_array_equal(lazy, exact)
    assert len(set(exact.tolist())) == 120 and 0 not in exact
    # the first 29 picks cover the 29 other distinct points, each at its lowest row
    assert sorted(exact[:29].tolist()) == [7 * i for i in range(1, 30)]


def test_subnormal_entries_are_flushed_without_touching_input() -> None:
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.full(40, 0.01), size=300).astype(np.float32)
    assert np.any((p > 0) & (p < np.finfo(np.float32).tiny))  # the case under test
    before = p.copy()
    exact = kcenter_greedy(p, [1, 2], 30, method="exact")
    lazy = kcenter_greedy(p, [1, 2], 30, method="lazy")
    np.testing.assert_array_equal(lazy, exact)
    np.testing.assert_array_equal(p, before)
    assert exact.tolist() == brute_force(p, [1, 2], 30, "euclidean")[0]


def test_k_larger_than_pool_and_edge_cases() -> None:
    x = np.random.default_rng(0).normal(size=(20, 4))  # float64 input is accepted
    labeled = np.array([3, 3, 7])  # duplicates are fine
    picks = kcenter_greedy(x, labeled, 100)
    assert sorted(picks.tolist()) == [i for i in range(20) if i not in (3, 7)]
    mask = np.zeros(20, dtype=bool)
    mask[[3, 7]] = True
    np.testing.assert_array_equal(kcenter_greedy(x, mask, 100), picks)
    empty, scores = kcenter_greedy(x, labeled, 0, return_scores=True)
    assert empty.size == 0 and scores.size == 0
    assert kcenter_greedy(x, np.arange(20), 5).size == 0


@pytest.mark.parametrize(
    "points, labeled, k, kwargs, message",
    [
        (np.ones(5), [], 2, {}, "2-D"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), [], 1, {}, "NaN"),
        (np.ones((4, 2)), [4], 1, {}, r"\[0, 4\)"),
        (np.ones((4, 2)), [0.5], 1, {}, "integer"),
        (np.ones((4, 2)), [], -1, {}, ">= 0"),
        (np.ones((4, 2)), [], 1, {"metric": "manhattan"}, "metric"),
        (np.ones((4, 2)), [], 1, {"method": "fast"}, "method"),
        (np.ones((4, 2)), [], 1, {"device": "tpu"}, "device"),
    ],
)
def test_bad_inputs_name_the_problem(points, labeled, k, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        kcenter_greedy(points, labeled, k, **kwargs)
    assert "kcenter.py" in str(info.value)


def test_torch_loop_matches_brute_force_on_cpu_device() -> None:
    """The CUDA code path, run on torch's CPU device (tests hide GPUs)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(150, 5)).astype(np.float32)
    x = kc._prepare_points(x, "euclidean")
    picks, sq = kc._run_torch(x, np.array([2, 9]), 25, None, "cpu")
    ref_picks, ref_scores = brute_force(x, [2, 9], 25, "euclidean")
    assert picks.tolist() == ref_picks
    np.testing.assert_allclose(np.sqrt(sq), ref_scores, rtol=1e-4)


def test_cosine_ignores_row_scale() -> None:
    rng = np.random.default_rng(6)
    f = rng.normal(size=(120, 8)).astype(np.float32)
    scaled = f * rng.uniform(0.1, 10, size=(120, 1)).astype(np.float32)
    assert kcenter_greedy(f, [0, 1], 30, "cosine").tolist() == kcenter_greedy(scaled, [0, 1], 30, "cosine").tolist()


@pytest.mark.parametrize("alpha", [1.0, 0.05])
@pytest.mark.parametrize("block_rows", [None, 16, 37])
def test_lazy_seeding_equals_exact_with_many_labeled(alpha: float, block_rows: int | None) -> None:
    """Above _LAZY_SEED_MIN labeled rows only blocks that can hold a pick are seeded; picks stay exact."""
    rng = np.random.default_rng(int(alpha * 100) + (block_rows or 0))
    p = rng.dirichlet(np.full(30, alpha), size=8000).astype(np.float32)
    labeled = rng.choice(8000, 300, replace=False)
    assert labeled.size > kc._LAZY_SEED_MIN  # the case under test
    exact = kcenter_greedy(p, labeled, 200, return_scores=True, method="exact", block_rows=block_rows)
    lazy = kcenter_greedy(p, labeled, 200, return_scores=True, method="lazy", block_rows=block_rows)
    np.testing.assert_array_equal(lazy[0], exact[0])
    np.testing.assert_array_equal(lazy[1], exact[1])


def test_lazy_seeding_skips_blocks_and_matches_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kc, "_LAZY_SEED_MIN", 4)
    monkeypatch.setattr(kc, "_BOUND_CENTERS", 16)
    rng = np.random.default_rng(8)
    p = rng.dirichlet(np.ones(30), size=2000).astype(np.float32)
    labeled = sorted(rng.choice(2000, 100, replace=False).tolist())
    x = kc._prepare_points(p, "euclidean")
    blocks = kc._Blocks(x, 16, 10, np.asarray(labeled, dtype=np.int64))
    picks, _ = kc._run_lazy(blocks, 10, None)
    assert blocks.seeded_blocks < blocks.n_blocks  # lazy seeding left some blocks alone
    assert picks.tolist() == brute_force(p, labeled, 10, "euclidean")[0]
    assert kcenter_greedy(p, labeled, 10, block_rows=16).tolist() == picks.tolist()


def test_lazy_seeding_with_duplicates_keeps_lowest_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kc, "_LAZY_SEED_MIN", 2)
    monkeypatch.setattr(kc, "_BOUND_CENTERS", 2)
    rng = np.random.default_rng(9)
    base = rng.dirichlet(np.ones(4), size=25).astype(np.float32)
    p = np.repeat(base, 5, axis=0)  # exact ties everywhere
    labeled = [0, 5, 10, 15]
    exact = kcenter_greedy(p, labeled, 60, method="exact", block_rows=8)
    lazy = kcenter_greedy(p, labeled, 60, method="lazy", block_rows=8)
    np.testing.assert_array_equal(lazy, exact)
    assert lazy[:21].tolist() == brute_force(p, labeled, 21, "euclidean")[0]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_tree_seeding_with_many_labeled_matches_brute_force(monkeypatch: pytest.MonkeyPatch, metric: str) -> None:
    """Many labeled rows in few dimensions seed through a k-d tree: same picks as the published loop."""
    monkeypatch.setattr(kc, "_TREE_MIN_LABELED", 50)
    rng = np.random.default_rng(21)
    p = rng.dirichlet(np.full(6, 0.5), size=700).astype(np.float32)
    labeled = sorted(rng.choice(700, 300, replace=False).tolist())
    x = kc._prepare_points(p, metric)
    blocks = kc._Blocks(x, 32, 25, np.asarray(labeled, dtype=np.int64))
    assert blocks.tree_seed  # the case under test
    ref = brute_force(p, labeled, 25, metric)
    for method in ("exact", "lazy"):
        picks, scores = kcenter_greedy(p, labeled, 25, metric, return_scores=True, method=method, block_rows=32)
        assert picks.tolist() == ref[0]
        np.testing.assert_allclose(scores, ref[1], rtol=1e-4, atol=1e-6)


def test_tree_seeding_lazy_equals_exact_bitwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kc, "_TREE_MIN_LABELED", 100)
    rng = np.random.default_rng(22)
    p = rng.dirichlet(np.full(10, 0.2), size=6000).astype(np.float32)
    labeled = rng.choice(6000, 2500, replace=False)
    exact = kcenter_greedy(p, labeled, 150, return_scores=True, method="exact")
    lazy = kcenter_greedy(p, labeled, 150, return_scores=True, method="lazy")
    np.testing.assert_array_equal(lazy[0], exact[0])
    np.testing.assert_array_equal(lazy[1], exact[1])
    monkeypatch.setattr(kc, "_TREE_MIN_LABELED", 10**9)  # the GEMM seeding: same picks on this data
    np.testing.assert_array_equal(kcenter_greedy(p, labeled, 150, method="lazy"), exact[0])
