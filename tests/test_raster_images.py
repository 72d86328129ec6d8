"""Scientific TIFF/GeoTIFF reading: band mapping, stretch, nodata, geo tags, chips, bad input."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

from activekd_core import raster_display, raster_images
from activekd_core.display_recipe import BAND_PRESETS, NODATA_RGB, DisplayRecipe
from activekd_core.image_formats import needs_raster_reader, read_display_rgb, scan_entries, sniff_format
from activekd_core.image_items import ItemRef, split_item_id
from activekd_core.images import ImageLoadError
from activekd_core.raster_images import (
    bands_to_rgb8,
    compute_band_ranges,
    geo_metadata,
    inspect_raster,
    read_raster_rgb,
    read_window,
    window_geotransform,
)

GEOKEYS = [1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32632, 3076, 0, 1, 9001]


def geo_extratags(nodata: str | None = None) -> list[tuple]:
    tags = [
        (33550, "d", 3, (10.0, 10.0, 0.0), True),
        (33922, "d", 6, (0.0, 0.0, 0.0, 300000.0, 5000040.0, 0.0), True),
        (34735, "H", len(GEOKEYS), GEOKEYS, True),
    ]
    if nodata is not None:
        tags.append((42113, "s", 0, nodata, True))
    return tags


def sentinel_like(height: int = 40, width: int = 30) -> np.ndarray:
    """13 uint16 bands; band b (1-based) holds 1000 * b everywhere, plus a ramp in band 4."""
    arr = np.empty((height, width, 13), dtype=np.uint16)
    for b in range(1, 14):
        arr[:, :, b - 1] = 1000 * b
    arr[:, :, 3] = np.linspace(0, 10000, height * width).reshape(height, width).astype(np.uint16)
    return arr


@pytest.fixture()
def s2_file(tmp_path: Path) -> Path:
    path = tmp_path / "T32TNS.tif"
    tifffile.imwrite(
        path, sentinel_like(), photometric="minisblack", planarconfig="contig",
        extratags=geo_extratags(), compression="zlib", tile=(16, 16),
    )
    return path


# ----------------------------------------------------------------------------- band mapping and stretch
def test_default_maps_first_three_bands(s2_file: Path) -> None:
    recipe = DisplayRecipe(stretch="percentile", band_ranges=((1, 0, 2000), (2, 0, 4000), (3, 0, 6000)))
    rgb = read_raster_rgb(s2_file, recipe)
    assert rgb.shape == (40, 30, 3)
    # band 1 = 1000 in 0..2000 -> 127.5 -> 128; band 2 = 2000 in 0..4000 -> 128; band 3 likewise.
    assert (rgb == 128).all()


def test_sentinel2_true_colour_preset_maps_b4_b3_b2(s2_file: Path) -> None:
    recipe = DisplayRecipe(
        bands=BAND_PRESETS["sentinel2_true_colour"], stretch="percentile",
        band_ranges=((2, 0, 8000), (3, 0, 6000), (4, 0, 10000)),
    )
    rgb = read_raster_rgb(s2_file, recipe)
    ramp = sentinel_like()[:, :, 3].astype(np.float64)
    assert np.array_equal(rgb[:, :, 0], np.rint(np.clip(ramp * 255 / 10000, 0, 255)).astype(np.uint8))  # R <- B4
    assert (rgb[:, :, 1] == 128).all()  # G <- B3 = 3000 in 0..6000
    assert (rgb[:, :, 2] == 64).all()  # B <- B2 = 2000 in 0..8000 -> 63.75


def test_grey_band_and_stretch_modes(s2_file: Path) -> None:
    arr = sentinel_like()[:, :, 3]
    grey = read_raster_rgb(s2_file, DisplayRecipe(bands=(4,), stretch="minmax"))
    lo, hi = float(arr.min()), float(arr.max())
    expected = np.rint((arr - lo) * 255 / (hi - lo)).astype(np.uint8)
    assert np.array_equal(grey[:, :, 0], expected) and np.array_equal(grey[:, :, 0], grey[:, :, 2])
    none = read_raster_rgb(s2_file, DisplayRecipe(bands=(13,), stretch="none"))
    assert (none == round(13000 * 255 / 65535)).all()  # the uint16 range
    own = read_raster_rgb(s2_file, DisplayRecipe(bands=(4,), stretch="percentile"))  # no stored range: own 2-98 %
    p2, p98 = np.percentile(arr.astype(np.float64), [2, 98])
    expected = np.rint(np.clip((arr - p2) * 255 / (p98 - p2), 0, 255)).astype(np.uint8)
    assert np.array_equal(own[:, :, 0], expected)


def test_pool_percentiles_computed_once_and_stored(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    files, pooled = [], []
    for k in range(3):
        data = rng.integers(100 * k, 5000 + 100 * k, (20, 25, 3)).astype(np.uint16)
        pooled.append(data.reshape(-1, 3).astype(np.float64))
        path = tmp_path / f"p{k}.tif"
        tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig")
        files.append((path, None))
    recipe = DisplayRecipe(stretch="percentile")
    ranges = compute_band_ranges(files, recipe)
    values = np.concatenate(pooled)
    for band, low, high in ranges:
        assert (low, high) == pytest.approx(tuple(np.percentile(values[:, band - 1], [2, 98])))
    assert [r[0] for r in ranges] == [1, 2, 3]
    stored = replace(recipe, band_ranges=ranges)
    assert stored.key() != recipe.key()
    assert DisplayRecipe.from_json(stored.to_json()) == stored
    # Every image of the pool is stretched with the same stored limits.
    low, high = ranges[0][1], ranges[0][2]
    data0 = tifffile.imread(files[0][0])[:, :, 0].astype(np.float64)
    expected = np.rint(np.clip((data0 - low) * 255 / (high - low), 0, 255)).astype(np.uint8)
    assert np.array_equal(read_raster_rgb(files[0][0], stored)[:, :, 0], expected)


def test_bands_to_rgb8_is_pure_and_checks_shapes() -> None:
    arr = np.array([[[0.0], [0.5]], [[1.0], [2.0]]], dtype=np.float32)
    out = bands_to_rgb8(arr, (1,), DisplayRecipe(stretch="none"))
    assert out[:, :, 0].tolist() == [[0, 128], [255, 255]]
    with pytest.raises(ValueError):
        bands_to_rgb8(arr, (1, 2, 3), DisplayRecipe())


# ----------------------------------------------------------------------------- float, NaN, nodata
def test_float_nan_shown_as_fixed_grey(tmp_path: Path) -> None:
    arr = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    arr[0, 0] = np.nan
    arr[1, 1] = np.inf
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, arr)
    rgb = read_raster_rgb(path, DisplayRecipe(stretch="none"))
    assert tuple(rgb[0, 0]) == NODATA_RGB and tuple(rgb[1, 1]) == NODATA_RGB
    assert tuple(rgb[7, 7]) == (255, 255, 255)
    assert rgb[0, 1, 0] == round(float(arr[0, 1]) * 255)


def test_gdal_nodata_and_recipe_nodata(tmp_path: Path) -> None:
    arr = np.full((6, 6), 500, dtype=np.int16)
    arr[:2] = -9999
    path = tmp_path / "nd.tif"
    tifffile.imwrite(path, arr, extratags=geo_extratags(nodata="-9999"))
    assert inspect_raster(path).nodata == -9999.0
    rgb = read_raster_rgb(path, DisplayRecipe(stretch="minmax"))
    assert (rgb[:2] == NODATA_RGB).all()
    assert not (rgb[2:] == NODATA_RGB).all()
    hidden = read_raster_rgb(path, DisplayRecipe(stretch="minmax", nodata=500))
    assert (hidden[2:] == NODATA_RGB).all()


def test_nan_only_image_is_refused_but_nan_only_chip_is_grey(tmp_path: Path) -> None:
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, np.full((10, 10), np.nan, dtype=np.float32))
    with pytest.raises(ImageLoadError, match="no valid pixels"):
        read_raster_rgb(path, DisplayRecipe())
    chip = read_raster_rgb(path, DisplayRecipe(), window=(0, 0, 5, 5))
    assert (chip == NODATA_RGB).all()


def test_scan_skips_a_nan_only_float_raster_with_its_reason(tmp_path: Path) -> None:
    from activekd_core.images import scan_images

    tifffile.imwrite(tmp_path / "nan.tif", np.full((10, 10), np.nan, dtype=np.float32))
    partly = np.full((10, 10), np.nan, dtype=np.float32)
    partly[3, 4] = 0.5
    tifffile.imwrite(tmp_path / "partly.tif", partly)
    pool = scan_images(tmp_path)
    assert pool.ids == ["partly.tif"]
    assert [(p.id, p.reason) for p in pool.problems] == [
        ("nan.tif", "no valid pixels: every value is NaN, infinite or the nodata value")]


# ----------------------------------------------------------------------------- geo tags
def test_geotiff_tags_kept_for_exports(s2_file: Path) -> None:
    geo = geo_metadata(s2_file)
    assert geo is not None
    json.dumps(geo)  # JSON-ready
    assert geo["tags"]["GeoKeyDirectoryTag"] == GEOKEYS
    assert geo["tags"]["ModelPixelScaleTag"] == [10.0, 10.0, 0.0]
    assert geo["keys"]["ProjectedCSTypeGeoKey"] == 32632
    assert geo["geotransform"] == [300000.0, 10.0, 0.0, 5000040.0, 0.0, -10.0]
    assert window_geotransform(geo["geotransform"], 512, 256) == [305120.0, 10.0, 0.0, 4997480.0, 0.0, -10.0]
    assert inspect_raster(s2_file).georeferenced


def test_plain_tiff_has_no_geo(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((4, 4, 3), dtype=np.uint8), photometric="rgb")
    assert geo_metadata(path) is None
    info = inspect_raster(path)
    assert not needs_raster_reader(info, DisplayRecipe())  # Pillow keeps showing plain 8-bit TIFFs
    assert needs_raster_reader(info, DisplayRecipe(chip_size=256))


# ----------------------------------------------------------------------------- chips and windows
@pytest.fixture()
def big_tiled(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 4000, (700, 1000, 4)).astype(np.uint16)
    path = tmp_path / "scene.tif"
    tifffile.imwrite(path, arr, photometric="minisblack", planarconfig="contig", tile=(128, 128), compression="zlib")
    return path, arr


def test_chips_listed_with_ids_and_read_on_demand(big_tiled: tuple[Path, np.ndarray]) -> None:
    path, arr = big_tiled
    recipe = DisplayRecipe(chip_size=256, chip_overlap=32, stretch="none")
    items = scan_entries(path, "scenes/scene.tif", recipe)
    xs = sorted({i.window[0] for i in items})
    ys = sorted({i.window[1] for i in items})
    assert xs == [0, 224, 448, 672, 744] and ys == [0, 224, 444]
    assert len(items) == 15 and all(i.window[2:] == (256, 256) for i in items)
    assert items[1].item_id == "scenes/scene.tif@224,0,256,256"
    ref = split_item_id("scenes/scene.tif@224,0,256,256")
    assert ref.file_id == "scenes/scene.tif" and ref.window == (224, 0, 256, 256)
    chip = read_display_rgb(path, items[-1], recipe)
    x, y, w, h = items[-1].window
    expected = np.rint(arr[y : y + h, x : x + w, :3].astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(chip, expected)


def test_window_reads_only_the_tiles_it_needs(big_tiled: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    path, arr = big_tiled
    requested: list[int] = []
    original = tifffile.FileHandle.read_segments

    def spy(self, offsets, bytecounts, indices=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        requested.extend(indices or [])
        return original(self, offsets, bytecounts, indices, *args, **kwargs)

    monkeypatch.setattr(tifffile.FileHandle, "read_segments", spy)
    out = read_window(path, (130, 260, 100, 50), bands=[4, 2])
    assert np.array_equal(out, arr[260:310, 130:230][:, :, [3, 1]])
    across = 8  # ceil(1000 / 128)
    assert sorted(requested) == [2 * across + 1]  # one tile of the 6 x 8 grid


def test_planar_strips_read_only_requested_bands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arr = (np.arange(60 * 50 * 5).reshape(60, 50, 5) % 50000).astype(np.uint16)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(arr, -1, 0), photometric="minisblack", planarconfig="separate", rowsperstrip=16, compression="lzw")
    requested: list[int] = []
    original = tifffile.FileHandle.read_segments

    def spy(self, offsets, bytecounts, indices=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        requested.extend(indices or [])
        return original(self, offsets, bytecounts, indices, *args, **kwargs)

    monkeypatch.setattr(tifffile.FileHandle, "read_segments", spy)
    out = read_window(path, (5, 20, 10, 10), bands=[5, 1])
    assert np.array_equal(out, arr[20:30, 5:15][:, :, [4, 0]])
    strips_per_band = 4  # ceil(60 / 16); rows 20..29 lie in strip 1
    assert sorted(requested) == [0 * strips_per_band + 1, 4 * strips_per_band + 1]


def test_window_max_side_shrinks(big_tiled: tuple[Path, np.ndarray]) -> None:
    path, _ = big_tiled
    out = read_raster_rgb(path, DisplayRecipe(), window=(0, 0, 512, 256), max_side=128)
    assert out.shape == (64, 128, 3)


def test_thumbnails_read_from_overviews(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    full = rng.integers(0, 4000, (1024, 768, 3)).astype(np.uint16)
    half, quarter = full[::2, ::2], full[::4, ::4]
    path = tmp_path / "cog.tif"
    with tifffile.TiffWriter(path) as tw:
        opts = {"tile": (128, 128), "photometric": "minisblack", "planarconfig": "contig", "compression": "zlib"}
        tw.write(full, subifds=2, **opts)
        tw.write(half, subfiletype=1, **opts)
        tw.write(quarter, subfiletype=1, **opts)
    decoded: list[tuple[int, int]] = []
    original = raster_display.read_page_window

    def spy(tf, page, info, window, bands, label, max_pixels):  # type: ignore[no-untyped-def]
        decoded.append((int(page.imagewidth), int(page.imagelength)))
        return original(tf, page, info, window, bands, label, max_pixels)

    monkeypatch.setattr(raster_display, "read_page_window", spy)
    recipe = DisplayRecipe(stretch="none")
    thumb = read_raster_rgb(path, recipe, max_side=200)
    assert decoded[-1] == (192, 256) and thumb.shape == (200, 150, 3)  # the quarter level is enough
    read_raster_rgb(path, recipe, min_side=300)
    assert decoded[-1] == (384, 512)  # a quarter (192 wide) would be too small: the half level
    chip = read_raster_rgb(path, recipe, window=(256, 512, 256, 256), min_side=64)
    assert decoded[-1] == (192, 256)
    expected = np.rint(quarter[128:192, 64:128].astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(chip[:, :, 0], expected[:, :, 0])  # the quarter level's matching window
    read_raster_rgb(path, recipe)
    assert decoded[-1] == (768, 1024)  # full size without a target


# ----------------------------------------------------------------------------- bad input
def test_thousand_bands_refused(tmp_path: Path) -> None:
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, np.zeros((4, 4, 1000), dtype=np.uint8), photometric="minisblack", planarconfig="contig")
    with pytest.raises(ImageLoadError, match="too many bands: 1,000"):
        inspect_raster(path)
    with pytest.raises(ImageLoadError, match="too many bands"):
        read_raster_rgb(path, DisplayRecipe())


def test_bigtiff_beyond_pixel_limit_needs_chips(tmp_path: Path) -> None:
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((300, 400), dtype=np.uint16), bigtiff=True, tile=(64, 64))
    assert sniff_format(path) == "tiff" and inspect_raster(path).bigtiff
    with pytest.raises(ImageLoadError, match="exceeds the limit of 100,000; import it as chips"):
        inspect_raster(path, max_pixels=100_000)
    with pytest.raises(ImageLoadError, match="exceeds the limit"):
        read_raster_rgb(path, DisplayRecipe(), max_pixels=100_000)
    items = scan_entries(path, "big.tif", DisplayRecipe(chip_size=128), max_pixels=100_000)
    assert len(items) == 12
    with pytest.raises(ImageLoadError, match="too many chips"):
        inspect_raster(path, DisplayRecipe(chip_size=16), max_chips=100)


def test_one_huge_strip_cannot_be_chipped(tmp_path: Path) -> None:
    path = tmp_path / "strip.tif"
    tifffile.imwrite(path, np.zeros((300, 400), dtype=np.uint16), rowsperstrip=300, compression="zlib")
    with pytest.raises(ImageLoadError, match="strips of 400x300 pixels.*TILED=YES"):
        inspect_raster(path, DisplayRecipe(chip_size=128), max_pixels=100_000)
    with pytest.raises(ImageLoadError, match="strips of 400x300"):
        read_window(path, (0, 0, 10, 10), max_pixels=100_000)
    assert read_window(path, (0, 0, 10, 10)).shape == (10, 10, 1)  # fine under the default limit


def test_truncated_tiff_reported(tmp_path: Path, big_tiled: tuple[Path, np.ndarray]) -> None:
    path, _ = big_tiled
    data = path.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        inspect_raster(cut, DisplayRecipe(chip_size=256))
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.ones((50, 50), dtype=np.uint16))
    cut2 = tmp_path / "cut2.tif"
    cut2.write_bytes(plain.read_bytes()[:-300])
    with pytest.raises(ImageLoadError, match="truncated"):
        read_raster_rgb(cut2, DisplayRecipe())


def test_corrupt_compressed_data_reported(tmp_path: Path) -> None:
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), compression="zlib")
    with tifffile.TiffFile(path) as tf:
        offset = tf.pages.first.dataoffsets[0]
    data = bytearray(path.read_bytes())
    data[offset : offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match="corrupt"):
        read_raster_rgb(path, DisplayRecipe())


def test_missing_band_and_garbage(tmp_path: Path, s2_file: Path) -> None:
    with pytest.raises(ImageLoadError, match="band 14"):
        inspect_raster(s2_file, DisplayRecipe(bands=(14, 3, 2)))
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + b"\xff" * 20)
    with pytest.raises(ImageLoadError, match="TIFF"):
        inspect_raster(junk)
    with pytest.raises(ImageLoadError, match="not a TIFF"):
        inspect_raster(_write(tmp_path / "x.tif", b"hello"))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_palette_and_miniswhite(tmp_path: Path) -> None:
    cmap = np.zeros((3, 256), dtype=np.uint16)
    cmap[:, 1] = (65535, 0, 0)
    cmap[:, 2] = (0, 0, 65535)
    path = tmp_path / "pal.tif"
    tifffile.imwrite(path, np.array([[1, 2]], dtype=np.uint8), photometric="palette", colormap=cmap)
    assert read_raster_rgb(path, DisplayRecipe()).tolist() == [[[255, 0, 0], [0, 0, 255]]]
    white = tmp_path / "white.tif"
    tifffile.imwrite(white, np.array([[0, 65535]], dtype=np.uint16), photometric="miniswhite")
    assert read_raster_rgb(white, DisplayRecipe(stretch="none"))[:, :, 0].tolist() == [[255, 0]]


def test_file_object_source(s2_file: Path) -> None:
    with open(s2_file, "rb") as fh:
        assert raster_images.is_tiff(fh)
        out = read_raster_rgb(fh, DisplayRecipe(), name="s2")
    assert out.shape == (40, 30, 3)


def test_corrupted_tiffs_only_ever_raise_image_load_error(big_tiled: tuple[Path, np.ndarray]) -> None:
    path, _ = big_tiled
    data = path.read_bytes()[:20000]  # header, tile table and the first tiles
    rng = np.random.default_rng(11)
    recipe = DisplayRecipe(chip_size=128)
    for trial in range(60):
        damaged = bytearray(data)
        if trial % 2:
            damaged = damaged[: int(rng.integers(4, len(damaged)))]
        else:
            for pos in rng.integers(4, 400, size=int(rng.integers(1, 8))):  # the IFD and tag values
                damaged[int(pos)] = int(rng.integers(0, 256))
        source = io.BytesIO(bytes(damaged))
        for call in (
            lambda: scan_entries(source, "x", recipe),
            lambda: read_display_rgb(source, ItemRef("x", window=(0, 0, 128, 128)), recipe),
        ):
            try:
                call()
            except ImageLoadError as exc:
                assert exc.reason


def test_complex_samples_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, np.zeros((4, 4), dtype=np.complex64))
    for call in (inspect_raster, lambda p: read_raster_rgb(p, DisplayRecipe()), read_window):
        with pytest.raises(ImageLoadError, match="unsupported sample type complex64"):
            call(path)
