"""DICOM files as 8-bit RGB: detection, bounded header checks and the display pipeline.

Read with pydicom; compressed transfer syntaxes (JPEG, JPEG-LS, JPEG 2000, HTJ2K, RLE) are
decoded by the pylibjpeg plugins (``pylibjpeg``, ``pylibjpeg-libjpeg``,
``pylibjpeg-openjpeg``, ``pylibjpeg-rle``) or Pillow, whichever pydicom finds. This module
is the public home of the DICOM reader; the work is done, by concern, in:

* :mod:`activekd_core.dicom_tags`: which tags are read (:data:`TECHNICAL_TAGS`) and
  shown (:data:`SHOWN_TAGS`, :func:`technical_tags`), and the scrubbing that keeps
  patient data out of every message. Patient data never leaves the reader.
* :mod:`activekd_core.dicom_header`: detection (:func:`is_dicom`), the bounded checks
  run at scan time and before every decode (:func:`inspect_dicom`,
  :func:`transfer_syntax_problem`), and the items a file contributes
  (:func:`dicom_items`, :func:`middle_frame`).
* :mod:`activekd_core.dicom_pixels`: decoding one frame (:func:`read_dicom_rgb`) and the
  display pipeline (:func:`frame_to_rgb8`: modality LUT, window or VOI LUT,
  MONOCHROME1, colour and palette images).
"""

from __future__ import annotations

from activekd_core.dicom_header import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FRAMES,
    DICOMDIR_SOP_CLASS,
    DicomInfo,
    dicom_items,
    inspect_dicom,
    is_dicom,
    middle_frame,
    read_technical_header,
    transfer_syntax_problem,
)
from activekd_core.dicom_pixels import frame_to_rgb8, read_dicom_rgb
from activekd_core.dicom_tags import SHOWN_TAGS, TECHNICAL_TAGS, technical_tags

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_FRAMES",
    "DICOMDIR_SOP_CLASS",
    "SHOWN_TAGS",
    "TECHNICAL_TAGS",
    "DicomInfo",
    "dicom_items",
    "frame_to_rgb8",
    "inspect_dicom",
    "is_dicom",
    "middle_frame",
    "read_dicom_rgb",
    "read_technical_header",
    "technical_tags",
    "transfer_syntax_problem",
]
