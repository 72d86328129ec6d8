"""Selection: which unlabeled images to ask the expert about next.

Public API:
    * :func:`kcenter_greedy` -- the greedy k-center kernel shared by PCoreSet and CoreSet.
    * :data:`STRATEGIES` -- registry ``name -> Strategy`` (``.name``, ``.fn``, ``.needs``,
      ``.description``, ``.score_label``).
    * :func:`select` -- run a strategy by name; returns a :class:`Selection`
      (``indices`` in pick order, per-pick ``scores``, ``strategy``).

Registered strategies: ``pcoreset``, ``coreset``, ``random``, ``entropy``, ``margin``,
``least_confidence``, ``class_balanced`` (true labels of the labeled rows required),
``badge`` (the PCoreSet reference: farthest-first on unit gradient embeddings) and
``badge_kmeanspp`` (BADGE as published: k-means++ seeding). Every strategy returns
``min(k, #unlabeled)`` distinct unlabeled rows, never a labeled one, and the same picks
for the same inputs and seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from activekd_core.selection.kcenter import kcenter_greedy
from activekd_core.selection.strategies import STRATEGIES, Selection, Strategy, entropy_of, gradient_embedding, margin_of

__all__ = [
    "STRATEGIES",
    "Selection",
    "Strategy",
    "entropy_of",
    "gradient_embedding",
    "kcenter_greedy",
    "margin_of",
    "select",
]


def select(
    name: str,
    *,
    probs: np.ndarray | None = None,
    features: np.ndarray | None = None,
    labeled: Any,
    k: int,
    rng: np.random.Generator | int | None = None,
    **kw: Any,
) -> Selection:
    """Run the strategy registered as ``name``.

    Args:
        name: A key of :data:`STRATEGIES`.
        probs: ``(N, C)`` probabilities (PCoreSet: the student's combined probabilities by
            default, or the teacher's).
        features: ``(N, D)`` features (CoreSet, BADGE).
        labeled: Labeled pool rows (or a boolean mask); never picked.
        k: Batch size; capped at the number of unlabeled rows.
        rng: Generator or int seed; the same seed gives the same picks.
        **kw: Strategy options (``labeled_y``, the true classes of ``labeled``, for
            ``class_balanced``; ``device``/``method`` for the k-center strategies;
            ``seed_labeled`` for ``badge``); unused ones are ignored.

    Returns:
        The :class:`Selection`.

    Raises:
        ValueError: Unknown name, missing inputs or malformed arrays.
    """
    if name not in STRATEGIES:
        raise ValueError(f"activekd_core/selection: unknown strategy {name!r}; available: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name].fn(probs=probs, features=features, labeled=labeled, k=k, rng=rng, **kw)
