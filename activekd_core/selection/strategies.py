"""Selection strategies: plain functions over arrays, each registered with what it needs.

Every strategy has the signature::

    fn(*, probs, features, labeled, k, rng, **kw) -> Selection

``probs`` is ``(N, C)`` (rows sum to 1), ``features`` is ``(N, D)``, ``labeled`` holds
labeled pool rows, ``rng`` is a ``numpy.random.Generator``. The :func:`strategy`
decorator checks and normalises these inputs at the boundary and checks the result
(``min(k, #unlabeled)`` distinct unlabeled rows in pick order, one float64 score per
pick), so the function bodies only hold the method. Keyword arguments a strategy does not
use are ignored (callers may pass e.g. ``labeled_y`` or ``device`` to every strategy).
Ties between equal scores go to the lowest pool row.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import entr

from activekd_core.selection.kcenter import kcenter_greedy

NEEDS_ALL = frozenset({"probs", "features"})
_PROB_TOL = 1e-2  # rows of probs must sum to 1 within this
_BADGE_DENSE_LIMIT = 1 << 27  # float32 entries of a materialised gradient embedding (512 MiB)


def _err(msg: str) -> ValueError:
    return ValueError(f"activekd_core/selection/strategies.py: {msg}")


@dataclass
class Selection:
    """A strategy's answer.

    Attributes:
        indices: Picked pool rows (int64) in pick order.
        scores: Per pick, the number that made the strategy choose it (float64); its meaning
            is the strategy's ``score_label``.
        strategy: The strategy's registry name.
    """

    indices: np.ndarray
    scores: np.ndarray
    strategy: str


@dataclass(frozen=True)
class Strategy:
    """A registry entry.

    Attributes:
        name: Registry key.
        fn: The (guarded) strategy function.
        needs: Inputs it requires, a subset of ``{"probs", "features"}``.
        description: One sentence for the UI.
        score_label: What a pick's score means, for "why this image".
    """

    name: str
    fn: Callable[..., Selection]
    needs: frozenset[str]
    description: str
    score_label: str


STRATEGIES: dict[str, Strategy] = {}


# ---- the boundary guard ------------------------------------------------------------------


def _check_probs(probs: Any, name: str) -> np.ndarray:
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] == 0:
        raise _err(f"{name}: probs must be a 2-D array (N, C) with C >= 1, got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float32)
    if not np.isfinite(p).all():
        raise _err(f"{name}: probs contain NaN or inf")
    if p.size and p.min() < 0:
        raise _err(f"{name}: probs must be non-negative (got a row with {float(p.min())}); pass probabilities, not logits")
    sums = p.sum(axis=1, dtype=np.float64)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _PROB_TOL)
    if bad.size:
        raise _err(f"{name}: probs rows must sum to 1 (row {int(bad[0])} sums to {sums[bad[0]]:.4g}); pass probabilities, not logits")
    return p


def _check_features(features: Any, name: str) -> np.ndarray:
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[1] == 0:
        raise _err(f"{name}: features must be a 2-D array (N, D) with D >= 1, got shape {f.shape}")
    if not np.issubdtype(f.dtype, np.floating):
        f = f.astype(np.float32)
    if not np.isfinite(f).all():
        raise _err(f"{name}: features contain NaN or inf")
    return f


def _check_labeled(labeled: Any, n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique labeled rows, and for each the position of its first occurrence in the input."""
    lab = np.asarray([] if labeled is None else labeled)
    if lab.dtype == bool:
        if lab.shape != (n,):
            raise _err(f"{name}: a boolean labeled mask must have shape ({n},), got {lab.shape}")
        rows = np.flatnonzero(lab).astype(np.int64)
        return rows, np.arange(rows.size)
    lab = lab.reshape(-1)
    if lab.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if not np.issubdtype(lab.dtype, np.integer):
        raise _err(f"{name}: labeled must hold integer pool rows, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if lab.min() < 0 or lab.max() >= n:
        raise _err(f"{name}: labeled rows must lie in [0, {n}), got range [{lab.min()}, {lab.max()}]")
    rows, first = np.unique(lab, return_index=True)
    return rows, first


def _as_rng(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise _err(f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}")


def strategy(name: str, needs: set[str], description: str, score_label: str) -> Callable[[Callable[..., Selection]], Callable[..., Selection]]:
    """Register ``fn`` under ``name``, wrapped in the input/output guard described above."""
    if not set(needs) <= NEEDS_ALL:
        raise _err(f"strategy {name!r}: needs must be a subset of {sorted(NEEDS_ALL)}, got {sorted(needs)}")

    def wrap(fn: Callable[..., Selection]) -> Callable[..., Selection]:
        @functools.wraps(fn)
        def guarded(*, probs: Any = None, features: Any = None, labeled: Any = None, k: int, rng: Any = None, **kw: Any) -> Selection:
            for need, arr in (("probs", probs), ("features", features)):
                if need in needs and arr is None:
                    raise _err(f"strategy {name!r} needs {need}, got None")
            p = None if probs is None else _check_probs(probs, name)
            f = None if features is None else _check_features(features, name)
            sizes = {a.shape[0] for a in (p, f) if a is not None}
            if not sizes:
                raise _err(f"strategy {name!r}: pass probs or features (they give the pool size)")
            if len(sizes) > 1:
                raise _err(f"strategy {name!r}: probs and features have different row counts {sorted(sizes)}")
            n = sizes.pop()
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
                raise _err(f"strategy {name!r}: k must be an integer >= 0, got {k!r}")
            lab, first = _check_labeled(labeled, n, name)
            if kw.get("labeled_y") is not None:  # keep labels aligned with the normalised rows
                y = np.asarray(kw["labeled_y"]).reshape(-1)
                n_given = np.asarray(labeled).reshape(-1).size if np.asarray(labeled).dtype != bool else lab.size
                if y.size != n_given:
                    raise _err(f"strategy {name!r}: labeled_y has {y.size} entries for {n_given} labeled rows")
                kw["labeled_y"] = y[first]
            k_eff = int(min(int(k), n - lab.size))
            if k_eff == 0:
                return Selection(np.empty(0, np.int64), np.empty(0, np.float64), name)
            sel = fn(probs=p, features=f, labeled=lab, k=k_eff, rng=_as_rng(rng), **kw)
            idx = np.asarray(sel.indices, dtype=np.int64)
            scores = np.asarray(sel.scores, dtype=np.float64)
            if idx.shape != (k_eff,) or scores.shape != (k_eff,):
                raise RuntimeError(f"strategy {name!r} returned {idx.shape} picks / {scores.shape} scores, expected {k_eff}")
            if np.unique(idx).size != k_eff or np.isin(idx, lab).any() or idx.min() < 0 or idx.max() >= n:
                raise RuntimeError(f"strategy {name!r} returned a repeated, labeled or out-of-range row")
            return Selection(idx, scores, name)

        STRATEGIES[name] = Strategy(name, guarded, frozenset(needs), description, score_label)
        return guarded

    return wrap


# ---- helpers -----------------------------------------------------------------------------


def _unlabeled(n: int, labeled: np.ndarray) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    mask[labeled] = False
    return np.flatnonzero(mask)


def _top_k(rows: np.ndarray, key: np.ndarray, k: int) -> Selection:
    """The ``k`` rows with the largest ``key`` (ties: lowest row); ``rows`` ascending."""
    order = np.argsort(-key, kind="stable")[:k]
    return Selection(rows[order], key[order].astype(np.float64), "")


def entropy_of(probs: npt.ArrayLike) -> np.ndarray:
    """Shannon entropy of each row, in nats (``0 log 0 = 0``)."""
    return entr(np.asarray(probs, dtype=np.float64)).sum(axis=1)


def margin_of(probs: npt.ArrayLike) -> np.ndarray:
    """Top-1 minus top-2 probability of each row (1 column: the top-1 probability)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[1] == 1:
        return p[:, 0].copy()
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


# ---- strategies --------------------------------------------------------------------------


@strategy(
    "pcoreset",
    {"probs"},
    "PCoreSet: greedy k-center on probability vectors (the student's combined probabilities by "
    "default; the teacher's as an option), L2, seeded with every labeled image.",
    "L2 distance in probability space to the nearest labeled or earlier-picked image",
)
def pcoreset(*, probs: np.ndarray, features: np.ndarray | None, labeled: np.ndarray, k: int, rng: np.random.Generator, **kw: Any) -> Selection:
    """Farthest-first in the probability simplex (the caller decides whose probabilities)."""
    idx, scores = kcenter_greedy(probs, labeled, k, "euclidean", return_scores=True,
                                 device=kw.get("device", "auto"), method=kw.get("method", "auto"), rng=rng)
    return Selection(idx, scores, "pcoreset")


@strategy(
    "coreset",
    {"features"},
    "CoreSet: greedy k-center on the student's features, cosine distance, seeded with every labeled image.",
    "cosine distance in feature space to the nearest labeled or earlier-picked image",
)
def coreset(*, probs: np.ndarray | None, features: np.ndarray, labeled: np.ndarray, k: int, rng: np.random.Generator, **kw: Any) -> Selection:
    """Farthest-first on features with cosine distance (same kernel as PCoreSet)."""
    idx, scores = kcenter_greedy(features, labeled, k, "cosine", return_scores=True,
                                 device=kw.get("device", "auto"), method=kw.get("method", "auto"), rng=rng)
    return Selection(idx, scores, "coreset")


@strategy("random", set(), "Random: unlabeled images drawn uniformly at random.", "random draw (larger = drawn earlier)")
def random_(*, probs: np.ndarray | None, features: np.ndarray | None, labeled: np.ndarray, k: int, rng: np.random.Generator, **kw: Any) -> Selection:
    """Uniform sample without replacement: the ``k`` largest of one uniform key per unlabeled row."""
    n = (probs if probs is not None else features).shape[0]  # type: ignore[union-attr]
    rows = _unlabeled(n, labeled)
    return _top_k(rows, rng.random(rows.size), k)


@strategy("entropy", {"probs"}, "Entropy: the most uncertain predictions (highest Shannon entropy).", "prediction entropy (nats)")
def entropy(*, probs: np.ndarray, features: np.ndarray | None, labeled: np.ndarray, k: int, rng: np.random.Generator, **kw: Any) -> Selection:
    """Highest entropy first."""
    rows = _unlabeled(probs.shape[0], labeled)
    return _top_k(rows, entropy_of(probs[rows]), k)


@strategy("margin", {"probs"}, "Margin: the smallest gap between the two most likely classes.", "top-1 minus top-2 probability (smaller = more uncertain)")
def margin(*, probs: np.ndarray, features: np.ndarray | None, labeled: np.ndarray, k: int, rng: np.random.Generator, **kw: Any) -> Selection:
    """Smallest top-2 margin first."""
    rows = _unlabeled(probs.shape[0], labeled)
    m = margin_of(probs[rows])
    sel = _top_k(rows, -m, k)
    return Selection(sel.indices, -sel.scores, "margin")


@strategy("least_confidence", {"probs"}, "Least confidence: the lowest top-1 probability.", "1 - top-1 probability")
def least_confidence(*, probs: np.ndarray, features: np.ndarray | None, labeled: np.ndarray, k: int, rng: np.random.Generator, **kw: Any) -> Selection:
    """Largest ``1 - max p`` first."""
    rows = _unlabeled(probs.shape[0], labeled)
    return _top_k(rows, 1.0 - probs[rows].max(axis=1).astype(np.float64), k)


def class_balanced_quotas(labeled_counts: npt.ArrayLike, candidate_classes: npt.ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class quotas and weights of the reference class-balanced baseline.

    Only classes that occur among the candidates' predicted classes take part. With
    ``total`` labeled images, class ``c`` weighs ``total / (n_c + 1)``, where ``n_c`` is its
    labeled count and a class with no label counts as ``n_c = 1``; with no labels at all
    every class weighs 1. Weights are normalised to sum to 1, ``quota_c = floor(k *
    w_c)``, and the remainder adds 1 to each class in decreasing weight order (ties: the
    lower class) until it is used up.

    Args:
        labeled_counts: ``(C,)`` labeled images per class (true labels).
        candidate_classes: Classes present among the candidates (predicted).
        k: Batch size.

    Returns:
        ``(quota (C,) int64, weight (C,) float64)``; both 0 for absent classes.
    """
    counts = np.asarray(labeled_counts, dtype=np.float64)
    present = np.unique(np.asarray(candidate_classes, dtype=np.int64))
    weight = np.zeros(counts.shape[0], dtype=np.float64)
    total = counts.sum()
    if total > 0:
        weight[present] = total / (np.where(counts[present] > 0, counts[present], 1.0) + 1.0)
    else:
        weight[present] = 1.0
    if present.size:
        weight /= weight.sum()
    quota = np.floor(k * weight).astype(np.int64)
    left = int(k - quota.sum())
    for cls in present[np.argsort(-weight[present], kind="stable")]:
        if left <= 0:
            break
        quota[cls] += 1
        left -= 1
    return quota, weight


@strategy(
    "class_balanced",
    {"probs"},
    "Class-balanced (the PCoreSet reference baseline): quotas by inverse labeled-class frequency "
    "(true labels of the labeled images) over the predicted classes of the unlabeled images, random "
    "images within each quota, any shortfall filled at random.",
    "normalised weight total/(n+1) of its predicted class (larger = rarer labeled class)",
)
def class_balanced(*, probs: np.ndarray, features: np.ndarray | None, labeled: np.ndarray, k: int, rng: np.random.Generator, **kw: Any) -> Selection:
    """Class-balanced selection as in the reference code (:func:`class_balanced_quotas`).

    Keyword Args:
        labeled_y: TRUE class index of each labeled row, aligned with the ``labeled``
            argument. Required when anything is labeled: predicted classes are not a
            substitute (they make the baseline balance the model's mistakes).

    Candidates are grouped by predicted (argmax) class; classes are visited in index
    order, each gives a random ``min(quota, members)`` of its members; what the quotas
    could not fill is drawn at random from the remaining candidates.
    """
    n, c = probs.shape
    rows = _unlabeled(n, labeled)
    y = kw.get("labeled_y")
    if y is None:
        if labeled.size:
            raise _err("class_balanced: needs labeled_y, the true classes of the labeled rows "
                       "(predicted classes are not a substitute)")
        y = np.empty(0, np.int64)
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != labeled.size:
        raise _err(f"class_balanced: labeled_y has {y.shape[0]} entries for {labeled.size} labeled rows")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= c):
        raise _err(f"class_balanced: labeled_y must hold class indices in [0, {c})")
    pred = probs[rows].argmax(axis=1)
    quota, weight = class_balanced_quotas(np.bincount(y.astype(np.int64), minlength=c), pred, k)
    picked: list[np.ndarray] = []
    left = k
    for cls in np.unique(pred):
        members = np.flatnonzero(pred == cls)
        take = int(min(quota[cls], members.size, left))
        picked.append(members[rng.permutation(members.size)[:take]])
        left -= take
    chosen = np.concatenate(picked) if picked else np.empty(0, np.int64)
    if left > 0:
        rest = np.setdiff1d(np.arange(rows.size), chosen)
        chosen = np.concatenate([chosen, rest[rng.permutation(rest.size)[:left]]])
    chosen = chosen.astype(np.int64)
    return Selection(rows[chosen], weight[pred[chosen]].astype(np.float64), "class_balanced")


def gradient_embedding(probs: npt.ArrayLike, features: npt.ArrayLike) -> np.ndarray:
    """BADGE's hallucinated last-layer gradients: ``(p - onehot(argmax p)) (x) h``, flattened.

    Args:
        probs: ``(N, C)`` predicted probabilities.
        features: ``(N, D)`` penultimate-layer features.

    Returns:
        float32 ``(N, C * D)``; row ``i`` is ``outer(p_i - e_{yhat_i}, h_i).ravel()``.
    """
    p = np.asarray(probs, dtype=np.float32)
    h = np.asarray(features, dtype=np.float32)
    a = p.copy()
    a[np.arange(a.shape[0]), a.argmax(axis=1)] -= 1.0
    return (a[:, :, None] * h[:, None, :]).reshape(a.shape[0], -1)


def _kmeanspp_factored(a: np.ndarray, h: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ (D^2 sampling) on ``a (x) h`` without materialising it.

    ``<a_i (x) h_i, a_j (x) h_j> = (a_i . a_j)(h_i . h_j)``, so one pass of O(N (C + D))
    per pick keeps the squared distance to the nearest chosen center.
    """
    a64, h64 = a.astype(np.float64), h.astype(np.float64)
    g2 = (a64 * a64).sum(1) * (h64 * h64).sum(1)
    n = a.shape[0]
    chosen = [int(rng.integers(n))]
    d2 = np.full(n, np.inf)
    for _ in range(1, k):
        c = chosen[-1]
        d2 = np.minimum(d2, np.maximum(g2 + g2[c] - 2.0 * (a64 @ a64[c]) * (h64 @ h64[c]), 0.0))
        d2[chosen] = 0.0
        total = d2.sum()
        if total <= 0:
            break
        chosen.append(int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right").clip(0, n - 1)))
    return np.asarray(chosen, dtype=np.int64)


@strategy(
    "badge_kmeanspp",
    {"probs", "features"},
    "BADGE as published: k-means++ seeding on gradient embeddings (p - onehot(argmax p)) x features, "
    "trading uncertainty (gradient size) against diversity.",
    "gradient-embedding distance to the nearest earlier pick (first pick: gradient norm)",
)
def badge_kmeanspp(*, probs: np.ndarray, features: np.ndarray, labeled: np.ndarray, k: int, rng: np.random.Generator, **kw: Any) -> Selection:
    """BADGE (Ash et al., 2020) over the unlabeled rows, with k-means++ seeding.

    The PCoreSet reference code's "badge" (registered here as ``badge``) runs
    deterministic farthest-first on L2-normalised embeddings instead; this is BADGE as
    published (k-means++ D^2 sampling on the raw embeddings, whose norm carries the
    uncertainty).

    Uses ``sklearn.cluster.kmeans_plusplus`` (greedy k-means++, seeded from ``rng``) on the
    materialised embedding when it has at most 2^27 entries; larger pools use the same D^2
    sampling with the factored inner product (plain k-means++, one trial per pick). Rows the
    seeding cannot reach (all remaining embeddings coincide with a center, e.g. confident
    one-hot predictions whose gradient is zero) are filled by largest gradient norm.
    """
    from sklearn.cluster import kmeans_plusplus

    rows = _unlabeled(probs.shape[0], labeled)
    p, h = probs[rows].astype(np.float32), features[rows].astype(np.float32)
    a = p.copy()
    a[np.arange(a.shape[0]), a.argmax(axis=1)] -= 1.0
    if rows.size * a.shape[1] * h.shape[1] <= _BADGE_DENSE_LIMIT:
        emb = gradient_embedding(p, h)
        _, picked = kmeans_plusplus(emb, n_clusters=k, random_state=int(rng.integers(2**31 - 1)))
    else:
        picked = _kmeanspp_factored(a, h, k, rng)
    picked = np.asarray(picked, dtype=np.int64)
    _, first = np.unique(picked, return_index=True)
    picked = picked[np.sort(first)]  # distinct, first occurrence order
    if picked.size < k:
        g2 = (a.astype(np.float64) ** 2).sum(1) * (h.astype(np.float64) ** 2).sum(1)
        rest = np.setdiff1d(np.arange(rows.size), picked)
        rest = rest[np.argsort(-g2[rest], kind="stable")]
        picked = np.concatenate([picked, rest[: k - picked.size]])
    # why: distance to the nearest earlier pick in gradient-embedding space (factored)
    ap, hp = a[picked].astype(np.float64), h[picked].astype(np.float64)
    sq = (ap * ap).sum(1) * (hp * hp).sum(1)
    d2min = np.full(k, np.inf)
    scores = np.empty(k)
    for i in range(k):
        scores[i] = math.sqrt(sq[i] if i == 0 else max(d2min[i], 0.0))
        if i + 1 < k:
            d2 = sq[i + 1 :] + sq[i] - 2.0 * (ap[i + 1 :] @ ap[i]) * (hp[i + 1 :] @ hp[i])
            np.minimum(d2min[i + 1 :], d2, out=d2min[i + 1 :])
    return Selection(rows[picked], scores, "badge_kmeanspp")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64); zero rows stay zero."""
    x = x.astype(np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


@strategy(
    "badge",
    {"probs", "features"},
    "BADGE as in the PCoreSet reference code: gradient embeddings (onehot(argmax p) - p) x features, "
    "L2-normalised, then deterministic farthest-first with cosine distance.",
    "cosine distance in gradient-embedding space to the nearest earlier pick (first pick: gradient norm)",
)
def badge(*, probs: np.ndarray, features: np.ndarray, labeled: np.ndarray, k: int, rng: np.random.Generator, **kw: Any) -> Selection:
    """Reference BADGE: farthest-first on unit gradient embeddings of the unlabeled rows.

    The embedding of row ``i`` is ``g_i = (onehot(argmax p_i) - p_i) (x) h_i`` scaled to unit
    norm. The first pick is the row with the largest gradient norm ``|g_i|`` (the
    reference intends "the largest gradient magnitude"; it takes the argmax of the norms
    after normalising, where only rounding differs), each further pick the row whose
    cosine distance ``1 - cos`` to its nearest earlier pick is largest (ties: the lowest
    row). As in the reference, the labeled rows do not seed the traversal; pass
    ``seed_labeled=True`` to start from them instead (their embeddings use the model's
    predicted class too, like every gradient embedding here).

    ``cos(g_i, g_j) = (a_i . a_j)(h_i . h_j)`` for the unit factors ``a = onehot - p`` and
    ``h``, so the embedding is never materialised: one pass of ``O(N (C + D))`` per pick.
    """
    n = probs.shape[0]
    rows = _unlabeled(n, labeled)

    def factors(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = probs[r].astype(np.float64)
        a = -p
        a[np.arange(r.size), p.argmax(axis=1)] += 1.0
        h = features[r].astype(np.float64)
        g_norm = np.linalg.norm(a, axis=1) * np.linalg.norm(h, axis=1)
        return _unit_rows(a), _unit_rows(h), g_norm

    a, h, g_norm = factors(rows)
    md = np.full(rows.size, np.inf)
    if kw.get("seed_labeled") and labeled.size:
        la, lh, _ = factors(labeled)
        for start in range(0, labeled.size, 1024):
            cos = (a @ la[start : start + 1024].T) * (h @ lh[start : start + 1024].T)
            np.minimum(md, (1.0 - cos).min(axis=1), out=md)
    picks = np.empty(k, dtype=np.int64)
    scores = np.empty(k, dtype=np.float64)
    taken = np.zeros(rows.size, dtype=bool)
    for t in range(k):
        if np.isinf(md).all():
            i = int(np.argmax(g_norm))
            score = float(g_norm[i])
        else:
            key = np.where(taken, -np.inf, md)
            i = int(np.argmax(key))
            score = float(md[i])
        picks[t], scores[t] = i, score
        taken[i] = True
        np.minimum(md, 1.0 - (a @ a[i]) * (h @ h[i]), out=md)
    return Selection(rows[picks], scores, "badge")
