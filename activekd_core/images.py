"""Image discovery and robust loading: the public home of the image readers.

An image is named by a stable id: its POSIX path relative to the image root (or an item
id, ``path#frame`` / ``path@x,y,w,h``, for a DICOM frame or a raster chip). Scanning never
stops on a bad file; each unusable file is reported with its path and a reason and
skipped. Every pool image is opened confined to its root. Callers import from here; the
work is done, by concern, in:

- :mod:`activekd_core.image_open`: confined opening (:func:`open_image_file`), the
  error type, the allowed formats and size limit, refusal reasons.
- :mod:`activekd_core.decode_budget`: the process-wide memory budget every decode
  reserves from (:class:`DecodeBudget`; replace ``decode_budget.DECODE_BUDGET`` there).
- :mod:`activekd_core.image_pool`: :class:`ImagePool`, ids as text and bytes
  (non-UTF-8 names), :func:`find_duplicates`.
- :mod:`activekd_core.image_decode`: :func:`load_image` (pool images, the display
  recipe for DICOM and scientific TIFF), :func:`load_rgb` (plain paths),
  :func:`is_plain_image`.
- :mod:`activekd_core.image_scan`: :func:`scan_images` (what a scan checks, links,
  names, DICOM/TIFF candidates).
"""

from __future__ import annotations

from activekd_core.decode_budget import DecodeBudget, estimate_decode_bytes
from activekd_core.image_decode import is_plain_image, load_image, load_rgb
from activekd_core.image_open import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    ImageLoadError,
    open_image_file,
)
from activekd_core.image_pool import (
    ImagePool,
    ImageProblem,
    display_id,
    file_digest,
    find_duplicates,
    id_from_bytes,
    id_to_bytes,
    is_portable_id,
    item_ref,
)
from activekd_core.image_scan import scan_images

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "DecodeBudget",
    "ImageLoadError",
    "ImagePool",
    "ImageProblem",
    "display_id",
    "estimate_decode_bytes",
    "file_digest",
    "find_duplicates",
    "id_from_bytes",
    "id_to_bytes",
    "is_plain_image",
    "is_portable_id",
    "item_ref",
    "load_image",
    "load_rgb",
    "open_image_file",
    "scan_images",
]
