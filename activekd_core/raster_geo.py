"""The GeoTIFF geo-reference of a raster, JSON-ready, and its shift to a chip.

:func:`geo_metadata`: ModelPixelScale, ModelTiepoint, ModelTransformation, the GeoKey
directory (raw and decoded by tifffile) and GDAL_NODATA, plus the affine geotransform;
:func:`window_geotransform` shifts it to a chip. Every value is bounded in length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Any

import numpy as np

from activekd_core.image_items import Source
from activekd_core.raster_header import first_page, gdal_nodata, open_tiff, source_label

_GEO_TAGS = {
    33550: "ModelPixelScaleTag",
    33922: "ModelTiepointTag",
    34264: "ModelTransformationTag",
    34735: "GeoKeyDirectoryTag",
    34736: "GeoDoubleParamsTag",
    34737: "GeoAsciiParamsTag",
    42113: "GDAL_NODATA",
}


def geo_metadata(source: Source, *, name: str | None = None) -> dict[str, Any] | None:
    """The GeoTIFF geo-reference of a raster, JSON-ready, or None when it has none.

    Returns:
        ``{"tags": {tag name: raw values}, "keys": {GeoKey name: value}, "geotransform":
        [x0, dx, rx, y0, ry, dy] or None, "nodata": float or None}``. ``tags`` holds the
        raw ModelPixelScale/ModelTiepoint/ModelTransformation/GeoKeyDirectory/GeoDoubleParams/
        GeoAsciiParams/GDAL_NODATA values (enough to write them back unchanged);
        ``geotransform`` uses GDAL's order (pixel (col, row) maps to
        ``x = x0 + col*dx + row*rx``, ``y = y0 + col*ry + row*dy``, pixel corners).
        Text values are bounded to 1,000 characters.
    """
    label = source_label(source, name)
    with open_tiff(source, label) as tf:
        page = first_page(tf, label)
        tags = {}
        for code, tag_name in _GEO_TAGS.items():
            tag = page.tags.get(code)
            if tag is not None:
                tags[tag_name] = _jsonable(tag.value)
        if not any(k in tags for k in ("ModelPixelScaleTag", "ModelTiepointTag", "ModelTransformationTag", "GeoKeyDirectoryTag")):
            return None
        try:
            decoded = tf.geotiff_metadata or {}
        except Exception:  # noqa: BLE001 - a malformed key directory still keeps the raw tags
            decoded = {}
        keys = {str(k)[:100]: _jsonable(v) for k, v in decoded.items() if k not in ("ModelPixelScale", "ModelTiepoint", "ModelTransformation")}
        return {"tags": tags, "keys": keys, "geotransform": _geotransform(tags), "nodata": gdal_nodata(page)}


def _geotransform(tags: dict[str, Any]) -> list[float] | None:
    matrix = tags.get("ModelTransformationTag")
    if isinstance(matrix, list) and len(matrix) >= 8:
        return [float(matrix[3]), float(matrix[0]), float(matrix[1]), float(matrix[7]), float(matrix[4]), float(matrix[5])]
    scale, tie = tags.get("ModelPixelScaleTag"), tags.get("ModelTiepointTag")
    if isinstance(scale, list) and isinstance(tie, list) and len(scale) >= 2 and len(tie) >= 6:
        i, j, x, y = float(tie[0]), float(tie[1]), float(tie[3]), float(tie[4])
        dx, dy = float(scale[0]), -float(scale[1])
        return [x - i * dx, dx, 0.0, y - j * dy, 0.0, dy]
    return None


def window_geotransform(geotransform: Sequence[float], x: int, y: int) -> list[float]:
    """The geotransform of a chip whose top-left pixel is ``(x, y)`` of the full image."""
    x0, dx, rx, y0, ry, dy = (float(v) for v in geotransform)
    return [x0 + x * dx + y * rx, dx, rx, y0 + x * ry + y * dy, ry, dy]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return int(value.value) if isinstance(value.value, int) else str(value.value)[:1000]
    if isinstance(value, (bytes, bytearray)):
        return value.decode("latin-1")[:1000]
    if isinstance(value, str):
        return value[:1000]
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in list(value)[:10_000]]
    return str(value)[:1000]
