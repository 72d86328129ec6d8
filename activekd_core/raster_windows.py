"""Reading a window of a raster without reading the whole image.

:func:`read_window`: the tiles (tiled TIFF) or strips (striped TIFF) that intersect the
window are listed from the page's segment table, only those byte ranges are read
(``TiffFile.filehandle.read_segments``) and decoded one by one (``TiffPage.decode``), and
only the requested bands are kept; with band-interleaved (planar) files the other bands'
segments are not even read. No zarr store is needed. Peak memory is the window plus one
decoded segment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import tifffile

from activekd_core.image_items import Source
from activekd_core.image_open import DEFAULT_MAX_PIXELS, ImageLoadError
from activekd_core.raster_header import (
    DEFAULT_MAX_BANDS,
    RasterInfo,
    check_segments,
    checked_page,
    gdal_nodata,
    open_tiff,
    segment_layout,
    short_error,
    source_label,
)


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
    label = source_label(source, name)
    with open_tiff(source, label) as tf:
        page, info = checked_page(tf, label, max_bands)
        check_segments(tf, page, label, max_pixels)
        return read_page_window(tf, page, info, window, bands, label, max_pixels)


def read_page_window(
    tf: tifffile.TiffFile,
    page: tifffile.TiffPage,
    info: RasterInfo,
    window: tuple[int, int, int, int] | None,
    bands: Sequence[int] | None,
    label: str,
    max_pixels: int,
) -> npt.NDArray:
    """:func:`read_window` on a page already opened and checked: decode only the segments under
    ``window`` (None: the whole page) and keep ``bands`` (1-based; None: all), unset pixels
    filled with the page's nodata value when it fits the sample type, else 0."""
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
    layout = segment_layout(page)
    fill = gdal_nodata(page)
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
        raise ImageLoadError(label, f"cannot decode {info.compression} compression: {short_error(exc)}") from exc
    except MemoryError as exc:
        raise ImageLoadError(label, "not enough memory to decode this window") from exc
    except Exception as exc:  # noqa: BLE001 - codecs raise many types on corrupt data
        raise ImageLoadError(label, f"corrupt or truncated image data: {short_error(exc)}") from exc
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


def _fits(value: float, dtype: np.dtype) -> bool:
    if math.isnan(value):
        return np.dtype(dtype).kind == "f"
    if np.dtype(dtype).kind in "iu":
        limits = np.iinfo(dtype)
        return float(value).is_integer() and limits.min <= value <= limits.max
    return True
