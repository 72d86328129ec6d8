"""Resumable on-disk store for per-image feature matrices (teacher image embeddings).

Layout of one cache entry, ``<root>/<key>/``:

- ``features.partial.npy``: a float32/float16 ``.npy`` memmap ``(N, D)`` being filled in
  pool order while extraction runs;
- ``progress.json``: ``{"done": rows_completed, ...}``, rewritten atomically after each
  batch has been written and flushed, so an interrupted run resumes at ``done``;
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
from collections.abc import Iterator, Mapping
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


def default_cache_root() -> Path:
    """``$ACTIVEKD_CACHE/features`` or ``~/.cache/activekd/features``."""
    base = os.environ.get("ACTIVEKD_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "activekd") / "features"


def cache_key(fields: Mapping[str, Any]) -> str:
    """Stable short hash of JSON-serialisable key fields."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, default=str)


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

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive inter-process lock on this entry (blocks until free)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "a+") as handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def open_writer(self, n_rows: int, dim: int, dtype: str = "float32") -> FeatureWriter:
        """Start or resume filling this entry; call under :meth:`lock`."""
        return FeatureWriter(self, n_rows, dim, dtype)


class FeatureWriter:
    """Appends rows in order to a partial entry and finalises it.

    Attributes:
        done: Rows already written (resumed runs start here).
        failed: ``[row, id, reason]`` of rows whose image could not be read (zero rows).
    """

    def __init__(self, cache: FeatureCache, n_rows: int, dim: int, dtype: str) -> None:
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
        if shape_ok and (d / PARTIAL).is_file():
            try:
                mm = np.load(d / PARTIAL, mmap_mode="r+")
                if mm.shape == (self.n_rows, self.dim) and str(mm.dtype) == dtype:
                    self._mm = mm
            except (OSError, ValueError):
                self._mm = None
        if self._mm is not None:
            self.done = int(state["done"])  # type: ignore[index]
            self.failed: list[list[Any]] = list(state.get("failed", []))  # type: ignore[union-attr]
            self.resumed_from = self.done
        else:
            self._mm = np.lib.format.open_memmap(d / PARTIAL, mode="w+", dtype=dtype, shape=(self.n_rows, self.dim))
            self.done, self.failed, self.resumed_from = 0, [], 0
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
            "updated": time.time(),
            "fields": self.cache.fields,
        }))
        os.replace(tmp, path)

    def write(self, start: int, rows: np.ndarray, failed: list[list[Any]] | None = None) -> None:
        """Write rows ``start:start+len(rows)`` (must continue at :attr:`done`), flush, record progress."""
        assert self._mm is not None
        if start != self.done:
            raise ValueError(f"rows must be written in order: expected start {self.done}, got {start}")
        stop = start + len(rows)
        if stop > self.n_rows or rows.shape[1:] != (self.dim,):
            raise ValueError(f"rows {start}:{stop} of shape {rows.shape} do not fit ({self.n_rows}, {self.dim})")
        self._mm[start:stop] = rows
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
            "finished": time.time(),
            **dict(extra_meta or {}),
        }
        atomic_write_text(d / META, _json(meta))
        with contextlib.suppress(FileNotFoundError):
            (d / PROGRESS).unlink()
        return self.cache.load()
