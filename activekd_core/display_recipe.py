"""How a project turns DICOM and scientific rasters into the 8-bit RGB everyone sees.

One :class:`DisplayRecipe` per project decides what the labeling page shows, what the
teacher encodes and what the student trains on, so the teacher never sees something else
than the expert. It is a small frozen dataclass: JSON-serialisable (:meth:`to_json`,
:meth:`from_json`, which validates hostile input) with a stable :meth:`key` for cache keys,
so changing a project's recipe changes every key derived from it.

What each field does:

* **DICOM window** (``window``): ``"auto"`` uses the file's own VOI LUT, else the first
  WindowCenter/WindowWidth pair in its header, else the frame's min-max; a preset name from
  :data:`WINDOW_PRESETS` (e.g. ``"ct_soft_tissue"`` = centre 40 / width 400 HU) or
  ``"manual"`` (with ``window_center`` / ``window_width``) applies that linear window to the
  modality values (Hounsfield units for CT) instead.
* **Frames** (``frames``): ``"middle"`` makes one item per multi-frame DICOM (its middle
  frame); ``"each"`` makes one item per frame.
* **Bands** (``bands``): 1-based band numbers, as GDAL and QGIS count them, mapped to R, G,
  B (three numbers) or shown as grey (one number). ``None`` means the first three bands, or
  band 1 as grey when the file has fewer than three. :data:`BAND_PRESETS` holds the
  Sentinel-2 true-colour mapping ``(4, 3, 2)`` (bands B4, B3, B2 of a stack stored in band
  order B1, B2, B3, B4, ...).
* **Stretch** (``stretch``): ``"percentile"`` maps each band's ``percentiles`` (default
  2-98 %) low/high to 0..255. The low/high values are computed once on a sample of the pool
  (:func:`activekd_core.raster_images.compute_band_ranges`) and stored in ``band_ranges``
  as ``(band, low, high)`` triples; bands without a stored range fall back to the image's
  own percentiles. ``"minmax"`` uses each image's min and max, ``"none"`` the data type's
  range (0..1 for floats). ``"auto"`` is ``"none"`` for 8-bit data and ``"percentile"``
  otherwise. ``nodata`` overrides the file's nodata value; NaN and nodata pixels are shown
  as the fixed grey :data:`NODATA_RGB`.
* **Chips** (``chip_size``, ``chip_overlap``): ``None`` keeps each raster whole; a size
  cuts every raster into square chips of that side, ``chip_overlap`` pixels apart from
  their neighbours' edges, each chip an item read on demand.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

RECIPE_VERSION = 1
NODATA_RGB = (128, 128, 128)
MAX_BAND_NUMBER = 65535
MAX_CHIP_SIZE = 65536
_MAX_JSON_CHARS = 100_000


@dataclass(frozen=True)
class WindowPreset:
    """A named linear window (centre/width in modality units, e.g. Hounsfield units).

    Attributes:
        name: Identifier stored in a recipe.
        label: What the user sees.
        modality: The DICOM Modality it is meant for.
        center: Window centre.
        width: Window width.
    """

    name: str
    label: str
    modality: str
    center: float
    width: float


WINDOW_PRESETS: dict[str, WindowPreset] = {
    p.name: p
    for p in (
        WindowPreset("ct_soft_tissue", "CT soft tissue (40/400)", "CT", 40.0, 400.0),
        WindowPreset("ct_lung", "CT lung (-600/1500)", "CT", -600.0, 1500.0),
        WindowPreset("ct_bone", "CT bone (400/1800)", "CT", 400.0, 1800.0),
        WindowPreset("ct_brain", "CT brain (40/80)", "CT", 40.0, 80.0),
    )
}

BAND_PRESETS: dict[str, tuple[int, ...]] = {
    "first_three": (1, 2, 3),
    "sentinel2_true_colour": (4, 3, 2),
}

WINDOW_MODES = ("auto", "manual", *WINDOW_PRESETS)
FRAME_MODES = ("middle", "each")
STRETCH_MODES = ("auto", "percentile", "minmax", "none")


def window_presets_for(modality: str) -> list[WindowPreset]:
    """The presets meant for a DICOM Modality (e.g. ``"CT"``), in display order."""
    return [p for p in WINDOW_PRESETS.values() if p.modality == modality]


class RecipeError(ValueError):
    """A display recipe (or its JSON) is invalid; the message says which field and why."""


def parse_bands(text: str) -> tuple[int, ...] | None:
    """Band numbers typed by a person (``"4, 3, 2"``, ``"4 3 2"`` or ``"1"``), or None for blank.

    Raises:
        RecipeError: When the text is not 1 or 3 whole band numbers (the message quotes at
            most 40 characters of it).
    """
    text = str(text).strip()
    if not text:
        return None
    parts = [p for p in text.replace(",", " ").split() if p]
    if len(parts) not in (1, 3) or not all(p.isdigit() and len(p) <= 5 for p in parts):
        raise RecipeError(f"bands must be 1 or 3 band numbers such as '4, 3, 2'; got {text[:40]!r}")
    bands = tuple(int(p) for p in parts)
    for b in bands:
        _integer("band number", b, 1, MAX_BAND_NUMBER)
    return bands


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise RecipeError(f"{name} must be finite, got {value}")
    return value


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecipeError(f"{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise RecipeError(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class DisplayRecipe:
    """The per-project recipe that turns DICOM/raster pixels into 8-bit RGB.

    See the module docstring for what every field means. Instances are validated on
    creation (a :class:`RecipeError` names the bad field) and normalised (numbers to
    float, sequences to tuples), so equal recipes have equal :meth:`key`.

    Attributes:
        window: ``"auto"``, ``"manual"`` or a :data:`WINDOW_PRESETS` name.
        window_center: Centre for ``window="manual"``.
        window_width: Width (> 0) for ``window="manual"``.
        frames: ``"middle"`` or ``"each"`` (multi-frame DICOM).
        bands: 1-based band numbers for R, G, B (3) or grey (1); None = default.
        stretch: ``"auto"``, ``"percentile"``, ``"minmax"`` or ``"none"``.
        percentiles: Low and high percentile for ``"percentile"``.
        band_ranges: Stored ``(band, low, high)`` per band, from the pool sample.
        nodata: A value shown as no-data (overrides the file's own), or None.
        chip_size: Side of square chips for large rasters, or None (whole images).
        chip_overlap: Pixels shared by neighbouring chips (< chip_size).
    """

    window: str = "auto"
    window_center: float | None = None
    window_width: float | None = None
    frames: str = "middle"
    bands: tuple[int, ...] | None = None
    stretch: str = "auto"
    percentiles: tuple[float, float] = (2.0, 98.0)
    band_ranges: tuple[tuple[int, float, float], ...] = ()
    nodata: float | None = None
    chip_size: int | None = None
    chip_overlap: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.window not in WINDOW_MODES:
            raise RecipeError(f"window must be one of {', '.join(WINDOW_MODES)}; got {str(self.window)[:40]!r}")
        center, width = self.window_center, self.window_width
        if self.window == "manual":
            if center is None or width is None:
                raise RecipeError("window 'manual' needs window_center and window_width")
        if center is not None:
            set_(self, "window_center", _finite("window_center", center))
        if width is not None:
            width = _finite("window_width", width)
            if width < 1.0:
                raise RecipeError(f"window_width must be at least 1, got {width}")
            set_(self, "window_width", width)
        if self.frames not in FRAME_MODES:
            raise RecipeError(f"frames must be one of {', '.join(FRAME_MODES)}; got {str(self.frames)[:40]!r}")
        if self.bands is not None:
            if not isinstance(self.bands, (tuple, list)):
                raise RecipeError("bands must be a list of 1 or 3 band numbers")
            bands = tuple(_integer("band number", b, 1, MAX_BAND_NUMBER) for b in self.bands)
            if len(bands) not in (1, 3):
                raise RecipeError(f"bands must name 1 (grey) or 3 (R, G, B) bands, got {len(bands)}")
            set_(self, "bands", bands)
        if self.stretch not in STRETCH_MODES:
            raise RecipeError(f"stretch must be one of {', '.join(STRETCH_MODES)}; got {str(self.stretch)[:40]!r}")
        pct = tuple(self.percentiles) if isinstance(self.percentiles, (tuple, list)) else ()
        if len(pct) != 2:
            raise RecipeError("percentiles must be a (low, high) pair")
        low, high = _finite("percentiles low", pct[0]), _finite("percentiles high", pct[1])
        if not 0.0 <= low < high <= 100.0:
            raise RecipeError(f"percentiles must satisfy 0 <= low < high <= 100, got ({low}, {high})")
        set_(self, "percentiles", (low, high))
        ranges = []
        seen: set[int] = set()
        if not isinstance(self.band_ranges, (tuple, list)):
            raise RecipeError("band_ranges must be a list of (band, low, high) triples")
        for entry in self.band_ranges:
            if not isinstance(entry, (tuple, list)) or len(entry) != 3:
                raise RecipeError("band_ranges entries must be (band, low, high) triples")
            band = _integer("band_ranges band", entry[0], 1, MAX_BAND_NUMBER)
            lo, hi = _finite("band_ranges low", entry[1]), _finite("band_ranges high", entry[2])
            if hi < lo:
                raise RecipeError(f"band_ranges for band {band}: high {hi} is below low {lo}")
            if band in seen:
                raise RecipeError(f"band_ranges names band {band} twice")
            seen.add(band)
            ranges.append((band, lo, hi))
        set_(self, "band_ranges", tuple(sorted(ranges)))
        if self.nodata is not None:
            set_(self, "nodata", _finite("nodata", self.nodata))
        if self.chip_size is not None:
            _integer("chip_size", self.chip_size, 16, MAX_CHIP_SIZE)
            _integer("chip_overlap", self.chip_overlap, 0, self.chip_size - 1)
        else:
            _integer("chip_overlap", self.chip_overlap, 0, 0)

    # ---------------------------------------------------------------- derived values
    def window_values(self) -> tuple[float, float] | None:
        """``(center, width)`` the recipe imposes, or None for ``"auto"`` (the file decides)."""
        if self.window == "auto":
            return None
        if self.window == "manual":
            assert self.window_center is not None and self.window_width is not None
            return (self.window_center, self.window_width)
        preset = WINDOW_PRESETS[self.window]
        return (preset.center, preset.width)

    def band_range(self, band: int) -> tuple[float, float] | None:
        """The stored ``(low, high)`` for a 1-based band, or None."""
        for b, lo, hi in self.band_ranges:
            if b == band:
                return (lo, hi)
        return None

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists), with the format version."""
        out = asdict(self)
        out["bands"] = list(self.bands) if self.bands is not None else None
        out["percentiles"] = list(self.percentiles)
        out["band_ranges"] = [list(r) for r in self.band_ranges]
        out["version"] = RECIPE_VERSION
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal recipes give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    def key(self) -> str:
        """A stable 16-hex-digit key for cache names; changes whenever the output can."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Any) -> DisplayRecipe:
        """Build a recipe from :meth:`to_dict` output, refusing unknown or bad fields.

        Raises:
            RecipeError: When ``data`` is not a valid recipe (the message says why).
        """
        if not isinstance(data, dict):
            raise RecipeError(f"a display recipe must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("version", RECIPE_VERSION)
        if version != RECIPE_VERSION:
            raise RecipeError(f"unsupported display recipe version {str(version)[:20]!r} (expected {RECIPE_VERSION})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k)[:40] for k in data if k not in known)
        if unknown:
            raise RecipeError(f"unknown display recipe field(s): {', '.join(unknown[:5])}")
        for name in ("bands", "percentiles"):
            if isinstance(data.get(name), list):
                data[name] = tuple(data[name])
        if "band_ranges" in data:
            if not isinstance(data["band_ranges"], list):
                raise RecipeError("band_ranges must be a list of (band, low, high) triples")
            data["band_ranges"] = tuple(tuple(r) if isinstance(r, list) else r for r in data["band_ranges"])
        try:
            return cls(**data)
        except TypeError as exc:  # e.g. a band_ranges entry that is not a sequence
            raise RecipeError(f"invalid display recipe: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> DisplayRecipe:
        """Parse :meth:`to_json` output (bounded in size, NaN refused).

        Raises:
            RecipeError: When the text is not a valid recipe.
        """
        if len(text) > _MAX_JSON_CHARS:
            raise RecipeError(f"display recipe JSON is too long ({len(text):,} characters)")

        def refuse_constant(name: str) -> Any:
            raise RecipeError(f"display recipe JSON contains {name}, which is not a number")

        try:
            data = json.loads(text, parse_constant=refuse_constant)
        except json.JSONDecodeError as exc:
            raise RecipeError(f"display recipe is not valid JSON: {exc.msg} at character {exc.pos}") from exc
        return cls.from_dict(data)
