"""Encode a pool's images once with a CLIP image tower into a resumable feature cache.

Image features are L2-normalised ``encode_image`` outputs, computed once per (model,
weights, preprocessing, pool content) in batches through a DataLoader and appended to a
memmap as they go (see :mod:`.feature_cache`), so changing prompts costs a text pass only.

- :func:`encode_rows`: the extraction loop over a run of pool rows, or of positions of an
  encode order (DataLoader workers, pinned memory and bf16 autocast on CUDA; unreadable
  images become zero rows);
- :func:`extract_features`: one process fills (or resumes) one cache entry, in a seeded
  random order of the pool (:data:`ENCODE_ORDER_SEED`), so that the rows finished first
  are a uniform sample that a first query batch can be chosen from while the rest are
  encoded (:meth:`.feature_cache.FeatureCache.partial`);
- :func:`extract_features_sharded`: under ``torchrun`` the pool is sharded by rank; each
  rank encodes a contiguous run of whole batches (:func:`shard_rows`) into its own
  resumable shard (:func:`shard_cache`), and rank 0 merges the shards
  (:func:`merge_shards`) into the same cache entry a single process would write.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from activekd_core import distributed
from activekd_core.distributed import DistInfo
from activekd_core.images import ImageLoadError, ImagePool, load_image
from activekd_core.teachers.base import ProgressFn, check_cancel
from activekd_core.teachers.feature_cache import FeatureCache

SHARDS_DIR = "shards"
MERGE_CHUNK_ROWS = 4096
ENCODE_ORDER_SEED = 0  # seed of the encode order of a new single-process entry (recorded in the entry)


class _PoolImages(Dataset):
    """Positions ``[start, stop)`` as preprocessed tensors; unreadable images become zeros plus a reason.

    A position is a pool row, or with ``order`` the pool row ``order[position]``.
    """

    def __init__(self, pool: ImagePool, transform: Callable[[Any], torch.Tensor], start: int, stop: int, size: int,
                 order: np.ndarray | None = None) -> None:
        self.root, self.ids, self.pool = pool.root, pool.ids, pool
        self.transform, self.start, self.stop, self.size, self.order = transform, start, stop, size, order

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int, str]:
        pos = self.start + k
        row = pos if self.order is None else int(self.order[pos])
        try:
            image_id = self.ids[row]
            img = load_image(self.root, image_id, draft_size=self.size, recipe=self.pool.recipe,
                             ref=self.pool.item_ref(image_id))
            return self.transform(img), pos, ""
        except ImageLoadError as exc:
            return torch.zeros(3, self.size, self.size), pos, exc.reason or "unreadable"
        except Exception as exc:  # a transform failure must not stop the batch either
            return torch.zeros(3, self.size, self.size), pos, f"{type(exc).__name__}: {exc}"


def auto_workers(n_images: int, batch_size: int) -> int:
    """DataLoader workers: none for tiny jobs, else up to 8 leaving one core to the model."""
    if n_images < 2 * batch_size:
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def encode_rows(
    model: torch.nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    pool: ImagePool,
    start: int,
    stop: int,
    *,
    image_size: int,
    device: torch.device,
    batch_size: int = 64,
    num_workers: int | None = None,
    cancel: threading.Event | None = None,
    on_batch: Callable[[int], None] | None = None,
    order: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray, list[list[Any]]]]:
    """Encode pool rows ``[start, stop)`` in order, one batch at a time.

    With ``order``, ``[start, stop)`` are positions of that encode order and position
    ``p`` is pool row ``order[p]``.

    Images are decoded and preprocessed by DataLoader workers (pinned memory on CUDA);
    the model runs under bf16 autocast on CUDA. A sharded (multi-process) extraction can
    call this on its own slice of rows and gather the results into one cache.

    Yields:
        ``(first, features, failed)``: float32 L2-normalised ``(b, D)`` features of
        rows (positions, with ``order``) ``first:first+b``, and ``[pool row, id, reason]``
        for unreadable images (their feature rows are zeros, so they get uniform
        probabilities).

    Raises:
        Cancelled: ``cancel`` was set (checked before each batch).
    """
    if start >= stop:
        return
    workers = auto_workers(stop - start, batch_size) if num_workers is None else num_workers
    loader = DataLoader(
        _PoolImages(pool, preprocess, start, stop, image_size, order),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    for images, positions, reasons in loader:
        check_cancel(cancel)
        if on_batch is not None:
            on_batch(len(images))
        with torch.inference_mode(), autocast:
            feats = model.encode_image(images.to(device, non_blocking=True))
        feats = F.normalize(feats.float(), dim=-1)
        bad = [i for i, r in enumerate(reasons) if r]
        if bad:
            feats[bad] = 0.0
        rows = [int(p) if order is None else int(order[int(p)]) for p in positions]
        failed = [[rows[i], pool.ids[rows[i]], reasons[i]] for i in bad]
        yield int(positions[0]), feats.cpu().numpy(), failed


def extract_features(
    model: torch.nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    pool: ImagePool,
    cache: FeatureCache,
    *,
    image_size: int,
    dim: int,
    dtype: str = "float32",
    device: torch.device,
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    on_batch: Callable[[int], None] | None = None,
    order_seed: int | None = ENCODE_ORDER_SEED,
) -> np.memmap:
    """Encode every pool image once into ``cache`` (resuming a partial entry) and return the memmap.

    Images are encoded in a seeded random order of the pool (the first rows finished are
    a uniform sample) and written after each batch; progress is saved after each write,
    so an exception, a cancel or a killed process loses at most the batch in flight. An
    unfinished entry resumes in the order it was started in (an entry started in pool
    order by an older version continues in pool order). While another process extracts
    the same entry, this one waits for it, reporting that process's progress.

    Args:
        model: open_clip model in eval mode on ``device``.
        preprocess: The model's eval transform (PIL -> tensor).
        pool: Images to encode.
        cache: The entry to fill.
        image_size: Side of the model input (for zero rows of unreadable images).
        dim: Embedding width.
        dtype: Storage dtype, ``float32`` or ``float16``.
        device: Where to run the model.
        batch_size: Images per batch.
        num_workers: DataLoader worker processes (None: :func:`auto_workers`).
        progress: ``progress(done, total, message)``, message with images/s.
        cancel: Set to stop after the current batch (raises :class:`Cancelled`).
        on_batch: Called with the batch size before each ``encode_image`` (tests, benches).
        order_seed: Seed of the encode order of a new entry (None: pool order).

    Returns:
        The finished read-only ``(N, dim)`` memmap.

    Raises:
        Cancelled: ``cancel`` was set (checked before each batch and while waiting).
    """
    n = len(pool)

    def waiting() -> None:  # another process holds the entry: say how far it is
        check_cancel(cancel)
        status = cache.status()
        if progress is not None:
            done = status.done if status is not None else 0
            progress(done, n, f"Waiting for the image features another job is encoding: {done:,}/{n:,}")

    with cache.lock(waiting):
        if cache.complete:
            return cache.load()
        writer = cache.open_writer(n, dim, dtype, order_seed=order_seed)
        start = writer.done
        if progress is not None:
            progress(start, n, f"Encoding images with CLIP: {start:,}/{n:,} (resuming)" if start else "Encoding images with CLIP")
        np_dtype = np.float16 if dtype == "float16" else np.float32
        t0 = time.perf_counter()
        encoded = 0
        for first, feats, failed in encode_rows(
            model, preprocess, pool, start, n, image_size=image_size, device=device, batch_size=batch_size,
            num_workers=num_workers, cancel=cancel, on_batch=on_batch, order=writer.order if writer.seed is not None else None,
        ):
            writer.write(first, feats.astype(np_dtype, copy=False), failed)
            encoded += len(feats)
            if progress is not None:
                rate = encoded / max(time.perf_counter() - t0, 1e-9)
                progress(writer.done, n, f"Encoding images with CLIP: {writer.done:,}/{n:,} ({rate:,.1f} images/s)")
        return writer.finalize({"device": device.type, "batch_size": batch_size, "resumed_from": writer.resumed_from})


def shard_rows(n_rows: int, batch_size: int, world_size: int, rank: int) -> tuple[int, int]:
    """The contiguous pool rows ``[start, stop)`` that ``rank`` encodes in a sharded extraction.

    The pool is cut into whole batches of ``batch_size`` rows (the batches a single
    process would run), and the batches are split into ``world_size`` contiguous runs as
    evenly as possible (``numpy.array_split`` semantics on batches). Every batch therefore
    holds the same images as in a single-process run, so on the same device and thread
    count the merged features equal the single-process ones bit for bit. A rank can get
    an empty range when there are fewer batches than ranks.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size} processes")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n_batches = -(-int(n_rows) // int(batch_size))
    base, extra = divmod(n_batches, world_size)
    first = rank * base + min(rank, extra)
    last = first + base + (1 if rank < extra else 0)
    return min(n_rows, first * batch_size), min(n_rows, last * batch_size)


def shard_cache(cache: FeatureCache, start: int, stop: int) -> FeatureCache:
    """The resumable entry holding rows ``[start, stop)`` of ``cache`` (under ``<entry>/shards/``).

    Keyed by the parent's fields plus the row range, so a rerun with the same world size
    and batch size resumes it, and any other split starts fresh shards.
    """
    return FeatureCache(cache.dir / SHARDS_DIR, {**cache.fields, "rows": [int(start), int(stop)]})


def _encode_shard(
    model: torch.nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    pool: ImagePool,
    shard: FeatureCache,
    start: int,
    stop: int,
    *,
    image_size: int,
    dim: int,
    dtype: str,
    device: torch.device,
    batch_size: int,
    num_workers: int | None,
    progress: ProgressFn | None,
    cancel: threading.Event | None,
    on_batch: Callable[[int], None] | None,
) -> dict[str, int]:
    """Fill (or resume) one rank's shard entry; returns rows encoded now and the resume point."""
    with shard.lock():
        if shard.complete:
            return {"encoded": 0, "resumed_from": stop - start}
        writer = shard.open_writer(stop - start, dim, dtype)
        np_dtype = np.float16 if dtype == "float16" else np.float32
        resumed, encoded, t0 = writer.done, 0, time.perf_counter()
        total = stop - start
        if progress is not None:
            progress(resumed, total, f"Encoding rows {start:,}:{stop:,} with CLIP" + (f" (resuming at row {start + resumed:,})" if resumed else ""))
        for first, feats, failed in encode_rows(
            model, preprocess, pool, start + writer.done, stop, image_size=image_size, device=device,
            batch_size=batch_size, num_workers=num_workers, cancel=cancel, on_batch=on_batch,
        ):
            writer.write(first - start, feats.astype(np_dtype, copy=False), failed)
            encoded += len(feats)
            if progress is not None:
                rate = encoded / max(time.perf_counter() - t0, 1e-9)
                progress(writer.done, total, f"Encoding rows {start:,}:{stop:,} with CLIP: {writer.done:,}/{total:,} ({rate:,.1f} images/s)")
        writer.finalize({"device": device.type, "batch_size": batch_size, "resumed_from": resumed, "rows": [start, stop]})
        return {"encoded": encoded, "resumed_from": resumed}


def merge_shards(cache: FeatureCache, n: int, dim: int, dtype: str, ranges: list[tuple[int, int]], extra: Mapping[str, Any]) -> np.memmap:
    """Copy finished shard entries, in row order, into ``cache`` and finalise it (rank 0).

    Resumable: the entry's own progress record says how far an interrupted merge got, and
    shards already copied are skipped. The shards are deleted after ``meta.json`` is written.

    Args:
        cache: The ordinary (single-process) entry to fill.
        n: Pool rows.
        dim: Feature width.
        dtype: Storage dtype of the shards and the entry.
        ranges: ``[start, stop)`` of every shard, in row order (see :func:`shard_rows`).
        extra: Extra ``meta.json`` fields.

    Raises:
        RuntimeError: A needed shard is missing or unfinished (the message names its
            folder; ranks on several nodes need a shared filesystem), or has the wrong shape.
    """
    with cache.lock():
        if cache.complete:
            return cache.load()
        writer = cache.open_writer(n, dim, dtype, order_seed=None, keep_order=False)  # shards are in pool order
        for start, stop in ranges:
            if stop <= writer.done or start == stop:
                continue  # already merged (a merge that was interrupted resumes here)
            shard = shard_cache(cache, start, stop)
            if not shard.complete:
                raise RuntimeError(
                    f"feature shard for rows {start}:{stop} is not complete at {shard.dir}: every rank must write "
                    "into the same project folder (for several nodes, put it on a shared filesystem)"
                )
            rows = shard.load()
            if rows.shape != (stop - start, dim):
                raise RuntimeError(f"feature shard {shard.dir} has shape {rows.shape}, expected {(stop - start, dim)}")
            failed = shard.meta().get("failed", [])
            while writer.done < stop:
                a = writer.done
                b = min(stop, a + MERGE_CHUNK_ROWS)
                writer.write(a, np.asarray(rows[a - start : b - start]), [f for f in failed if a <= f[0] < b])
            del rows
        out = writer.finalize({**dict(extra), "resumed_from": writer.resumed_from})
    shutil.rmtree(cache.dir / SHARDS_DIR, ignore_errors=True)
    return out


def extract_features_sharded(
    model: torch.nn.Module,
    preprocess: Callable[[Any], torch.Tensor],
    pool: ImagePool,
    cache: FeatureCache,
    info: DistInfo,
    *,
    image_size: int,
    dim: int,
    dtype: str = "float32",
    device: torch.device,
    batch_size: int = 64,
    num_workers: int | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.memmap | None, dict[str, Any]]:
    """Encode the pool across the ranks of a process group into one ordinary cache entry.

    Call it on every rank (it uses collectives of :mod:`activekd_core.distributed`):

    1. the ranks check that they see the same cache key (same model, weights,
       preprocessing and pool content); if rank 0 finds the entry complete, all return;
    2. each rank encodes its contiguous run of whole batches (:func:`shard_rows`) into its
       own resumable shard entry ``<entry>/shards/<key>/`` (:func:`shard_cache`), written
       batch by batch through :class:`~.feature_cache.FeatureWriter`; a killed rank leaves
       its progress and a rerun continues there (a rank whose rows a partial
       single-process run already covered skips them);
    3. after every rank reports success (an all-reduce, so one failing rank fails all at
       once instead of a timeout), rank 0 copies the shards in row order into the entry
       itself, finalises it (``meta.json`` last, so it is complete only after the merge)
       and deletes the shards. The entry has the same key as a single-process extraction,
       so the app and single-process code reuse it.

    The ranks must share the project folder (one machine, or a shared filesystem across
    nodes); rank 0 says so when a shard is missing at merge time.

    Args:
        model, preprocess, pool, cache, image_size, dim, dtype, device, batch_size,
            num_workers, progress, cancel, on_batch: As for :func:`extract_features`
            (``progress`` reports this rank's shard).
        info: This process's :class:`activekd_core.distributed.DistInfo`.

    Returns:
        ``(features, report)``: the finished memmap on rank 0 (None on other ranks), and
        this rank's ``{"rank", "world_size", "rows": [start, stop], "encoded",
        "resumed_from", "cached"}``.

    Raises:
        RuntimeError: The ranks disagree on the cache key, or a rank failed (its own
            exception is re-raised on that rank), or a shard is missing at merge time.
        Cancelled: ``cancel`` was set on this rank.
    """
    n = len(pool)
    record = cache.progress() or {}
    # rows a single-process run already wrote count only when it wrote them in pool order
    main_rows = record.get("done", 0) if record.get("order") is None else 0
    states = distributed.all_gather_object({"key": cache.key, "complete": cache.complete, "done": main_rows}, info)
    keys = [s["key"] for s in states]
    if len(set(keys)) != 1:
        raise RuntimeError(
            f"ranks see different feature cache keys {keys} for {cache.dir.parent}: every rank must open the same "
            "pool (same images), model and weights"
        )
    start, stop = shard_rows(n, batch_size, info.world_size, info.rank)
    report: dict[str, Any] = {"rank": info.rank, "world_size": info.world_size, "rows": [start, stop], "encoded": 0,
                              "resumed_from": 0, "cached": bool(states[0]["complete"])}
    if states[0]["complete"]:
        return (cache.load() if info.is_main else None), report
    main_done = int(states[0]["done"] or 0)
    error: BaseException | None = None
    try:
        if start < stop and stop > main_done:
            report.update(_encode_shard(
                model, preprocess, pool, shard_cache(cache, start, stop), start, stop, image_size=image_size, dim=dim,
                dtype=dtype, device=device, batch_size=batch_size, num_workers=num_workers, progress=progress,
                cancel=cancel, on_batch=on_batch,
            ))
    except BaseException as exc:  # noqa: BLE001 - reported to the other ranks, then re-raised
        error = exc
    if not distributed.all_ok(error is None, info):
        if error is not None:
            raise error
        raise RuntimeError("sharded feature extraction failed on another rank (see its output); finished shards are kept")
    merged: np.memmap | None = None
    if info.is_main:
        try:
            ranges = [shard_rows(n, batch_size, info.world_size, r) for r in range(info.world_size)]
            merged = merge_shards(cache, n, dim, dtype, ranges, {
                "device": device.type, "batch_size": batch_size, "world_size": info.world_size,
                "shards": [list(r) for r in ranges],
            })
        except BaseException as exc:  # noqa: BLE001
            error = exc
    if not distributed.all_ok(error is None, info):
        if error is not None:
            raise error
        raise RuntimeError("rank 0 failed to merge the feature shards (see its output); the shards are kept")
    return merged, report


__all__ = [
    "ENCODE_ORDER_SEED",
    "MERGE_CHUNK_ROWS",
    "SHARDS_DIR",
    "auto_workers",
    "encode_rows",
    "extract_features",
    "extract_features_sharded",
    "merge_shards",
    "shard_cache",
    "shard_rows",
]
