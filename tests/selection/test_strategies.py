"""Every registered strategy through one template of invariants, then each one's behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from sklearn.cluster import kmeans_plusplus

from activekd_core.selection import STRATEGIES, Selection, gradient_embedding, kcenter_greedy, select
from activekd_core.selection.strategies import class_balanced_quotas

N, C, D = 120, 5, 6
EXPECTED = {"pcoreset", "coreset", "random", "entropy", "margin", "least_confidence", "class_balanced", "badge", "badge_kmeanspp"}


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


def _reference_quotas(labeled_y: list[int], predicted: list[int], k: int) -> dict[int, int]:
    """Independent re-statement of the reference allocation with plain dicts and floats."""
    counts: dict[int, int] = {}
    for label in labeled_y:
        counts[label] = counts.get(label, 0) + 1
    classes = sorted(set(predicted))
    total = sum(counts.values())
    if counts:
        weights = {c: total / (counts.get(c, 1) + 1) for c in classes}
    else:
        weights = {c: 1.0 for c in classes}
    norm = sum(weights.values())
    weights = {c: w / norm for c, w in weights.items()}
    quotas = {c: int(k * w) for c, w in weights.items()}
    left = k - sum(quotas.values())
    for c, _w in sorted(weights.items(), key=lambda cw: cw[1], reverse=True):
        if left <= 0:
            break
        quotas[c] += 1
        left -= 1
    return quotas


@pytest.mark.parametrize("case", range(6))
def test_class_balanced_quotas_match_the_reference_rule(case: int) -> None:
    rng = np.random.default_rng(case)
    c = int(rng.integers(2, 8))
    labeled_y = rng.integers(0, c, size=int(rng.integers(0, 30))).tolist()
    predicted = rng.integers(0, c, size=200)
    predicted = predicted[predicted != int(rng.integers(0, c))].tolist()  # one class never predicted
    k = int(rng.integers(1, 25))
    quota, weight = class_balanced_quotas(np.bincount(labeled_y, minlength=c), predicted, k)
    ref = _reference_quotas(labeled_y, predicted, k)
    assert {cls: int(quota[cls]) for cls in ref} == ref
    assert all(quota[cls] == 0 and weight[cls] == 0 for cls in range(c) if cls not in ref)


def test_class_balanced_uses_true_labels_and_the_reference_quotas() -> None:
    rng = np.random.default_rng(3)
    c = 3
    pred = np.repeat(np.arange(c), 100)
    probs = np.full((300, c), 0.1, dtype=np.float32)
    probs[np.arange(300), pred] = 0.8
    probs += rng.uniform(0, 0.05, size=probs.shape).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    labeled = np.array([0, 1, 2, 3, 4, 5, 6, 7, 100, 200])
    # TRUE labels: 8 of class 0, one of class 1, none of class 2 (row 200 is predicted as 2 but is a 0)
    y = np.array([0] * 8 + [1, 0])
    sel = select("class_balanced", probs=probs, labeled=labeled, labeled_y=y, k=30, rng=0)
    got = np.bincount(pred[sel.indices], minlength=c)
    # total 10: weights 10/10, 10/2, 10/(1+1) -> 1/11, 5/11, 5/11 -> floor 2, 13, 13; +1 each to classes 1 and 2
    assert got.tolist() == [2, 14, 14]
    assert got.tolist() == [_reference_quotas(y.tolist(), pred[np.setdiff1d(np.arange(300), labeled)].tolist(), 30)[i] for i in range(c)]
    np.testing.assert_allclose(sel.scores, np.array([1, 5, 5])[pred[sel.indices]] / 11)
    # the predicted classes of the labeled rows would give another batch: they are not used
    wrong = select("class_balanced", probs=probs, labeled=labeled, labeled_y=pred[labeled], k=30, rng=0)
    assert np.bincount(pred[wrong.indices], minlength=c).tolist() != got.tolist()
    with pytest.raises(ValueError, match="labeled_y"):
        select("class_balanced", probs=probs, labeled=labeled, k=30, rng=0)
    with pytest.raises(ValueError, match="labeled_y"):
        select("class_balanced", probs=probs, labeled=labeled, labeled_y=y[:3], k=5, rng=0)
    # random within a class: seed-dependent members, same quotas
    r1 = select("class_balanced", probs=probs, labeled=labeled, labeled_y=y, k=30, rng=1)
    r2 = select("class_balanced", probs=probs, labeled=labeled, labeled_y=y, k=30, rng=2)
    assert np.bincount(pred[r1.indices], minlength=c).tolist() == [2, 14, 14]
    assert set(r1.indices.tolist()) != set(r2.indices.tolist())
    # labeled_y follows the order of `labeled` (a shuffled copy gives the same picks)
    perm = rng.permutation(labeled.size)
    same = select("class_balanced", probs=probs, labeled=labeled[perm], labeled_y=y[perm], k=30, rng=0)
    np.testing.assert_array_equal(same.indices, sel.indices)


def test_class_balanced_shortfall_is_filled_at_random() -> None:
    # class 1 has 3 candidates but a quota of 10: the 7 missing picks come from the rest
    probs = np.full((43, 2), 0.2, dtype=np.float32)
    probs[:40, 0] = 0.8
    probs[40:, 1] = 0.8
    labeled = np.array([0, 1, 2, 3])
    sel = select("class_balanced", probs=probs, labeled=labeled, labeled_y=np.array([0, 0, 0, 0]), k=12, rng=0)
    assert set(range(40, 43)) <= set(sel.indices.tolist()) and sel.indices.size == 12
    with_nothing = select("class_balanced", probs=probs, labeled=[], k=4, rng=0)  # no labels: uniform weights
    assert np.bincount((with_nothing.indices >= 40).astype(int), minlength=2).tolist() == [2, 2]


def test_badge_kmeanspp_is_kmeanspp_on_gradient_embeddings() -> None:
    data = pool(4)
    sel = select("badge_kmeanspp", k=15, rng=np.random.default_rng(11), **data)
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


def test_badge_kmeanspp_prefers_uncertain_rows_and_fills_zero_gradients() -> None:
    rng = np.random.default_rng(5)
    probs = np.eye(C, dtype=np.float32)[rng.integers(0, C, size=N)]  # confident: zero gradient
    uncertain = np.arange(0, N, 10)
    probs[uncertain] = rng.dirichlet(np.ones(C), size=uncertain.size)
    feats = rng.normal(size=(N, D)).astype(np.float32)
    sel = select("badge_kmeanspp", probs=probs, features=feats, labeled=[1], k=uncertain.size + 5, rng=0)
    # all zero-gradient rows sit at one point: at most one of them is sampled before the
    # uncertain rows run out, the rest only fill the batch
    assert set(uncertain.tolist()) <= set(sel.indices[: uncertain.size + 1].tolist())
    assert np.unique(sel.indices).size == uncertain.size + 5


def test_badge_kmeanspp_factored_path_for_large_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    import activekd_core.selection.strategies as strategies

    monkeypatch.setattr(strategies, "_BADGE_DENSE_LIMIT", 10)  # force the factored path
    data = pool(6)
    sel = select("badge_kmeanspp", k=20, rng=2, **data)
    assert np.unique(sel.indices).size == 20 and not np.isin(sel.indices, data["labeled"]).any()
    np.testing.assert_array_equal(sel.indices, select("badge_kmeanspp", k=20, rng=2, **data).indices)
    # D^2 sampling never picks a point whose gradient embedding is zero before a non-zero one
    assert np.all(sel.scores > 0)


def _reference_badge(probs: np.ndarray, feats: np.ndarray, k: int, labeled_emb: np.ndarray | None = None) -> list[int]:
    """Independent re-statement of the reference BADGE: materialised embeddings, torch
    normalisation, distances to every earlier pick recomputed at each step."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    onehot = torch.zeros_like(p).scatter_(1, p.argmax(1, keepdim=True), 1.0)
    raw = ((onehot - p)[:, :, None] * torch.as_tensor(feats, dtype=torch.float64)[:, None, :]).flatten(1)
    emb = torch.nn.functional.normalize(raw, dim=1)
    mask = torch.ones(len(emb), dtype=torch.bool)
    if labeled_emb is None:
        chosen = [int(torch.argmax(raw.norm(dim=1)))]
        mask[chosen[0]] = False
        centres = emb[chosen]
    else:
        chosen, centres = [], torch.as_tensor(labeled_emb, dtype=torch.float64)
    while len(chosen) < k:
        dist = (1 - emb @ torch.cat([centres, emb[chosen]]).T).min(dim=1).values
        dist[~mask] = -float("inf")
        nxt = int(torch.argmax(dist))
        chosen.append(nxt)
        mask[nxt] = False
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_badge_is_the_reference_farthest_first_on_unit_gradient_embeddings(seed: int) -> None:
    data = pool(seed)
    unl = np.setdiff1d(np.arange(N), data["labeled"])
    sel = select("badge", k=15, rng=seed, **data)
    ref = _reference_badge(data["probs"][unl], data["features"][unl], 15)
    assert sel.indices.tolist() == unl[ref].tolist()
    # deterministic: the rng does not matter
    np.testing.assert_array_equal(select("badge", k=15, rng=seed + 99, **data).indices, sel.indices)
    # scores: first the gradient norm, then the cosine distance to the nearest earlier pick
    g = gradient_embedding(data["probs"][sel.indices], data["features"][sel.indices]).astype(np.float64)
    assert sel.scores[0] == pytest.approx(np.linalg.norm(g[0]), rel=1e-6)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    assert sel.scores[4] == pytest.approx((1 - g[:4] @ g[4]).min(), abs=1e-6)
    # the option seeds the traversal with the labeled rows' embeddings instead
    lab = -gradient_embedding(data["probs"][data["labeled"]], data["features"][data["labeled"]]).astype(np.float64)  # onehot - p
    lab /= np.linalg.norm(lab, axis=1, keepdims=True)
    seeded = select("badge", k=15, rng=0, seed_labeled=True, **data)
    assert seeded.indices.tolist() == unl[_reference_badge(data["probs"][unl], data["features"][unl], 15, lab)].tolist()


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
