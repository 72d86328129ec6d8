"""Scientific TIFF / GeoTIFF rasters (16-bit, float, many bands, large scenes) as 8-bit RGB.

Read with tifffile (compressions other than Deflate/LZMA need ``imagecodecs``, which the
requirements pin). The image is the file's first page: bands are its samples per pixel, as
GDAL writes them (pixel- or band-interleaved); further pages (overviews, masks) are ignored.
This module is the public home of the raster reader; the work is done, by concern, in:

* :mod:`activekd_core.raster_header`: detection (:func:`is_tiff`), safe opening, the
  page summary (:class:`RasterInfo`) and every limit checked before decoding
  (:func:`inspect_raster`), the items a raster contributes (:func:`raster_items`).
* :mod:`activekd_core.raster_windows`: :func:`read_window`, which reads only the tiles
  or strips under a window.
* :mod:`activekd_core.raster_display`: :func:`read_raster_rgb` and
  :func:`bands_to_rgb8` (band mapping, stretch, nodata, palettes, pyramid levels) and
  :func:`compute_band_ranges` (a pool-wide stretch).
* :mod:`activekd_core.raster_geo`: :func:`geo_metadata` and :func:`window_geotransform`.
"""

from __future__ import annotations

from activekd_core.raster_display import bands_to_rgb8, compute_band_ranges, read_raster_rgb
from activekd_core.raster_geo import geo_metadata, window_geotransform
from activekd_core.raster_header import (
    DEFAULT_MAX_BANDS,
    DEFAULT_MAX_CHIPS,
    RasterInfo,
    display_bands,
    inspect_raster,
    is_tiff,
    raster_items,
)
from activekd_core.raster_windows import read_window

__all__ = [
    "DEFAULT_MAX_BANDS",
    "DEFAULT_MAX_CHIPS",
    "RasterInfo",
    "bands_to_rgb8",
    "compute_band_ranges",
    "display_bands",
    "geo_metadata",
    "inspect_raster",
    "is_tiff",
    "raster_items",
    "read_raster_rgb",
    "read_window",
    "window_geotransform",
]
