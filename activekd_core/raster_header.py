"""Scientific TIFF headers: detection, safe opening, the first page's summary and every limit checked before decoding.

Bounded before decoding (:func:`inspect_raster`): pixel count of what will be decoded
(the window, or the whole image when it is not chipped, and each stored tile or strip,
since one is decoded whole), number of bands, number of chips, and every segment's byte
range against the file size (a truncated file is reported instead of decoding zeros).
The image is the file's first page: bands are its samples per pixel, as GDAL writes them
(pixel- or band-interleaved); further pages (overviews, masks) are ignored. Every way a
file can be refused comes back as an :class:`~activekd_core.image_open.ImageLoadError`
with a printable, bounded reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import tifffile

from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_items import ItemRef, Source, chip_windows, opened_source
from activekd_core.image_open import DEFAULT_MAX_PIXELS, ImageLoadError

DEFAULT_MAX_BANDS = 512
DEFAULT_MAX_CHIPS = 50_000
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


def is_tiff(source: Source) -> bool:
    """Whether a file starts with a TIFF or BigTIFF signature (any file name)."""
    try:
        with opened_source(source) as fh:
            return fh.read(4) in _TIFF_MAGIC
    except OSError:
        return False


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
    label = source_label(source, name)
    with open_tiff(source, label) as tf:
        page = first_page(tf, label)
        info = _info(tf, page)
        _check_limits(info, recipe, label, max_pixels=max_pixels, max_bands=max_bands, max_chips=max_chips)
        check_segments(tf, page, label, max_pixels)
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
        nodata=gdal_nodata(page),
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


def check_segments(tf: tifffile.TiffFile, page: tifffile.TiffPage, label: str, max_pixels: int) -> None:
    """Segment table consistent with the layout, inside the file, and each small enough to decode."""
    layout = segment_layout(page)
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


@dataclass(frozen=True)
class SegmentLayout:
    """Where a page's tiles or strips lie: a grid of segments per plane (one plane unless band-interleaved)."""

    tiled: bool
    planar: bool
    seg_w: int
    seg_h: int
    across: int
    down: int
    samples: int

    @property
    def count(self) -> int:
        """Number of segments in the page."""
        return self.across * self.down * (self.samples if self.planar else 1)

    def index(self, plane: int, row: int, col: int) -> int:
        """Position of one segment in the page's segment table."""
        return (plane * self.down + row) * self.across + col


def segment_layout(page: tifffile.TiffPage) -> SegmentLayout:
    """The segment grid of a page (its tiles, or its strips as one column)."""
    width, height = int(page.imagewidth), int(page.imagelength)
    planar = int(page.planarconfig) == 2 and int(page.samplesperpixel) > 1
    if page.is_tiled:
        tw, tl = int(page.tilewidth), int(page.tilelength)
        return SegmentLayout(True, planar, tw, tl, math.ceil(width / tw), math.ceil(height / tl), int(page.samplesperpixel))
    rps = int(page.rowsperstrip or height)
    rps = max(1, min(rps, height))
    return SegmentLayout(False, planar, width, rps, 1, math.ceil(height / rps), int(page.samplesperpixel))


@contextmanager
def open_tiff(source: Source, label: str) -> Iterator[tifffile.TiffFile]:
    """Open a TIFF/BigTIFF for reading; every failure (signature, header, I/O) is an :class:`ImageLoadError`."""
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
                raise ImageLoadError(label, f"unreadable TIFF header: {short_error(exc)}") from exc
            with tf:
                yield tf
    except ImageLoadError:
        raise
    except OSError as exc:
        if exc.errno is None:  # raised by a decoder on malformed data, not by the file system
            raise ImageLoadError(label, f"corrupt TIFF: {short_error(exc)}") from exc
        raise ImageLoadError(label, f"cannot read the file: {exc.strerror or short_error(exc)}") from exc
    except MemoryError as exc:
        raise ImageLoadError(label, "not enough memory to read this TIFF") from exc
    except Exception as exc:  # noqa: BLE001 - one hostile file must never stop a scan
        raise ImageLoadError(label, f"corrupt TIFF: {short_error(exc)}") from exc


def _check_bands_and_type(info: RasterInfo, label: str, max_bands: int) -> None:
    if info.bands > max_bands:
        raise ImageLoadError(label, f"too many bands: {info.bands:,} exceeds the limit of {max_bands:,}")
    if info.dtype == "unknown" or np.dtype(info.dtype).kind not in "biuf":
        raise ImageLoadError(label, f"unsupported sample type {info.dtype} (expected integers or real floats)")


def checked_page(tf: tifffile.TiffFile, label: str, max_bands: int) -> tuple[tifffile.TiffPage, RasterInfo]:
    """The first page and its summary, refusing too many bands or a non-real sample type."""
    page = first_page(tf, label)
    info = _info(tf, page)
    _check_bands_and_type(info, label, max_bands)
    return page, info


def first_page(tf: tifffile.TiffFile, label: str) -> tifffile.TiffPage:
    """The file's first page (the image), refusing other page structures and 3-D tiles."""
    try:
        page = tf.pages.first
    except Exception as exc:  # noqa: BLE001
        raise ImageLoadError(label, f"unreadable TIFF page: {short_error(exc)}") from exc
    if not isinstance(page, tifffile.TiffPage):
        raise ImageLoadError(label, "unsupported TIFF page structure")
    if int(page.imagedepth) > 1:
        raise ImageLoadError(label, "volumetric (3-D tiled) TIFF is not supported")
    return page


def gdal_nodata(page: tifffile.TiffPage) -> float | None:
    """The page's GDAL_NODATA value, or None when it has none (or an unreadable one)."""
    tag = page.tags.get(42113)
    if tag is None:
        return None
    try:
        value = float(str(tag.value).strip().strip("\0")[:64])
    except ValueError:
        return None
    return value


def _enum_name(value: Any) -> str:
    return value.name if isinstance(value, Enum) else str(value)


def source_label(source: Source, name: str | None) -> str:
    """The name used for a source in reasons: ``name``, the path, or the stream's name."""
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return str(getattr(source, "name", "<TIFF stream>"))


def short_error(exc: BaseException) -> str:
    """An exception as printable text of at most 200 characters (for reasons shown to people)."""
    text = f"{type(exc).__name__}: {exc}"
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:200]
