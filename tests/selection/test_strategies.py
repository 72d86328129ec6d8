"""Every registered strategy through one template of invariants, then each one's behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy
from sklearn.cluster import kmeans_plusplus

from activekd_core.selection import STRATEGIES, Selection, gradient_embedding, kcenter_greedy, select
from activekd_core.selection.strategies import class_quotas

N, C, D = 120, 5, 6
EXPECTED = {"pcoreset", "coreset", "random", "entropy", "margin", "least_confidence", "class_balanced", "badge"}


def pool(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(C, 0.5), size=N).astype(np.float32)
    feats = rng.normal(size=(N, D)).astype(np.float32)
    labeled = np.array([4, 10, 11, 50, 99])
    return {"probs": probs, "features": feats, "labeled": labeled, "labeled_y": np.array([0, 0, 1, 2, 0])}


def test_registry_holds_every_strategy_with_metadata() -> None:
    assert set(STRATEGIES) == EXPECTED
    for name, s in STRATEGIES.items():
        assert s.name == name and callable(s.fn)
        assert s.needs <= {"probs", "features"}
        assert s.description and s.score_label


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_strategy_invariants(name: str) -> None:
    """The shared template: k unique unlabeled picks, scores per pick, seeded, k > pool."""
    data = pool()
    sel = select(name, k=17, rng=np.random.default_rng(7), **data)
    assert isinstance(sel, Selection) and sel.strategy == name
    assert sel.indices.dtype == np.int64 and sel.indices.shape == (17,)
    assert sel.scores.dtype == np.float64 and sel.scores.shape == (17,)
    assert np.isfinite(sel.scores).all()
    assert np.unique(sel.indices).size == 17
    assert not np.isin(sel.indices, data["labeled"]).any()
    assert sel.indices.min() >= 0 and sel.indices.max() < N
    # deterministic for a seed (Generator or int)
    again = select(name, k=17, rng=np.random.default_rng(7), **data)
    np.testing.assert_array_equal(again.indices, sel.indices)
    np.testing.assert_array_equal(again.scores, sel.scores)
    np.testing.assert_array_equal(select(name, k=17, rng=3, **data).indices, select(name, k=17, rng=3, **data).indices)
    # k larger than the unlabeled pool: all of it, once
    everything = select(name, k=10 * N, rng=1, **data)
    assert sorted(everything.indices.tolist()) == sorted(set(range(N)) - set(data["labeled"].tolist()))
    assert select(name, k=0, rng=1, **data).indices.size == 0
    # the function in the registry behaves the same as select()
    direct = STRATEGIES[name].fn(k=17, rng=np.random.default_rng(7), **data)
    np.testing.assert_array_equal(direct.indices, sel.indices)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_strategy_reports_missing_inputs(name: str) -> None:
    data = pool()
    for need in STRATEGIES[name].needs:
        with pytest.raises(ValueError, match=need):
            select(name, k=3, rng=0, **{**data, need: None})


def test_entropy_margin_least_confidence_pick_the_most_uncertain() -> None:
    data = pool(1)
    p, lab = data["probs"].astype(np.float64), data["labeled"]
    unl = np.setdiff1d(np.arange(N), lab)
    h = scipy_entropy(p, axis=1)
    sel = select("entropy", k=10, rng=0, **data)
    assert sel.indices.tolist() == unl[np.argsort(-h[unl], kind="stable")[:10]].tolist()
    np.testing.assert_allclose(sel.scores, h[sel.indices], rtol=1e-6)
    top2 = np.sort(p, axis=1)[:, -2:]
    m = top2[:, 1] - top2[:, 0]
    sel = select("margin", k=10, rng=0, **data)
    assert sel.indices.tolist() == unl[np.argsort(m[unl], kind="stable")[:10]].tolist()
    np.testing.assert_allclose(sel.scores, m[sel.indices], rtol=1e-6)
    lc = 1 - p.max(axis=1)
    sel = select("least_confidence", k=10, rng=0, **data)
    assert sel.indices.tolist() == unl[np.argsort(-lc[unl], kind="stable")[:10]].tolist()


def test_kcenter_strategies_use_the_shared_kernel() -> None:
    data = pool(2)
    sel = select("pcoreset", k=12, rng=0, **data)
    idx, scores = kcenter_greedy(data["probs"], data["labeled"], 12, "euclidean", return_scores=True)
    np.testing.assert_array_equal(sel.indices, idx)
    np.testing.assert_array_equal(sel.scores, scores)
    sel = select("coreset", k=12, rng=0, **data)
    np.testing.assert_array_equal(sel.indices, kcenter_greedy(data["features"], data["labeled"], 12, "cosine"))
    # teacher probabilities instead of the student's: the caller passes them
    teacher = np.roll(data["probs"], 1, axis=1)
    assert select("pcoreset", probs=teacher, labeled=data["labeled"], k=12, rng=0).indices.tolist() != sel.indices.tolist()


def test_random_differs_between_seeds_and_covers_the_pool() -> None:
    data = pool()
    a = select("random", k=20, rng=1, **data).indices
    b = select("random", k=20, rng=2, **data).indices
    assert a.tolist() != b.tolist()
    counts = np.zeros(N)
    for seed in range(200):
        counts[select("random", k=20, rng=seed, **data).indices] += 1
    unl = np.setdiff1d(np.arange(N), data["labeled"])
    assert counts[data["labeled"]].sum() == 0
    assert counts[unl].min() > 10  # every unlabeled row gets drawn (expected 200 * 20 / 115 ~ 35)


def test_class_balanced_favours_rare_labeled_classes() -> None:
    rng = np.random.default_rng(3)
    c = 3
    pred = np.repeat(np.arange(c), 100)
    probs = np.full((300, c), 0.1, dtype=np.float32)
    probs[np.arange(300), pred] = 0.8
    probs += rng.uniform(0, 0.05, size=probs.shape).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    labeled = np.array([0, 1, 2, 3, 4, 5, 6, 7, 100, 200])  # 8 of class 0, one each of 1 and 2
    y = np.array([0] * 8 + [1, 2])
    sel = select("class_balanced", probs=probs, labeled=labeled, labeled_y=y, k=30, rng=0, within="entropy")
    got = np.bincount(pred[sel.indices], minlength=c)
    # weights 1/9, 1/2, 1/2 -> quotas 3, 14 (largest remainder goes to class 1), 13
    assert got.tolist() == [3, 14, 13]
    # order: round robin, rarest first, so every prefix is balanced
    assert pred[sel.indices[:3]].tolist() == [1, 2, 0]
    np.testing.assert_allclose(sel.scores, 1.0 / (1.0 + np.array([8, 1, 1]))[pred[sel.indices]])
    # within="entropy": most uncertain first inside a class
    cls1 = sel.indices[pred[sel.indices] == 1]
    h = scipy_entropy(probs[cls1].astype(np.float64), axis=1)
    unl1 = np.setdiff1d(np.flatnonzero(pred == 1), labeled)
    assert np.all(np.diff(h) <= 1e-12)
    assert h.min() >= np.sort(scipy_entropy(probs[unl1].astype(np.float64), axis=1))[-14] - 1e-12
    # default within="random": same quotas, seed-dependent members
    r1 = select("class_balanced", probs=probs, labeled=labeled, labeled_y=y, k=30, rng=1)
    r2 = select("class_balanced", probs=probs, labeled=labeled, labeled_y=y, k=30, rng=2)
    assert np.bincount(pred[r1.indices], minlength=c).tolist() == [3, 14, 13]
    assert set(r1.indices.tolist()) != set(r2.indices.tolist())
    # labeled_y follows the order of `labeled` (a shuffled copy gives the same picks)
    perm = rng.permutation(labeled.size)
    same = select("class_balanced", probs=probs, labeled=labeled[perm], labeled_y=y[perm], k=30, rng=0, within="entropy")
    np.testing.assert_array_equal(same.indices, sel.indices)
    # without labeled_y the labeled rows' predicted classes stand in (here they agree)
    np.testing.assert_array_equal(select("class_balanced", probs=probs, labeled=labeled, k=30, rng=0, within="entropy").indices, sel.indices)
    with pytest.raises(ValueError, match="labeled_y"):
        select("class_balanced", probs=probs, labeled=labeled, labeled_y=y[:3], k=5, rng=0)


def test_class_quotas_cap_and_redistribute() -> None:
    q = class_quotas(np.array([1.0, 1.0, 1.0]), np.array([1, 50, 50]), 30)
    assert q.tolist() == [1, 15, 14] and q.sum() == 30
    assert class_quotas(np.array([0.5, 0.25]), np.array([2, 2]), 10).tolist() == [2, 2]


def test_badge_is_kmeanspp_on_gradient_embeddings() -> None:
    data = pool(4)
    sel = select("badge", k=15, rng=np.random.default_rng(11), **data)
    unl = np.setdiff1d(np.arange(N), data["labeled"])
    emb = gradient_embedding(data["probs"][unl], data["features"][unl])
    seed = int(np.random.default_rng(11).integers(2**31 - 1))
    _, ref = kmeans_plusplus(emb, n_clusters=15, random_state=seed)
    np.testing.assert_array_equal(sel.indices, unl[ref])
    # scores: distance to the nearest earlier pick in embedding space, first = gradient norm
    e = emb[np.searchsorted(unl, sel.indices)].astype(np.float64)
    assert sel.scores[0] == pytest.approx(np.linalg.norm(e[0]), rel=1e-5)
    assert sel.scores[5] == pytest.approx(np.linalg.norm(e[:5] - e[5], axis=1).min(), rel=1e-4)
    rand = select("random", k=15, rng=np.random.default_rng(11), **data)
    assert set(sel.indices.tolist()) != set(rand.indices.tolist())


def test_gradient_embedding_is_the_outer_product() -> None:
    p = np.array([[0.7, 0.2, 0.1]], dtype=np.float32)
    h = np.array([[1.0, -2.0]], dtype=np.float32)
    np.testing.assert_allclose(gradient_embedding(p, h), [[-0.3, 0.6, 0.2, -0.4, 0.1, -0.2]], rtol=1e-6)


def test_badge_prefers_uncertain_rows_and_fills_zero_gradients() -> None:
    rng = np.random.default_rng(5)
    probs = np.eye(C, dtype=np.float32)[rng.integers(0, C, size=N)]  # confident: zero gradient
    uncertain = np.arange(0, N, 10)
    probs[uncertain] = rng.dirichlet(np.ones(C), size=uncertain.size)
    feats = rng.normal(size=(N, D)).astype(np.float32)
    sel = select("badge", probs=probs, features=feats, labeled=[1], k=uncertain.size + 5, rng=0)
    # all zero-gradient rows sit at one point: at most one of them is sampled before the
    # uncertain rows run out, the rest only fill the batch
    assert set(uncertain.tolist()) <= set(sel.indices[: uncertain.size + 1].tolist())
    assert np.unique(sel.indices).size == uncertain.size + 5


def test_badge_factored_path_for_large_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    import activekd_core.selection.strategies as strategies

    monkeypatch.setattr(strategies, "_BADGE_DENSE_LIMIT", 10)  # force the factored path
    data = pool(6)
    sel = select("badge", k=20, rng=2, **data)
    assert np.unique(sel.indices).size == 20 and not np.isin(sel.indices, data["labeled"]).any()
    np.testing.assert_array_equal(sel.indices, select("badge", k=20, rng=2, **data).indices)
    # D^2 sampling never picks a point whose gradient embedding is zero before a non-zero one
    assert np.all(sel.scores > 0)


def test_select_rejects_bad_inputs() -> None:
    data = pool()
    with pytest.raises(ValueError, match="unknown strategy"):
        select("nope", k=3, rng=0, **data)
    with pytest.raises(ValueError, match="logits"):
        select("entropy", probs=data["probs"] * 3, labeled=data["labeled"], k=3, rng=0)
    with pytest.raises(ValueError, match="different row counts"):
        select("badge", probs=data["probs"], features=data["features"][:10], labeled=[], k=3, rng=0)
    with pytest.raises(ValueError, match=r"\[0, 120\)"):
        select("random", probs=data["probs"], labeled=[500], k=3, rng=0)
    with pytest.raises(ValueError, match="rng"):
        select("random", probs=data["probs"], labeled=[], k=3, rng="seed")
