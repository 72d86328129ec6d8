"""Scientific TIFF / GeoTIFF rasters (16-bit, float, many bands, large scenes) as 8-bit RGB.

Read with tifffile (compressions other than Deflate/LZMA need ``imagecodecs``, which the
requirements pin). The image is the file's first page: bands are its samples per pixel, as
GDAL writes them (pixel- or band-interleaved); further pages (overviews, masks) are ignored.

* **Windows without reading the whole image** (:func:`read_window`): the tiles (tiled
  TIFF) or strips (striped TIFF) that intersect the window are listed from the page's
  segment table, only those byte ranges are read
  (``TiffFile.filehandle.read_segments``) and decoded one by one (``TiffPage.decode``),
  and only the requested bands are kept; with band-interleaved (planar) files the other
  bands' segments are not even read. No zarr store is needed. Peak memory is the window
  plus one decoded segment.
* **Bounded before decoding** (:func:`inspect_raster`): pixel count of what will be
  decoded (the window, or the whole image when it is not chipped, and each stored tile
  or strip, since one is decoded whole), number of bands, number of chips, and every
  segment's byte range against the file size (a truncated file is reported instead of
  decoding zeros).
* **Display** (:func:`bands_to_rgb8`): bands mapped to R, G, B by the recipe (1-based band
  numbers), stretched per band (stored pool percentiles, per-image percentiles, min-max or
  the type's range), NaN/inf/nodata pixels shown as :data:`NODATA_RGB`; MINISWHITE is
  inverted and PALETTE images go through their colour map.
* **Geo-reference** (:func:`geo_metadata`): ModelPixelScale, ModelTiepoint,
  ModelTransformation, the GeoKey directory (raw and decoded by tifffile) and GDAL_NODATA,
  JSON-ready, plus the affine geotransform; :func:`window_geotransform` shifts it to a chip.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile

from activekd_core.display_pixels import fit_size, grey_to_rgb, range_to_unit, shrink_factor, to_uint8
from activekd_core.display_recipe import NODATA_RGB, DisplayRecipe
from activekd_core.image_items import ItemRef, Source, chip_windows, opened_source
from activekd_core.image_open import DEFAULT_MAX_PIXELS, ImageLoadError

DEFAULT_MAX_BANDS = 512
DEFAULT_MAX_CHIPS = 50_000
_PERCENTILE_SAMPLE = 1_000_000  # values per band used for one image's own percentiles
_GEO_TAGS = {
    33550: "ModelPixelScaleTag",
    33922: "ModelTiepointTag",
    34264: "ModelTransformationTag",
    34735: "GeoKeyDirectoryTag",
    34736: "GeoDoubleParamsTag",
    34737: "GeoAsciiParamsTag",
    42113: "GDAL_NODATA",
}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")



@dataclass(frozen=True)
class RasterInfo:
    """What a scan learns from a TIFF header (no pixel decoded).

    Attributes:
        width: Image width in pixels.
        height: Image height in pixels.
        bands: Samples per pixel (bands).
        dtype: NumPy dtype name of one sample (``"uint16"``, ``"float32"``...).
        photometric: TIFF photometric name (``"MINISBLACK"``, ``"RGB"``, ``"PALETTE"``...).
        compression: TIFF compression name.
        tiled: Whether the image is stored in tiles (else strips).
        bigtiff: Whether the file is a BigTIFF.
        nodata: The file's GDAL_NODATA value, or None.
        georeferenced: Whether GeoTIFF tags are present.
    """

    width: int
    height: int
    bands: int
    dtype: str
    photometric: str
    compression: str
    tiled: bool
    bigtiff: bool
    nodata: float | None
    georeferenced: bool


# ----------------------------------------------------------------------------- detection
def is_tiff(source: Source) -> bool:
    """Whether a file starts with a TIFF or BigTIFF signature (any file name)."""
    try:
        with opened_source(source) as fh:
            return fh.read(4) in _TIFF_MAGIC
    except OSError:
        return False


# ----------------------------------------------------------------------------- header
def inspect_raster(
    source: Source,
    recipe: DisplayRecipe | None = None,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bands: int = DEFAULT_MAX_BANDS,
    max_chips: int = DEFAULT_MAX_CHIPS,
) -> RasterInfo:
    """Check that a TIFF can be shown, reading only its header (the scan check).

    Args:
        source: A path or binary file object (left open).
        recipe: Decides whether the image is chipped (then ``max_pixels`` bounds each chip
            and ``max_chips`` their number) and which bands must exist.
        name: How to name the file in errors.
        max_pixels: Most pixels decoded at once (whole image, or one chip).
        max_bands: Most bands accepted.
        max_chips: Most chips one file may contribute.

    Returns:
        The raster's summary.

    Raises:
        ImageLoadError: Not a TIFF, unsupported layout, over a limit, requested bands
            missing, or truncated (a segment lies beyond the end of the file).
    """
    recipe = recipe or DisplayRecipe()
    label = _label(source, name)
    with _tiff(source, label) as tf:
        page = _first_page(tf, label)
        info = _info(tf, page)
        _check_limits(info, recipe, label, max_pixels=max_pixels, max_bands=max_bands, max_chips=max_chips)
        _check_segments(tf, page, label, max_pixels)
    return info


def _info(tf: tifffile.TiffFile, page: tifffile.TiffPage) -> RasterInfo:
    return RasterInfo(
        width=int(page.imagewidth),
        height=int(page.imagelength),
        bands=int(page.samplesperpixel),
        dtype=str(page.dtype) if page.dtype is not None else "unknown",
        photometric=_enum_name(page.photometric),
        compression=_enum_name(page.compression),
        tiled=bool(page.is_tiled),
        bigtiff=bool(tf.is_bigtiff),
        nodata=_gdal_nodata(page),
        georeferenced=any(code in page.tags for code in (33550, 33922, 34264, 34735)),
    )


def _check_limits(info: RasterInfo, recipe: DisplayRecipe, label: str, *, max_pixels: int, max_bands: int, max_chips: int) -> None:
    if info.width < 1 or info.height < 1:
        raise ImageLoadError(label, f"invalid size {info.width}x{info.height}")
    _check_bands_and_type(info, label, max_bands)
    bands = display_bands(info.bands, recipe)
    missing = [b for b in bands if b > info.bands]
    if missing:
        raise ImageLoadError(label, f"band {missing[0]} is mapped to a colour but the file has {info.bands} band(s)")
    pixels = info.width * info.height
    if recipe.chip_size is None:
        if pixels > max_pixels:
            raise ImageLoadError(
                label,
                f"too large: {info.width}x{info.height} = {pixels:,} pixels exceeds the limit of {max_pixels:,}; "
                "import it as chips (a chip size in the display recipe)",
            )
        return
    if recipe.chip_size * recipe.chip_size > max_pixels:
        raise ImageLoadError(label, f"chip size {recipe.chip_size} exceeds the pixel limit of {max_pixels:,}")
    step = recipe.chip_size - recipe.chip_overlap
    n_chips = _n_starts(info.width, recipe.chip_size, step) * _n_starts(info.height, recipe.chip_size, step)
    if n_chips > max_chips:
        raise ImageLoadError(label, f"too many chips: {info.width}x{info.height} gives {n_chips:,}, over the limit of {max_chips:,}")


def _n_starts(extent: int, size: int, step: int) -> int:
    if extent <= size:
        return 1
    n = (extent - size) // step + 1
    return n + (1 if (n - 1) * step + size < extent else 0)


def _check_segments(tf: tifffile.TiffFile, page: tifffile.TiffPage, label: str, max_pixels: int) -> None:
    """Segment table consistent with the layout, inside the file, and each small enough to decode."""
    layout = _segment_layout(page)
    seg_pixels = layout.seg_w * layout.seg_h
    seg_samples = seg_pixels * (1 if layout.planar else layout.samples)
    if seg_pixels > max_pixels or seg_samples > 4 * max_pixels:
        kind = "tiles" if layout.tiled else "strips"
        raise ImageLoadError(
            label,
            f"stored in {kind} of {layout.seg_w}x{layout.seg_h} pixels, more than the pixel limit of {max_pixels:,} "
            "to decode at once; save it tiled (e.g. gdal_translate -co TILED=YES) to read it in chips",
        )
    size = tf.filehandle.size
    offsets = np.asarray(page.dataoffsets, dtype=np.uint64)
    counts = np.asarray(page.databytecounts, dtype=np.uint64)
    expected = layout.count
    if offsets.size != expected or counts.size != expected:
        raise ImageLoadError(label, f"corrupt TIFF: {offsets.size} data segments listed, {expected} expected for this layout")
    ends = offsets + counts
    beyond = np.flatnonzero((counts > 0) & (ends > np.uint64(size)))
    if beyond.size:
        raise ImageLoadError(
            label, f"truncated: {beyond.size} of {expected} data segments end beyond the end of the file ({size:,} bytes)"
        )


def display_bands(n_bands: int, recipe: DisplayRecipe) -> tuple[int, ...]:
    """The 1-based bands shown (3 = R, G, B; 1 = grey) for a file with ``n_bands`` bands."""
    if recipe.bands is not None:
        return recipe.bands
    return (1, 2, 3) if n_bands >= 3 else (1,)


def raster_items(file_id: str, info: RasterInfo, recipe: DisplayRecipe) -> list[ItemRef]:
    """The items one raster contributes: the whole image, or its chips (``recipe.chip_size``)."""
    if recipe.chip_size is None:
        return [ItemRef(file_id)]
    return [ItemRef(file_id, window=w) for w in chip_windows(info.width, info.height, recipe.chip_size, recipe.chip_overlap)]


# ----------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class _Layout:
    tiled: bool
    planar: bool
    seg_w: int
    seg_h: int
    across: int
    down: int
    samples: int

    @property
    def count(self) -> int:
        return self.across * self.down * (self.samples if self.planar else 1)

    def index(self, plane: int, row: int, col: int) -> int:
        return (plane * self.down + row) * self.across + col


def _segment_layout(page: tifffile.TiffPage) -> _Layout:
    width, height = int(page.imagewidth), int(page.imagelength)
    planar = int(page.planarconfig) == 2 and int(page.samplesperpixel) > 1
    if page.is_tiled:
        tw, tl = int(page.tilewidth), int(page.tilelength)
        return _Layout(True, planar, tw, tl, math.ceil(width / tw), math.ceil(height / tl), int(page.samplesperpixel))
    rps = int(page.rowsperstrip or height)
    rps = max(1, min(rps, height))
    return _Layout(False, planar, width, rps, 1, math.ceil(height / rps), int(page.samplesperpixel))


def read_window(
    source: Source,
    window: tuple[int, int, int, int] | None = None,
    bands: Sequence[int] | None = None,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bands: int = DEFAULT_MAX_BANDS,
) -> npt.NDArray:
    """Read some bands of a window of the first page, decoding only the segments it needs.

    Args:
        source: A path or binary file object (left open).
        window: ``(x, y, w, h)`` in pixels (clipped to the image); None = whole image.
        bands: 1-based band numbers to return, in order; None = all bands.
        name: How to name the file in errors.
        max_pixels: Most window pixels accepted.
        max_bands: Most bands the file may have.

    Returns:
        Array ``(h, w, len(bands))`` in the file's sample type (palette images: indices).

    Raises:
        ImageLoadError: Over a limit, window outside the image, or undecodable data.
    """
    label = _label(source, name)
    with _tiff(source, label) as tf:
        page, info = _checked_page(tf, label, max_bands)
        _check_segments(tf, page, label, max_pixels)
        return _read_window(tf, page, info, window, bands, label, max_pixels)


def _read_window(
    tf: tifffile.TiffFile,
    page: tifffile.TiffPage,
    info: RasterInfo,
    window: tuple[int, int, int, int] | None,
    bands: Sequence[int] | None,
    label: str,
    max_pixels: int,
) -> npt.NDArray:
    x0, y0, w, h = window if window is not None else (0, 0, info.width, info.height)
    x1, y1 = min(x0 + w, info.width), min(y0 + h, info.height)
    if x0 < 0 or y0 < 0 or x0 >= x1 or y0 >= y1:
        raise ImageLoadError(label, f"window {x0},{y0},{w},{h} lies outside the {info.width}x{info.height} image")
    w, h = x1 - x0, y1 - y0
    if w * h > max_pixels:
        raise ImageLoadError(label, f"too large: a {w}x{h} window = {w * h:,} pixels exceeds the limit of {max_pixels:,}")
    band_list = list(range(1, info.bands + 1)) if bands is None else [int(b) for b in bands]
    for b in band_list:
        if not 1 <= b <= info.bands:
            raise ImageLoadError(label, f"band {b} does not exist (the file has {info.bands} band(s))")
    layout = _segment_layout(page)
    fill = _gdal_nodata(page)
    dtype = page.dtype
    out = np.empty((h, w, len(band_list)), dtype=dtype)
    out[...] = fill if fill is not None and _fits(fill, dtype) else 0
    rows = range(y0 // layout.seg_h, (y1 - 1) // layout.seg_h + 1)
    cols = range(x0 // layout.seg_w, (x1 - 1) // layout.seg_w + 1)
    planes = sorted({b - 1 for b in band_list}) if layout.planar else [0]
    wanted = [layout.index(p, r, c) for p in planes for r in rows for c in cols]
    offsets = [page.dataoffsets[i] for i in wanted]
    counts = [page.databytecounts[i] for i in wanted]
    decode = page.decode
    try:
        for data, index in tf.filehandle.read_segments(offsets, counts, indices=wanted, sort=True):
            segment, (plane, _depth, sy, sx, _s), _shape = decode(
                data, index, jpegtables=page.jpegtables, jpegheader=page.jpegheader
            )
            if segment is None:
                continue  # a sparse (empty) segment: keeps the fill value
            _paste(out, segment, plane, sy, sx, x0, y0, x1, y1, band_list, layout.planar)
    except ImageLoadError:
        raise
    except KeyError as exc:  # tifffile: "<COMPRESSION.X> requires the 'imagecodecs' package"
        raise ImageLoadError(label, f"cannot decode {info.compression} compression: {_bounded(exc)}") from exc
    except MemoryError as exc:
        raise ImageLoadError(label, "not enough memory to decode this window") from exc
    except Exception as exc:  # noqa: BLE001 - codecs raise many types on corrupt data
        raise ImageLoadError(label, f"corrupt or truncated image data: {_bounded(exc)}") from exc
    return out


def _paste(
    out: npt.NDArray, segment: npt.NDArray, plane: int, sy: int, sx: int,
    x0: int, y0: int, x1: int, y1: int, band_list: list[int], planar: bool,
) -> None:
    seg = segment[0]  # (length, width, contig samples); drops the depth axis
    top, left = max(sy, y0), max(sx, x0)
    bottom, right = min(sy + seg.shape[0], y1), min(sx + seg.shape[1], x1)
    if top >= bottom or left >= right:
        return
    src = seg[top - sy : bottom - sy, left - sx : right - sx]
    dst = (slice(top - y0, bottom - y0), slice(left - x0, right - x0))
    if planar:
        for k, b in enumerate(band_list):
            if b - 1 == plane:
                out[dst[0], dst[1], k] = src[:, :, 0]
    else:
        out[dst[0], dst[1], :] = src[:, :, [b - 1 for b in band_list]]


# ----------------------------------------------------------------------------- display
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
    label = _label(source, name)
    with _tiff(source, label) as tf:
        page, info = _checked_page(tf, label, max_bands)
        bands = display_bands(info.bands, recipe)
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE and info.bands == 1:
            bands = (1,)
        nodata = recipe.nodata if recipe.nodata is not None else info.nodata
        level, level_info, level_window = _pick_level(tf, page, info, window, max_side=max_side, min_side=min_side)
        _check_segments(tf, level, label, max_pixels)
        arr = _read_window(tf, level, level_info, level_window, bands, label, max_pixels)
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
            rgb = _palette_rgb(arr[:, :, 0], page.colormap)
        else:
            if require_valid is None:
                require_valid = window is None
            valid = _valid_mask(arr, nodata)
            if require_valid and not valid.any():
                raise ImageLoadError(label, "no valid pixels: every value is NaN, infinite or the nodata value")
            rgb = bands_to_rgb8(arr, bands, recipe, valid=valid, invert=page.photometric == tifffile.PHOTOMETRIC.MINISWHITE)
    return fit_size(rgb, max_side=max_side, min_side=min_side)


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
        return page, info, window  # _read_window reports the bad window
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


# ----------------------------------------------------------------------------- pool stretch
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
            with _tiff(source, _label(source, None)) as tf:
                page, info = _checked_page(tf, "sample", DEFAULT_MAX_BANDS)
                bands = display_bands(info.bands, recipe)
                _check_segments(tf, page, "sample", max_pixels)
                arr = _read_window(tf, page, info, window, bands, "sample", max_pixels)
        except (ImageLoadError, OSError):
            continue
        nodata = recipe.nodata if recipe.nodata is not None else info.nodata
        valid = _valid_mask(arr, nodata)
        for k, band in enumerate(bands):
            values = arr[:, :, k][valid]
            if values.size:
                pooled.setdefault(band, []).append(_sample(values, values_per_item))
    result = []
    for band in sorted(pooled):
        low, high = np.percentile(np.concatenate(pooled[band]), recipe.percentiles)
        result.append((band, float(low), float(high)))
    return tuple(result)


# ----------------------------------------------------------------------------- geo
def geo_metadata(source: Source, *, name: str | None = None) -> dict[str, Any] | None:
    """The GeoTIFF geo-reference of a raster, JSON-ready, or None when it has none.

    Returns:
        ``{"tags": {tag name: raw values}, "keys": {GeoKey name: value}, "geotransform":
        [x0, dx, rx, y0, ry, dy] or None, "nodata": float or None}``. ``tags`` holds the
        raw ModelPixelScale/ModelTiepoint/ModelTransformation/GeoKeyDirectory/GeoDoubleParams/
        GeoAsciiParams/GDAL_NODATA values (enough to write them back unchanged);
        ``geotransform`` uses GDAL's order (pixel (col, row) maps to
        ``x = x0 + col*dx + row*rx``, ``y = y0 + col*ry + row*dy``, pixel corners).
        Text values are bounded to 1,000 characters.
    """
    label = _label(source, name)
    with _tiff(source, label) as tf:
        page = _first_page(tf, label)
        tags = {}
        for code, tag_name in _GEO_TAGS.items():
            tag = page.tags.get(code)
            if tag is not None:
                tags[tag_name] = _jsonable(tag.value)
        if not any(k in tags for k in ("ModelPixelScaleTag", "ModelTiepointTag", "ModelTransformationTag", "GeoKeyDirectoryTag")):
            return None
        try:
            decoded = tf.geotiff_metadata or {}
        except Exception:  # noqa: BLE001 - a malformed key directory still keeps the raw tags
            decoded = {}
        keys = {str(k)[:100]: _jsonable(v) for k, v in decoded.items() if k not in ("ModelPixelScale", "ModelTiepoint", "ModelTransformation")}
        return {"tags": tags, "keys": keys, "geotransform": _geotransform(tags), "nodata": _gdal_nodata(page)}


def _geotransform(tags: dict[str, Any]) -> list[float] | None:
    matrix = tags.get("ModelTransformationTag")
    if isinstance(matrix, list) and len(matrix) >= 8:
        return [float(matrix[3]), float(matrix[0]), float(matrix[1]), float(matrix[7]), float(matrix[4]), float(matrix[5])]
    scale, tie = tags.get("ModelPixelScaleTag"), tags.get("ModelTiepointTag")
    if isinstance(scale, list) and isinstance(tie, list) and len(scale) >= 2 and len(tie) >= 6:
        i, j, x, y = float(tie[0]), float(tie[1]), float(tie[3]), float(tie[4])
        dx, dy = float(scale[0]), -float(scale[1])
        return [x - i * dx, dx, 0.0, y - j * dy, 0.0, dy]
    return None


def window_geotransform(geotransform: Sequence[float], x: int, y: int) -> list[float]:
    """The geotransform of a chip whose top-left pixel is ``(x, y)`` of the full image."""
    x0, dx, rx, y0, ry, dy = (float(v) for v in geotransform)
    return [x0 + x * dx + y * rx, dx, rx, y0 + x * ry + y * dy, ry, dy]


# ----------------------------------------------------------------------------- helpers
@contextmanager
def _tiff(source: Source, label: str) -> Iterator[tifffile.TiffFile]:
    try:
        with opened_source(source) as fh:
            if fh.read(4) not in _TIFF_MAGIC:
                raise ImageLoadError(label, "not a TIFF file (no TIFF or BigTIFF signature)")
            fh.seek(0)
            try:
                # A descriptor opened by open_image_file has an int ``name``: name it for tifffile.
                tf = tifffile.TiffFile(fh, name=os.path.basename(label) or "raster.tif")
            except ImageLoadError:
                raise
            except Exception as exc:  # noqa: BLE001 - a hostile header must come back as a reason
                raise ImageLoadError(label, f"unreadable TIFF header: {_bounded(exc)}") from exc
            with tf:
                yield tf
    except ImageLoadError:
        raise
    except OSError as exc:
        if exc.errno is None:  # raised by a decoder on malformed data, not by the file system
            raise ImageLoadError(label, f"corrupt TIFF: {_bounded(exc)}") from exc
        raise ImageLoadError(label, f"cannot read the file: {exc.strerror or _bounded(exc)}") from exc
    except MemoryError as exc:
        raise ImageLoadError(label, "not enough memory to read this TIFF") from exc
    except Exception as exc:  # noqa: BLE001 - one hostile file must never stop a scan
        raise ImageLoadError(label, f"corrupt TIFF: {_bounded(exc)}") from exc


def _check_bands_and_type(info: RasterInfo, label: str, max_bands: int) -> None:
    if info.bands > max_bands:
        raise ImageLoadError(label, f"too many bands: {info.bands:,} exceeds the limit of {max_bands:,}")
    if info.dtype == "unknown" or np.dtype(info.dtype).kind not in "biuf":
        raise ImageLoadError(label, f"unsupported sample type {info.dtype} (expected integers or real floats)")


def _checked_page(tf: tifffile.TiffFile, label: str, max_bands: int) -> tuple[tifffile.TiffPage, RasterInfo]:
    """The first page and its summary, refusing too many bands or a non-real sample type."""
    page = _first_page(tf, label)
    info = _info(tf, page)
    _check_bands_and_type(info, label, max_bands)
    return page, info


def _first_page(tf: tifffile.TiffFile, label: str) -> tifffile.TiffPage:
    try:
        page = tf.pages.first
    except Exception as exc:  # noqa: BLE001
        raise ImageLoadError(label, f"unreadable TIFF page: {_bounded(exc)}") from exc
    if not isinstance(page, tifffile.TiffPage):
        raise ImageLoadError(label, "unsupported TIFF page structure")
    if int(page.imagedepth) > 1:
        raise ImageLoadError(label, "volumetric (3-D tiled) TIFF is not supported")
    return page


def _gdal_nodata(page: tifffile.TiffPage) -> float | None:
    tag = page.tags.get(42113)
    if tag is None:
        return None
    try:
        value = float(str(tag.value).strip().strip("\0")[:64])
    except ValueError:
        return None
    return value


def _fits(value: float, dtype: np.dtype) -> bool:
    if math.isnan(value):
        return np.dtype(dtype).kind == "f"
    if np.dtype(dtype).kind in "iu":
        limits = np.iinfo(dtype)
        return float(value).is_integer() and limits.min <= value <= limits.max
    return True


def _enum_name(value: Any) -> str:
    return value.name if isinstance(value, Enum) else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return int(value.value) if isinstance(value.value, int) else str(value.value)[:1000]
    if isinstance(value, (bytes, bytearray)):
        return value.decode("latin-1")[:1000]
    if isinstance(value, str):
        return value[:1000]
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in list(value)[:10_000]]
    return str(value)[:1000]


def _label(source: Source, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return str(getattr(source, "name", "<TIFF stream>"))


def _bounded(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:200]
