"""Array operations that turn measured values into display bytes (shared by DICOM and rasters).

All functions are pure: NumPy in, NumPy out. The 8-bit result of a mapping ``y`` in
``[0, 255]`` is ``round(y)`` (half to even, as :func:`numpy.rint`), so a DICOM linear
window of 40/400 shows 40 HU as 128.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

FloatArray = npt.NDArray[np.floating]
UInt8Array = npt.NDArray[np.uint8]


def linear_window(values: npt.ArrayLike, center: float, width: float, function: str = "LINEAR") -> FloatArray:
    """Apply a DICOM VOI window, mapping to the output range 0..255.

    Implements the formulas of DICOM PS3.3 C.11.2.1.2 with ``y_min = 0`` and
    ``y_max = 255``:

    * ``LINEAR``: values at or below ``c - 0.5 - (w - 1) / 2`` give 0, values above
      ``c - 0.5 + (w - 1) / 2`` give 255, in between
      ``((x - (c - 0.5)) / (w - 1) + 0.5) * 255``;
    * ``LINEAR_EXACT``: bounds ``c -/+ w / 2`` and ``((x - c) / w + 0.5) * 255``;
    * ``SIGMOID``: ``255 / (1 + exp(-4 (x - c) / w))``.

    Args:
        values: Modality values (e.g. Hounsfield units), any shape.
        center: Window centre.
        width: Window width (>= 1 for LINEAR, > 0 otherwise).
        function: The header's VOILUTFunction (``LINEAR`` when absent).

    Returns:
        float32 array of the same shape, in ``[0, 255]``.
    """
    x = np.asarray(values, dtype=np.float64)
    function = (function or "LINEAR").strip().upper()
    if function == "SIGMOID":
        if width <= 0:
            raise ValueError(f"window width must be > 0 for SIGMOID, got {width}")
        with np.errstate(over="ignore"):
            y = 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
        return y.astype(np.float32)
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"window width must be > 0 for LINEAR_EXACT, got {width}")
        y = ((x - center) / width + 0.5) * 255.0
        lower, upper = center - width / 2.0, center + width / 2.0
    else:  # LINEAR, and the fallback for unknown function names (as the standard's default)
        if width < 1:
            raise ValueError(f"window width must be >= 1 for LINEAR, got {width}")
        if width == 1:
            y = np.where(x > center - 0.5, 255.0, 0.0)
            return y.astype(np.float32)
        y = ((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
        lower, upper = center - 0.5 - (width - 1.0) / 2.0, center - 0.5 + (width - 1.0) / 2.0
    y = np.where(x <= lower, 0.0, np.where(x > upper, 255.0, y))
    return np.clip(y, 0.0, 255.0).astype(np.float32)


def range_to_unit(values: npt.ArrayLike, low: float, high: float) -> FloatArray:
    """Map ``[low, high]`` linearly to ``[0, 255]``, clipping outside.

    When ``high <= low`` (a constant band) values above ``low`` give 255 and the rest 0.
    """
    x = np.asarray(values, dtype=np.float64)
    if high > low:
        y = (x - low) * (255.0 / (high - low))
    else:  # a constant range: values above it are bright, the rest dark
        y = np.where(x > low, 255.0, 0.0)
    return np.clip(y, 0.0, 255.0).astype(np.float32)


def to_uint8(y: npt.ArrayLike) -> UInt8Array:
    """Round a ``[0, 255]`` float array to uint8 (NaN becomes 0)."""
    arr = np.nan_to_num(np.asarray(y, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(arr, 0.0, 255.0)).astype(np.uint8)


def grey_to_rgb(grey: npt.NDArray) -> UInt8Array:
    """Repeat a ``(H, W)`` uint8 image into ``(H, W, 3)``."""
    return np.repeat(np.asarray(grey, dtype=np.uint8)[:, :, None], 3, axis=2)


def shrink_factor(height: int, width: int, *, max_side: int | None = None, min_side: int | None = None) -> float:
    """The scale (<= 1) that :func:`fit_size` applies to an image of this size.

    Args:
        height: Image height.
        width: Image width.
        max_side: Longer side wanted at most (display size).
        min_side: Shorter side wanted (decode-at-size for training: no smaller than this).
            Give at most one of the two.

    Returns:
        1.0 when the image is already small enough or neither is given.
    """
    if max_side is not None and min_side is not None:
        raise ValueError("give max_side or min_side, not both")
    if max_side is not None:
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {max_side}")
        return min(1.0, max_side / max(height, width))
    if min_side is not None:
        if min_side < 1:
            raise ValueError(f"min_side must be >= 1, got {min_side}")
        return min(1.0, min_side / min(height, width))
    return 1.0


def fit_size(rgb: UInt8Array, *, max_side: int | None = None, min_side: int | None = None) -> UInt8Array:
    """Shrink an ``(H, W, 3)`` uint8 image (never enlarge it), keeping its aspect ratio.

    With ``max_side`` the longer side becomes at most ``max_side``; with ``min_side`` the
    shorter side becomes ``min_side`` (as torchvision's ``Resize(min_side)``, before a
    centre crop). Antialiased (Lanczos); each side at least 1 pixel. An image already
    small enough is returned unchanged (the same object).
    """
    height, width = rgb.shape[:2]
    scale = shrink_factor(height, width, max_side=max_side, min_side=min_side)
    if scale >= 1.0:
        return rgb
    if min_side is not None:  # the shorter side lands exactly on min_side
        size = (min_side, max(1, round(height * scale))) if width <= height else (max(1, round(width * scale)), min_side)
    else:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    return np.asarray(img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))
