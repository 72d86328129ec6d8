"""DICOM headers: detection, the bounded checks run before any pixel is decoded, and the items a file contributes.

* **Detection** (:func:`is_dicom`): by content, the 128-byte preamble followed by
  ``DICM``, so files without extension (PACS exports) are found. DICOMDIR files (media
  indexes, SOP class 1.2.840.10008.1.3.10) and DICOM objects without pixel data (reports,
  RT plans) are refused with that reason.
* **Bounded** (:func:`inspect_dicom`, run at scan time and before every decode): the header
  is read without pixels; frames, pixels per frame and total pixel bytes are checked
  against limits, the pixel data element's declared length against Rows x Columns x
  frames x BitsAllocated and against the bytes left in the file (truncation, a wrong
  BitsAllocated), and the transfer syntax against the installed decoders (the reason
  names what to install).
* **Items** (:func:`dicom_items`): one per frame, or the middle frame, as the recipe says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_items import ItemRef, Source, opened_source
from activekd_core.image_open import DEFAULT_MAX_PIXELS, ImageLoadError
from activekd_core.dicom_tags import (
    TECHNICAL_TAGS,
    int_tag,
    library_errors_as_reasons,
    printable,
    scrub_error,
    source_label,
    transfer_syntax_uid,
    uid_label,
)


DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
DEFAULT_MAX_FRAMES = 2000
DEFAULT_MAX_BYTES = 4 * 1024**3  # total decoded pixel data of a file (all frames)
_PREAMBLE = 128
_PIXEL_TAGS = {(0x7FE0, 0x0010): "PixelData", (0x7FE0, 0x0008): "FloatPixelData", (0x7FE0, 0x0009): "DoubleFloatPixelData"}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


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
    label = source_label(source, name)
    with opened_source(source) as fh:
        return read_header(fh, label)


def read_header(fh: BinaryIO, label: str) -> Dataset:
    """:func:`read_technical_header` of an open file (read from its start; left after the header)."""
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
        raise ImageLoadError(label, f"unreadable DICOM header: {scrub_error(exc, fh)}") from exc


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
    label = source_label(source, name)
    with opened_source(source) as fh, library_errors_as_reasons(label, fh):
        header = read_header(fh, label)
        info = check_header(header, label, max_frames=max_frames, max_pixels=max_pixels, max_bytes=max_bytes)
        check_pixel_element(fh, header, info, label)
    return info


def check_header(header: Dataset, label: str, *, max_frames: int, max_pixels: int, max_bytes: int) -> DicomInfo:
    """The header's technical summary, refusing DICOMDIRs, non-images, sizes over the limits and
    transfer syntaxes no installed decoder handles."""
    meta = getattr(header, "file_meta", Dataset())
    sop = str(meta.get("MediaStorageSOPClassUID", "") or header.get("SOPClassUID", "") or "")
    if sop == DICOMDIR_SOP_CLASS:
        raise ImageLoadError(label, "is a DICOMDIR (an index of other DICOM files on a CD/DVD), not an image")
    rows, columns = int_tag(header, "Rows"), int_tag(header, "Columns")
    if rows is None or columns is None:
        what = f" (a {uid_label(sop)} object)" if sop else ""
        raise ImageLoadError(label, f"not a DICOM image: no Rows/Columns{what}")
    if rows < 1 or columns < 1:
        raise ImageLoadError(label, f"invalid image size {columns}x{rows}")
    n_frames = int_tag(header, "NumberOfFrames")
    n_frames = 1 if n_frames is None or n_frames == 0 else n_frames
    if n_frames < 1:
        raise ImageLoadError(label, f"invalid NumberOfFrames {n_frames}")
    if n_frames > max_frames:
        raise ImageLoadError(label, f"too many frames: {n_frames:,} exceeds the limit of {max_frames:,}")
    if rows * columns > max_pixels:
        raise ImageLoadError(
            label, f"too large: {columns}x{rows} = {rows * columns:,} pixels per frame exceeds the limit of {max_pixels:,}"
        )
    samples = int_tag(header, "SamplesPerPixel") or 1
    bits = int_tag(header, "BitsAllocated")
    if samples not in (1, 3):
        raise ImageLoadError(label, f"unsupported SamplesPerPixel {samples} (expected 1 or 3)")
    if bits is None or bits not in (1, 8, 16, 32, 64):
        raise ImageLoadError(label, f"unsupported or missing BitsAllocated {bits} (expected 1, 8, 16, 32 or 64)")
    total = rows * columns * n_frames * samples * max(bits, 8) // 8
    if total > max_bytes:
        raise ImageLoadError(
            label, f"too large: {n_frames:,} frames of {columns}x{rows} hold {total:,} bytes, over the limit of {max_bytes:,}"
        )
    photometric = printable(str(header.get("PhotometricInterpretation", "") or "")).upper()
    if not photometric:
        raise ImageLoadError(label, "missing PhotometricInterpretation")
    tsyntax = transfer_syntax_uid(header)
    problem = transfer_syntax_problem(tsyntax)
    if problem is not None:
        raise ImageLoadError(label, problem)
    modality = printable(str(header.get("Modality", "") or ""))
    return DicomInfo(n_frames, rows, columns, samples, photometric, tsyntax, modality)


def check_pixel_element(fh: BinaryIO, header: Dataset, info: DicomInfo, label: str) -> None:
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
    shown = uid_label(uid)
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
        options = "; ".join(printable(str(d)) for d in decoder.missing_dependencies) or "a decoding plugin"
        return f"transfer syntax {shown} needs a decoder that is not installed; install one of: {options}"
    return None


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
