"""Greedy k-center (farthest-first traversal): the kernel behind PCoreSet and CoreSet.

Each pick takes the pool row whose distance to its nearest center (labeled rows plus
earlier picks) is largest::

    pick_t = argmax_{x unpicked, unlabeled} min_{c in labeled + picks_<t} d(x, c)

A running minimum ``md[x]`` holds that nearest-center distance, so a pick costs one pass
over the pool (the published code recomputes distances to *every* center at every step,
which grows with ``k^2``).

Arithmetic (what "exact" means here)
    Points are float32. Half the squared distance to the nearest center is computed in
    float32 as ``|x|^2/2 - max_c (x.c - |c|^2/2)``, where ``x.c`` comes from a BLAS
    matrix-vector product over a *fixed block of rows* (``block_rows`` rows; the last
    block may be shorter), and ``|x|^2`` from ``np.einsum`` once per call. Ties go to the lowest pool index. Scores are the nearest-
    center distance at pick time: the L2 distance for ``"euclidean"``, the cosine
    distance ``1 - cos`` for ``"cosine"`` (rows are L2-normalised first; a zero row stays
    zero). Float32 subnormal entries (``|v| < 1.18e-38``) are flushed to zero in a private
    copy: they change no distance at float32 resolution but make BLAS ~100x slower
    (Dirichlet(0.01) probability rows are full of them).

Two CPU methods, identical picks by construction
    * ``"exact"``: after each pick, update every block with the new center.
    * ``"lazy"`` (default on CPU): ``md`` only ever decreases, so a block's stale maximum is
      an upper bound on its true maximum. The block with the largest (stale) bound is
      brought up to date (all centers it has not seen yet, one ``block @ center`` product
      each -- the very call the exact method makes, on the same rows, the same center
      buffer and the same float32 operations) until the top block is current; its best
      row is then the exact argmax, because every other block's bound is at most that
      value (and on a tie its rows have higher indices). Each (block, center) product is
      computed at most once, so the lazy method never does more arithmetic than the exact
      one; how much less is measured in bench/README.md (``bench/selection.py``).
      Bit-identical products need identical BLAS calls, which is why both methods work on
      the same fixed row blocks (a BLAS matrix-vector product is *not* row-invariant:
      OpenBLAS computes rows in groups of four and a row's last bits depend on its group).

    Lazy seeding (``"lazy"``, above ``_LAZY_SEED_MIN`` labeled rows): seeding every row
    against every labeled row is a GEMM of N x L x D (at ImageNet size, 1.28M x 1,000 x
    1,000: ~80 % of the CPU time). The distance to a *subset* of the labeled rows bounds the
    distance to all of them from above, so one cheap pass computes, per block, an upper
    bound from the ``_BOUND_CENTERS`` labeled rows that are nearest to most of a sample of
    pool rows (plus a float32 rounding margin). A block is seeded (the same
    ``seed_block`` call the exact method makes) only when that bound reaches the top of
    the lazy queue; on ImageNet-size Dirichlet(1) rows about a quarter of the blocks are.

    Both methods run every call with one BLAS thread (``threadpoolctl``): the per-pick
    products are cache-sized calls that gain nothing from threads (a busy shared CPU
    punishes them), multi-threaded OpenBLAS spins idle threads between small seeding GEMMs,
    and a GEMM's last bits depend on its thread count, so one thread keeps exact == lazy
    by construction and the picks independent of the machine's core count. (The kernel
    before issue 14 seeded with all BLAS threads; on near-ties a few ulps apart its picks
    could differ between a 1- and a 2-thread BLAS; ``bench/selection.py --imagenet``.)

    On CUDA (``device="auto"`` when a GPU is present) the exact running minimum runs in
    torch; its float32 rounding differs from the CPU's, so CPU and GPU picks agree except
    on near-ties.

No labeled rows
    With no labeled rows every distance is infinite, so the first pick is row 0 (lowest
    index) unless ``rng`` is given, in which case it is ``rng.integers(n)`` (as in Sener &
    Savarese's CoreSet code); that pick's score is ``inf``.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree
from threadpoolctl import ThreadpoolController

Metric = Literal["euclidean", "cosine"]
Method = Literal["auto", "exact", "lazy"]

METRICS: tuple[str, ...] = ("euclidean", "cosine")
METHODS: tuple[str, ...] = ("auto", "exact", "lazy")
_BLOCK_BYTES = 512 * 1024  # rows per block ~ 512 KiB of points (fits in L2)
_SEED_ROWS = 4096  # pool rows per chunk when seeding from the labeled rows
_SEED_COLS = 1024  # labeled rows per chunk when seeding
_LAZY_SEED_MIN = 64  # lazy seeding only above this many labeled rows (below, the bound costs as much as the seed)
_BOUND_CENTERS = 32  # labeled rows in the bounding subset of lazy seeding
_BOUND_SAMPLE = 4096  # pool rows sampled to choose that subset
_TREE_MAX_DIM = 16  # tree seeding only for low-dimensional points (probabilities over few classes)
_TREE_MIN_LABELED = 4096  # ... and only above this many labeled rows (below, the GEMM is cheap)
_TINY = np.finfo(np.float32).tiny
_ALIGN = 64


def _err(msg: str) -> ValueError:
    return ValueError(f"activekd_core/selection/kcenter.py: {msg}")


def default_block_rows(n_features: int) -> int:
    """Rows per block for ``n_features`` columns: about 512 KiB of float32, a multiple of 16."""
    rows = _BLOCK_BYTES // (4 * max(1, int(n_features)))
    return int(max(16, min(8192, rows // 16 * 16)))


def _aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous float32 array whose data starts on a 64-byte boundary."""
    n = int(np.prod(shape))
    raw = np.empty(n + _ALIGN // 4, dtype=np.float32)
    offset = (-raw.ctypes.data % _ALIGN) // 4
    return raw[offset : offset + n].reshape(shape)


def _prepare_points(points: npt.ArrayLike, metric: str) -> np.ndarray:
    """Float32, C-contiguous, subnormals flushed, rows normalised for cosine.

    Returns the caller's array itself when it already qualifies (no copy: a 100k x 1000
    matrix is 400 MB); copies are 64-byte aligned. Both CPU methods read the same array,
    so their products are bit-identical whatever its alignment.
    """
    x = np.asarray(points)
    if x.ndim != 2:
        raise _err(f"points must be a 2-D array (n_points, n_features), got shape {x.shape}")
    if x.shape[1] == 0:
        raise _err("points have no columns")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise _err(f"points must be real numbers, got dtype {x.dtype}")
    n = x.shape[0]
    step = max(1, (1 << 22) // max(1, x.shape[1]))
    has_subnormal = False
    for s in range(0, n, step):
        chunk = x[s : s + step]
        if not np.isfinite(chunk).all():
            bad = s + int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0])
            raise _err(f"points contain NaN or inf (first in row {bad})")
        if not has_subnormal and np.issubdtype(x.dtype, np.floating):
            # float32 subnormals, or float64 values that would become subnormal in float32
            has_subnormal = bool(np.any((chunk != 0) & (np.abs(chunk) < _TINY)))
    ok = x.dtype == np.float32 and x.flags.c_contiguous and not has_subnormal and metric == "euclidean"
    if ok:
        return x
    out = _aligned_empty(x.shape)
    for s in range(0, n, step):
        chunk = np.asarray(x[s : s + step], dtype=np.float32)
        if has_subnormal:
            chunk = np.where(np.abs(chunk) < _TINY, np.float32(0), chunk)
        if metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
            norms[norms == 0] = 1.0
            chunk = chunk / norms[:, None]
        out[s : s + step] = chunk
    return out


def _labeled_rows(labeled: npt.ArrayLike | None, n: int) -> np.ndarray:
    if labeled is None:
        return np.empty(0, dtype=np.int64)
    lab = np.asarray(labeled)
    if lab.dtype == bool:
        if lab.shape != (n,):
            raise _err(f"a boolean labeled mask must have shape ({n},), got {lab.shape}")
        return np.flatnonzero(lab).astype(np.int64)
    lab = lab.reshape(-1)
    if lab.size == 0:
        return np.empty(0, dtype=np.int64)
    if not np.issubdtype(lab.dtype, np.integer):
        if np.issubdtype(lab.dtype, np.floating) and np.all(lab == np.round(lab)):
            lab = lab.astype(np.int64)
        else:
            raise _err(f"labeled must hold integer row indices, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if lab.min() < 0 or lab.max() >= n:
        raise _err(f"labeled indices must lie in [0, {n}), got range [{lab.min()}, {lab.max()}]")
    return np.unique(lab)


class _Blocks:
    """Pool rows in fixed blocks; the one place where distances are computed.

    Stored per row is ``run = max_c (x.c - |c|^2/2)`` over the centers folded in so far, so
    that half the squared distance to the nearest center is ``h = |x|^2/2 - run`` (the
    same value as ``min_c |x - c|^2 / 2``; written this way a (block, center) step is one
    matrix-vector product, one subtraction and one maximum). Masked rows (labeled, picked,
    padding) hold ``run = +inf``.
    """

    def __init__(self, x: np.ndarray, rows: int, k: int, labeled: np.ndarray) -> None:
        n, d = x.shape
        self.blas = ThreadpoolController()
        self.x, self.rows, self.n = x, rows, n
        self.n_blocks = max(1, math.ceil(n / rows))
        size = self.n_blocks * rows
        self.xxh = np.zeros(size, dtype=np.float32)
        self.labeled = labeled
        self.tree_seed = d <= _TREE_MAX_DIM and labeled.size >= _TREE_MIN_LABELED
        sub = self._bound_subset(labeled) if labeled.size > _LAZY_SEED_MIN else None
        bound = np.full(size, -np.inf, dtype=np.float32) if sub is not None else None
        for s in range(0, n, _SEED_ROWS):
            xs = x[s : s + _SEED_ROWS]
            self.xxh[s : s + len(xs)] = np.einsum("ij,ij->i", xs, xs) * np.float32(0.5)
            if sub is not None:  # same pass over the rows: they are in cache
                g = xs @ sub[0].T
                g -= sub[1][None, :]
                bound[s : s + len(xs)] = self.xxh[s : s + len(xs)] - g.max(axis=1)
        if not np.isfinite(self.xxh).all():
            raise _err("points are too large: a squared row norm overflows float32")
        self.bound = bound
        self.run = np.full(size, -np.inf, dtype=np.float32)
        self.run[n:] = np.inf  # padding is never picked
        self.centers = _aligned_empty((max(1, k), d))
        self.cch = np.empty(max(1, k), dtype=np.float32)
        buf = np.empty(rows, dtype=np.float32)
        bounds = [(b * rows, min(n, (b + 1) * rows)) for b in range(self.n_blocks)]
        # views made once: slicing per step costs more than the arithmetic on small blocks
        self._x = [x[s:e] for s, e in bounds]
        self._run = [self.run[b * rows : (b + 1) * rows] for b in range(self.n_blocks)]
        self._xxh = [self.xxh[b * rows : (b + 1) * rows] for b in range(self.n_blocks)]
        self._buf = [buf[: e - s] for s, e in bounds]
        self._rb = [self.run[s:e] for s, e in bounds]

    def _bound_subset(self, labeled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The labeled rows that are nearest to most of an evenly spaced sample of pool rows.

        Distances to a subset of the centers bound the nearest-center distance from above;
        the centers that are nearest to many rows make that bound tight for most rows.
        """
        n = self.x.shape[0]
        sample = np.unique(np.linspace(0, n - 1, min(n, _BOUND_SAMPLE)).astype(np.int64))
        xs = np.asarray(self.x[sample], dtype=np.float32)
        counts = np.zeros(labeled.size, dtype=np.int64)
        for c0 in range(0, labeled.size, _SEED_COLS):
            lab = labeled[c0 : c0 + _SEED_COLS]
            centers = np.asarray(self.x[lab], dtype=np.float32)
            g = xs @ centers.T - np.einsum("ij,ij->i", centers, centers)[None, :] * np.float32(0.5)
            counts[c0 : c0 + lab.size] = np.bincount(np.argmax(g, axis=1), minlength=lab.size)
        chosen = labeled[np.sort(np.argsort(-counts, kind="stable")[:_BOUND_CENTERS])]
        sub = np.ascontiguousarray(self.x[chosen], dtype=np.float32)
        return sub, np.einsum("ij,ij->i", sub, sub) * np.float32(0.5)

    def prepare_seed(self) -> None:
        """Mask the labeled rows and keep them as center chunks (or a k-d tree) for ``seed_block``."""
        self._seed_chunks = []
        self._tree: cKDTree | None = None
        self._llh_max = float(self.xxh[self.labeled].max()) if self.labeled.size else 0.0
        if self.tree_seed:
            self._tree = cKDTree(np.asarray(self.x[self.labeled], dtype=np.float64))
        else:
            for c0 in range(0, self.labeled.size, _SEED_COLS):
                lab = self.labeled[c0 : c0 + _SEED_COLS]
                self._seed_chunks.append((np.ascontiguousarray(self.x[lab]), self.xxh[lab].copy()))
        self.run[self.labeled] = np.inf

    def seed_block(self, b: int) -> None:
        """Fold every labeled row into block ``b`` (one GEMM per chunk of labeled rows).

        Both methods seed through this call, block by block with one BLAS thread, so their
        seeded values are bit-identical: a GEMM's last bits can depend on its shape and
        thread count (OpenBLAS: one thread vs two differ), not on when it runs. One thread
        also makes the picks independent of the machine's core count (multi-threaded
        OpenBLAS calls of this size spin idle threads, which doubled the CPU time).

        With many labeled rows in few dimensions (``tree_seed``: a project with hundreds of
        thousands of labels over ten classes) the GEMM against every labeled row would take
        hours; a k-d tree finds each row's nearest labeled row instead (float64 distances,
        exact), and the row's value is computed against that one center with the same
        float32 formula. Rows of a near-tie between two labeled rows may then hold the
        value of the other one (a few ulps apart), so such picks can differ from the GEMM
        seeding's; exact and lazy still agree, as both seed through this call.
        """
        xb, rb = self._x[b], self._rb[b]
        if self._tree is not None:
            open_rows = np.flatnonzero(rb != np.inf)
            if open_rows.size == 0:
                return
            xo = np.ascontiguousarray(xb[open_rows])
            _, nn = self._tree.query(xo.astype(np.float64), k=1)
            near = self.labeled[np.asarray(nn, dtype=np.int64)]
            g = np.einsum("ij,ij->i", xo, np.asarray(self.x[near], dtype=np.float32)) - self.xxh[near]
            rb[open_rows] = np.maximum(rb[open_rows], g)
            return
        for centers, llh in self._seed_chunks:
            g = xb @ centers.T
            g -= llh[None, :]
            np.maximum(rb, g.max(axis=1), out=rb)

    def seed_bounds(self) -> np.ndarray:
        """Per block, an upper bound of ``h`` before seeding (+inf where nothing bounds it).

        ``h`` against a subset of the labeled rows is at least ``h`` against all of them; a
        margin covers float32 rounding (a dot product over D terms is off by at most
        ``D * 2^-24`` of ``|x| |c|``; generous factor 4), so a skipped block can never hold
        the pick.
        """
        if self.bound is None:
            return np.full(self.n_blocks, np.inf)
        d = self.x.shape[1]
        cmax = self._llh_max
        bound = self.bound.astype(np.float64)
        bound[self.labeled] = -np.inf
        xxh = self.xxh.astype(np.float64)
        margin = 4.0 * (d + 4) * 2.0**-24 * (2.0 * np.sqrt(xxh * cmax) + cmax + xxh) + 1e-30
        return (bound + margin).reshape(self.n_blocks, self.rows).max(axis=1)

    def half_sq(self) -> np.ndarray:
        """``h`` for every row (padded length; masked rows ``-inf``)."""
        return self.xxh - self.run

    def add_center(self, j: int, row: int) -> float:
        """Store pool row ``row`` as center ``j``, mask it, return its squared distance at pick time."""
        score = 2.0 * float(self.xxh[row] - self.run[row])
        self.centers[j] = self.x[row]
        self.cch[j] = self.xxh[row]
        self.run[row] = np.inf
        return score

    def apply(self, b: int, j: int) -> None:
        """Fold center ``j`` into block ``b`` (the only per-pick distance computation)."""
        buf = self._buf[b]
        np.matmul(self._x[b], self.centers[j], out=buf)
        np.subtract(buf, self.cch[j], out=buf)
        np.maximum(self._rb[b], buf, out=self._rb[b])

    def block_best(self, b: int) -> tuple[float, int]:
        """``(max h, its row)`` over block ``b`` (first maximum: lowest row)."""
        h = self._xxh[b] - self._run[b]
        i = int(np.argmax(h))
        return float(h[i]), b * self.rows + i


def _run_exact(blocks: _Blocks, k: int, first: int | None) -> tuple[np.ndarray, np.ndarray]:
    blocks.prepare_seed()
    for b in range(blocks.n_blocks):
        blocks.seed_block(b)
    picks = np.empty(k, dtype=np.int64)
    sq = np.empty(k, dtype=np.float64)
    for j in range(k):
        row = first if (j == 0 and first is not None) else int(np.argmax(blocks.half_sq()))
        picks[j] = row
        sq[j] = blocks.add_center(j, row)
        if j + 1 < k:
            for b in range(blocks.n_blocks):
                blocks.apply(b, j)
    return picks, sq


def _run_lazy(blocks: _Blocks, k: int, first: int | None) -> tuple[np.ndarray, np.ndarray]:
    picks = np.empty(k, dtype=np.int64)
    sq = np.empty(k, dtype=np.float64)
    r = blocks.rows
    blocks.prepare_seed()
    seeded = np.zeros(blocks.n_blocks, dtype=bool)
    if blocks.bound is None:  # few labeled rows: seed every block now, bounds are then exact
        for b in range(blocks.n_blocks):
            blocks.seed_block(b)
        seeded[:] = True
        ub = blocks.half_sq().reshape(blocks.n_blocks, r).max(axis=1)
    else:  # lazy seeding: a block is seeded only when its bound reaches the top
        ub = blocks.seed_bounds()
    seen = np.zeros(blocks.n_blocks, dtype=np.int64)  # centers folded into each block
    for j in range(k):
        if j == 0 and first is not None:
            row = first
        else:
            while True:
                b = int(np.argmax(ub))
                if seeded[b] and seen[b] == j:
                    break
                if not seeded[b]:  # seeded values bound h from above until the picks are folded in
                    blocks.seed_block(b)
                    seeded[b] = True
                    ub[b] = blocks.block_best(b)[0]
                    continue
                for c in range(int(seen[b]), j):
                    blocks.apply(b, c)
                seen[b] = j
                ub[b] = blocks.block_best(b)[0]
            row = blocks.block_best(b)[1]
        picks[j] = row
        sq[j] = blocks.add_center(j, row)
        ub[row // r] = blocks.block_best(row // r)[0]
    blocks.seeded_blocks = int(seeded.sum())
    return picks, sq


def _nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver is loaded (Linux), without importing torch."""
    return os.path.exists("/proc/driver/nvidia/version") or bool(os.environ.get("CUDA_VISIBLE_DEVICES", "").strip())


def _resolve_device(device: str | None) -> str:
    # The project's one device picker is devices.pick_device; this kernel keeps its own tiny
    # string resolver because it must stay torch-free (devices imports torch) and runs only
    # on "cpu" or "cuda[:i]" (no MPS path).
    dev = (device or "auto").strip().lower()
    if dev == "auto":
        if "torch" not in sys.modules and not _nvidia_driver_present():
            return "cpu"  # no GPU to find: do not pay torch's import (~1.5 s, ~650 MB) in a selection worker
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a project requirement
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise _err(f"device {device!r} requested but CUDA is not available here")
        return dev
    if dev != "cpu":
        raise _err(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    return dev


def _run_torch(x: np.ndarray, labeled: np.ndarray, k: int, first: int | None, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact running minimum on a torch device (CUDA): one matrix-vector product per pick."""
    import torch

    n = x.shape[0]
    with torch.no_grad():
        xt = torch.from_numpy(x).to(device)
        xx = (xt * xt).sum(dim=1)
        md = torch.full((n,), math.inf, dtype=torch.float32, device=device)
        if labeled.size:
            lab_t = torch.from_numpy(labeled).to(device)
            for c0 in range(0, labeled.size, _SEED_COLS * 4):
                cent = xt[lab_t[c0 : c0 + _SEED_COLS * 4]]
                cc = xx[lab_t[c0 : c0 + _SEED_COLS * 4]]
                step = max(1, (1 << 28) // max(1, cent.shape[0]))  # ~1 GiB temp
                for s in range(0, n, step):
                    d2 = (xx[s : s + step, None] + cc[None, :]) - 2.0 * (xt[s : s + step] @ cent.T)
                    md[s : s + step] = torch.minimum(md[s : s + step], d2.min(dim=1).values)
            md[lab_t] = -math.inf
        picks = np.empty(k, dtype=np.int64)
        sq = torch.empty(k, dtype=torch.float32, device=device)
        for j in range(k):
            row = first if (j == 0 and first is not None) else int(torch.argmax(md).item())
            picks[j] = row
            sq[j] = md[row]
            md[row] = -math.inf
            if j + 1 < k:
                c = xt[row]
                d2 = (xx + xx[row]) - 2.0 * torch.mv(xt, c)
                torch.minimum(md, d2, out=md)
        return picks, sq.double().cpu().numpy()


def kcenter_greedy(
    points: npt.ArrayLike,
    labeled: npt.ArrayLike | None,
    k: int,
    metric: Metric = "euclidean",
    return_scores: bool = False,
    *,
    device: str = "auto",
    method: Method = "auto",
    block_rows: int | None = None,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Greedy k-center picks (farthest-first), seeded with every labeled row.

    Args:
        points: ``(N, D)`` array (probability vectors for PCoreSet, features for CoreSet).
            Used in float32; not modified.
        labeled: Labeled row indices (or a boolean mask of length N); they seed the centers
            and are never picked. ``None`` or empty: no seeds (see the module notes).
        k: Number of picks; capped at the number of unlabeled rows.
        metric: ``"euclidean"`` (L2) or ``"cosine"`` (L2 on normalised rows, scored as
            ``1 - cos``).
        return_scores: Also return each pick's score: its distance to the nearest center
            at pick time.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda[:i]"``.
        method: CPU only: ``"lazy"`` (default for ``"auto"``) or ``"exact"``; both give
            identical picks (module notes). Ignored on CUDA (always the exact loop).
        block_rows: Rows per block on CPU (default ~512 KiB of points per block). Picks
            depend on it only through float32 rounding, and ``exact``/``lazy`` agree for
            any given value.
        rng: Only used when there are no labeled rows: the first pick is
            ``rng.integers(N)`` instead of row 0.

    Returns:
        Pool indices (int64) in pick order, and with ``return_scores`` also the float64
        scores (L2 distance, or cosine distance, to the nearest earlier center).

    Raises:
        ValueError: Bad shapes, indices, metric, method, device or non-finite points.
    """
    if metric not in METRICS:
        raise _err(f"metric must be one of {METRICS}, got {metric!r}")
    if method not in METHODS:
        raise _err(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise _err(f"k must be an integer, got {k!r}")
    if k < 0:
        raise _err(f"k must be >= 0, got {k}")
    x = _prepare_points(points, metric)
    n = x.shape[0]
    lab = _labeled_rows(labeled, n)
    k = int(min(int(k), n - lab.size))
    if k <= 0:
        empty = np.empty(0, dtype=np.int64)
        return (empty, np.empty(0, dtype=np.float64)) if return_scores else empty
    first: int | None = None
    if lab.size == 0 and rng is not None:
        first = int(np.random.default_rng(rng).integers(n))
    dev = _resolve_device(device)
    if dev.startswith("cuda"):
        picks, sq = _run_torch(x, lab, k, first, dev)
    else:
        rows = default_block_rows(x.shape[1]) if block_rows is None else int(block_rows)
        if rows < 1:
            raise _err(f"block_rows must be >= 1, got {block_rows}")
        blocks = _Blocks(x, rows, k, lab)
        run = _run_exact if method == "exact" else _run_lazy
        # Block products are small (cache-sized) calls: one BLAS thread avoids a thread
        # hand-off per call and behaves far better on a shared, busy CPU; it also makes the
        # seeding GEMMs' last bits independent of the machine's core count.
        with blocks.blas.limit(limits=1, user_api="blas"):
            picks, sq = run(blocks, k, first)
    if not return_scores:
        return picks
    sq = np.maximum(sq, 0.0)
    scores = sq / 2.0 if metric == "cosine" else np.sqrt(sq)
    return picks, scores.astype(np.float64)
