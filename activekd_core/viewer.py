"""The focus-mode viewer: one user's window/level, band mapping and stretch, drawn on the visible crop.

A :class:`ViewerSettings` is what one annotator changed in focus mode on top of the
project's :class:`~activekd_core.display_recipe.DisplayRecipe`: a window (centre/width
in modality units, e.g. Hounsfield units after the DICOM rescale, or raw sample values
of a single-band 16-bit/float TIFF), the bands shown as R, G, B and the stretch
percentiles. :meth:`ViewerSettings.apply` gives the recipe the viewer draws with; the
project's own recipe only changes when the user saves it
(:meth:`ViewerSettings.project_recipe`).

:func:`render_view` reads only what the viewport shows: for a TIFF the visible window's
tiles or strips (:func:`activekd_core.raster_windows.read_page_window`), for DICOM the
one frame, cropped to the visible window *before* the window/level and the resampling.
The output is at most the viewport (:func:`activekd_core.image_view.zoom_window`);
nothing is ever enlarged as a whole. Files are opened confined to the image root
(:func:`activekd_core.images.open_image_file`).

Stretch of multi-band rasters: the recipe's stored pool ranges when the percentiles are
the project's, else the percentiles of the pixels read (the visible area, as a GIS
"stretch to the current extent" does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import tifffile
from PIL import Image

from activekd_core import decode_budget
from activekd_core.dicom_header import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FRAMES,
    check_header,
    check_pixel_element,
    middle_frame,
    read_header,
)
from activekd_core.dicom_pixels import decode_frame, frame_to_rgb8
from activekd_core.dicom_tags import first_value, int_tag, library_errors_as_reasons
from activekd_core.display_pixels import grey_to_rgb, range_to_unit, to_uint8
from activekd_core.display_recipe import NODATA_RGB, WINDOW_PRESETS, DisplayRecipe, RecipeError
from activekd_core.image_formats import sniff_format
from activekd_core.image_items import ItemRef
from activekd_core.image_open import DEFAULT_MAX_PIXELS, ImageLoadError, open_image_file
from activekd_core.image_view import VIEWPORT, ZoomWindow, zoom_window
from activekd_core.paths import PathOutsideRoot
from activekd_core.raster_header import DEFAULT_MAX_BANDS, RasterInfo, check_segments, checked_page, display_bands, open_tiff
from activekd_core.raster_windows import read_page_window
from activekd_core.raster_display import bands_to_rgb8, read_raster_rgb

GREY, BANDS, FIXED = "grey", "bands", "fixed"
"""View kinds: window/level controls, band and stretch controls, or no controls."""

CT_RANGE = (-1024.0, 3071.0)
"""Hounsfield units a CT window may reach (air to dense bone/metal, the 12-bit range scanners store)."""
_RANGE_SAMPLE_SIDE = 1024  # a float raster's value range is read from at most this square


@dataclass(frozen=True)
class ViewerSettings:
    """One user's focus-mode view; ``None`` fields keep the project's recipe.

    Attributes:
        window_center: Window centre in modality units (HU for CT) or raw sample values.
        window_width: Window width (> 0; a DICOM window is drawn at least 1 wide); set
            together with ``window_center``.
        bands: 1-based band numbers shown as R, G, B (3) or grey (1).
        percentiles: Low and high stretch percentiles.
    """

    window_center: float | None = None
    window_width: float | None = None
    bands: tuple[int, ...] | None = None
    percentiles: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if (self.window_center is None) != (self.window_width is None):
            raise RecipeError("a view window needs both a centre and a width")
        set_ = object.__setattr__
        if self.window_center is not None:
            for name in ("window_center", "window_width"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise RecipeError(f"{name} must be a finite number, got {str(value)[:40]!r}")
                set_(self, name, float(value))
            if not self.window_width > 0:  # type: ignore[operator]
                raise RecipeError(f"window_width must be positive, got {self.window_width}")
        # The recipe's own checks for the rest (1 or 3 bands, 0 <= low < high <= 100).
        probe = self.apply(DisplayRecipe())
        if self.bands is not None:
            set_(self, "bands", probe.bands)
        if self.percentiles is not None:
            set_(self, "percentiles", probe.percentiles)

    @property
    def window(self) -> tuple[float, float] | None:
        """``(center, width)`` or None."""
        if self.window_center is None or self.window_width is None:
            return None
        return (self.window_center, self.window_width)

    def apply(self, recipe: DisplayRecipe) -> DisplayRecipe:
        """The recipe the viewer draws with: ``recipe`` with this view's changes.

        Stored pool ranges are kept only while the percentiles are the recipe's own (they
        were computed with those); other percentiles stretch the pixels read.
        """
        changes: dict[str, Any] = {}
        if self.window is not None:  # a DICOM LINEAR window is at least 1 wide (rasters use the window as it is)
            changes.update(window="manual", window_center=self.window[0], window_width=max(1.0, self.window[1]))
        if self.bands is not None:
            changes["bands"] = tuple(self.bands)
        if self.percentiles is not None and tuple(self.percentiles) != recipe.percentiles:
            changes.update(percentiles=tuple(self.percentiles), band_ranges=(), stretch="percentile")
        return replace(recipe, **changes) if changes else recipe

    def project_recipe(self, recipe: DisplayRecipe, info: ViewInfo) -> DisplayRecipe:
        """The project recipe to store when the user saves this view of an item described by ``info``.

        A DICOM window becomes the matching :data:`WINDOW_PRESETS` entry, else a manual
        window. A single-band raster's window becomes that band's stored stretch range
        (``center -/+ width / 2``, what the viewer draws), since a recipe's window is for DICOM.
        """
        if not info.is_dicom and self.window is not None:
            c, w = self.window
            band = (self.bands or recipe.bands or (1,))[0]
            kept = replace(self, window_center=None, window_width=None).apply(recipe)
            ranges = tuple(r for r in kept.band_ranges if r[0] != band) + ((band, c - w / 2, c + w / 2),)
            return replace(kept, band_ranges=ranges, stretch="percentile")
        out = self.apply(recipe)
        for preset in WINDOW_PRESETS.values():
            if out.window == "manual" and (preset.center, preset.width) == (out.window_center, out.window_width):
                return replace(out, window=preset.name, window_center=None, window_width=None)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for the per-user view preferences)."""
        return {"window_center": self.window_center, "window_width": self.window_width,
                "bands": list(self.bands) if self.bands is not None else None,
                "percentiles": list(self.percentiles) if self.percentiles is not None else None}

    @classmethod
    def from_dict(cls, data: Any) -> ViewerSettings:
        """Settings from :meth:`to_dict` output; anything unusable gives the default view."""
        if not isinstance(data, dict):
            return cls()
        try:
            bands, pct = data.get("bands"), data.get("percentiles")
            return cls(window_center=data.get("window_center"), window_width=data.get("window_width"),
                       bands=tuple(bands) if isinstance(bands, list) else None,
                       percentiles=tuple(pct) if isinstance(pct, list) else None)
        except (RecipeError, TypeError):
            return cls()


@dataclass(frozen=True)
class ViewInfo:
    """What the viewer needs to know about an item before drawing its controls.

    Attributes:
        kind: :data:`GREY` (window/level), :data:`BANDS` (band mapping and stretch) or
            :data:`FIXED` (colour DICOM, palette raster: shown as the project shows it).
        width: Item width in pixels.
        height: Item height in pixels.
        n_bands: Bands (TIFF samples per pixel; 1 for grey DICOM).
        modality: DICOM Modality (``"CT"``, ``"MR"``...), ``""`` for rasters.
        value_range: Lowest and highest value a window may reach (modality units; for CT
            at most :data:`CT_RANGE`).
        default_window: The window the project shows (recipe, else the file's), or None.
        is_dicom: Whether the item is a DICOM frame.
    """

    kind: str
    width: int
    height: int
    n_bands: int
    modality: str
    value_range: tuple[float, float]
    default_window: tuple[float, float] | None
    is_dicom: bool


@dataclass(frozen=True)
class ViewResult:
    """A rendered view: ``rgb`` ``(h, w, 3)`` uint8 of ``window.size``, the window, the item size."""

    rgb: npt.NDArray[np.uint8]
    window: ZoomWindow
    size: tuple[int, int]


def _open(root: Path | str, ref: ItemRef) -> BinaryIO:
    """The item's file, opened confined to ``root``; every failure an :class:`ImageLoadError`."""
    try:
        return open_image_file(root, ref.file_id)
    except PathOutsideRoot as exc:
        raise ImageLoadError(ref.file_id, f"refused: {exc.reason}") from exc
    except OSError as exc:
        raise ImageLoadError(ref.file_id, f"cannot read the file: {exc.strerror or type(exc).__name__}") from exc


def describe(root: Path | str, ref: ItemRef, recipe: DisplayRecipe, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ViewInfo:
    """Which controls an item gets and their ranges, from its header (a float raster's range
    from at most a 1024 x 1024 central read).

    Raises:
        ImageLoadError: When the file cannot be read, or is neither DICOM nor TIFF.
    """
    name = ref.file_id
    with _open(root, ref) as fh:
        kind = sniff_format(fh, name=name)
        fh.seek(0)
        if kind == "dicom":
            return _describe_dicom(fh, name, recipe, max_pixels)
        if kind == "tiff":
            return _describe_tiff(fh, name, ref, recipe, max_pixels)
    raise ImageLoadError(name, "neither DICOM nor TIFF: no viewer controls")


def _describe_dicom(fh: BinaryIO, name: str, recipe: DisplayRecipe, max_pixels: int) -> ViewInfo:
    with library_errors_as_reasons(name, fh):
        header = read_header(fh, name)
        info = check_header(header, name, max_frames=DEFAULT_MAX_FRAMES, max_pixels=max_pixels, max_bytes=DEFAULT_MAX_BYTES)
    grey = info.samples_per_pixel == 1 and info.photometric in ("MONOCHROME1", "MONOCHROME2")
    bits = int_tag(header, "BitsStored") or 16
    signed = int_tag(header, "PixelRepresentation") == 1
    lo, hi = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0**bits - 1)
    slope = float(first_value(header.get("RescaleSlope", 1)) or 1)
    intercept = float(first_value(header.get("RescaleIntercept", 0)) or 0)
    ends = sorted((lo * slope + intercept, hi * slope + intercept))
    if info.modality == "CT" and ends[0] < CT_RANGE[1] and ends[1] > CT_RANGE[0]:
        ends = [max(ends[0], CT_RANGE[0]), min(ends[1], CT_RANGE[1])]  # the sliders span what CT values mean
    window = recipe.window_values()
    if window is None and "WindowCenter" in header and "WindowWidth" in header:
        c, w = first_value(header.WindowCenter), first_value(header.WindowWidth)
        window = (float(c), max(1.0, float(w))) if c is not None and w is not None else None
    return ViewInfo(GREY if grey else FIXED, info.columns, info.rows, info.samples_per_pixel,
                    info.modality, (ends[0], ends[1]), window, True)


def _describe_tiff(fh: BinaryIO, name: str, ref: ItemRef, recipe: DisplayRecipe, max_pixels: int) -> ViewInfo:
    with open_tiff(fh, name) as tf:
        page, info = checked_page(tf, name, DEFAULT_MAX_BANDS)
        x, y, w, h = _item_box(ref, info.width, info.height)
        palette = page.photometric == tifffile.PHOTOMETRIC.PALETTE
        kind = FIXED if palette else (GREY if info.bands == 1 else BANDS)
        dtype = np.dtype(page.dtype)
        window = None
        if dtype.kind in "iu":
            limits = np.iinfo(dtype)
            value_range = (float(limits.min), float(limits.max))
        elif dtype.kind == "f" and kind == GREY:
            side = _RANGE_SAMPLE_SIDE
            box = (x + max(0, (w - side) // 2), y + max(0, (h - side) // 2), min(w, side), min(h, side))
            check_segments(tf, page, name, max_pixels)
            values = read_page_window(tf, page, info, box, (1,), name, max_pixels)
            finite = values[np.isfinite(values)]
            value_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        else:
            value_range = (0.0, 1.0)
        if kind == GREY:
            stored = recipe.band_range(1)
            if stored is not None:
                window = ((stored[0] + stored[1]) / 2, stored[1] - stored[0]) if stored[1] > stored[0] else None
    return ViewInfo(kind, w, h, info.bands, "", value_range, window, False)


def _item_box(ref: ItemRef, width: int, height: int) -> tuple[int, int, int, int]:
    """The item's ``(x, y, w, h)`` in the file, clipped to the image."""
    if ref.window is None:
        return (0, 0, width, height)
    x, y, w, h = ref.window
    return (x, y, max(1, min(w, width - x)), max(1, min(h, height - y)))


def render_view(
    root: Path | str,
    ref: ItemRef,
    recipe: DisplayRecipe,
    settings: ViewerSettings,
    *,
    viewport: tuple[int, int] = VIEWPORT,
    zoom: float = 1.0,
    center: tuple[float, float] = (0.5, 0.5),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ViewResult:
    """Draw the part of a DICOM/TIFF item a ``zoom`` x view shows around ``center``, with ``settings``.

    Args:
        root: The image root (the file is opened confined to it).
        ref: The item (file, frame or chip window).
        recipe: The project's display recipe.
        settings: The user's view on top of it.
        viewport: Largest output ``(width, height)``.
        zoom: Screen pixels per source pixel.
        center: Centre of the visible window, as fractions of the item.
        max_pixels: Most pixels decoded.

    Returns:
        The view; ``rgb`` is never larger than ``viewport``.

    Raises:
        ImageLoadError: With the reason (never a patient value).
    """
    drawn = settings.apply(recipe)
    name = ref.file_id
    with _open(root, ref) as fh:
        kind = sniff_format(fh, name=name)
        fh.seek(0)
        if kind == "dicom":
            if ref.window is not None:
                raise ImageLoadError(name, "a DICOM item cannot be a chip window")
            crop, window, size = _dicom_crop(fh, name, ref, drawn, viewport, zoom, center, max_pixels)
        elif kind == "tiff":
            crop, window, size = _tiff_crop(fh, name, ref, drawn, settings, viewport, zoom, center, max_pixels)
        else:
            raise ImageLoadError(name, "neither DICOM nor TIFF: shown by the plain zoom")
    return ViewResult(_resample(crop, window.size), window, size)


def _dicom_crop(fh: BinaryIO, name: str, ref: ItemRef, drawn: DisplayRecipe, viewport: tuple[int, int],
                zoom: float, center: tuple[float, float], max_pixels: int) -> tuple[npt.NDArray[np.uint8], ZoomWindow, tuple[int, int]]:
    with library_errors_as_reasons(name, fh):
        header = read_header(fh, name)
        info = check_header(header, name, max_frames=DEFAULT_MAX_FRAMES, max_pixels=max_pixels, max_bytes=DEFAULT_MAX_BYTES)
        check_pixel_element(fh, header, info, name)
        index = middle_frame(info.n_frames) if ref.frame is None else ref.frame
        if not 0 <= index < info.n_frames:
            raise ImageLoadError(name, f"frame {index + 1} does not exist (the file has {info.n_frames} frames)")
    window = zoom_window(info.columns, info.rows, zoom, center, viewport)
    left, top, right, bottom = window.box
    # The decoded frame plus the float64 modality values of what the pipeline sees.
    peak = info.rows * info.columns * info.samples_per_pixel * 12
    with decode_budget.DECODE_BUDGET.reserve(peak):
        with library_errors_as_reasons(name, fh):
            arr = decode_frame(fh, header, info, index, name)
        try:
            if drawn.window_values() is None:
                # The file's own window, VOI LUT or min-max: the whole frame decides, as in the project's view.
                rgb = frame_to_rgb8(arr, header, drawn, frame=index)[top:bottom, left:right]
            else:  # a linear window: applied to the crop's modality values only
                rgb = frame_to_rgb8(arr[top:bottom, left:right], header, drawn, frame=index)
        except Exception as exc:  # noqa: BLE001 - odd LUTs or values come back as a reason
            raise ImageLoadError(name, f"cannot apply the display pipeline: {type(exc).__name__}") from exc
    return np.ascontiguousarray(rgb), window, (info.columns, info.rows)


def _tiff_crop(fh: BinaryIO, name: str, ref: ItemRef, drawn: DisplayRecipe, settings: ViewerSettings,
               viewport: tuple[int, int], zoom: float, center: tuple[float, float],
               max_pixels: int) -> tuple[npt.NDArray[np.uint8], ZoomWindow, tuple[int, int]]:
    with open_tiff(fh, name) as tf:
        page, info = checked_page(tf, name, DEFAULT_MAX_BANDS)
        x, y, w, h = _item_box(ref, info.width, info.height)
        window = zoom_window(w, h, zoom, center, viewport)
        left, top, right, bottom = window.box
        file_box = (x + left, y + top, right - left, bottom - top)
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE:
            return read_raster_rgb(fh, drawn, window=file_box, name=name, max_pixels=max_pixels,
                                   require_valid=False), window, (w, h)
        bands = display_bands(info.bands, drawn)
        check_segments(tf, page, name, max_pixels)
        with decode_budget.DECODE_BUDGET.reserve(file_box[2] * file_box[3] * len(bands) * 16):
            rgb = _bands_rgb(tf, page, info, file_box, bands, drawn, settings, name, max_pixels)
    return rgb, window, (w, h)


def _bands_rgb(tf: tifffile.TiffFile, page: tifffile.TiffPage, info: RasterInfo, file_box: tuple[int, int, int, int],
               bands: tuple[int, ...], drawn: DisplayRecipe, settings: ViewerSettings, name: str,
               max_pixels: int) -> npt.NDArray[np.uint8]:
    """Read ``bands`` of ``file_box`` and draw them: the user's window for one band, else the recipe's stretch."""
    arr = read_page_window(tf, page, info, file_box, bands, name, max_pixels)
    nodata = drawn.nodata if drawn.nodata is not None else info.nodata
    valid = np.ones(arr.shape[:2], dtype=bool)
    if arr.dtype.kind == "f":
        valid &= np.isfinite(arr).all(axis=2)
    if nodata is not None and not math.isnan(nodata):
        valid &= ~(arr == nodata).any(axis=2)
    invert = page.photometric == tifffile.PHOTOMETRIC.MINISWHITE
    if len(bands) == 1 and settings.window is not None:
        c, wd = settings.window
        rgb = grey_to_rgb(to_uint8(range_to_unit(arr[:, :, 0], c - wd / 2, c + wd / 2)))
        if invert:
            rgb = 255 - rgb
        rgb[~valid] = NODATA_RGB
    else:
        rgb = bands_to_rgb8(arr, bands, drawn, valid=valid, invert=invert)
    return rgb


def _resample(rgb: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """The crop at the view's size: nearest-neighbour when enlarging, antialiased when shrinking."""
    h, w = rgb.shape[:2]
    if (w, h) == tuple(size):
        return np.ascontiguousarray(rgb)
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    resample = Image.Resampling.NEAREST if size[0] >= w else Image.Resampling.LANCZOS
    return np.asarray(img.resize(tuple(size), resample=resample))
