"""Images as the browser shows them: fitted thumbnails, zoomed windows, a byte-bounded cache.

Nothing here ever allocates more pixels than the screen shows. A zoomed view is a *window*
of the source image scaled to at most the viewport (:func:`zoom_window`,
:func:`render_zoom`): 8x of a 4000x3000 photo is a 150x112 crop enlarged to 1200x900, not
a 32000x24000 image. PNG bytes are kept in a :class:`BytesCache` bounded by the total
size of its values, not by their count.

No Streamlit import: the pages call these through ``pages/_session.py``.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from cachetools import LRUCache
from PIL import Image

VIEWPORT = (1200, 900)
"""Largest zoomed view sent to the browser (width, height) in pixels."""


def fit_image(img: Image.Image, box: int) -> Image.Image:
    """Fit ``img`` into a ``box`` x ``box`` square (``box`` <= 0: unchanged).

    Large images are shrunk to fit; images at most half of ``box`` are enlarged by a
    whole-number factor with nearest-neighbour sampling (crisp pixels, no invented detail).
    The result is never larger than ``box`` on either side.
    """
    if box <= 0:
        return img
    w, h = img.size
    factor = box // max(w, h)
    if factor >= 2:  # small images (digits are 8x8)
        return img.resize((w * factor, h * factor), resample=Image.Resampling.NEAREST)
    if max(w, h) > box:
        img = img.copy()
        img.thumbnail((box, box))
    return img


@dataclass(frozen=True)
class ZoomWindow:
    """Which part of the source is shown and at what size.

    Attributes:
        box: ``(left, top, right, bottom)`` in source pixels.
        size: ``(width, height)`` of the rendered view, at most the viewport.
        zoom: Screen pixels per source pixel.
        whole: Whether the window shows the entire image (no panning needed).
    """

    box: tuple[int, int, int, int]
    size: tuple[int, int]
    zoom: float
    whole: bool


def zoom_window(width: int, height: int, zoom: float, center: tuple[float, float] = (0.5, 0.5),
                viewport: tuple[int, int] = VIEWPORT) -> ZoomWindow:
    """The source window a ``zoom`` x view shows, centred near ``center`` (fractions of the image).

    Args:
        width: Source width in pixels.
        height: Source height in pixels.
        zoom: Screen pixels per source pixel (``1`` = actual size, ``8`` = each pixel 8x8).
        center: Horizontal and vertical position of the window's centre, 0..1; the window
            is moved back inside the image when it would stick out.
        viewport: The largest output (width, height).

    Returns:
        The window; its ``size`` never exceeds ``viewport``.

    Raises:
        ValueError: If a size or the zoom is not positive.
    """
    if width < 1 or height < 1 or not zoom > 0 or viewport[0] < 1 or viewport[1] < 1:
        raise ValueError(f"zoom_window needs positive sizes and zoom, got {width}x{height}, {zoom}, {viewport}")
    vw, vh = viewport
    src_w = min(width, max(1, math.floor(vw / zoom)))
    src_h = min(height, max(1, math.floor(vh / zoom)))
    cx = min(max(float(center[0]), 0.0), 1.0) * width
    cy = min(max(float(center[1]), 0.0), 1.0) * height
    left = int(min(max(round(cx - src_w / 2), 0), width - src_w))
    top = int(min(max(round(cy - src_h / 2), 0), height - src_h))
    out_w = max(1, min(vw, round(src_w * zoom)))
    out_h = max(1, min(vh, round(src_h * zoom)))
    return ZoomWindow((left, top, left + src_w, top + src_h), (out_w, out_h), float(zoom),
                      src_w == width and src_h == height)


def render_zoom(img: Image.Image, window: ZoomWindow) -> Image.Image:
    """The window of ``img`` at its view size: only the window's pixels are resampled.

    Enlargement uses nearest-neighbour (each source pixel a sharp square, as an expert
    inspecting detail wants); reduction uses an antialiasing filter.
    """
    src_w = window.box[2] - window.box[0]
    resample = Image.Resampling.NEAREST if window.size[0] >= src_w else Image.Resampling.LANCZOS
    return img.resize(window.size, resample=resample, box=window.box,
                      reducing_gap=None if resample == Image.Resampling.NEAREST else 3.0)


def png_bytes(img: Image.Image) -> bytes:
    """``img`` encoded as PNG."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class BytesCache:
    """A thread-safe least-recently-used cache of ``bytes`` bounded by their total size.

    Args:
        max_bytes: The most bytes kept at once; a value larger than this is returned but
            not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self._lru: LRUCache = LRUCache(maxsize=max_bytes, getsizeof=len)
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        """The bound on the total size of the values."""
        return int(self._lru.maxsize)

    @property
    def nbytes(self) -> int:
        """The total size of the values kept now."""
        with self._lock:
            return int(self._lru.currsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._lru

    def get_or_make(self, key: Hashable, make: Callable[[], bytes]) -> bytes:
        """The cached value of ``key``, or ``make()``'s (kept when it fits)."""
        with self._lock:
            value = self._lru.get(key)
        if value is not None:
            return value
        value = make()  # outside the lock: a slow decode does not block other keys
        if len(value) <= self.max_bytes:
            with self._lock:
                self._lru[key] = value
        return value

    def clear(self) -> None:
        """Drop every value."""
        with self._lock:
            self._lru.clear()
