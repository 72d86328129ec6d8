"""The geo-reference of pool items, as exports write it.

A GeoTIFF's geo-reference (the raw ModelPixelScale/ModelTiepoint/ModelTransformation/
GeoKeyDirectory/GeoDoubleParams/GeoAsciiParams/GDAL_NODATA tags, the decoded GeoKeys, a
GDAL-order geotransform and the EPSG code of its CRS) is read with tifffile through the
confined reader (:func:`activekd_core.images.open_image_file` then
:func:`activekd_core.raster_images.geo_metadata`), once per file. A chip ``path@x,y,w,h``
gets its own geo-reference: the geotransform moved to the chip's top-left pixel, the
tiepoints' raster coordinates and the transformation matrix's translation moved likewise,
so the tags describe the chip's pixels as they describe the scene's.

Only files named ``.tif``/``.tiff`` are opened (the scan shows TIFF content under any other
name through Pillow, without geo-reference); DICOM files are never read here, so no DICOM
tag, technical or not, reaches an export through this module.

An item record (JSON-ready)::

    {"id": "s2/T32TNS.tif@512,0,512,512", "file": "s2/T32TNS.tif", "window": [512, 0, 512, 512] or None,
     "crs": "EPSG:32632" or None,
     "epsg": 32632 or None, "geotransform": [x0, dx, rx, y0, ry, dy] or None,
     "tags": {tag name: values}, "keys": {GeoKey name: value}, "nodata": float, "nan" or None}
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from activekd_core import raster_images
from activekd_core.image_items import ItemRef
from activekd_core.images import ImageLoadError, item_ref, open_image_file

__all__ = ["GEO_SUFFIXES", "geo_json", "item_geo", "items_geo"]

GEO_SUFFIXES = frozenset({".tif", ".tiff"})
_USER_DEFINED = 32767  # GeoTIFF: "user-defined" CRS, not an EPSG code
_CRS_KEYS = ("ProjectedCSTypeGeoKey", "GeographicTypeGeoKey")



def _epsg(keys: Mapping[str, Any]) -> int | None:
    """The EPSG code of the CRS (projected first, else geographic), or None when user-defined/absent."""
    for name in _CRS_KEYS:
        value = keys.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < _USER_DEFINED:
            return value
    return None


def _numbers(value: Any, least: int) -> bool:
    return isinstance(value, list) and len(value) >= least and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )


def _shift_tags(tags: dict[str, Any], x: int, y: int) -> dict[str, Any]:
    """The raw tags of a window whose top-left pixel is ``(x, y)`` of the full image."""
    out = copy.deepcopy(tags)
    tie, scale = out.get("ModelTiepointTag"), out.get("ModelPixelScaleTag")
    if _numbers(tie, 6) and len(tie) == 6 and _numbers(scale, 2):
        # One tiepoint + pixel scale (the usual north-up raster): re-anchor at the chip's (0, 0).
        i, j = float(tie[0]), float(tie[1])
        tie[:] = [0.0, 0.0, float(tie[2]), float(tie[3]) + (x - i) * float(scale[0]),
                  float(tie[4]) - (y - j) * float(scale[1]), float(tie[5])]
    elif _numbers(tie, 6) and len(tie) % 6 == 0:
        for k in range(0, len(tie), 6):  # ground control points (I, J, K, X, Y, Z): raster points move
            tie[k], tie[k + 1] = float(tie[k]) - x, float(tie[k + 1]) - y
    matrix = out.get("ModelTransformationTag")
    if _numbers(matrix, 8):
        matrix[3] = float(matrix[0]) * x + float(matrix[1]) * y + float(matrix[3])
        matrix[7] = float(matrix[4]) * x + float(matrix[5]) * y + float(matrix[7])
    return out


def _record(
    image_id: str, file_id: str, geo: Mapping[str, Any], window: tuple[int, int, int, int] | None
) -> dict[str, Any]:
    epsg = _epsg(geo.get("keys") or {})
    transform = geo.get("geotransform")
    tags = geo.get("tags") or {}
    if window is not None:
        x, y = window[0], window[1]
        transform = raster_images.window_geotransform(transform, x, y) if transform else None
        tags = _shift_tags(dict(tags), x, y)
    return {
        "id": image_id,
        "file": file_id,
        "window": list(window) if window is not None else None,
        "crs": f"EPSG:{epsg}" if epsg is not None else None,
        "epsg": epsg,
        "geotransform": list(transform) if transform else None,
        "tags": tags,
        "keys": dict(geo.get("keys") or {}),
        "nodata": _nodata(geo.get("nodata")),
    }


def _nodata(value: Any) -> float | str | None:
    """GDAL_NODATA as a JSON value: a finite number, or its text (``"nan"``, ``"inf"``) otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else str(float(value))
    return None


def _geo_name(file_id: str) -> bool:
    return os.path.splitext(file_id)[1].lower() in GEO_SUFFIXES


def _file_geo(image_root: Path | str, file_id: str) -> dict[str, Any] | None:
    """The geo-reference of one file, read confined to the root; None when it has none or cannot be read."""
    if not _geo_name(file_id):
        return None
    try:
        with open_image_file(image_root, file_id) as fh:
            return raster_images.geo_metadata(fh, name=file_id)
    except (OSError, ValueError, ImageLoadError):  # refused, vanished or unreadable: the export goes on without it
        return None


def item_geo(image_root: Path | str, image_id: str, *, ref: ItemRef | None = None) -> dict[str, Any] | None:
    """The geo-reference record of one pool item (see the module docstring), or None.

    Args:
        image_root: The project's image root (every open is confined to it).
        image_id: A file id or an item id (``path@x,y,w,h`` for a chip).
        ref: The item the id names, when the caller knows it.
    """
    return items_geo(image_root, [image_id], refs={image_id: ref} if ref is not None else None).get(image_id)


def items_geo(
    image_root: Path | str, ids: Iterable[str], *, refs: Mapping[str, ItemRef] | None = None
) -> dict[str, dict[str, Any]]:
    """Geo-reference records of the geo-referenced items among ``ids`` (each file read once).

    Returns:
        Item id -> record, only for items that have a geo-reference.
    """
    by_file: dict[str, dict[str, Any] | None] = {}
    out: dict[str, dict[str, Any]] = {}
    for image_id in ids:
        ref = refs.get(image_id) if refs else None
        if ref is None:
            if not (_geo_name(image_id) or ("@" in image_id and _geo_name(image_id.rsplit("@", 1)[0]))):
                continue  # neither a TIFF nor a chip of one: no disk access
            ref = item_ref(image_root, image_id)
        if ref.file_id not in by_file:
            by_file[ref.file_id] = _file_geo(image_root, ref.file_id)
        geo = by_file[ref.file_id]
        if geo is not None:
            out[image_id] = _record(image_id, ref.file_id, geo, ref.window)
    return out


def geo_json(record: Mapping[str, Any] | None) -> str:
    """A record as compact JSON text (empty string for None), for table cells and metadata."""
    return "" if record is None else json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
