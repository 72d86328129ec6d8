"""How well the labeled images cover the probability space (the quantity PCoreSet drives down).

For a space of points (teacher or student probability vectors, ``(N, C)``) and a labeled set,
each pool image's *coverage distance* is its L2 distance to the nearest labeled image (0 for
labeled images). The Explore page plots, per round, the mean and max of these distances over
the pool; greedy k-center (PCoreSet) picks, at each step, the image with the largest such
distance to ``labeled + already picked``, so its per-pick distances explain each pick.

Distances are computed in row chunks with scikit-learn's ``pairwise_distances_argmin_min`` so
memory stays bounded for large pools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import pairwise_distances_argmin_min

from activekd_core.selection.kcenter import kcenter_greedy

__all__ = [
    "CoverageStats",
    "GreedyTrace",
    "nearest_labeled_distance",
    "coverage",
    "coverage_curve",
    "greedy_trace",
]

DEFAULT_CHUNK = 8192


def _points(points: npt.ArrayLike, name: str = "points") -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"coverage: {name} must be a 2-D (N, C) array, got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"coverage: {name} holds NaN or infinite values")
    return arr


def _indices(labeled: npt.ArrayLike, n: int, name: str = "labeled") -> np.ndarray:
    lab = np.asarray(labeled).reshape(-1)
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"coverage: {name} must hold integer pool indices, got dtype {lab.dtype}")
    lab = np.unique(lab.astype(np.int64))
    if lab.size and (lab[0] < 0 or lab[-1] >= n):
        raise ValueError(f"coverage: {name} index out of range [0, {n}): {lab[0]}..{lab[-1]}")
    return lab


def nearest_labeled_distance(
    points: npt.ArrayLike,
    labeled: npt.ArrayLike,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    return_nearest: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """L2 distance from every pool point to its nearest labeled point.

    Args:
        points: ``(N, C)`` points (probability vectors).
        labeled: Pool rows of the labeled points (at least one).
        chunk_size: Pool rows per chunk.
        return_nearest: Also return the pool row of each point's nearest labeled point.

    Returns:
        ``(N,)`` float64 distances (0 for labeled rows), and with ``return_nearest`` the
        ``(N,)`` int64 pool rows of the nearest labeled points.

    Raises:
        ValueError: If ``labeled`` is empty or out of range.
    """
    x = _points(points)
    lab = _indices(labeled, x.shape[0])
    if lab.size == 0:
        raise ValueError("coverage: need at least one labeled point to measure coverage")
    if chunk_size < 1:
        raise ValueError(f"coverage: chunk_size must be >= 1, got {chunk_size}")
    centres = x[lab]
    dist = np.empty(x.shape[0], dtype=np.float64)
    nearest = np.empty(x.shape[0], dtype=np.int64)
    for start in range(0, x.shape[0], chunk_size):
        stop = min(start + chunk_size, x.shape[0])
        arg, d = pairwise_distances_argmin_min(x[start:stop], centres, metric="euclidean")
        dist[start:stop] = d
        nearest[start:stop] = lab[arg]
    dist[lab] = 0.0
    nearest[lab] = lab
    return (dist, nearest) if return_nearest else dist


@dataclass(frozen=True)
class CoverageStats:
    """Coverage of one space by one labeled set.

    Attributes:
        mean: Mean coverage distance over the points measured.
        max: Largest coverage distance (the k-center objective).
        median: Median coverage distance.
        n_points: Points measured.
        n_labeled: Labeled points.
    """

    mean: float
    max: float
    median: float
    n_points: int
    n_labeled: int


def coverage(
    points: npt.ArrayLike,
    labeled: npt.ArrayLike,
    *,
    include_labeled: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
) -> CoverageStats:
    """Mean/max/median distance from pool points to their nearest labeled point.

    Args:
        points: ``(N, C)`` points.
        labeled: Pool rows of the labeled points.
        include_labeled: Measure over the whole pool (labeled rows count as 0, the default,
            so the curve compares across rounds on the same N) or over unlabeled rows only.
        chunk_size: Pool rows per chunk.

    Returns:
        A ``CoverageStats`` (NaNs when no point is measured).
    """
    x = _points(points)
    lab = _indices(labeled, x.shape[0])
    d = nearest_labeled_distance(x, lab, chunk_size=chunk_size)
    assert isinstance(d, np.ndarray)
    if not include_labeled:
        mask = np.ones(x.shape[0], dtype=bool)
        mask[lab] = False
        d = d[mask]
    if d.size == 0:
        return CoverageStats(float("nan"), float("nan"), float("nan"), 0, int(lab.size))
    return CoverageStats(float(d.mean()), float(d.max()), float(np.median(d)), int(d.size), int(lab.size))


def coverage_curve(
    labeled_per_round: Sequence[npt.ArrayLike],
    spaces: Mapping[str, npt.ArrayLike | Sequence[npt.ArrayLike | None]],
    *,
    include_labeled: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
) -> pd.DataFrame:
    """Coverage per round for several spaces (e.g. teacher and student).

    Args:
        labeled_per_round: The labeled pool rows at each round (round 0 first).
        spaces: Space name -> either one ``(N, C)`` array used for every round (the teacher,
            which does not change) or one array per round (the student, retrained each round;
            ``None`` for a round without a student is skipped).
        include_labeled: See ``coverage``.
        chunk_size: Pool rows per chunk.

    Returns:
        Long DataFrame with columns ``round, space, n_labeled, mean_distance, max_distance,
        median_distance``.
    """
    rows = []
    for name, space in spaces.items():
        per_round: Sequence[npt.ArrayLike | None]
        if isinstance(space, np.ndarray) and space.ndim == 2:
            per_round = [space] * len(labeled_per_round)
        else:
            per_round = list(space)  # type: ignore[arg-type]
            if len(per_round) != len(labeled_per_round):
                raise ValueError(
                    f"coverage: space {name!r} has {len(per_round)} arrays for {len(labeled_per_round)} rounds"
                )
        for r, (lab, pts) in enumerate(zip(labeled_per_round, per_round)):
            if pts is None:
                continue
            st = coverage(pts, lab, include_labeled=include_labeled, chunk_size=chunk_size)
            rows.append(
                {
                    "round": r,
                    "space": name,
                    "n_labeled": st.n_labeled,
                    "mean_distance": st.mean,
                    "max_distance": st.max,
                    "median_distance": st.median,
                }
            )
    return pd.DataFrame(
        rows, columns=["round", "space", "n_labeled", "mean_distance", "max_distance", "median_distance"]
    )


@dataclass
class GreedyTrace:
    """Greedy k-center picks, one at a time, with why each was picked.

    Attributes:
        indices: Pool rows in pick order.
        distances: For each pick, its L2 distance to the nearest labeled or already-picked
            point at the moment it was picked (non-increasing).
        mean_after: Mean coverage distance over the pool after each pick.
        max_after: Max coverage distance over the pool after each pick.
        source: What produced the picks: ``"selection.kcenter_greedy"`` (the shared kernel).
    """

    indices: np.ndarray
    distances: np.ndarray
    mean_after: np.ndarray
    max_after: np.ndarray
    source: str

    def to_frame(self) -> pd.DataFrame:
        """Table ``step, index, distance, mean_after, max_after`` (step starts at 1)."""
        return pd.DataFrame(
            {
                "step": np.arange(1, self.indices.size + 1),
                "index": self.indices,
                "distance": self.distances,
                "mean_after": self.mean_after,
                "max_after": self.max_after,
            }
        )


def greedy_trace(
    points: npt.ArrayLike,
    labeled: npt.ArrayLike,
    k: int,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> GreedyTrace:
    """Replay PCoreSet's greedy k-center picks one at a time.

    The picks are those of the one k-center kernel,
    ``activekd_core.selection.kcenter_greedy(points, labeled, k, metric="euclidean")`` (so
    the page shows exactly what selection does: the unlabeled point with the largest L2
    distance to ``labeled + picked``, ties to the lowest row). This module then measures, in
    float64, each pick's distance at the moment it was picked and the pool's coverage after it.

    Args:
        points: ``(N, C)`` probability vectors (the student's combined probabilities for
            PCoreSet).
        labeled: Labeled pool rows (at least one).
        k: Number of picks (capped at the number of unlabeled points).
        chunk_size: Pool rows per chunk for the initial distances.

    Returns:
        A ``GreedyTrace``.
    """
    x = _points(points)
    lab = _indices(labeled, x.shape[0])
    if lab.size == 0:
        raise ValueError("coverage: greedy_trace needs at least one labeled point")
    if k < 0:
        raise ValueError(f"coverage: k must be >= 0, got {k}")
    k = min(int(k), x.shape[0] - lab.size)
    picks = np.asarray(kcenter_greedy(x, lab, k, metric="euclidean"), dtype=np.int64)
    # each pick's distance when picked, and coverage after each pick
    d = nearest_labeled_distance(x, lab, chunk_size=chunk_size)
    assert isinstance(d, np.ndarray)
    scores = np.empty(picks.size)
    mean_after = np.empty(picks.size)
    max_after = np.empty(picks.size)
    for s, i in enumerate(picks):
        scores[s] = d[i]
        d = np.minimum(d, np.linalg.norm(x - x[i], axis=1))
        mean_after[s], max_after[s] = d.mean(), d.max()
    return GreedyTrace(picks, scores, mean_after, max_after, "selection.kcenter_greedy")
