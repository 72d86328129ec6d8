"""Resumable on-disk store for per-image feature matrices (teacher image embeddings).

Layout of one cache entry, ``<root>/<key>/``:

- ``features.partial.npy``: a float32/float16 ``.npy`` memmap ``(N, D)`` (rows in pool
  order) being filled while extraction runs;
- ``order.npy``: the encode order, a seeded permutation of the pool rows (written once,
  before the first row), so the first rows encoded are a uniform random sample of the
  pool. An entry started before encode orders existed has no such file and no ``order``
  in its progress record: its order is the pool order, and it resumes in that order;
- ``progress.json``: ``{"done": positions_completed, "order": {"seed": s} or None, ...}``,
  rewritten atomically after each batch has been written and flushed, so an interrupted
  run resumes at position ``done`` of the same order. The rows at positions ``< done``
  are final: :meth:`FeatureCache.partial` reads them, without the writer's lock, while
  extraction continues;
- ``features.npy`` + ``meta.json``: the finished matrix. The partial file is renamed to
  ``features.npy`` and ``meta.json`` is written (atomically) only after the last row;
  an entry is *complete* only when ``meta.json`` exists. Nothing half-written is ever
  read as complete.

``meta.json``, the completion mark, is written with :func:`activekd_core.atomic.atomic_write_text`
(file and folder synced, so a complete entry survives a power cut). The per-batch
``progress.json`` and the two renames of the partial matrix are steps of the resume
protocol and stay plain renames: the rows are flushed before their progress record, and a
record lost in a power cut only makes the next run encode those rows again, so syncing
the record after every batch would slow extraction for nothing.

The key is a hash of what produced the features (model name, weights identity, image
preprocessing, pool fingerprint, storage dtype), so that changing prompts reuses the
entry and changing the model, weights or images makes a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from activekd_core.atomic import atomic_write_text, fsync_dir

try:  # POSIX advisory locks; on other platforms concurrent extraction is not guarded.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

FEATURES = "features.npy"
PARTIAL = "features.partial.npy"
PROGRESS = "progress.json"
META = "meta.json"
ORDER = "order.npy"
LOCK = "lock"
LOCK_POLL_S = 0.5  # how often a waiting reader/writer looks at a locked entry again


def default_cache_root() -> Path:
    """``$ACTIVEKD_CACHE/features`` or ``~/.cache/activekd/features``."""
    base = os.environ.get("ACTIVEKD_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "activekd") / "features"


def cache_key(fields: Mapping[str, Any]) -> str:
    """Stable short hash of JSON-serialisable key fields."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, default=str)


def encode_order(n_rows: int, seed: int | None) -> np.ndarray:
    """The order in which rows are encoded: a seeded permutation of ``range(n_rows)``, or pool order for None."""
    if seed is None:
        return np.arange(int(n_rows), dtype=np.int64)
    return np.random.default_rng(int(seed)).permutation(int(n_rows)).astype(np.int64)


@dataclass(frozen=True)
class ExtractionStatus:
    """How far an unfinished entry is (read from its progress record; no features read).

    Attributes:
        done: Rows written and final.
        total: Rows of the pool.
        rate: Rows per second of the run writing them (None before its first batch).
        seed: Seed of the encode order (None: pool order).
    """

    done: int
    total: int
    rate: float | None
    seed: int | None


@dataclass(frozen=True)
class PartialFeatures:
    """The rows of an unfinished entry that are written and final.

    Attributes:
        rows: Their pool rows, ascending (int64).
        features: Their features ``(len(rows), D)``, in the order of ``rows`` (a copy).
        status: The progress they were read at.
    """

    rows: np.ndarray
    features: np.ndarray
    status: ExtractionStatus


def _status_of(state: Mapping[str, Any]) -> ExtractionStatus | None:
    """The :class:`ExtractionStatus` a progress record describes (None when it is not one)."""
    try:
        done, total = int(state["done"]), int(state["n_rows"])
        order = state.get("order")
        seed = None if order is None else int(order["seed"])
    except (KeyError, TypeError, ValueError):
        return None
    rate = None
    try:
        run = state["run"]
        new, spent = done - int(run["from"]), float(state["updated"]) - float(run["started"])
        rate = new / spent if new > 0 and spent > 0 else None
    except (KeyError, TypeError, ValueError):
        pass
    return ExtractionStatus(done=done, total=total, rate=rate, seed=seed)


class FeatureCache:
    """One cache entry for a feature matrix, identified by its key fields.

    Args:
        root: Folder holding all entries (e.g. ``<project>/cache/features``).
        fields: What produced the features; hashed into the entry's folder name.
    """

    def __init__(self, root: Path | str, fields: Mapping[str, Any]) -> None:
        self.fields = dict(fields)
        self.key = cache_key(self.fields)
        self.dir = Path(root) / self.key

    @property
    def complete(self) -> bool:
        """True once every row was written and the entry was finalised."""
        return (self.dir / META).is_file() and (self.dir / FEATURES).is_file()

    def meta(self) -> dict[str, Any]:
        """The finished entry's metadata (key fields, shape, dtype, timing, failed rows)."""
        return json.loads((self.dir / META).read_text())

    def load(self) -> np.memmap:
        """Memory-map the finished ``(N, D)`` matrix read-only.

        Raises:
            FileNotFoundError: If the entry is not complete.
        """
        if not self.complete:
            raise FileNotFoundError(f"feature cache {self.dir} is not complete")
        return np.load(self.dir / FEATURES, mmap_mode="r")

    def progress(self) -> dict[str, Any] | None:
        """The progress record of an unfinished entry, or None."""
        path = self.dir / PROGRESS
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def status(self) -> ExtractionStatus | None:
        """How far an unfinished entry is, or None (complete, or nothing written yet)."""
        state = self.progress()
        return None if state is None or self.complete else _status_of(state)

    def partial(self) -> PartialFeatures | None:
        """A read-only copy of the rows written so far while extraction runs (no lock taken).

        Rows at positions below the progress record's ``done`` are final: the writer
        flushes them before it records them. Rows are returned in pool order with their
        pool indices, whatever order they were encoded in.

        Returns:
            The finished rows (possibly none), or None when the entry is complete, has no
            progress record, or its files cannot be read as the record describes.
        """
        state = self.progress()
        status = None if state is None or self.complete else _status_of(state)
        if state is None or status is None:
            return None
        if status.seed is None:
            rows = np.arange(status.done, dtype=np.int64)
        else:
            order = self._read_order(status.total)
            if order is None:
                return None
            rows = np.sort(order[: status.done])
        try:
            mm = np.load(self.dir / PARTIAL, mmap_mode="r")
        except (OSError, ValueError):
            return None  # e.g. renamed to features.npy a moment ago: the caller finds it complete
        if mm.shape[0] != status.total or str(mm.dtype) != state.get("dtype"):
            return None
        return PartialFeatures(rows=rows, features=np.asarray(mm[rows]), status=status)

    def _read_order(self, n_rows: int) -> np.ndarray | None:
        """The stored encode order when it is a permutation of ``n_rows`` rows, else None."""
        try:
            order = np.load(self.dir / ORDER)
        except (OSError, ValueError):
            return None
        if order.shape != (n_rows,) or order.dtype.kind not in "iu":
            return None
        order = order.astype(np.int64, copy=False)
        return order if np.array_equal(np.sort(order), np.arange(n_rows)) else None

    def extracting(self) -> bool:
        """True while some process (this one included) holds this entry's lock, i.e. extracts it."""
        if fcntl is None or not (self.dir / LOCK).is_file():
            return False
        with open(self.dir / LOCK, "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False

    @contextlib.contextmanager
    def lock(self, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """Exclusive inter-process lock on this entry (blocks until free).

        Args:
            waiting: Called about every :data:`LOCK_POLL_S` seconds while another process
                holds the lock (to report its progress, or raise to stop waiting); None
                blocks silently.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / LOCK, "a+") as handle:
            if fcntl is not None:
                if waiting is None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                else:
                    while True:
                        try:
                            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            waiting()
                            time.sleep(LOCK_POLL_S)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def open_writer(self, n_rows: int, dim: int, dtype: str = "float32", *, order_seed: int | None = None,
                    keep_order: bool = True) -> FeatureWriter:
        """Start or resume filling this entry; call under :meth:`lock`.

        Args:
            n_rows, dim, dtype: Shape and storage type of the matrix.
            order_seed: Encode order of a new entry: a permutation seeded with it, or pool
                order for None.
            keep_order: Resume an unfinished entry in the order it was started in (True),
                or resume it only when that order is ``order_seed``'s and start it afresh
                otherwise (False: a writer that must write in pool order).
        """
        return FeatureWriter(self, n_rows, dim, dtype, order_seed=order_seed, keep_order=keep_order)


class FeatureWriter:
    """Writes rows in its encode order to a partial entry and finalises it.

    Attributes:
        done: Positions of :attr:`order` already written (resumed runs start here).
        order: Pool row of each position (a permutation, or ``arange`` for pool order).
        seed: Seed of :attr:`order` (None: pool order).
        failed: ``[row, id, reason]`` of rows whose image could not be read (zero rows).
    """

    def __init__(self, cache: FeatureCache, n_rows: int, dim: int, dtype: str, *, order_seed: int | None = None,
                 keep_order: bool = True) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"feature dtype must be float32 or float16, got {dtype!r}")
        self.cache = cache
        self.n_rows, self.dim, self.dtype = int(n_rows), int(dim), dtype
        d = cache.dir
        d.mkdir(parents=True, exist_ok=True)
        if (d / FEATURES).is_file() and not (d / META).is_file():
            os.replace(d / FEATURES, d / PARTIAL)  # crashed between rename and meta: finish again
            fsync_dir(d)
        state = cache.progress()
        shape_ok = state is not None and (state.get("n_rows"), state.get("dim"), state.get("dtype")) == (
            self.n_rows,
            self.dim,
            self.dtype,
        )
        self._mm: np.memmap | None = None
        order: np.ndarray | None = None
        seed: int | None = None
        if shape_ok and (d / PARTIAL).is_file():
            assert state is not None
            recorded = state.get("order")  # absent in entries started before encode orders: pool order
            try:
                seed = None if recorded is None else int(recorded["seed"])
                order = encode_order(self.n_rows, None) if seed is None else cache._read_order(self.n_rows)
                if order is not None and (keep_order or seed == order_seed):
                    mm = np.load(d / PARTIAL, mmap_mode="r+")
                    if mm.shape == (self.n_rows, self.dim) and str(mm.dtype) == dtype:
                        self._mm = mm
            except (OSError, ValueError, TypeError, KeyError):
                self._mm = None
        if self._mm is not None:
            assert state is not None and order is not None
            self.order, self.seed = order, seed
            self.done = int(state["done"])
            self.failed: list[list[Any]] = list(state.get("failed", []))
            self.resumed_from = self.done
        else:
            self.order, self.seed = encode_order(self.n_rows, order_seed), order_seed
            with contextlib.suppress(FileNotFoundError):
                (d / PROGRESS).unlink()  # a reader must not take the new, empty matrix for the old rows
            self._mm = np.lib.format.open_memmap(d / PARTIAL, mode="w+", dtype=dtype, shape=(self.n_rows, self.dim))
            if order_seed is not None:
                with open(d / (ORDER + f".tmp{os.getpid()}"), "wb") as fh:
                    np.save(fh, self.order)
                os.replace(d / (ORDER + f".tmp{os.getpid()}"), d / ORDER)  # before the record that names it
            else:
                with contextlib.suppress(FileNotFoundError):
                    (d / ORDER).unlink()
            self.done, self.failed, self.resumed_from = 0, [], 0
        self._run = {"from": self.done, "started": time.time()}
        self._save_progress()

    def _save_progress(self) -> None:
        # Resume record, rewritten after every batch: a rename (never a torn read), not synced.
        path = self.cache.dir / PROGRESS
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(_json({
            "done": self.done,
            "n_rows": self.n_rows,
            "dim": self.dim,
            "dtype": self.dtype,
            "failed": self.failed,
            "order": None if self.seed is None else {"seed": self.seed},
            "run": self._run,
            "updated": time.time(),
            "fields": self.cache.fields,
        }))
        os.replace(tmp, path)

    def write(self, start: int, rows: np.ndarray, failed: list[list[Any]] | None = None) -> None:
        """Write the features of positions ``start:start+len(rows)`` of :attr:`order` (must continue at
        :attr:`done`), flush, record progress. In pool order a position is the pool row."""
        assert self._mm is not None
        if start != self.done:
            raise ValueError(f"rows must be written in order: expected start {self.done}, got {start}")
        stop = start + len(rows)
        if stop > self.n_rows or rows.shape[1:] != (self.dim,):
            raise ValueError(f"rows {start}:{stop} of shape {rows.shape} do not fit ({self.n_rows}, {self.dim})")
        if self.seed is None:
            self._mm[start:stop] = rows
        else:
            self._mm[self.order[start:stop]] = rows
        self._mm.flush()
        self.done = stop
        self.failed.extend(failed or [])
        self._save_progress()

    def finalize(self, extra_meta: Mapping[str, Any] | None = None) -> np.memmap:
        """After the last row: rename to ``features.npy``, write ``meta.json``; return the read-only memmap."""
        if self.done != self.n_rows:
            raise RuntimeError(f"cannot finalise {self.cache.dir}: {self.done}/{self.n_rows} rows written")
        assert self._mm is not None
        self._mm.flush()
        del self._mm
        self._mm = None
        d = self.cache.dir
        os.replace(d / PARTIAL, d / FEATURES)  # made durable by meta.json's folder sync below
        meta = {
            "fields": self.cache.fields,
            "n_rows": self.n_rows,
            "dim": self.dim,
            "dtype": self.dtype,
            "failed": self.failed,
            "order": None if self.seed is None else {"seed": self.seed},
            "finished": time.time(),
            **dict(extra_meta or {}),
        }
        atomic_write_text(d / META, _json(meta))
        for name in (PROGRESS, ORDER):
            with contextlib.suppress(FileNotFoundError):
                (d / name).unlink()
        return self.cache.load()
