"""DICOM files as 8-bit RGB: detection, bounded header checks and the display pipeline.

Read with pydicom; compressed transfer syntaxes (JPEG, JPEG-LS, JPEG 2000, HTJ2K, RLE) are
decoded by the pylibjpeg plugins (``pylibjpeg``, ``pylibjpeg-libjpeg``,
``pylibjpeg-openjpeg``, ``pylibjpeg-rle``) or Pillow, whichever pydicom finds.

* **Detection** (:func:`is_dicom`): by content, the 128-byte preamble followed by
  ``DICM``, so files without extension (PACS exports) are found. DICOMDIR files (media
  indexes, SOP class 1.2.840.10008.1.3.10) and DICOM objects without pixel data (reports,
  RT plans) are refused with that reason.
* **Bounded** (:func:`inspect_dicom`, run at scan time and before every decode): the header
  is read without pixels; frames, pixels per frame and total pixel bytes are checked
  against limits, the pixel data element's declared length against Rows x Columns x
  frames x BitsAllocated and against the bytes left in the file (truncation, a wrong
  BitsAllocated), and the transfer syntax against the installed decoders (the reason
  names what to install). Only then is one frame decoded
  (:func:`pydicom.pixels.pixel_array` with ``index``: the other frames are not read).
* **Pixels** (:func:`frame_to_rgb8`): modality LUT or RescaleSlope/RescaleIntercept
  (also from enhanced multi-frame functional groups), then the recipe's window (preset or
  manual) or, with ``window="auto"``, the frame's own window (enhanced multi-frame
  functional groups), else the file's VOI LUT (preferred, as pydicom does), else its
  first WindowCenter/WindowWidth (with VOILUTFunction), else the frame's min-max; MONOCHROME1 is
  inverted after the window; RGB and YBR_* are converted to RGB by pydicom, PALETTE COLOR
  through its lookup tables; more than 8 bits per colour sample are scaled by BitsStored.
* **Patient data never leaves this module.** Headers are read with ``specific_tags``
  limited to the technical tags in :data:`TECHNICAL_TAGS` (patient elements are skipped
  raw, never decoded, so pydicom's value validation cannot echo them into warnings);
  :func:`technical_tags` returns only allow-listed tags; error messages carry our own
  reason and, when a library's message is quoted, it is bounded and scrubbed of the
  file's patient name, ids and dates (:func:`_scrub`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from activekd_core.display_pixels import fit_size, grey_to_rgb, linear_window, range_to_unit, to_uint8
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_items import ItemRef, Source, opened_source
from activekd_core.image_open import DEFAULT_MAX_PIXELS, ImageLoadError

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
DEFAULT_MAX_FRAMES = 2000
DEFAULT_MAX_BYTES = 4 * 1024**3  # total decoded pixel data of a file (all frames)
_PREAMBLE = 128
_PIXEL_TAGS = {(0x7FE0, 0x0010): "PixelData", (0x7FE0, 0x0008): "FloatPixelData", (0x7FE0, 0x0009): "DoubleFloatPixelData"}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_MAX_QUOTED = 200

# Everything the pipeline needs, and nothing that identifies a person.
TECHNICAL_TAGS: tuple[str, ...] = (
    "SpecificCharacterSet",
    "SOPClassUID",
    "Modality",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
    "PixelSpacing",
    "SliceThickness",
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
)

# What :func:`technical_tags` may show (single values, no sequences, no text typed by people).
SHOWN_TAGS: tuple[str, ...] = (
    "Modality",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
    "PixelSpacing",
    "SliceThickness",
)

# Read raw (never decoded) only to scrub them out of quoted library messages.
_IDENTIFYING_TAGS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "AccessionNumber",
    "ReferringPhysicianName",
    "InstitutionName",
    "StudyID",
)



@dataclass(frozen=True)
class DicomInfo:
    """What a scan learns from a DICOM header (technical values only).

    Attributes:
        n_frames: Number of frames (1 for single-frame files).
        rows: Image height.
        columns: Image width.
        samples_per_pixel: 1 (grey or palette) or 3 (colour).
        photometric: PhotometricInterpretation, e.g. ``"MONOCHROME2"``.
        transfer_syntax: Transfer syntax UID.
        modality: Modality, e.g. ``"CT"`` (empty when absent).
    """

    n_frames: int
    rows: int
    columns: int
    samples_per_pixel: int
    photometric: str
    transfer_syntax: str
    modality: str


# ----------------------------------------------------------------------------- detection
def is_dicom(source: Source) -> bool:
    """Whether a file is DICOM Part 10: 128 preamble bytes then ``DICM``, any file name.

    Unreadable files are reported as not DICOM (the caller's open reports why).
    """
    try:
        with opened_source(source) as fh:
            head = fh.read(_PREAMBLE + 4)
    except OSError:
        return False
    return len(head) == _PREAMBLE + 4 and head[_PREAMBLE:] == b"DICM"


# ----------------------------------------------------------------------------- header
def read_technical_header(source: Source, *, name: str | None = None) -> Dataset:
    """Read a DICOM header without pixel data and without any patient element.

    Args:
        source: A path or a binary file object (read from its start; left open).
        name: How to name the file in errors (default: the path or the file's name).

    Returns:
        A dataset holding only :data:`TECHNICAL_TAGS` (plus the file meta information).

    Raises:
        ImageLoadError: When the file is not readable DICOM; the reason says why.
    """
    label = _label(source, name)
    with opened_source(source) as fh:
        return _read_header(fh, label)


def _read_header(fh: BinaryIO, label: str) -> Dataset:
    fh.seek(0)
    try:
        header = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=list(TECHNICAL_TAGS))
        position = fh.tell()
        for keyword in TECHNICAL_TAGS:  # decode now: a malformed value fails here, with a reason
            header.get(keyword)
        for element in getattr(header, "file_meta", Dataset()):
            element.value  # noqa: B018 - decoding is the point
        fh.seek(position)
        return header
    except InvalidDicomError as exc:
        raise ImageLoadError(label, "not a DICOM file (no 'DICM' marker after the 128-byte preamble)") from exc
    except Exception as exc:  # noqa: BLE001 - a hostile header must never escape as another error
        raise ImageLoadError(label, f"unreadable DICOM header: {_scrub(exc, fh)}") from exc


def technical_tags(header: Dataset) -> dict[str, str | int | float]:
    """The allow-listed technical tags of a header, as plain values for display or export.

    Only :data:`SHOWN_TAGS` (first value of multi-valued tags, text bounded to 64
    printable characters) plus ``TransferSyntax`` and ``SOPClass`` (their registry names).
    Nothing about the patient, the study or the institution is ever returned.
    """
    out: dict[str, str | int | float] = {}
    for keyword in SHOWN_TAGS:
        value = _first(header.get(keyword))
        if value is None or value == "":
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[keyword] = int(value) if isinstance(value, int) else float(value)
        else:
            out[keyword] = _printable(str(value))
    tsyntax = _transfer_syntax(header)
    if tsyntax:
        out["TransferSyntax"] = _uid_label(tsyntax)
    sop = header.get("SOPClassUID") or getattr(header, "file_meta", Dataset()).get("MediaStorageSOPClassUID")
    if sop:
        out["SOPClass"] = _uid_label(str(sop))
    return out


def inspect_dicom(
    source: Source,
    *,
    name: str | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DicomInfo:
    """Check that a DICOM file can be shown, without decoding any pixel (the scan check).

    Args:
        source: A path or a binary file object (left open).
        name: How to name the file in errors.
        max_frames: Most frames accepted.
        max_pixels: Most Rows x Columns per frame.
        max_bytes: Most decoded bytes for all frames together.

    Returns:
        The file's technical summary.

    Raises:
        ImageLoadError: With the reason the file cannot be used: not DICOM, a DICOMDIR,
            no pixel data, over a limit, truncated or inconsistent pixel data, or a
            transfer syntax no installed decoder handles (and what to install).
    """
    label = _label(source, name)
    with opened_source(source) as fh, _reasons(label, fh):
        header = _read_header(fh, label)
        info = _check_header(header, label, max_frames=max_frames, max_pixels=max_pixels, max_bytes=max_bytes)
        _check_pixel_element(fh, header, info, label)
    return info


def _check_header(header: Dataset, label: str, *, max_frames: int, max_pixels: int, max_bytes: int) -> DicomInfo:
    meta = getattr(header, "file_meta", Dataset())
    sop = str(meta.get("MediaStorageSOPClassUID", "") or header.get("SOPClassUID", "") or "")
    if sop == DICOMDIR_SOP_CLASS:
        raise ImageLoadError(label, "is a DICOMDIR (an index of other DICOM files on a CD/DVD), not an image")
    rows, columns = _int_tag(header, "Rows"), _int_tag(header, "Columns")
    if rows is None or columns is None:
        what = f" (a {_uid_label(sop)} object)" if sop else ""
        raise ImageLoadError(label, f"not a DICOM image: no Rows/Columns{what}")
    if rows < 1 or columns < 1:
        raise ImageLoadError(label, f"invalid image size {columns}x{rows}")
    n_frames = _int_tag(header, "NumberOfFrames")
    n_frames = 1 if n_frames is None or n_frames == 0 else n_frames
    if n_frames < 1:
        raise ImageLoadError(label, f"invalid NumberOfFrames {n_frames}")
    if n_frames > max_frames:
        raise ImageLoadError(label, f"too many frames: {n_frames:,} exceeds the limit of {max_frames:,}")
    if rows * columns > max_pixels:
        raise ImageLoadError(
            label, f"too large: {columns}x{rows} = {rows * columns:,} pixels per frame exceeds the limit of {max_pixels:,}"
        )
    samples = _int_tag(header, "SamplesPerPixel") or 1
    bits = _int_tag(header, "BitsAllocated")
    if samples not in (1, 3):
        raise ImageLoadError(label, f"unsupported SamplesPerPixel {samples} (expected 1 or 3)")
    if bits is None or bits not in (1, 8, 16, 32, 64):
        raise ImageLoadError(label, f"unsupported or missing BitsAllocated {bits} (expected 1, 8, 16, 32 or 64)")
    total = rows * columns * n_frames * samples * max(bits, 8) // 8
    if total > max_bytes:
        raise ImageLoadError(
            label, f"too large: {n_frames:,} frames of {columns}x{rows} hold {total:,} bytes, over the limit of {max_bytes:,}"
        )
    photometric = _printable(str(header.get("PhotometricInterpretation", "") or "")).upper()
    if not photometric:
        raise ImageLoadError(label, "missing PhotometricInterpretation")
    tsyntax = _transfer_syntax(header)
    problem = transfer_syntax_problem(tsyntax)
    if problem is not None:
        raise ImageLoadError(label, problem)
    modality = _printable(str(header.get("Modality", "") or ""))
    return DicomInfo(n_frames, rows, columns, samples, photometric, tsyntax, modality)


def _check_pixel_element(fh: BinaryIO, header: Dataset, info: DicomInfo, label: str) -> None:
    """Read the pixel data element's header where dcmread stopped; check its length."""
    if info.transfer_syntax == DeflatedExplicitVRLittleEndian:
        return  # the dataset was read from an inflated copy; the decode checks the data
    is_implicit, is_little = header.original_encoding
    if is_implicit is None or is_little is None:
        return
    start = fh.tell()
    size = _file_size(fh)
    head = fh.read(12)
    if len(head) < 8:
        raise ImageLoadError(label, "no pixel data (the file ends after the header, or it is not an image object)")
    endian = "<" if is_little else ">"
    group, element = np.frombuffer(head[:4], dtype=f"{endian}u2").tolist()
    if (group, element) not in _PIXEL_TAGS:
        raise ImageLoadError(label, f"no pixel data (found element ({group:04X},{element:04X}) where it should start)")
    if is_implicit:
        length, header_len = int(np.frombuffer(head[4:8], dtype=f"{endian}u4")[0]), 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            raise ImageLoadError(label, "truncated: the file ends inside the pixel data element's header")
        length, header_len = int(np.frombuffer(head[8:12], dtype=f"{endian}u4")[0]), 12
    else:
        length, header_len = int(np.frombuffer(head[6:8], dtype=f"{endian}u2")[0]), 8
    remaining = size - start - header_len if size is not None else None
    if length == 0xFFFFFFFF:  # encapsulated (compressed) frames
        if remaining is not None and remaining < 8:
            raise ImageLoadError(label, "truncated: the compressed pixel data is missing")
        return
    if length == 0:
        raise ImageLoadError(label, "no pixel data (the pixel data element is empty)")
    if remaining is not None and length > remaining:
        raise ImageLoadError(
            label, f"truncated: the pixel data declares {length:,} bytes but only {max(remaining, 0):,} remain in the file"
        )
    try:
        expected = int(get_expected_length(header, unit="bytes"))
    except Exception:  # noqa: BLE001 - incomplete header; pydicom's decode reports it
        return
    if length < expected:
        raise ImageLoadError(
            label,
            f"pixel data is shorter than the header says ({length:,} bytes, expected {expected:,} from "
            f"Rows x Columns x frames x BitsAllocated): BitsAllocated disagrees with the data or the file is cut",
        )
    if length >= 2 * expected:
        raise ImageLoadError(
            label,
            f"pixel data is much longer than the header says ({length:,} bytes, expected {expected:,}): "
            f"BitsAllocated or the number of frames disagrees with the data",
        )


def transfer_syntax_problem(uid: str) -> str | None:
    """Why pixels in this transfer syntax cannot be decoded here (and what to install), or None.

    Args:
        uid: A transfer syntax UID (from a file; shown bounded).

    Returns:
        None when an installed decoder handles it, else a sentence for the user.
    """
    if not uid:
        return None  # pydicom assumes implicit little endian; the decode tells if wrong
    shown = _uid_label(uid)
    try:
        decoder = get_decoder(UID(uid))
    except NotImplementedError:
        return (
            f"transfer syntax {shown} cannot be decoded: pydicom {pydicom.__version__} has no decoder for it "
            "(video or a codec it does not support); convert the file to an uncompressed or JPEG/JPEG 2000 "
            "transfer syntax (e.g. dcmtk's dcmdjpeg/dcmconv or gdcmconv)"
        )
    except Exception:  # noqa: BLE001 - a malformed UID from a hostile file
        return f"transfer syntax {shown} is not a valid transfer syntax UID"
    if not decoder.is_available:
        options = "; ".join(_printable(str(d)) for d in decoder.missing_dependencies) or "a decoding plugin"
        return f"transfer syntax {shown} needs a decoder that is not installed; install one of: {options}"
    return None


# ----------------------------------------------------------------------------- items
def middle_frame(n_frames: int) -> int:
    """0-based index of the frame shown for a multi-frame file in ``frames="middle"`` mode."""
    return max(0, (n_frames - 1) // 2)


def dicom_items(file_id: str, info: DicomInfo, recipe: DisplayRecipe) -> list[ItemRef]:
    """The items one DICOM file contributes to a pool.

    Args:
        file_id: The file's id.
        info: From :func:`inspect_dicom`.
        recipe: ``recipe.frames`` decides: ``"each"`` gives one item per frame (ids
            ``file#1``.. ``file#N``), ``"middle"`` one item (the plain file id) showing
            :func:`middle_frame`. A single-frame file is always one item with the plain id.

    Returns:
        Items in frame order.
    """
    if info.n_frames <= 1:
        return [ItemRef(file_id, frame=0, id_frame=False)]
    if recipe.frames == "each":
        return [ItemRef(file_id, frame=i) for i in range(info.n_frames)]
    return [ItemRef(file_id, frame=middle_frame(info.n_frames), id_frame=False)]


# ----------------------------------------------------------------------------- pixels
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
    label = _label(source, name)
    with opened_source(source) as fh, _reasons(label, fh):
        header = _read_header(fh, label)
        info = _check_header(header, label, max_frames=max_frames, max_pixels=max_pixels, max_bytes=max_bytes)
        _check_pixel_element(fh, header, info, label)
        index = middle_frame(info.n_frames) if frame is None else frame
        if not 0 <= index < info.n_frames:
            raise ImageLoadError(label, f"frame {index + 1} does not exist (the file has {info.n_frames} frames)")
        arr = _decode_frame(fh, header, info, index, label)
    try:
        rgb = frame_to_rgb8(arr, header, recipe, frame=index)
    except ImageLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - odd LUTs or values must come back as a reason
        raise ImageLoadError(label, f"cannot apply the display pipeline: {_bounded(exc)}") from exc
    return fit_size(rgb, max_side=max_side, min_side=min_side)


def _decode_frame(fh: BinaryIO, header: Dataset, info: DicomInfo, index: int, label: str) -> npt.NDArray:
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
        raise ImageLoadError(label, f"cannot decode the pixel data ({_uid_label(info.transfer_syntax)}): {_scrub(exc, fh)}") from exc
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
        bits = _int_tag(header, "BitsStored") or arr.dtype.itemsize * 8
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
            center, width = _first(header.WindowCenter), _first(header.WindowWidth)
            if center is not None and width is not None:
                return float(center), float(width), str(header.get("VOILUTFunction", "") or "LINEAR")
        return None
    for group in _functional_groups(header, frame):
        items = group.get("FrameVOILUTSequence")
        if items and "WindowCenter" in items[0] and "WindowWidth" in items[0]:
            item = items[0]
            return float(_first(item.WindowCenter)), float(_first(item.WindowWidth)), str(item.get("VOILUTFunction", "") or "LINEAR")
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


# ----------------------------------------------------------------------------- helpers
@contextmanager
def _reasons(label: str, fh: BinaryIO) -> Iterator[None]:
    """Turn any unexpected library error on a hostile file into an :class:`ImageLoadError`."""
    try:
        yield
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageLoadError(label, "not enough memory to read this DICOM file") from exc
    except Exception as exc:  # noqa: BLE001 - one hostile file must never stop a scan
        raise ImageLoadError(label, f"corrupt DICOM file: {_scrub(exc, fh)}") from exc


def _label(source: Source, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return str(getattr(source, "name", "<DICOM stream>"))


def _file_size(fh: BinaryIO) -> int | None:
    try:
        return os.fstat(fh.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        pass
    try:
        here = fh.tell()
        end = fh.seek(0, os.SEEK_END)
        fh.seek(here)
        return end
    except (OSError, ValueError):
        return None


def _transfer_syntax(header: Dataset) -> str:
    meta = getattr(header, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(uid) if uid else ""


def _uid_label(uid: str) -> str:
    """A registry name with its UID, or the bounded UID (digits and dots only) when unknown."""
    clean = re.sub(r"[^0-9.]", "", str(uid))[:64]
    name = UID(clean).name if clean else ""
    return f"{name} ({clean})" if name and name != clean else (clean or "(invalid UID)")


def _int_tag(header: Dataset, keyword: str) -> int | None:
    value = _first(header.get(keyword))
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first(value: Any) -> Any:
    """First value of a multi-valued element (DICOM allows several windows)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def _printable(text: str, limit: int = 64) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text.strip())[:limit]


def _bounded(exc: BaseException) -> str:
    return _printable(f"{type(exc).__name__}: {exc}", _MAX_QUOTED)


def _scrub(exc: BaseException, fh: BinaryIO) -> str:
    """A library's message, bounded, with the file's identifying values blanked out."""
    text = _bounded(exc)
    for secret in sorted(_identifying_values(fh), key=len, reverse=True):
        text = re.sub(re.escape(secret), "[removed]", text, flags=re.IGNORECASE)
    return text


def _identifying_values(fh: BinaryIO) -> set[str]:
    """Raw patient/study strings of the file (never decoded by pydicom), split into parts."""
    try:
        fh.seek(0)
        ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=list(_IDENTIFYING_TAGS), force=True)
    except Exception:  # noqa: BLE001 - nothing readable, nothing to scrub
        return set()
    secrets: set[str] = set()
    for keyword in _IDENTIFYING_TAGS:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        if tag is None or tag not in ds:
            continue
        raw = ds.get_item(tag).value
        if not isinstance(raw, (bytes, bytearray)):
            raw = str(raw).encode("utf-8", "replace")
        for text in (raw.decode("latin-1"), raw.decode("utf-8", "replace")):
            text = text.strip(" \0")
            if len(text) >= 2:
                secrets.add(text)
            secrets.update(p for p in re.split(r"[\^=\\\s]+", text) if len(p) >= 3)
    return secrets
