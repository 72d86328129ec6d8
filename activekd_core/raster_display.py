"""A raster as 8-bit RGB for display: pyramid level, band mapping, stretch, nodata, palettes, pool ranges.

Display (:func:`bands_to_rgb8`): bands mapped to R, G, B by the recipe (1-based band
numbers), stretched per band (stored pool percentiles, per-image percentiles, min-max or
the type's range), NaN/inf/nodata pixels shown as :data:`NODATA_RGB`; MINISWHITE is
inverted and PALETTE images go through their colour map. :func:`read_raster_rgb` reads
the smallest pyramid level that still gives the size asked for; every read first reserves
its estimated peak from :data:`activekd_core.decode_budget.DECODE_BUDGET`;
:func:`compute_band_ranges` samples the pool for a project-wide stretch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile

from activekd_core import decode_budget
from activekd_core.decode_budget import estimate_array_decode_bytes
from activekd_core.display_pixels import fit_size, grey_to_rgb, range_to_unit, shrink_factor, to_uint8
from activekd_core.display_recipe import NODATA_RGB, DisplayRecipe
from activekd_core.image_items import Source
from activekd_core.image_open import DEFAULT_MAX_PIXELS, ImageLoadError
from activekd_core.raster_header import (
    DEFAULT_MAX_BANDS,
    RasterInfo,
    check_segments,
    checked_page,
    display_bands,
    open_tiff,
    source_label,
)
from activekd_core.raster_windows import read_page_window

_PERCENTILE_SAMPLE = 1_000_000  # values per band used for one image's own percentiles


def read_raster_rgb(
    source: Source,
    recipe: DisplayRecipe,
    *,
    window: tuple[int, int, int, int] | None = None,
    name: str | None = None,
    max_side: int | None = None,
    min_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bands: int = DEFAULT_MAX_BANDS,
    require_valid: bool | None = None,
) -> npt.NDArray[np.uint8]:
    """Read a raster (or one window of it) as display RGB following the recipe.

    Args:
        source: A path or binary file object (left open).
        recipe: Band mapping, stretch, nodata.
        window: ``(x, y, w, h)`` of a chip, or None for the whole image.
        name: How to name the file in errors.
        max_side: Shrink so the longer side is at most this (None: full size).
        min_side: Or shrink so the shorter side is this (decode-at-size for training).
            With either, a file with overviews (COG / GDAL pyramids, tifffile's
            ``series[0].levels``) is read from the coarsest overview whose window still
            reaches that size, so a thumbnail never decodes the full resolution.
        max_pixels: Most pixels decoded.
        max_bands: Most bands the file may have.
        require_valid: Refuse images without a single valid (non-NaN, non-nodata) pixel.
            Default: True for whole images, False for chips (a chip of a scene's empty
            border is shown grey).

    Returns:
        uint8 array ``(H, W, 3)``.

    Raises:
        ImageLoadError: With the reason.
    """
    label = source_label(source, name)
    with open_tiff(source, label) as tf:
        page, info = checked_page(tf, label, max_bands)
        bands = display_bands(info.bands, recipe)
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE and info.bands == 1:
            bands = (1,)
        nodata = recipe.nodata if recipe.nodata is not None else info.nodata
        level, level_info, level_window = _pick_level(tf, page, info, window, max_side=max_side, min_side=min_side)
        check_segments(tf, level, label, max_pixels)
        with _reserve(level_info, level_window, len(bands)):  # the window's decode and stretch
            arr = read_page_window(tf, level, level_info, level_window, bands, label, max_pixels)
            if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
                rgb = _palette_rgb(arr[:, :, 0], page.colormap)
            else:
                if require_valid is None:
                    require_valid = window is None
                valid = _valid_mask(arr, nodata)
                if require_valid and not valid.any():
                    raise ImageLoadError(label, "no valid pixels: every value is NaN, infinite or the nodata value")
                rgb = bands_to_rgb8(arr, bands, recipe, valid=valid,
                                    invert=page.photometric == tifffile.PHOTOMETRIC.MINISWHITE)
            del arr
            return fit_size(rgb, max_side=max_side, min_side=min_side)


def _reserve(info: RasterInfo, window: tuple[int, int, int, int] | None, n_bands: int) -> AbstractContextManager[Any]:
    """A reservation of the process's decode budget for reading ``n_bands`` bands of a window."""
    if window is None:
        width, height = info.width, info.height
    else:
        x, y, w, h = window
        width, height = max(0, min(w, info.width - x)), max(0, min(h, info.height - y))
    try:
        itemsize = np.dtype(info.dtype).itemsize
    except TypeError:  # "unknown": count the widest sample
        itemsize = 8
    return decode_budget.DECODE_BUDGET.reserve(estimate_array_decode_bytes(width, height, n_bands, itemsize))


def _pick_level(
    tf: tifffile.TiffFile,
    page: tifffile.TiffPage,
    info: RasterInfo,
    window: tuple[int, int, int, int] | None,
    *,
    max_side: int | None,
    min_side: int | None,
) -> tuple[tifffile.TiffPage, RasterInfo, tuple[int, int, int, int] | None]:
    """The coarsest overview whose part of ``window`` still reaches the requested size."""
    if max_side is None and min_side is None:
        return page, info, window
    x, y, w, h = window if window is not None else (0, 0, info.width, info.height)
    w, h = min(w, info.width - x), min(h, info.height - y)
    if w < 1 or h < 1:
        return page, info, window  # read_page_window reports the bad window
    target = shrink_factor(h, w, max_side=max_side, min_side=min_side)
    try:
        levels = [lv.keyframe for lv in tf.series[0].levels[1:]] if tf.series else []
    except Exception:  # noqa: BLE001 - an odd pyramid: read the full resolution
        return page, info, window
    best = (page, info, window)
    for level in levels:
        if not isinstance(level, tifffile.TiffPage) or int(level.imagedepth) > 1:
            continue
        if level.samplesperpixel != page.samplesperpixel or level.dtype != page.dtype:
            continue
        lw, lh = int(level.imagewidth), int(level.imagelength)
        if not (0 < lw < info.width and 0 < lh < info.height):
            continue
        fx, fy = lw / info.width, lh / info.height
        x0, y0 = int(x * fx), int(y * fy)
        x1, y1 = min(lw, math.ceil((x + w) * fx)), min(lh, math.ceil((y + h) * fy))
        if x1 <= x0 or y1 <= y0:
            continue
        # Large enough when the level's window has at least the pixels the shrunk output needs.
        if (x1 - x0) < w * target - 0.5 or (y1 - y0) < h * target - 0.5:
            continue
        if (x1 - x0) * (y1 - y0) < _window_pixels(best):
            best = (level, replace(info, width=lw, height=lh), (x0, y0, x1 - x0, y1 - y0))
    return best


def _window_pixels(choice: tuple[tifffile.TiffPage, RasterInfo, tuple[int, int, int, int] | None]) -> int:
    """Pixels a level choice decodes."""
    _page, info, window = choice
    return window[2] * window[3] if window is not None else info.width * info.height


def bands_to_rgb8(
    arr: npt.NDArray,
    bands: Sequence[int],
    recipe: DisplayRecipe,
    *,
    valid: npt.NDArray[np.bool_] | None = None,
    invert: bool = False,
) -> npt.NDArray[np.uint8]:
    """Stretch ``(H, W, len(bands))`` samples to display RGB (pure; see the module docstring).

    Args:
        arr: Samples of the shown bands, in ``bands`` order.
        bands: Their 1-based band numbers (used to find stored ranges).
        recipe: Stretch mode, percentiles and stored ranges.
        valid: Pixels to show; others become :data:`NODATA_RGB`. Default: finite pixels.
        invert: Invert the result (TIFF MINISWHITE).

    Returns:
        uint8 array ``(H, W, 3)``.
    """
    if arr.ndim != 3 or arr.shape[2] != len(bands) or len(bands) not in (1, 3):
        raise ValueError(f"need (H, W, 1 or 3) samples matching {len(bands)} band(s), got shape {arr.shape}")
    if valid is None:
        valid = _valid_mask(arr, None)
    mode = recipe.stretch
    if mode == "auto":
        mode = "none" if arr.dtype in (np.uint8, np.bool_) else "percentile"
    channels = []
    for k, band in enumerate(bands):
        values = arr[:, :, k]
        low, high = _band_limits(values, valid, arr.dtype, mode, recipe, band)
        channels.append(to_uint8(range_to_unit(values, low, high)))
    out = np.stack(channels, axis=2) if len(channels) == 3 else grey_to_rgb(channels[0])
    if invert:
        out = 255 - out
    out[~valid] = NODATA_RGB
    return out


def _band_limits(
    values: npt.NDArray, valid: npt.NDArray[np.bool_], dtype: np.dtype, mode: str, recipe: DisplayRecipe, band: int
) -> tuple[float, float]:
    if mode == "none":
        if dtype == np.bool_:
            return (0.0, 1.0)
        if np.dtype(dtype).kind == "f":
            return (0.0, 1.0)
        limits = np.iinfo(dtype)
        return (float(limits.min), float(limits.max)) if limits.min < 0 else (0.0, float(limits.max))
    if mode == "percentile":
        stored = recipe.band_range(band)
        if stored is not None:
            return stored
    data = _sample(values[valid])
    if data.size == 0:
        return (0.0, 0.0)
    if mode == "minmax":
        return (float(data.min()), float(data.max()))
    low, high = np.percentile(data, recipe.percentiles)
    return (float(low), float(high))


def _sample(values: npt.NDArray, limit: int = _PERCENTILE_SAMPLE) -> npt.NDArray[np.float64]:
    flat = values.reshape(-1)
    if flat.size > limit:
        flat = flat[:: math.ceil(flat.size / limit)]
    return flat.astype(np.float64)


def _valid_mask(arr: npt.NDArray, nodata: float | None) -> npt.NDArray[np.bool_]:
    valid = np.ones(arr.shape[:2], dtype=bool)
    if arr.dtype.kind == "f":
        valid &= np.isfinite(arr).all(axis=2)
    if nodata is not None and not math.isnan(nodata):
        valid &= ~(arr == nodata).any(axis=2)
    return valid


def _palette_rgb(indices: npt.NDArray, colormap: npt.NDArray) -> npt.NDArray[np.uint8]:
    cmap = np.asarray(colormap)
    if cmap.dtype != np.uint8:
        cmap = (cmap.astype(np.float64) / 257.0).round().astype(np.uint8) if cmap.max() > 255 else cmap.astype(np.uint8)
    idx = np.clip(indices.astype(np.int64), 0, cmap.shape[1] - 1)
    return np.ascontiguousarray(cmap[:, idx].transpose(1, 2, 0))


def compute_band_ranges(
    samples: Sequence[tuple[Source, tuple[int, int, int, int] | None]],
    recipe: DisplayRecipe,
    *,
    max_items: int = 32,
    values_per_item: int = 65_536,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[tuple[int, float, float], ...]:
    """Per-band percentile limits over a random sample of the pool, to store in the recipe.

    Reads up to ``max_items`` items (files or chip windows, drawn with ``seed``), takes up
    to ``values_per_item`` valid values per shown band from each (a regular subsample) and
    returns the recipe's ``percentiles`` of the pooled values. Unreadable items are
    skipped (the scan reports them). Store the result with
    ``dataclasses.replace(recipe, band_ranges=result)``; that changes the recipe's key.

    Args:
        samples: ``(source, window)`` pairs (window None = whole image).
        recipe: Bands, percentiles and nodata to use.
        max_items: Most items read.
        values_per_item: Most values per band taken from one item.
        seed: Random seed of the draw.
        max_pixels: Pixel limit of one read.

    Returns:
        ``(band, low, high)`` for each band that had at least one valid value, by band.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(samples))[:max_items]
    pooled: dict[int, list[npt.NDArray[np.float64]]] = {}
    for i in order:
        source, window = samples[int(i)]
        try:
            with open_tiff(source, source_label(source, None)) as tf:
                page, info = checked_page(tf, "sample", DEFAULT_MAX_BANDS)
                bands = display_bands(info.bands, recipe)
                check_segments(tf, page, "sample", max_pixels)
                with _reserve(info, window, len(bands)):
                    arr = read_page_window(tf, page, info, window, bands, "sample", max_pixels)
                    nodata = recipe.nodata if recipe.nodata is not None else info.nodata
                    valid = _valid_mask(arr, nodata)
                    for k, band in enumerate(bands):
                        values = arr[:, :, k][valid]
                        if values.size:
                            pooled.setdefault(band, []).append(_sample(values, values_per_item))
        except (ImageLoadError, OSError):
            continue
    result = []
    for band in sorted(pooled):
        low, high = np.percentile(np.concatenate(pooled[band]), recipe.percentiles)
        result.append((band, float(low), float(high)))
    return tuple(result)
