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
  ties the file to exact umap/numba versions. Instead the long-lived worker of ``LayoutJob``
  keeps the last few fitted reducers in memory and can ``transform`` new points with them
  (``LayoutJob.request_transform``), e.g. to place a retrained student's probabilities on last
  round's map right away. UMAP's ``transform`` is only faithful while the new points lie where
  the old ones did, so each transform result carries a trustworthiness score
  (``sklearn.manifold.trustworthiness`` on a sample) next to the one of the original fit; the
  page should also request a background refit (``LayoutJob.request``) and switch when it is done.
  Measured here (bench/projection.py, 2 shared cores): transforming 20,000 points took longer
  than refitting them, so the default after retraining is a background refit; ``transform`` is
  for keeping the previous map's positions (animating rounds), not for speed.
* **Large N**: layouts are always computed for every point; ``display_subset`` picks the points
  to draw (all labeled/picked/query points plus a seeded random sample) and says whether it
  subsampled.
* **Background**: ``LayoutJob`` runs UMAP in one long-lived worker process (``spawn``), warmed
  up once (numba compiles umap/pynndescent on the first fit in every new process), reused for
  every request, and never blocks the caller: ``request`` returns the cached UMAP layout if it
  exists, otherwise the PCA layout flagged ``pending=True`` while the worker computes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
import traceback
import types
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.decomposition import PCA

__all__ = [
    "LayoutParams",
    "Layout",
    "LayoutCache",
    "LayoutStatus",
    "LayoutJob",
    "DisplaySubset",
    "array_hash",
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


def _as_probs(probs: npt.ArrayLike) -> np.ndarray:
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
    payload = {"params": params.to_dict(), "input": array_hash(_as_probs(probs)), "version": 1}
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
        tmp_npy = npy.with_name(f".{npy.stem}.{os.getpid()}.{threading.get_ident()}.npy")
        tmp_meta = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.{threading.get_ident()}")
        np.save(tmp_npy, np.ascontiguousarray(layout.coords, dtype=np.float32), allow_pickle=False)
        tmp_meta.write_text(json.dumps(meta, indent=1, default=_json_default))
        os.replace(tmp_npy, npy)
        os.replace(tmp_meta, meta_path)


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
    p = _as_probs(probs)
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

    p = _as_probs(probs)
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

    p = _as_probs(probs)
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
    p = _as_probs(probs)
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
    n: int, max_points: int = 5000, *, keep: Sequence[int] | npt.ArrayLike | None = None, seed: int = 0
) -> DisplaySubset:
    """Pick the points to draw when a pool is too large for a responsive plot.

    Args:
        n: Pool size.
        max_points: Target number of drawn points (``keep`` may exceed it).
        keep: Pool rows always drawn (labeled, picked, current query...).
        seed: Sampling seed (stable across reruns).

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
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), keep_arr, assume_unique=True)
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


# ---------------------------------------------------------------------------------------------
# Background worker
# ---------------------------------------------------------------------------------------------


@dataclass
class LayoutStatus:
    """State of a background layout.

    Attributes:
        key: Layout key.
        state: ``"queued"``, ``"running"``, ``"done"``, ``"failed"`` or ``"superseded"``
            (dropped because a newer request of the same group came in first).
        submitted: ``time.time()`` at submission.
        started: When the worker began, or None.
        seconds: Compute time once done.
        error: Error text when failed.
    """

    key: str
    state: str
    submitted: float
    started: float | None = None
    seconds: float | None = None
    error: str = ""

    def elapsed(self) -> float:
        """Seconds since the worker started it (or since submission while queued)."""
        return time.time() - (self.started or self.submitted)


def _warm_up(metrics: Sequence[str]) -> None:
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(3), 200).astype(np.float32)
    for metric in metrics:
        coords, reducer = umap_layout(x, LayoutParams(metric=metric))  # type: ignore[arg-type]
        reducer.transform(x[:20])


def _worker_main(requests: Any, results: Any, threads: int | None, warm_metrics: Sequence[str]) -> None:
    """Worker process loop: fit/transform UMAP layouts and write them to the cache."""
    if threads:
        for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    # Only small tuples travel on ``results``; never let its feeder thread hold this process
    # at exit if the parent is gone.
    results.cancel_join_thread()
    reducers: OrderedDict[str, Any] = OrderedDict()
    try:
        t0 = time.perf_counter()
        if warm_metrics:
            _warm_up(warm_metrics)
        results.put(("warm", "", time.perf_counter() - t0, ""))
    except Exception:  # noqa: BLE001 - reported to the parent, the loop still serves requests
        results.put(("warm", "", -1.0, traceback.format_exc(limit=3)))
    pending: list[tuple] = []
    while True:
        if not pending:
            pending.append(requests.get())
        while True:  # drain so that superseded requests are skipped
            try:
                pending.append(requests.get_nowait())
            except queue.Empty:
                break
        if any(m is None for m in pending):
            return
        latest: dict[str, str] = {}
        for msg in pending:
            if msg[6] is not None:
                latest[msg[6]] = msg[1]
        msg = pending.pop(0)
        kind, key, probs_file, params_dict, base_key, cache_dir, group = msg
        if group is not None and latest.get(group) != key:
            Path(probs_file).unlink(missing_ok=True)
            results.put(("superseded", key, 0.0, ""))
            continue
        results.put(("started", key, 0.0, ""))
        try:
            t0 = time.perf_counter()
            params = LayoutParams(**params_dict)
            try:
                p = _as_probs(np.load(probs_file, allow_pickle=False))
            finally:
                Path(probs_file).unlink(missing_ok=True)
            meta: dict[str, Any] = {"input_hash": array_hash(p), "n": int(p.shape[0]), "num_classes": int(p.shape[1])}
            note = ""
            if kind == "fit":
                if p.shape[0] >= MIN_UMAP_POINTS:
                    coords, reducer = umap_layout(p, params)
                    reducers[key] = (reducer, p)
                    while len(reducers) > 4:
                        reducers.popitem(last=False)
                    used = "umap"
                else:
                    coords, used = pca_layout(p, params.metric), "pca"
                    note = f"only {p.shape[0]} points: PCA shown instead of UMAP"
            else:
                if base_key not in reducers:
                    raise KeyError(f"no fitted reducer for base layout {base_key} in the worker (refit instead)")
                reducer, base_p = reducers[base_key]
                coords = np.asarray(reducer.transform(p), dtype=np.float32)
                used = "umap-transform"
                base_coords = np.asarray(reducer.embedding_, dtype=np.float32)
                meta["base_key"] = base_key
                meta["trust_transform"] = transform_faithfulness(p, coords, params.metric)
                meta["trust_base"] = transform_faithfulness(base_p, base_coords, params.metric)
                note = (
                    f"placed on an existing UMAP map: trustworthiness {meta['trust_transform']:.3f} "
                    f"vs {meta['trust_base']:.3f} for the original fit"
                )
            layout = Layout(coords, params, key, used, seconds=time.perf_counter() - t0, note=note, meta=meta)
            LayoutCache(cache_dir).save(layout)
            results.put(("done", key, layout.seconds, ""))
        except Exception as exc:  # noqa: BLE001 - any failure is reported, the worker stays up
            results.put(("failed", key, 0.0, f"{type(exc).__name__}: {exc}"))


_MAIN_LOCK = threading.Lock()


@contextlib.contextmanager
def _bare_main() -> Iterator[None]:
    """Hide the caller's ``__main__`` from ``multiprocessing`` while a spawn child starts.

    A ``spawn`` child re-imports ``sys.modules["__main__"]`` by path or name. Under
    ``streamlit run`` that is the running page script, so the worker would execute the whole app
    (and might start another worker). A bare module has neither file nor spec, so the child
    imports only ``activekd_core.projection``.
    """
    with _MAIN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


class LayoutJob:
    """Computes UMAP layouts in one long-lived background process; never blocks the caller.

    Create one per app (e.g. with ``st.cache_resource``) and call ``request`` on every rerun:
    it returns at once with the cached UMAP layout, or with the PCA layout flagged
    ``pending=True`` while the worker computes. The worker process starts on first use and is
    warmed up (one tiny UMAP fit per metric in ``warm_metrics``) so that numba's compilation
    happens before the first real request; it is reused for all later requests and restarted
    if it dies.

    Args:
        cache_dir: Layout cache folder (inside the project folder).
        warm_metrics: Metrics to pre-compile on start (empty: none).
        threads: Thread cap for numba/BLAS in the worker (None: library defaults).
        start: Start the worker now rather than on the first request.
    """

    def __init__(
        self,
        cache_dir: Path | str,
        *,
        warm_metrics: Sequence[Metric] = ("euclidean",),
        threads: int | None = 1,
        start: bool = False,
    ) -> None:
        self.cache = LayoutCache(cache_dir)
        self.warm_metrics = tuple(warm_metrics)
        self.threads = threads
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._status: dict[str, LayoutStatus] = {}
        self._pca_memo: OrderedDict[str, np.ndarray] = OrderedDict()  # stand-ins, reused across reruns
        self._proc: Any = None
        self._requests: Any = None
        self._results: Any = None
        self._listener: threading.Thread | None = None
        self._request_files: set[Path] = set()
        self._closed = False
        self.warm_seconds: float | None = None
        self.started_at: float | None = None
        if start:
            self._ensure_worker()

    # -- worker management -------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._closed:
            raise RuntimeError("projection: LayoutJob is closed")
        if self._proc is not None and self._proc.is_alive():
            return
        self._close_queues()
        self._requests = self._ctx.Queue()
        self._results = self._ctx.Queue()
        # Requests carry a file path and small values only, and their feeder thread is never
        # joined at exit: a worker that died or is still warming up can no longer hold this
        # process open (a queued array larger than the pipe buffer used to block exit forever).
        self._requests.cancel_join_thread()
        self.warm_seconds = None
        self._proc = self._ctx.Process(
            target=_worker_main,
            args=(self._requests, self._results, self.threads, self.warm_metrics),
            name="activekd-layout-worker",
            daemon=True,
        )
        with _bare_main():
            self._proc.start()
        self.started_at = time.time()
        self._listener = threading.Thread(
            target=self._listen, args=(self._proc, self._results), name="activekd-layout-listener", daemon=True
        )
        self._listener.start()

    def _listen(self, proc: Any, results: Any) -> None:
        while True:
            try:
                kind, key, seconds, error = results.get(timeout=0.5)
            except queue.Empty:
                if not proc.is_alive():
                    self._fail_all(f"layout worker exited (code {proc.exitcode})")
                    return
                continue
            except (EOFError, OSError, ValueError):  # ValueError: the queue was closed
                self._fail_all("layout worker connection lost")
                return
            with self._lock:
                if kind == "warm":
                    self.warm_seconds = seconds
                    if error:
                        log.warning("projection: UMAP warm-up failed: %s", error)
                    continue
                st = self._status.get(key)
                if st is None:
                    continue
                if kind == "started":
                    st.state, st.started = "running", time.time()
                elif kind == "done":
                    st.state, st.seconds = "done", seconds
                elif kind == "failed":
                    st.state, st.error = "failed", error
                elif kind == "superseded":
                    st.state = "superseded"

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            for st in self._status.values():
                if st.state in ("queued", "running"):
                    st.state, st.error = "failed", reason

    @property
    def worker_alive(self) -> bool:
        """Whether the worker process is running."""
        return self._proc is not None and self._proc.is_alive()

    @property
    def is_warm(self) -> bool:
        """Whether the worker finished its warm-up (numba compiled)."""
        return self.worker_alive and self.warm_seconds is not None

    # -- requests ----------------------------------------------------------------------------

    def _submit(
        self, kind: str, key: str, p: np.ndarray, params: LayoutParams, base_key: str | None, group: str | None
    ) -> None:
        with self._lock:
            st = self._status.get(key)
            if st is not None and st.state in ("queued", "running"):
                return
            self._status[key] = LayoutStatus(key=key, state="queued", submitted=time.time())
        self._ensure_worker()
        probs_file = self._write_request(key, p)
        self._requests.put((kind, key, str(probs_file), asdict(params), base_key, str(self.cache.root), group))

    def _write_request(self, key: str, p: np.ndarray) -> Path:
        """Write a request's probabilities where the worker reads them (it deletes the file)."""
        folder = self.cache.root / "requests"
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{key}-{os.getpid()}-{uuid.uuid4().hex[:12]}.npy"
        tmp = dest.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(p, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, dest)
        with self._lock:
            if len(self._request_files) > 64:  # the worker deletes what it read
                self._request_files = {f for f in self._request_files if f.exists()}
            self._request_files.add(dest)
        return dest

    def _close_queues(self) -> None:
        """Release the queues of a previous (dead or closed) worker without waiting on them."""
        for q in (self._requests, self._results):
            if q is None:
                continue
            with contextlib.suppress(Exception):
                q.cancel_join_thread()
            with contextlib.suppress(Exception):
                q.close()
        self._requests = self._results = None

    def _stand_in(self, p: np.ndarray, params: LayoutParams, key: str, note: str) -> Layout:
        t0 = time.perf_counter()
        with self._lock:
            coords = self._pca_memo.get(key)
        if coords is None:
            coords = pca_layout(p, params.metric)
            with self._lock:
                self._pca_memo[key] = coords
                while len(self._pca_memo) > 8:
                    self._pca_memo.popitem(last=False)
        return Layout(coords, params, key, "pca", pending=True, seconds=time.perf_counter() - t0, note=note)

    def request(
        self, probs: npt.ArrayLike, params: LayoutParams | None = None, *, group: str | None = None, retry: bool = False
    ) -> Layout:
        """Return the requested layout if cached, else the PCA stand-in and start it in the background.

        Args:
            probs: ``(N, C)`` probabilities.
            params: Layout parameters; ``method="pca"`` is computed here at once.
            group: Requests of the same group (e.g. ``"teacher"``) supersede older queued ones
                that have not started yet (a user moving a slider).
            retry: Resubmit a layout that failed before.

        Returns:
            A ``Layout``; ``pending=True`` means PCA coordinates while UMAP is computing
            (check ``status(layout.key)`` or call again later).
        """
        params = params or LayoutParams()
        p = _as_probs(probs)
        if params.method == "pca":
            return compute_layout(p, params)
        key = layout_key(p, params)
        hit = self.cache.load(key)
        if hit is not None:
            return hit
        st = self.status(key)
        if st is not None and st.state == "failed" and not retry:
            return self._stand_in(p, params, key, f"UMAP failed: {st.error}")
        self._submit("fit", key, p, params, None, group)
        return self._stand_in(p, params, key, self._pending_note(key))

    def request_transform(
        self, probs: npt.ArrayLike, base: Layout, *, group: str | None = None
    ) -> Layout:
        """Place new probabilities on an existing UMAP map with the worker's fitted reducer.

        Works only while the worker still holds the reducer of ``base`` (it keeps the last 4
        fits of this session); otherwise the status turns ``failed`` and the caller should rely
        on ``request`` (a refit). See the module notes on faithfulness.

        Args:
            probs: ``(N, C)`` new probabilities (same C as the base fit).
            base: A finished UMAP layout (``method_used == "umap"``).
            group: As in ``request``.

        Returns:
            The cached transform if present, else the PCA stand-in with ``pending=True``.
        """
        if base.method_used != "umap" or base.pending:
            raise ValueError("projection: request_transform needs a finished UMAP layout as base")
        p = _as_probs(probs)
        key = layout_key(p, base.params, base_key=base.key)
        hit = self.cache.load(key)
        if hit is not None:
            return hit
        st = self.status(key)
        if st is not None and st.state == "failed":
            return self._stand_in(p, base.params, key, f"transform unavailable: {st.error}")
        self._submit("transform", key, p, base.params, base.key, group)
        return self._stand_in(p, base.params, key, self._pending_note(key))

    def _pending_note(self, key: str) -> str:
        if not self.is_warm:
            return "UMAP worker is starting (numba compiles once per process); showing PCA meanwhile"
        st = self.status(key)
        if st is not None and st.state == "running":
            return f"computing UMAP ({st.elapsed():.0f} s so far); showing PCA meanwhile"
        return "UMAP queued; showing PCA meanwhile"

    def status(self, key: str) -> LayoutStatus | None:
        """Status of a background layout (a copy), or None if never requested in this session."""
        with self._lock:
            st = self._status.get(key)
            return None if st is None else LayoutStatus(**asdict(st))

    def wait(self, key: str, timeout: float | None = None, poll: float = 0.1) -> Layout | None:
        """Block until a requested layout is done (for scripts, tests and benchmarks).

        Returns:
            The layout, or None on timeout, failure or supersession.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            hit = self.cache.load(key)
            if hit is not None:
                return hit
            st = self.status(key)
            if st is not None and st.state in ("failed", "superseded"):
                return None
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(poll)

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Start the worker if needed and block until its warm-up finished."""
        self._ensure_worker()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.warm_seconds is None:
            if not self.worker_alive or (deadline is not None and time.monotonic() > deadline):
                return False
            time.sleep(0.1)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker process (queued work is dropped)."""
        self._closed = True
        proc = self._proc
        if proc is not None:
            try:
                self._requests.put(None)
            except (OSError, ValueError, AttributeError):
                pass
            proc.join(timeout)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout)
        self._close_queues()
        if self._listener is not None:
            self._listener.join(timeout)
        with self._lock:
            leftovers, self._request_files = self._request_files, set()
        for f in leftovers:
            f.unlink(missing_ok=True)
        self._fail_all("layout worker closed")

    def __enter__(self) -> LayoutJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
