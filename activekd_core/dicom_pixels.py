"""DICOM pixels as 8-bit RGB: decoding one frame and the display pipeline.

Only one frame is decoded (:func:`pydicom.pixels.pixel_array` with ``index``: the other
frames are not read), after the header checks of :mod:`activekd_core.dicom_header`, and
while holding its estimated peak from :data:`activekd_core.decode_budget.DECODE_BUDGET`.

Pipeline (:func:`frame_to_rgb8`): modality LUT or RescaleSlope/RescaleIntercept (also from
enhanced multi-frame functional groups), then the recipe's window (preset or manual) or,
with ``window="auto"``, the frame's own window (enhanced multi-frame functional groups),
else the file's VOI LUT (preferred, as pydicom does), else its first
WindowCenter/WindowWidth (with VOILUTFunction), else the frame's min-max; MONOCHROME1 is
inverted after the window; RGB and YBR_* are converted to RGB by pydicom, PALETTE COLOR
through its lookup tables; more than 8 bits per colour sample are scaled by BitsStored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from activekd_core import decode_budget
from activekd_core.decode_budget import estimate_array_decode_bytes
from activekd_core.display_pixels import fit_size, grey_to_rgb, linear_window, range_to_unit, to_uint8
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_items import Source, opened_source
from activekd_core.image_open import DEFAULT_MAX_PIXELS, ImageLoadError
from activekd_core.dicom_header import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FRAMES,
    DicomInfo,
    check_header,
    check_pixel_element,
    middle_frame,
    read_header,
)
from activekd_core.dicom_tags import (
    TECHNICAL_TAGS,
    bounded_error,
    first_value,
    int_tag,
    library_errors_as_reasons,
    scrub_error,
    source_label,
    uid_label,
)


def read_dicom_rgb(
    source: Source,
    recipe: DisplayRecipe,
    *,
    frame: int | None = None,
    name: str | None = None,
    max_side: int | None = None,
    min_side: int | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> npt.NDArray[np.uint8]:
    """Decode one frame of a DICOM file into display RGB, checking limits first.

    Args:
        source: A path or a binary file object (left open).
        recipe: The project's display recipe (window, frame mode).
        frame: 0-based frame; None takes the recipe's choice (middle frame, or the only one).
        name: How to name the file in errors.
        max_side: Shrink so the longer side is at most this (None: full size).
        min_side: Or shrink so the shorter side is this (decode-at-size for training).
        max_frames: See :func:`inspect_dicom`.
        max_pixels: See :func:`inspect_dicom`.
        max_bytes: See :func:`inspect_dicom`.

    Returns:
        uint8 array ``(H, W, 3)``.

    Raises:
        ImageLoadError: With the reason (never a patient value).
    """
    label = source_label(source, name)
    with ExitStack() as held:
        with opened_source(source) as fh, library_errors_as_reasons(label, fh):
            header = read_header(fh, label)
            info = check_header(header, label, max_frames=max_frames, max_pixels=max_pixels, max_bytes=max_bytes)
            check_pixel_element(fh, header, info, label)
            index = middle_frame(info.n_frames) if frame is None else frame
            if not 0 <= index < info.n_frames:
                raise ImageLoadError(label, f"frame {index + 1} does not exist (the file has {info.n_frames} frames)")
            # The frame's decode and display pipeline hold their share of the process's decode budget.
            held.enter_context(decode_budget.DECODE_BUDGET.reserve(estimate_array_decode_bytes(
                info.columns, info.rows, info.samples_per_pixel, _bytes_per_sample(header))))
            arr = decode_frame(fh, header, info, index, label)
        try:
            rgb = frame_to_rgb8(arr, header, recipe, frame=index)
        except ImageLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - odd LUTs or values must come back as a reason
            raise ImageLoadError(label, f"cannot apply the display pipeline: {bounded_error(exc)}") from exc
        return fit_size(rgb, max_side=max_side, min_side=min_side)


def _bytes_per_sample(header: Dataset) -> int:
    """Bytes of one decoded sample (BitsAllocated rounded up to 1, 2, 4 or 8 bytes)."""
    try:
        bits = int(header.get("BitsAllocated", 16) or 16)
    except (TypeError, ValueError):
        bits = 16
    return next((n for n in (1, 2, 4) if bits <= 8 * n), 8)


def decode_frame(fh: BinaryIO, header: Dataset, info: DicomInfo, index: int, label: str) -> npt.NDArray:
    """Frame ``index`` of the open DICOM file ``fh`` as stored values (before rescale and window).

    The one checked single-frame decoder: the display pipeline and the viewer both use it.
    """
    fh.seek(0)
    try:
        if info.transfer_syntax == DeflatedExplicitVRLittleEndian:
            full = pydicom.dcmread(fh, specific_tags=[*TECHNICAL_TAGS, "PixelData"])
            arr = pixel_array(full, index=index if info.n_frames > 1 else None)
        else:
            arr = pixel_array(fh, index=index if info.n_frames > 1 else None)
    except MemoryError as exc:
        raise ImageLoadError(label, "not enough memory to decode this frame") from exc
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types
        raise ImageLoadError(label, f"cannot decode the pixel data ({uid_label(info.transfer_syntax)}): {scrub_error(exc, fh)}") from exc
    expected = (info.rows, info.columns) if info.samples_per_pixel == 1 else (info.rows, info.columns, 3)
    if tuple(arr.shape) != expected:
        raise ImageLoadError(label, f"decoded frame has shape {tuple(arr.shape)}, expected {expected}")
    return arr


def frame_to_rgb8(arr: npt.NDArray, header: Dataset, recipe: DisplayRecipe, *, frame: int = 0) -> npt.NDArray[np.uint8]:
    """The display pipeline for one decoded frame (see the module docstring).

    Args:
        arr: The frame as pydicom decodes it: ``(rows, cols)`` stored values, or
            ``(rows, cols, 3)`` RGB (YBR already converted by pydicom).
        header: The file's technical header.
        recipe: Decides the window for grey images.
        frame: 0-based frame index (for per-frame functional groups).

    Returns:
        uint8 array ``(rows, cols, 3)``.
    """
    photometric = str(header.get("PhotometricInterpretation", "")).strip().upper()
    if arr.ndim == 3:
        return _colour_to_uint8(arr, header)
    if photometric == "PALETTE COLOR":
        return _colour_to_uint8(apply_color_lut(arr, header), header, palette=True)
    values = apply_modality_lut(arr, _frame_modality(header, frame)).astype(np.float64)
    grey = to_uint8(_voi_to_unit(values, arr, header, recipe, frame))
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return grey_to_rgb(grey)


def _colour_to_uint8(arr: npt.NDArray, header: Dataset, *, palette: bool = False) -> npt.NDArray[np.uint8]:
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if palette:
        descriptor = header.get("RedPaletteColorLookupTableDescriptor") or [0, 0, 16]
        bits = int(descriptor[2]) if int(descriptor[2]) in (8, 16) else 16
    else:
        bits = int_tag(header, "BitsStored") or arr.dtype.itemsize * 8
    top = float(2**bits - 1)
    return to_uint8(range_to_unit(arr, 0.0, top))


def _frame_modality(header: Dataset, frame: int) -> Dataset:
    """A dataset carrying the modality transform that applies to ``frame``."""
    for group in _functional_groups(header, frame):
        items = group.get("PixelValueTransformationSequence")
        if items and "RescaleSlope" in items[0] and "RescaleIntercept" in items[0]:
            ds = Dataset()
            ds.RescaleSlope = items[0].RescaleSlope
            ds.RescaleIntercept = items[0].RescaleIntercept
            return ds
    return header


def _frame_window(header: Dataset, frame: int, *, top_level: bool) -> tuple[float, float, str] | None:
    """The frame's window from its functional groups, or (``top_level``) the header's first one."""
    if top_level:
        if "WindowCenter" in header and "WindowWidth" in header:
            center, width = first_value(header.WindowCenter), first_value(header.WindowWidth)
            if center is not None and width is not None:
                return float(center), float(width), str(header.get("VOILUTFunction", "") or "LINEAR")
        return None
    for group in _functional_groups(header, frame):
        items = group.get("FrameVOILUTSequence")
        if items and "WindowCenter" in items[0] and "WindowWidth" in items[0]:
            item = items[0]
            return float(first_value(item.WindowCenter)), float(first_value(item.WindowWidth)), str(item.get("VOILUTFunction", "") or "LINEAR")
    return None


def _functional_groups(header: Dataset, frame: int) -> Iterator[Dataset]:
    """Per-frame group first (it overrides), then the shared one, when present."""
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if per_frame and 0 <= frame < len(per_frame):
        yield per_frame[frame]
    shared = header.get("SharedFunctionalGroupsSequence")
    if shared:
        yield shared[0]


def _voi_to_unit(values: npt.NDArray, stored: npt.NDArray, header: Dataset, recipe: DisplayRecipe, frame: int) -> npt.NDArray:
    imposed = recipe.window_values()
    if imposed is not None:
        return linear_window(values, imposed[0], imposed[1])
    window = _frame_window(header, frame, top_level=False)
    if window is None and header.get("VOILUTSequence"):
        return _voi_lut_to_unit(values, header)
    if window is None:
        window = _frame_window(header, frame, top_level=True)
    if window is not None:
        center, width, function = window
        if width >= 1 or (function.strip().upper() != "LINEAR" and width > 0):
            return linear_window(values, center, width, function)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.float32)
    return range_to_unit(values, float(finite.min()), float(finite.max()))


def _voi_lut_to_unit(values: npt.NDArray, header: Dataset) -> npt.NDArray:
    """Apply the first VOI LUT; its output range (as the table holds it) becomes 0..255."""
    item = header.VOILUTSequence[0]
    n_entries, first = int(item.LUTDescriptor[0]) or 65536, int(item.LUTDescriptor[1])
    table = apply_voi(np.arange(first, first + n_entries, dtype=np.int64), header).astype(np.float64)
    out = apply_voi(np.rint(values).astype(np.int64), header).astype(np.float64)
    return range_to_unit(out, float(table.min()), float(table.max()))
