"""Layouts of large pools from a seeded sample: which rows to fit on, PCA fitted on them, and
the memory a UMAP fit needs.

Above :data:`LARGE_POOL` images the Explore page never lays out the whole pool: it draws a few
thousand points anyway (:func:`activekd_core.projection.display_subset`). A seeded random
sample of :data:`FIT_SAMPLE` rows (the *fit rows*, stable for a pool size and seed) is what
PCA and UMAP are fitted on; the drawn random points are taken from the fit rows, and the other
drawn points (labeled, picked, queried images) are placed with the fitted model's
``transform``. Probability rows are read only for the fit rows and the drawn rows (fancy
indexing of the read-only memory map), never as a whole ``(N, C)`` array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.decomposition import PCA

__all__ = [
    "LARGE_POOL",
    "FIT_SAMPLE",
    "fit_rows",
    "rows_of",
    "SampledPca",
    "place_by_neighbours",
    "umap_bytes",
    "available_bytes",
    "UmapTooLarge",
    "check_umap_memory",
]

LARGE_POOL = 200_000
"""Pools larger than this are laid out from a seeded sample (module attribute: tests lower it)."""

FIT_SAMPLE = 50_000
"""Rows a large pool's PCA and UMAP are fitted on."""

UMAP_BYTES_PER_POINT = 8_200
"""UMAP's peak resident memory per point beside its input (measured: 8.2 GB for 1,000,000 points,
10 classes, 15 neighbours, bench/README.md); scaled with ``n_neighbors / 15``."""

UMAP_MEMORY_FRACTION = 0.5
"""Largest share of the memory available now that a UMAP fit may plan to use."""


def fit_rows(n: int, size: int | None = None, seed: int = 0) -> np.ndarray:
    """The seeded sample of pool rows a large pool's layouts are fitted on.

    Args:
        n: Pool size.
        size: Sample size (default :data:`FIT_SAMPLE`; all rows when ``n`` is not larger).
        seed: Sampling seed (the layout seed, so the sample is stable across reruns).

    Returns:
        Sorted int64 pool rows.
    """
    size = FIT_SAMPLE if size is None else int(size)
    if n < 0 or size < 1:
        raise ValueError(f"projection: need n >= 0 and size >= 1, got {n}, {size}")
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng([seed, n]).choice(n, size=size, replace=False)).astype(np.int64)


def rows_of(probs: npt.ArrayLike, rows: npt.ArrayLike) -> np.ndarray:
    """``probs[rows]`` as float32, reading only those rows of a memory map (rows sorted first)."""
    r = np.asarray(rows, dtype=np.int64).reshape(-1)
    if r.size > 1 and np.any(r[1:] < r[:-1]):
        order = np.argsort(r, kind="stable")
        out = np.empty((r.size, np.shape(probs)[1]), dtype=np.float32)
        out[order] = np.asarray(probs[r[order]], dtype=np.float32)  # type: ignore[index]
        return out
    return np.asarray(probs[r], dtype=np.float32)  # type: ignore[index]


@dataclass(frozen=True)
class SampledPca:
    """A 2-D PCA fitted on some probability rows, applied to any others.

    Attributes:
        mean: Feature mean of the fit rows.
        components: ``(k, C)`` principal axes (``k <= 2``).
        n_fit: Rows it was fitted on.
        metric: ``"euclidean"`` or ``"hellinger"`` (PCA of ``sqrt(p)``).
    """

    mean: np.ndarray
    components: np.ndarray
    n_fit: int
    metric: str

    @classmethod
    def fit(cls, probs: np.ndarray, metric: str = "euclidean", seed: int = 0) -> SampledPca:
        """Fit on ``(n, C)`` probabilities (already the sample)."""
        x = np.sqrt(np.clip(probs, 0.0, None)) if metric == "hellinger" else probs
        x = np.asarray(x, dtype=np.float64)
        k = min(2, x.shape[0], x.shape[1])
        if k < 1 or x.shape[0] < 2:
            return cls(np.zeros(x.shape[1]), np.zeros((0, x.shape[1])), int(x.shape[0]), metric)
        pca = PCA(n_components=k, svd_solver="full" if x.shape[1] <= 256 else "randomized", random_state=seed)
        pca.fit(x)
        return cls(pca.mean_, pca.components_, int(x.shape[0]), metric)

    def transform(self, probs: np.ndarray) -> np.ndarray:
        """``(m, 2)`` float32 coordinates of ``(m, C)`` probabilities (missing components are zeros)."""
        x = np.sqrt(np.clip(probs, 0.0, None)) if self.metric == "hellinger" else probs
        out = np.zeros((x.shape[0], 2), dtype=np.float32)
        k = self.components.shape[0]
        if k:
            out[:, :k] = (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T
        return out


def place_by_neighbours(fit_probs: np.ndarray, fit_coords: np.ndarray, probs: np.ndarray, *,
                        metric: str = "euclidean", k: int = 15) -> np.ndarray:
    """2-D positions of new rows on a layout of the fit rows: the inverse-distance weighted mean
    of the layout positions of their ``k`` nearest fit rows in probability space (Hellinger:
    Euclidean on ``sqrt(p)``), the way UMAP's own ``transform`` starts before it refines.

    Args:
        fit_probs: ``(n, C)`` probabilities of the fit rows.
        fit_coords: ``(n, 2)`` their layout.
        probs: ``(m, C)`` rows to place.
        metric: ``"euclidean"`` or ``"hellinger"``.
        k: Neighbours averaged.

    Returns:
        ``(m, 2)`` float32.
    """
    from sklearn.neighbors import NearestNeighbors

    if probs.shape[0] == 0:
        return np.zeros((0, 2), dtype=np.float32)
    prep = (lambda p: np.sqrt(np.clip(p, 0.0, None))) if metric == "hellinger" else (lambda p: p)
    k = max(1, min(int(k), fit_probs.shape[0]))
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(np.asarray(prep(fit_probs), dtype=np.float32))
    dist, idx = nn.kneighbors(np.asarray(prep(probs), dtype=np.float32))
    w = 1.0 / (dist + 1e-6)
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("mk,mkd->md", w, np.asarray(fit_coords, dtype=np.float64)[idx]).astype(np.float32)


def umap_bytes(n: int, num_classes: int, n_neighbors: int = 15) -> int:
    """Estimated peak memory of a UMAP fit on ``n`` points (input included)."""
    per_point = UMAP_BYTES_PER_POINT * max(1.0, n_neighbors / 15.0) + 12 * num_classes
    return int(n * per_point)


def available_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo``, or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class UmapTooLarge(MemoryError):
    """A UMAP fit would need more memory than is available."""


def check_umap_memory(n: int, num_classes: int, n_neighbors: int = 15, available: int | None = None) -> int:
    """Refuse a UMAP fit whose estimated memory exceeds :data:`UMAP_MEMORY_FRACTION` of what is free.

    Args:
        n: Points to fit.
        num_classes: Columns of the input.
        n_neighbors: UMAP neighbourhood size.
        available: Free bytes (default: read now; unknown means no check).

    Returns:
        The estimate in bytes.

    Raises:
        UmapTooLarge: When the estimate is too large (the message says both figures).
    """
    need = umap_bytes(n, num_classes, n_neighbors)
    free = available_bytes() if available is None else available
    if free is not None and need > UMAP_MEMORY_FRACTION * free:
        raise UmapTooLarge(
            f"UMAP on {n:,} points needs about {need / 2**30:.1f} GB; {free / 2**30:.1f} GB of memory is free"
        )
    return need
