"""DICOM tags and patient privacy: which tags are read, which are shown, and how library messages are scrubbed.

Patient data never leaves the DICOM reader. Headers are read with ``specific_tags``
limited to the technical tags in :data:`TECHNICAL_TAGS` (patient elements are skipped
raw, never decoded, so pydicom's value validation cannot echo them into warnings);
:func:`technical_tags` returns only allow-listed tags (:data:`SHOWN_TAGS`); error
messages carry our own reason and, when a library's message is quoted, it is bounded and
scrubbed of the file's patient name, ids and dates (:func:`scrub_error`, which reads the
:data:`IDENTIFYING_TAGS` raw for that purpose only).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from activekd_core.image_items import Source
from activekd_core.image_open import ImageLoadError


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
IDENTIFYING_TAGS: tuple[str, ...] = (
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


def technical_tags(header: Dataset) -> dict[str, str | int | float]:
    """The allow-listed technical tags of a header, as plain values for display or export.

    Only :data:`SHOWN_TAGS` (first value of multi-valued tags, text bounded to 64
    printable characters) plus ``TransferSyntax`` and ``SOPClass`` (their registry names).
    Nothing about the patient, the study or the institution is ever returned.
    """
    out: dict[str, str | int | float] = {}
    for keyword in SHOWN_TAGS:
        value = first_value(header.get(keyword))
        if value is None or value == "":
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[keyword] = int(value) if isinstance(value, int) else float(value)
        else:
            out[keyword] = printable(str(value))
    tsyntax = transfer_syntax_uid(header)
    if tsyntax:
        out["TransferSyntax"] = uid_label(tsyntax)
    sop = header.get("SOPClassUID") or getattr(header, "file_meta", Dataset()).get("MediaStorageSOPClassUID")
    if sop:
        out["SOPClass"] = uid_label(str(sop))
    return out


@contextmanager
def library_errors_as_reasons(label: str, fh: BinaryIO) -> Iterator[None]:
    """Turn any unexpected library error on a hostile file into an :class:`ImageLoadError`."""
    try:
        yield
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageLoadError(label, "not enough memory to read this DICOM file") from exc
    except Exception as exc:  # noqa: BLE001 - one hostile file must never stop a scan
        raise ImageLoadError(label, f"corrupt DICOM file: {scrub_error(exc, fh)}") from exc


def source_label(source: Source, name: str | None) -> str:
    """The name used for a source in reasons: ``name``, the path, or the stream's name."""
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return str(getattr(source, "name", "<DICOM stream>"))


def transfer_syntax_uid(header: Dataset) -> str:
    """The file meta's TransferSyntaxUID, or ``""`` when absent."""
    meta = getattr(header, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(uid) if uid else ""


def uid_label(uid: str) -> str:
    """A registry name with its UID, or the bounded UID (digits and dots only) when unknown."""
    clean = re.sub(r"[^0-9.]", "", str(uid))[:64]
    name = UID(clean).name if clean else ""
    return f"{name} ({clean})" if name and name != clean else (clean or "(invalid UID)")


def int_tag(header: Dataset, keyword: str) -> int | None:
    """A tag's first value as an int, or None when absent or not a number."""
    value = first_value(header.get(keyword))
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def first_value(value: Any) -> Any:
    """First value of a multi-valued element (DICOM allows several windows)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def printable(text: str, limit: int = 64) -> str:
    """``text`` stripped, non-printable characters as ``?``, at most ``limit`` characters."""
    return "".join(ch if ch.isprintable() else "?" for ch in text.strip())[:limit]


def bounded_error(exc: BaseException) -> str:
    """An exception as bounded printable text (use :func:`scrub_error` when a file is open)."""
    return printable(f"{type(exc).__name__}: {exc}", _MAX_QUOTED)


def scrub_error(exc: BaseException, fh: BinaryIO) -> str:
    """A library's message, bounded, with the file's identifying values blanked out."""
    text = bounded_error(exc)
    for secret in sorted(_identifying_values(fh), key=len, reverse=True):
        text = re.sub(re.escape(secret), "[removed]", text, flags=re.IGNORECASE)
    return text


def _identifying_values(fh: BinaryIO) -> set[str]:
    """Raw patient/study strings of the file (never decoded by pydicom), split into parts."""
    try:
        fh.seek(0)
        ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=list(IDENTIFYING_TAGS), force=True)
    except Exception:  # noqa: BLE001 - nothing readable, nothing to scrub
        return set()
    secrets: set[str] = set()
    for keyword in IDENTIFYING_TAGS:
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
