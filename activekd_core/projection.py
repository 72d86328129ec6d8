"""2-D layouts of probability vectors for the Explore page: PCA, UMAP, ternary coordinates.

Layouts are computed from ``(N, C)`` probability arrays (teacher or student) in pool row order
and return ``(N, 2)`` float32 coordinates in the same order.

Decisions (also the page's help text):

* **PCA** (scikit-learn) is instant and is what the page shows while UMAP computes.
* **UMAP** (umap-learn) supports ``metric="euclidean"`` on the probabilities and
  ``metric="hellinger"`` (umap's own Hellinger distance, the natural metric between
  distributions). For PCA, ``"hellinger"`` means PCA of ``sqrt(p)`` (Euclidean distance there is
  ``sqrt(2)`` times the Hellinger distance). UMAP runs seeded (``random_state``), hence
  single-threaded and reproducible.
* **Disk cache**: ``<cache_dir>/<key>.npy`` (coords, loaded with ``allow_pickle=False``) plus
  ``<key>.json`` (method, parameters, input hash, timing). The key is a SHA-256 over the method,
  its parameters and the content hash of the input array, so any change in teacher, student or
  parameters gives a new key; stale files are simply not used.
* **No pickled reducers on disk.** A fitted UMAP reducer could be saved with joblib, but loading
  a pickle runs code from the project folder (unsafe if a folder is shared or downloaded) and
  ties the file to exact umap/numba versions; the layout worker keeps recent reducers in memory
  instead.
* **Large N**: ``display_subset`` picks the points to draw (all labeled/picked/query points
  plus a seeded random sample) and says whether it subsampled. Up to
  ``projection_sample.LARGE_POOL`` images layouts cover every point; above it they are fitted
  on a seeded sample and cover the drawn points only (:mod:`activekd_core.projection_sample`).
* **Background**: the long-lived UMAP worker process (``LayoutJob``, ``LayoutStatus``) lives in
  :mod:`activekd_core.layout_worker`, a service above this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.decomposition import PCA

from activekd_core.atomic import atomic_path, atomic_write_text

__all__ = [
    "LayoutParams",
    "Layout",
    "LayoutCache",
    "DisplaySubset",
    "array_hash",
    "as_probs",
    "layout_key",
    "pca_layout",
    "umap_layout",
    "compute_layout",
    "transform_faithfulness",
    "display_subset",
    "ternary_xy",
    "TERNARY_VERTICES",
]

log = logging.getLogger(__name__)

Method = Literal["pca", "umap"]
Metric = Literal["euclidean", "hellinger"]
METHODS = ("pca", "umap")
METRICS = ("euclidean", "hellinger")
MIN_UMAP_POINTS = 5
TRUST_SAMPLE = 1000

TERNARY_VERTICES = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3.0) / 2.0]])
"""2-D corners of the ternary triangle for classes 0, 1, 2."""


# ---------------------------------------------------------------------------------------------
# Parameters, keys, cache
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayoutParams:
    """How to lay out probability vectors in 2-D.

    Attributes:
        method: ``"pca"`` or ``"umap"``.
        metric: ``"euclidean"`` or ``"hellinger"``.
        n_neighbors: UMAP neighbourhood size (clamped to ``N - 1`` for small pools).
        min_dist: UMAP minimum distance between embedded points.
        seed: Random seed (UMAP ``random_state``).
    """

    method: Method = "umap"
    metric: Metric = "euclidean"
    n_neighbors: int = 15
    min_dist: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"projection: method must be one of {METHODS}, got {self.method!r}")
        if self.metric not in METRICS:
            raise ValueError(f"projection: metric must be one of {METRICS}, got {self.metric!r}")
        if int(self.n_neighbors) < 2:
            raise ValueError(f"projection: n_neighbors must be >= 2, got {self.n_neighbors}")
        if not 0.0 <= float(self.min_dist) <= 1.0:
            raise ValueError(f"projection: min_dist must lie in [0, 1], got {self.min_dist}")

    def to_dict(self) -> dict[str, Any]:
        """Parameters that determine the result (PCA ignores the UMAP-only ones)."""
        if self.method == "pca":
            return {"method": "pca", "metric": self.metric}
        return {
            "method": "umap",
            "metric": self.metric,
            "n_neighbors": int(self.n_neighbors),
            "min_dist": float(self.min_dist),
            "seed": int(self.seed),
        }

    def as_pca(self) -> LayoutParams:
        """The PCA stand-in for these parameters (same metric)."""
        return LayoutParams(method="pca", metric=self.metric, seed=self.seed)


@dataclass
class Layout:
    """A 2-D layout of a pool.

    Attributes:
        coords: ``(N, 2)`` float32 coordinates in pool row order.
        params: The parameters asked for.
        key: Cache key of the requested layout (see ``layout_key``).
        method_used: What produced ``coords``: ``"pca"``, ``"umap"`` or ``"umap-transform"``.
        pending: True when ``coords`` is a PCA stand-in while the requested UMAP layout is
            being computed in the background.
        seconds: Compute time of ``coords`` (0 when read from cache).
        from_cache: True when read from the disk cache.
        note: Human-readable remark (fallbacks, errors, transform quality).
        meta: Extra metadata (input hash, trustworthiness, base key of a transform...).
    """

    coords: np.ndarray
    params: LayoutParams
    key: str
    method_used: str
    pending: bool = False
    seconds: float = 0.0
    from_cache: bool = False
    note: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.coords.shape[0])


def as_probs(probs: npt.ArrayLike) -> np.ndarray:
    """Validate ``(N, C)`` probabilities and return them as contiguous float32 (tiny negatives clipped)."""
    arr = np.asarray(probs)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"projection: probs must be a 2-D (N, C) array, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError("projection: probs holds NaN or infinite values")
    if arr.size and arr.min() < -1e-6:
        raise ValueError(f"projection: probs holds negative values (min {arr.min():.3g}); pass probabilities")
    return np.clip(arr, 0.0, None)


def array_hash(arr: npt.ArrayLike) -> str:
    """SHA-256 of an array's dtype, shape and bytes (as float32 C-order for probabilities)."""
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def layout_key(probs: npt.ArrayLike, params: LayoutParams, *, base_key: str | None = None) -> str:
    """Cache key of a layout: hash of (method, parameters, input content[, base reducer key]).

    Args:
        probs: ``(N, C)`` probabilities (hashed as float32).
        params: Layout parameters.
        base_key: For a transform onto an existing UMAP fit, that fit's key.

    Returns:
        A 32-hex-digit key.
    """
    payload = {"params": params.to_dict(), "input": array_hash(as_probs(probs)), "version": 1}
    if base_key is not None:
        payload["transform_of"] = base_key
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


class LayoutCache:
    """Layouts on disk as ``<key>.npy`` + ``<key>.json`` in one folder.

    Args:
        root: Folder (created on first save).
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def paths(self, key: str) -> tuple[Path, Path]:
        """The ``.npy`` and ``.json`` paths of a key."""
        if not key or any(ch not in "0123456789abcdef" for ch in key):
            raise ValueError(f"projection: invalid layout key {key!r}")
        return self.root / f"{key}.npy", self.root / f"{key}.json"

    def load(self, key: str) -> Layout | None:
        """Read a layout, or None when absent or unreadable (a broken file is logged and ignored)."""
        npy, meta_path = self.paths(key)
        if not (npy.exists() and meta_path.exists()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            coords = np.load(npy, allow_pickle=False)
            if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] != int(meta["n"]):
                raise ValueError(f"shape {coords.shape} does not match n={meta['n']}")
            params = LayoutParams(**meta["params"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("projection: ignoring unreadable cached layout %s: %s", npy, exc)
            return None
        return Layout(
            coords=coords.astype(np.float32, copy=False),
            params=params,
            key=key,
            method_used=str(meta.get("method_used", params.method)),
            seconds=0.0,
            from_cache=True,
            note=str(meta.get("note", "")),
            meta=dict(meta.get("meta", {}), compute_seconds=meta.get("seconds")),
        )

    def save(self, layout: Layout) -> None:
        """Write a layout atomically (temporary file then rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        npy, meta_path = self.paths(layout.key)
        meta = {
            "n": layout.n,
            "params": asdict(layout.params),
            "method_used": layout.method_used,
            "seconds": layout.seconds,
            "note": layout.note,
            "meta": layout.meta,
            "created": time.time(),
        }
        with atomic_path(npy, suffix=".npy") as tmp_npy:
            np.save(tmp_npy, np.ascontiguousarray(layout.coords, dtype=np.float32), allow_pickle=False)
        atomic_write_text(meta_path, json.dumps(meta, indent=1, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


# ---------------------------------------------------------------------------------------------
# Synchronous layouts
# ---------------------------------------------------------------------------------------------


def _metric_input(p: np.ndarray, metric: str) -> np.ndarray:
    return np.sqrt(p) if metric == "hellinger" else p


def pca_layout(probs: npt.ArrayLike, metric: Metric = "euclidean") -> np.ndarray:
    """2-D PCA of probability vectors (of ``sqrt(p)`` for ``metric="hellinger"``).

    Args:
        probs: ``(N, C)`` probabilities.
        metric: ``"euclidean"`` or ``"hellinger"``.

    Returns:
        ``(N, 2)`` float32; missing components (``N < 2`` or ``C < 2``) are zeros.
    """
    p = as_probs(probs)
    x = _metric_input(p, metric)
    out = np.zeros((p.shape[0], 2), dtype=np.float32)
    k = min(2, p.shape[0], p.shape[1])
    if k >= 1 and p.shape[0] >= 2:
        out[:, :k] = PCA(n_components=k, svd_solver="full").fit_transform(x.astype(np.float64))
    return out


def umap_layout(probs: npt.ArrayLike, params: LayoutParams) -> tuple[np.ndarray, Any]:
    """Fit UMAP on probability vectors (in this process; numba compiles on the first call).

    Args:
        probs: ``(N, C)`` probabilities with ``N >= 5``.
        params: Layout parameters (``method`` is ignored).

    Returns:
        ``(coords, reducer)``: ``(N, 2)`` float32 and the fitted ``umap.UMAP``.
    """
    import warnings

    from activekd_core.numba_cache import configure_numba_cache, enable_umap_caching

    if configure_numba_cache() is not None:  # before numba's first import here: code kept in the app's home
        enable_umap_caching()  # a restarted worker loads umap's compiled code instead of recompiling
    import umap  # heavy import (numba); only where UMAP is actually run

    p = as_probs(probs)
    if p.shape[0] < MIN_UMAP_POINTS:
        raise ValueError(f"projection: UMAP needs at least {MIN_UMAP_POINTS} points, got {p.shape[0]}")
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=int(max(2, min(params.n_neighbors, p.shape[0] - 1))),
        min_dist=float(params.min_dist),
        metric=params.metric,
        random_state=int(params.seed),
        n_jobs=1,
        transform_seed=int(params.seed),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        warnings.filterwarnings("ignore", message=".*gradient function.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        coords = reducer.fit_transform(p)
    return np.asarray(coords, dtype=np.float32), reducer


def transform_faithfulness(
    probs: npt.ArrayLike, coords: npt.ArrayLike, metric: Metric = "euclidean", *, n_neighbors: int = 10, seed: int = 0
) -> float:
    """Trustworthiness (scikit-learn) of a 2-D layout on a sample of at most 1000 points.

    1.0 means every point's 2-D neighbours are also its neighbours in probability space.

    Args:
        probs: ``(N, C)`` probabilities.
        coords: ``(N, 2)`` layout.
        metric: Distance in probability space (Hellinger via Euclidean on ``sqrt(p)``).
        n_neighbors: Neighbourhood size of the score.
        seed: Sampling seed.

    Returns:
        Trustworthiness in ``[0, 1]`` (NaN when there are too few points).
    """
    from sklearn.manifold import trustworthiness

    p = as_probs(probs)
    c = np.asarray(coords, dtype=np.float64)
    n = p.shape[0]
    if n != c.shape[0]:
        raise ValueError(f"projection: probs has {n} rows but coords has {c.shape[0]}")
    k = min(n_neighbors, n // 2 - 1)
    if k < 1:
        return float("nan")
    idx = np.arange(n)
    if n > TRUST_SAMPLE:
        idx = np.sort(np.random.default_rng(seed).choice(n, TRUST_SAMPLE, replace=False))
        k = min(n_neighbors, TRUST_SAMPLE // 2 - 1)
    return float(trustworthiness(_metric_input(p[idx], metric), c[idx], n_neighbors=k))


def compute_layout(
    probs: npt.ArrayLike, params: LayoutParams | None = None, *, cache_dir: Path | str | None = None
) -> Layout:
    """Compute (or read from cache) a layout in this process, blocking.

    Use ``LayoutJob`` from a UI. Pools smaller than 5 points get the PCA layout with a note.

    Args:
        probs: ``(N, C)`` probabilities.
        params: Layout parameters (default: UMAP, Euclidean, 15 neighbours).
        cache_dir: Optional cache folder.

    Returns:
        The layout.
    """
    params = params or LayoutParams()
    p = as_probs(probs)
    key = layout_key(p, params)
    cache = LayoutCache(cache_dir) if cache_dir is not None else None
    if cache is not None and (hit := cache.load(key)) is not None:
        return hit
    t0 = time.perf_counter()
    note = ""
    meta: dict[str, Any] = {"input_hash": array_hash(p), "n": int(p.shape[0]), "num_classes": int(p.shape[1])}
    if params.method == "umap" and p.shape[0] >= MIN_UMAP_POINTS:
        coords, _ = umap_layout(p, params)
        used = "umap"
    else:
        if params.method == "umap":
            note = f"only {p.shape[0]} points: PCA shown instead of UMAP"
        coords = pca_layout(p, params.metric)
        used = "pca"
    layout = Layout(coords, params, key, used, seconds=time.perf_counter() - t0, note=note, meta=meta)
    if cache is not None:
        cache.save(layout)
    return layout


# ---------------------------------------------------------------------------------------------
# Display helpers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisplaySubset:
    """Which points to draw.

    Attributes:
        indices: Sorted pool rows to draw.
        n_total: Pool size.
        subsampled: True when fewer than ``n_total`` points are drawn.
    """

    indices: np.ndarray
    n_total: int
    subsampled: bool

    @property
    def n_shown(self) -> int:
        """Number of points drawn."""
        return int(self.indices.size)

    def caption(self) -> str:
        """A one-line caption for the page."""
        if not self.subsampled:
            return f"all {self.n_total:,} images shown"
        return f"{self.n_shown:,} of {self.n_total:,} images shown (random sample plus every labeled/picked image)"


def display_subset(
    n: int, max_points: int = 5000, *, keep: Sequence[int] | npt.ArrayLike | None = None, seed: int = 0,
    within: npt.ArrayLike | None = None,
) -> DisplaySubset:
    """Pick the points to draw when a pool is too large for a responsive plot.

    Args:
        n: Pool size.
        max_points: Target number of drawn points (``keep`` may exceed it).
        keep: Pool rows always drawn (labeled, picked, current query...).
        seed: Sampling seed (stable across reruns).
        within: Sorted pool rows the random points are drawn from (a large pool's fit rows,
            see :mod:`activekd_core.projection_sample`); default every row.

    Returns:
        A ``DisplaySubset``.
    """
    if n < 0 or max_points < 0:
        raise ValueError(f"projection: need n >= 0 and max_points >= 0, got {n}, {max_points}")
    keep_arr = np.unique(np.asarray([] if keep is None else keep, dtype=np.int64).reshape(-1))
    if keep_arr.size and (keep_arr.min() < 0 or keep_arr.max() >= n):
        raise ValueError(f"projection: keep index out of range [0, {n})")
    if n <= max_points:
        return DisplaySubset(np.arange(n, dtype=np.int64), n, False)
    pool = np.arange(n, dtype=np.int64) if within is None else np.asarray(within, dtype=np.int64).reshape(-1)
    rest = np.setdiff1d(pool, keep_arr, assume_unique=True)
    m = max(0, max_points - keep_arr.size)
    sample = np.random.default_rng(seed).choice(rest, size=min(m, rest.size), replace=False)
    idx = np.sort(np.concatenate([keep_arr, sample.astype(np.int64)]))
    return DisplaySubset(idx, n, idx.size < n)


def ternary_xy(probs: npt.ArrayLike) -> np.ndarray:
    """Barycentric -> 2-D coordinates for 3-class probabilities.

    Class 0 sits at (0, 0), class 1 at (1, 0), class 2 at (0.5, sqrt(3)/2)
    (``TERNARY_VERTICES``); a point is ``p @ TERNARY_VERTICES``.

    Args:
        probs: ``(N, 3)`` probabilities.

    Returns:
        ``(N, 2)`` float64.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"projection: ternary coordinates need (N, 3) probabilities, got shape {p.shape}")
    s = p.sum(axis=1, keepdims=True)
    p = np.divide(p, s, out=np.full_like(p, 1 / 3), where=s > 0)
    return p @ TERNARY_VERTICES
