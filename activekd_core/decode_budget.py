"""How much memory image decodes may hold at once: one process-wide byte budget.

Decoding allocates about ``width * height * 4`` bytes before any resizing (an 8000x8000
RGBA PNG of 249 KB holds 256 MB of pixels). Every decode first reserves its estimated
peak (:func:`estimate_decode_bytes` for Pillow images, :func:`estimate_array_decode_bytes`
for DICOM frames and TIFF windows) from :data:`DECODE_BUDGET`
(``$ACTIVEKD_DECODE_MEMORY_MB``, default an eighth of the RAM, at most 512 MiB), so
concurrent decoders (pixel cache threads, thumbnails) wait rather than add their peaks;
one decode larger than the whole budget runs alone. Decoders look the budget up on this
module at call time (``decode_budget.DECODE_BUDGET``), so replacing it here (tests,
benchmarks) reaches all of them.

Importing this module also raises Pillow's pixel block size (see the comment at
:data:`DECODE_BUDGET`), so freed pixels go back to the system at once.
"""

from __future__ import annotations

import os
import threading

from PIL import Image


class DecodeBudget:
    """A counting semaphore over bytes: concurrent decodes together stay under ``capacity``.

    ``reserve(n)`` waits until ``n`` bytes are free (a request larger than the whole
    capacity waits until nothing else is reserved, then runs alone), and releases them on
    exit. Used by every image decode in this process (see the module docstring).

    Attributes:
        capacity: Bytes that may be reserved at once.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        self._in_use = 0
        self._peak = 0
        self._cond = threading.Condition()

    @property
    def in_use(self) -> int:
        """Bytes reserved right now."""
        return self._in_use

    @property
    def peak(self) -> int:
        """The most bytes reserved at once since creation (for tests and benchmarks)."""
        return self._peak

    def reserve(self, nbytes: int) -> _Reservation:
        """A context manager holding ``nbytes`` (clamped to the capacity) while it is open."""
        return _Reservation(self, min(max(0, int(nbytes)), self.capacity))

    def _acquire(self, n: int) -> None:
        with self._cond:
            while self._in_use + n > self.capacity:
                self._cond.wait()
            self._in_use += n
            self._peak = max(self._peak, self._in_use)

    def _release(self, n: int) -> None:
        with self._cond:
            self._in_use -= n
            self._cond.notify_all()


class _Reservation:
    def __init__(self, budget: DecodeBudget, n: int) -> None:
        self.budget, self.n = budget, n

    def __enter__(self) -> _Reservation:
        self.budget._acquire(self.n)
        return self

    def __exit__(self, *exc: object) -> None:
        self.budget._release(self.n)


def _default_budget_bytes() -> int:
    raw = os.environ.get("ACTIVEKD_DECODE_MEMORY_MB", "").strip()
    if raw:
        try:
            return max(16, int(raw)) << 20
        except ValueError:
            pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 4 << 30
    return int(min(512 << 20, max(128 << 20, ram // 8)))


DECODE_BUDGET = DecodeBudget(_default_budget_bytes())
# Pillow allocates pixels in blocks of 16 MB by default. glibc serves blocks that size from
# per-thread heap arenas, which keep the memory after an image is freed, so N decoding
# threads would each hold on to their largest decode. Blocks above glibc's largest mmap
# threshold (32 MB) are mapped and unmapped one by one, so freed pixels go back to the
# system at once. Small images are unaffected (a block is never larger than the image).
_PILLOW_BLOCK_BYTES = 64 << 20
if Image.core.get_block_size() < _PILLOW_BLOCK_BYTES:
    Image.core.set_block_size(_PILLOW_BLOCK_BYTES)


def estimate_decode_bytes(width: int, height: int, mode: str, *, reduced: bool) -> int:
    """Estimated peak bytes of decoding a ``width`` x ``height`` image of ``mode``.

    Pillow stores 1/L/P in one byte per pixel, I;16 in two and every other mode in four.
    A decode that is reduced right away (``draft_size``) peaks at the full-size pixels
    plus the small copy; a full-size decode also holds a few full-size conversions
    (alpha compositing, RGB).
    """
    per_pixel = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    pixels = int(width) * int(height)
    return pixels * per_pixel + (pixels * 4 // 4 if reduced else pixels * 4 * 3)


def estimate_array_decode_bytes(width: int, height: int, samples: int, itemsize: int) -> int:
    """Estimated peak bytes of reading a DICOM frame or a TIFF window to display RGB.

    The decoded samples (``samples`` per pixel, ``itemsize`` bytes each), two float64
    working copies per sample (modality rescale and window, or band stretch) and the
    uint8 RGB result.
    """
    pixels = int(width) * int(height)
    return pixels * (int(samples) * int(itemsize) + int(samples) * 16 + 3)
