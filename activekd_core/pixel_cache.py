"""Decode a pool's images once into a uint8 ``(N, size, size, 3)`` array, cached on disk.

Resizing: each image is loaded as RGB by :func:`activekd_core.images.load_image` (EXIF
orientation applied, alpha on white), its **shorter side is scaled to** ``size`` **and the
centre** ``size x size`` **square is cropped** (the same geometry as torchvision's
``Resize(size)`` + ``CenterCrop(size)``; bicubic, antialiased). Nothing is padded: very
wide or tall images lose their ends. JPEGs are decoded at a reduced DCT scale when that
still leaves at least ``size`` pixels (much faster for large photos).

DICOM files, frames, scientific TIFFs and chips are read with the pool's display recipe
(``pool.recipe``), whose key is part of the pool fingerprint: the student trains on the
8-bit RGB the page shows.

Cache: with ``cache_dir``, the array is a ``.npy`` file named by the pool fingerprint (ids,
file sizes and times, and the display recipe's key), the size and a format version, opened read-only as a memory map. It is written under a
``.partial`` name, flushed chunk by chunk with a small JSON progress record, and renamed
only when complete, so a half-written cache is never used; a run that was killed or
cancelled resumes from its last flushed chunk. A lock file serialises processes that
decode the same pool at the same time.

Failures: pools are pre-scanned, but a file can still fail to decode (deleted since, or
corruption that only a full decode finds). Its row is left as zeros and reported:
:func:`decode_pool_with_report` returns the failures; :func:`decode_pool` logs them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import numpy.typing as npt
from PIL import Image

from activekd_core.atomic import atomic_write_text, fsync_dir
from activekd_core.images import DEFAULT_MAX_PIXELS, ImageLoadError, ImagePool, display_id, load_image
from activekd_core.progress import ProgressFn

try:  # POSIX only; elsewhere concurrent decoders of one pool are not serialised.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
CHUNK_ROWS = 256


@dataclass
class DecodedPixels:
    """Result of decoding a pool.

    Attributes:
        pixels: uint8 array ``(N, size, size, 3)``, row i = ``pool.ids[i]``; a read-only
            memory map when cached on disk.
        failures: Pool row -> ``"<id>: <reason>"`` for rows left as zeros.
        cache_path: The ``.npy`` file, or None when decoded in memory.
        from_cache: True when a complete cache was reused without decoding.
    """

    pixels: npt.NDArray[np.uint8]
    failures: dict[int, str] = field(default_factory=dict)
    cache_path: Path | None = None
    from_cache: bool = False


def resize_center_crop(img: Image.Image, size: int) -> npt.NDArray[np.uint8]:
    """Scale the shorter side to ``size`` and crop the centre square.

    Args:
        img: An RGB image.
        size: Output side in pixels.

    Returns:
        uint8 array ``(size, size, 3)``.
    """
    width, height = img.size
    side = min(width, height)
    left = (width - side) / 2.0
    top = (height - side) / 2.0
    box = (left, top, left + side, top + side)
    out = img.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
    return np.asarray(out.convert("RGB"), dtype=np.uint8)


def cache_file(pool: ImagePool, size: int, cache_dir: Path | str) -> Path:
    """Where the complete cache of ``pool`` at ``size`` lives (whether or not it exists)."""
    return Path(cache_dir) / f"pixels_{pool.fingerprint()}_{size}px_v{CACHE_VERSION}.npy"


def decode_pool(
    pool: ImagePool,
    size: int,
    cache_dir: Path | str | None = None,
    progress: ProgressFn | None = None,
    *,
    workers: int | None = None,
    cancel: threading.Event | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> npt.NDArray[np.uint8]:
    """Decode every image of ``pool`` to a uint8 ``(N, size, size, 3)`` array.

    Rows that fail to load are zeros; they are logged as warnings (use
    :func:`decode_pool_with_report` to get them as data). See the module docstring for
    the resize geometry and the cache.

    Args:
        pool: The images, in row order.
        size: Output side in pixels.
        cache_dir: Folder for the on-disk cache; None decodes into memory.
        progress: ``progress(done, total, message)``.
        workers: Decoding threads (default: up to 4, one per CPU).
        cancel: When set, decoding stops after the current chunk (InterruptedError);
            a disk cache resumes from there next time.
        max_pixels: Largest image accepted (see ``load_rgb``).

    Returns:
        The pixel array (a read-only memory map when ``cache_dir`` is given).
    """
    result = decode_pool_with_report(
        pool, size, cache_dir, progress, workers=workers, cancel=cancel, max_pixels=max_pixels
    )
    for row, message in result.failures.items():
        logger.warning("row %d left blank: %s", row, message)
    return result.pixels


def decode_pool_with_report(
    pool: ImagePool,
    size: int,
    cache_dir: Path | str | None = None,
    progress: ProgressFn | None = None,
    *,
    workers: int | None = None,
    cancel: threading.Event | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedPixels:
    """Like :func:`decode_pool`, returning the failures and cache details too.

    Raises:
        ValueError: If ``size`` is not positive.
        OSError: If the cache folder lacks the space for the array.
        InterruptedError: If ``cancel`` was set.
    """
    if int(size) < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    size = int(size)
    n = len(pool)
    shape = (n, size, size, 3)
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    if cache_dir is None:
        pixels = np.zeros(shape, dtype=np.uint8)
        failures: dict[int, str] = {}
        _decode_rows(pool, size, pixels, 0, failures, progress, workers, cancel, max_pixels, None)
        return DecodedPixels(pixels=pixels, failures=failures)

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_file(pool, size, cache_dir)
    report = final.with_suffix(".json")
    partial = final.with_name(final.stem + ".partial.npy")
    state = final.with_name(final.stem + ".partial.json")
    with _locked(final.with_name(final.stem + ".lock")):
        cached = _open_complete(final, report, shape)
        if cached is not None:
            if progress is not None:
                progress(n, n, f"reused cached {size}px pixels for {n} images")
            return DecodedPixels(pixels=cached[0], failures=cached[1], cache_path=final, from_cache=True)
        start, failures, array = _open_partial(partial, state, shape)
        if array is None:
            needed = int(np.prod(shape, dtype=np.int64)) + 4096
            free = shutil.disk_usage(cache_dir).free
            if needed > free:
                raise OSError(
                    f"not enough disk space in {cache_dir} for the {size}px pixel cache: "
                    f"needs {needed / 1e9:.2f} GB, {free / 1e9:.2f} GB free"
                )
            array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
            start, failures = 0, {}
            _write_json(state, {"done": 0, "failures": {}, "shape": list(shape)})

        def checkpoint(done: int) -> None:
            array.flush()
            _write_json(state, {"done": done, "failures": {str(k): v for k, v in failures.items()}, "shape": list(shape)})

        _decode_rows(pool, size, array, start, failures, progress, workers, cancel, max_pixels, checkpoint)
        array.flush()
        del array
        _write_json(report, {"version": CACHE_VERSION, "shape": list(shape), "failures": {str(k): v for k, v in failures.items()}})
        os.replace(partial, final)  # the commit: a complete array appears under its final name at once
        fsync_dir(final.parent)
        state.unlink(missing_ok=True)
        pixels = np.load(final, mmap_mode="r")
    return DecodedPixels(pixels=pixels, failures=failures, cache_path=final, from_cache=False)


def _decode_rows(
    pool: ImagePool,
    size: int,
    out: npt.NDArray[np.uint8],
    start: int,
    failures: dict[int, str],
    progress: ProgressFn | None,
    workers: int,
    cancel: threading.Event | None,
    max_pixels: int,
    checkpoint: Callable[[int], None] | None,
) -> None:
    n = len(pool)

    def decode(row: int) -> tuple[int, npt.NDArray[np.uint8] | None, str | None]:
        try:  # opened confined to the image root (a file swapped for an escaping link is refused)
            image_id = pool.ids[row]
            img = load_image(pool.root, image_id, max_pixels=max_pixels, draft_size=size, recipe=pool.recipe,
                             ref=pool.item_ref(image_id))
            return row, resize_center_crop(img, size), None
        except ImageLoadError as exc:
            return row, None, f"{display_id(pool.ids[row])}: {exc.reason}"
        except Exception as exc:  # noqa: BLE001 - one bad file must never stop the batch
            return row, None, f"{display_id(pool.ids[row])}: unexpected error: {exc!r}"

    with ThreadPoolExecutor(max_workers=workers) as executor:
        for chunk_start in range(start, n, CHUNK_ROWS):
            if cancel is not None and cancel.is_set():
                raise InterruptedError(f"decoding cancelled at row {chunk_start} of {n}")
            rows = range(chunk_start, min(n, chunk_start + CHUNK_ROWS))
            for row, pixels, error in executor.map(decode, rows):
                if pixels is None:
                    out[row] = 0
                    failures[row] = error or "unknown error"
                else:
                    out[row] = pixels
            done = rows[-1] + 1
            if checkpoint is not None:
                checkpoint(done)
            if progress is not None:
                extra = f", {len(failures)} failed" if failures else ""
                progress(done, n, f"decoded {done}/{n} images at {size}px{extra}")
    if n == 0 and progress is not None:
        progress(0, 0, "no images to decode")


def _open_complete(
    final: Path, report: Path, shape: tuple[int, ...]
) -> tuple[npt.NDArray[np.uint8], dict[int, str]] | None:
    if not (final.exists() and report.exists()):
        return None
    try:
        meta = json.loads(report.read_text(encoding="utf-8"))
        pixels = np.load(final, mmap_mode="r")
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable pixel cache %s: %s", final, exc)
        return None
    if pixels.shape != shape or pixels.dtype != np.uint8 or meta.get("version") != CACHE_VERSION:
        logger.warning("ignoring pixel cache %s: shape %s, expected %s", final, pixels.shape, shape)
        return None
    return pixels, {int(k): v for k, v in meta.get("failures", {}).items()}


def _open_partial(
    partial: Path, state: Path, shape: tuple[int, ...]
) -> tuple[int, dict[int, str], np.memmap | None]:
    if not (partial.exists() and state.exists()):
        return 0, {}, None
    try:
        meta = json.loads(state.read_text(encoding="utf-8"))
        array = np.lib.format.open_memmap(partial, mode="r+")
    except (OSError, ValueError) as exc:
        logger.warning("restarting pixel cache, partial file unusable: %s", exc)
        return 0, {}, None
    if array.shape != shape or array.dtype != np.uint8 or list(meta.get("shape", [])) != list(shape):
        del array
        return 0, {}, None
    done = int(meta.get("done", 0))
    if not 0 <= done <= shape[0]:
        del array
        return 0, {}, None
    return done, {int(k): v for k, v in meta.get("failures", {}).items()}, array


def _write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload))


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
