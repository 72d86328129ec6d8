"""One entry point for the formats Pillow does not show properly: DICOM and scientific TIFF.

The image scan and the pixel loader call three functions:

* :func:`sniff_format` (cheap: at most 132 bytes read) says which reader a file needs:
  ``"dicom"`` (by content, whatever the name; or by a DICOM suffix), ``"tiff"`` (TIFF or
  BigTIFF signature) or ``"other"`` (leave it to Pillow).
* :func:`scan_entries` checks a DICOM or TIFF file from its header (limits, truncation,
  decoders; no pixel decoded) and lists the items it contributes: one per file, one per
  DICOM frame (``recipe.frames="each"``) or one per chip (``recipe.chip_size``).
* :func:`read_display_rgb` turns one item into the uint8 ``(H, W, 3)`` array that the page
  shows, the teacher encodes and the student trains on.

TIFFs that Pillow already shows correctly (8-bit grey/RGB/RGBA, no geo-reference, small
enough, no chips requested) can stay on the Pillow path, which also applies the EXIF
orientation: :func:`needs_raster_reader` tells them apart.

Candidate files: :func:`is_candidate_name` accepts the usual image suffixes, DICOM
suffixes, names without a suffix and names whose "suffix" is only digits (PACS exports
are often named by UID, e.g. ``1.2.840.113619.2.55.3.12``). Those without a known suffix
are images only when :func:`sniff_format` finds the DICOM marker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from activekd_core import dicom_images, raster_images
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_items import ItemRef
from activekd_core.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageLoadError

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
_FLOAT_CHECK_SIDE = 64  # a float raster is read once at scan time, at most this size where it has overviews

Source = Path | str | BinaryIO


def is_candidate_name(name: str) -> bool:
    """Whether a file name may hold an image (see the module docstring)."""
    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES or suffix == "" or suffix[1:].isdigit()


def sniff_format(source: Source, name: str | None = None) -> str:
    """Which reader a file needs: ``"dicom"``, ``"tiff"`` or ``"other"``.

    Args:
        source: A path or a binary file object (read from its start, left open).
        name: The file's name when ``source`` is a file object (for its suffix).

    Returns:
        ``"dicom"`` when the DICM marker follows the 128-byte preamble, or the name has a
        DICOM suffix (such a file without the marker is then refused with that reason);
        ``"tiff"`` for a TIFF/BigTIFF signature; else ``"other"``.
    """
    if dicom_images.is_dicom(source):
        return "dicom"
    if raster_images.is_tiff(source):
        return "tiff"
    label = name if name is not None else (str(source) if isinstance(source, (str, os.PathLike)) else "")
    if os.path.splitext(label)[1].lower() in DICOM_SUFFIXES:
        return "dicom"
    return "other"


def needs_raster_reader(info: raster_images.RasterInfo, recipe: DisplayRecipe, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bool:
    """Whether a TIFF must go through :mod:`activekd_core.raster_images` rather than Pillow.

    True for anything but plain 8-bit images with 1, 3 or 4 samples: more than 8 bits,
    floats, other band counts, geo-referenced files, an explicit band mapping, chips, or
    more pixels than ``max_pixels`` (then chips are the only way).
    """
    plain = (
        info.dtype == "uint8"
        and info.bands in (1, 3, 4)
        and info.photometric in ("MINISBLACK", "MINISWHITE", "RGB", "PALETTE", "YCBCR")
        and not info.georeferenced
        and recipe.bands is None
        and recipe.chip_size is None
        and info.width * info.height <= max_pixels
    )
    return not plain


def scan_entries(
    source: Source,
    file_id: str,
    recipe: DisplayRecipe,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = dicom_images.DEFAULT_MAX_FRAMES,
    max_bands: int = raster_images.DEFAULT_MAX_BANDS,
    max_chips: int = raster_images.DEFAULT_MAX_CHIPS,
) -> list[ItemRef]:
    """Check a DICOM or TIFF file from its header and list its items.

    Args:
        source: A path or a binary file object (left open).
        file_id: The file's id (for the items' ids).
        recipe: The project's display recipe (frame mode, chips, bands).
        name: How to name the file in errors (default: the path).
        max_pixels: Most pixels decoded at once (a frame, an image or a chip).
        max_frames: Most frames of a DICOM file.
        max_bands: Most bands of a raster.
        max_chips: Most chips per raster.

    Returns:
        The items, in order (frame order, or chips row by row).

    Raises:
        ImageLoadError: With the reason the file is skipped.
        ValueError: When the file is neither DICOM nor TIFF (use the Pillow path).
    """
    header = _inspect_header(source, recipe, name=name, max_pixels=max_pixels, max_frames=max_frames,
                             max_bands=max_bands, max_chips=max_chips)
    if header is None:
        raise ValueError("neither DICOM nor TIFF: read it with the Pillow path")
    kind, info = header
    if kind == "dicom":
        return dicom_images.dicom_items(file_id, info, recipe)
    return raster_images.raster_items(file_id, info, recipe)


def _inspect_header(
    source: Source,
    recipe: DisplayRecipe,
    *,
    name: str | None,
    max_pixels: int,
    max_frames: int,
    max_bands: int,
    max_chips: int,
) -> tuple[str, dicom_images.DicomInfo | raster_images.RasterInfo] | None:
    """``("dicom" | "tiff", header info)`` of a file, checked against the limits; None for other files."""
    kind = sniff_format(source, name)
    if kind == "dicom":
        return kind, dicom_images.inspect_dicom(source, name=name, max_frames=max_frames, max_pixels=max_pixels)
    if kind == "tiff":
        return kind, raster_images.inspect_raster(
            source, recipe, name=name, max_pixels=max_pixels, max_bands=max_bands, max_chips=max_chips
        )
    return None


@dataclass(frozen=True)
class ScanEntry:
    """One item :func:`scan_file` found in a file.

    Attributes:
        ref: The item (file id plus frame or window).
        size: ``(width, height)`` of the item at full resolution (a frame, the whole
            raster, or the chip window).
    """

    ref: ItemRef
    size: tuple[int, int]


def scan_file(
    source: Source,
    file_id: str,
    recipe: DisplayRecipe,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = dicom_images.DEFAULT_MAX_FRAMES,
    max_bands: int = raster_images.DEFAULT_MAX_BANDS,
    max_chips: int = raster_images.DEFAULT_MAX_CHIPS,
) -> list[ScanEntry] | None:
    """What the image scan does with one candidate file: its items, or None for Pillow.

    Like :func:`scan_entries` (the header checks), with each item's size, and deciding
    the TIFF case with :func:`needs_raster_reader` from the one header read. A whole
    (unchipped) float raster is also read once (within the decode budget): a file whose
    every value is NaN, infinite or nodata is refused with that reason.

    Args:
        source: A path or a binary file object (read from its start, left open).
        file_id: The file's id (for the items' ids).
        recipe: The project's display recipe.
        name: How to name the file in errors and which suffix it has.
        max_pixels: Most pixels decoded at once.
        max_frames: Most frames of a DICOM file.
        max_bands: Most bands of a raster.
        max_chips: Most chips per raster.

    Returns:
        The items in order, or None when the file is neither DICOM nor a TIFF that needs
        the raster reader (the Pillow path checks and reads it).

    Raises:
        ImageLoadError: With the reason the file is skipped.
    """
    header = _inspect_header(source, recipe, name=name, max_pixels=max_pixels, max_frames=max_frames,
                             max_bands=max_bands, max_chips=max_chips)
    if header is None:
        return None
    kind, info = header
    if kind == "dicom":
        return [ScanEntry(ref, (info.columns, info.rows)) for ref in dicom_images.dicom_items(file_id, info, recipe)]
    if not needs_raster_reader(info, recipe, max_pixels=max_pixels):
        return None
    if recipe.chip_size is None and np.dtype(info.dtype if info.dtype != "unknown" else "u1").kind == "f":
        # Only the values tell whether a float raster has a valid pixel: NaN-only files are refused here.
        raster_images.read_raster_rgb(source, recipe, name=name, max_side=_FLOAT_CHECK_SIDE, max_pixels=max_pixels)
    return [ScanEntry(ref, (ref.window[2], ref.window[3]) if ref.window is not None else (info.width, info.height))
            for ref in raster_images.raster_items(file_id, info, recipe)]


def read_display_rgb(
    source: Source,
    item: ItemRef | None,
    recipe: DisplayRecipe,
    *,
    name: str | None = None,
    max_side: int | None = None,
    min_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> npt.NDArray[np.uint8]:
    """The display RGB of one item of a DICOM or TIFF file.

    Args:
        source: A path or a binary file object (left open).
        item: The item (frame or window); None = the file's default (middle frame, or the
            whole raster).
        recipe: The project's display recipe.
        name: How to name the file in errors.
        max_side: Shrink so the longer side is at most this (None: full resolution).
        min_side: Or shrink so the shorter side is this (decode-at-size for the pixel
            cache's resize + centre crop). Rasters with overviews are then read from the
            coarsest overview that is still large enough.
        max_pixels: Most pixels decoded at once.

    Returns:
        uint8 array ``(H, W, 3)``.

    Raises:
        ImageLoadError: With the reason.
        ValueError: When the file is neither DICOM nor TIFF.
    """
    kind = sniff_format(source, name)
    if kind == "dicom":
        if item is not None and item.window is not None:
            raise ImageLoadError(name or str(source), "a DICOM item cannot be a chip window")
        frame = item.frame if item is not None else None
        return dicom_images.read_dicom_rgb(
            source, recipe, frame=frame, name=name, max_side=max_side, min_side=min_side, max_pixels=max_pixels
        )
    if kind == "tiff":
        window = item.window if item is not None else None
        return raster_images.read_raster_rgb(
            source, recipe, window=window, name=name, max_side=max_side, min_side=min_side, max_pixels=max_pixels
        )
    raise ValueError("neither DICOM nor TIFF: read it with the Pillow path")
