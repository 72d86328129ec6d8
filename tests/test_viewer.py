"""The focus-mode viewer: window/level on modality values, band mapping and stretch, drawn on the
visible crop only, per-user settings that leave the project's recipe alone until saved.

Files are written with pydicom and tifffile; expected pixels are computed here from the
formulas (DICOM PS3.3 C.11.2.1.2 LINEAR window, linear percentile stretch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from activekd_core import viewer
from activekd_core.display_recipe import DisplayRecipe, RecipeError
from activekd_core.image_items import ItemRef
from activekd_core.image_open import ImageLoadError
from activekd_core.viewer import BANDS, GREY, ViewerSettings, describe, render_view


def write_ct(path: Path, stored: np.ndarray, **tags: object) -> Path:
    """A CT written by pydicom (RescaleSlope 1, RescaleIntercept -1024), header window -600/1500."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Quxbrandt^Zelphinia"
    ds.Modality = "CT"
    ds.set_pixel_data(stored.astype(np.int16), "MONOCHROME2", 16)
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.WindowCenter = -600
    ds.WindowWidth = 1500
    for key, value in tags.items():
        setattr(ds, key, value)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def ct_bands() -> np.ndarray:
    """Stored values: rows 0-9 at 40 HU, 10-19 air (-1000 HU), 20-29 bone (1000 HU)."""
    stored = np.zeros((30, 20), dtype=np.int16)
    stored[0:10] = 40 + 1024
    stored[10:20] = -1000 + 1024
    stored[20:30] = 1000 + 1024
    return stored


def linear(hu: float, center: float, width: float) -> int:
    """The DICOM LINEAR window, rounded (what a viewer must show)."""
    lower, upper = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    if hu <= lower:
        return 0
    if hu > upper:
        return 255
    return int(np.rint(((hu - (center - 0.5)) / (width - 1) + 0.5) * 255))


WHOLE = {"viewport": (20, 30), "zoom": 1.0}


@pytest.fixture()
def ct(tmp_path: Path) -> Path:
    write_ct(tmp_path / "ct.dcm", ct_bands())
    return tmp_path


def test_ct_window_40_400_gives_mid_grey_at_40_hu_and_black_air(ct: Path) -> None:
    view = render_view(ct, ItemRef("ct.dcm"), DisplayRecipe(), ViewerSettings(40, 400), **WHOLE)
    assert view.rgb.shape == (30, 20, 3) and view.size == (20, 30)
    assert linear(40, 40, 400) == 128
    assert (view.rgb[0:10] == 128).all()  # 40 HU: mid-grey
    assert (view.rgb[10:20] == 0).all()  # air: black
    assert (view.rgb[20:30] == 255).all()  # bone above the window: white


def test_lung_preset_differs_and_matches_the_formula(ct: Path) -> None:
    soft = render_view(ct, ItemRef("ct.dcm"), DisplayRecipe(), ViewerSettings(40, 400), **WHOLE).rgb
    lung = render_view(ct, ItemRef("ct.dcm"), DisplayRecipe(), ViewerSettings(-600, 1500), **WHOLE).rgb
    assert (lung[0:10] == linear(40, -600, 1500)).all() and linear(40, -600, 1500) == 236
    assert (lung[10:20] == linear(-1000, -600, 1500)).all() and linear(-1000, -600, 1500) == 60
    assert not np.array_equal(soft, lung)


def test_default_view_is_the_projects_and_the_file_window_applies(ct: Path) -> None:
    """No user window: the recipe decides (here 'auto': the header's -600/1500)."""
    view = render_view(ct, ItemRef("ct.dcm"), DisplayRecipe(), ViewerSettings(), **WHOLE).rgb
    assert (view[0:10] == linear(40, -600, 1500)).all()
    preset = render_view(ct, ItemRef("ct.dcm"), DisplayRecipe(window="ct_brain"), ViewerSettings(), **WHOLE).rgb
    assert (preset[0:10] == linear(40, 40, 80)).all() and (preset[20:30] == 255).all()


def test_dicom_window_is_applied_to_the_crop_only_and_output_fits_the_viewport(tmp_path: Path, monkeypatch) -> None:
    hu = np.add.outer(np.arange(400), np.arange(600)) - 500  # a ramp of HU values, 400 rows x 600 columns
    write_ct(tmp_path / "big.dcm", hu + 1024)
    seen: list[tuple[int, ...]] = []
    real = viewer.frame_to_rgb8
    monkeypatch.setattr(viewer, "frame_to_rgb8", lambda arr, *a, **k: (seen.append(arr.shape), real(arr, *a, **k))[1])
    view = render_view(tmp_path, ItemRef("big.dcm"), DisplayRecipe(), ViewerSettings(0, 1000),
                       viewport=(160, 120), zoom=4.0, center=(0.25, 0.5))
    assert seen == [(30, 40)]  # 160 / 4 x 120 / 4 source pixels: the window/level saw the crop only
    assert view.rgb.shape == (120, 160, 3) and view.window.size == (160, 120)
    left, top, right, bottom = view.window.box
    assert (right - left, bottom - top) == (40, 30) and left == 130
    expected = np.vectorize(lambda v: linear(v, 0, 1000))(hu[top:bottom, left:right])
    assert np.array_equal(view.rgb[::4, ::4, 0], expected)  # each source pixel a 4x4 square
    for zoom in (0.5, 1.0, 8.0):
        out = render_view(tmp_path, ItemRef("big.dcm"), DisplayRecipe(), ViewerSettings(0, 1000),
                          viewport=(160, 120), zoom=zoom).rgb
        assert out.shape[0] <= 120 and out.shape[1] <= 160


def write_bands(path: Path, data: np.ndarray, tile: tuple[int, int] | None = None) -> Path:
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig", tile=tile)
    return path


def stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.rint(np.clip((values.astype(np.float64) - low) * 255.0 / (high - low), 0, 255)).astype(np.uint8)


def test_four_band_uint16_bands_3_2_1_with_2_98_stretch(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = np.stack([rng.integers(k * 1000, k * 1000 + 4000, (24, 32)) for k in range(4)], axis=2).astype(np.uint16)
    write_bands(tmp_path / "s.tif", data)
    settings = ViewerSettings(bands=(3, 2, 1), percentiles=(2.0, 98.0))
    view = render_view(tmp_path, ItemRef("s.tif"), DisplayRecipe(), settings, viewport=(32, 24), zoom=1.0)
    for channel, band in enumerate((3, 2, 1)):
        values = data[:, :, band - 1]
        low, high = np.percentile(values.astype(np.float64), (2.0, 98.0))
        assert np.array_equal(view.rgb[:, :, channel], stretch(values, low, high)), band
    other = render_view(tmp_path, ItemRef("s.tif"), DisplayRecipe(), ViewerSettings(bands=(4, 3, 2)),
                        viewport=(32, 24), zoom=1.0).rgb
    assert not np.array_equal(other, view.rgb)


def test_project_percentiles_use_the_stored_pool_ranges(tmp_path: Path) -> None:
    data = np.stack([np.full((8, 8), 100 * (k + 1), np.uint16) for k in range(3)], axis=2)
    data[0, 0] = 0
    write_bands(tmp_path / "s.tif", data)
    recipe = DisplayRecipe(band_ranges=((1, 0.0, 400.0), (2, 0.0, 400.0), (3, 0.0, 400.0)))
    same = render_view(tmp_path, ItemRef("s.tif"), recipe, ViewerSettings(percentiles=(2.0, 98.0)),
                       viewport=(8, 8), zoom=1.0).rgb
    assert tuple(same[4, 4]) == (64, 128, 191)  # 100/400, 200/400, 300/400 of 255
    own = render_view(tmp_path, ItemRef("s.tif"), recipe, ViewerSettings(percentiles=(0.0, 100.0)),
                      viewport=(8, 8), zoom=1.0).rgb
    assert tuple(own[4, 4]) == (255, 255, 255) and tuple(own[0, 0]) == (0, 0, 0)  # the pixels' own range


def test_single_band_uint16_window_level_on_raw_values(tmp_path: Path) -> None:
    data = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    write_bands(tmp_path / "g.tif", data)
    info = describe(tmp_path, ItemRef("g.tif"), DisplayRecipe())
    assert info.kind == GREY and info.value_range == (0.0, 65535.0) and not info.is_dicom
    view = render_view(tmp_path, ItemRef("g.tif"), DisplayRecipe(), ViewerSettings(32000, 20000),
                       viewport=(8, 8), zoom=1.0).rgb
    assert np.array_equal(view[:, :, 0], stretch(data, 22000, 42000)) and view[3, 7, 0] == 115


def test_float_reflectance_window_narrower_than_one(tmp_path: Path) -> None:
    data = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    data[0, 0] = np.nan
    write_bands(tmp_path / "r.tif", data)
    info = describe(tmp_path, ItemRef("r.tif"), DisplayRecipe())
    assert info.kind == GREY and info.value_range == (float(data[0, 1]), 1.0)  # the finite values' range
    view = render_view(tmp_path, ItemRef("r.tif"), DisplayRecipe(), ViewerSettings(0.5, 0.2),
                       viewport=(8, 8), zoom=1.0).rgb
    assert np.array_equal(view[1:, :, 0], stretch(data[1:], 0.4, 0.6))
    assert tuple(view[0, 0]) == (128, 128, 128)  # NaN: the no-data grey
    with pytest.raises(RecipeError):
        ViewerSettings(0.5, 0.0)


def test_tiff_reads_only_the_visible_window_of_a_chip(tmp_path: Path, monkeypatch) -> None:
    data = np.zeros((512, 512, 4), dtype=np.uint16)
    data[..., 0] = np.arange(512)[None, :]
    write_bands(tmp_path / "scene.tif", data, tile=(64, 64))
    boxes: list = []
    real = viewer.read_page_window
    monkeypatch.setattr(viewer, "read_page_window", lambda *a: (boxes.append(a[3]), real(*a))[1])
    chip = ItemRef("scene.tif", window=(256, 0, 256, 256))
    view = render_view(tmp_path, chip, DisplayRecipe(), ViewerSettings(bands=(1,), percentiles=(0.0, 100.0)),
                       viewport=(128, 96), zoom=4.0, center=(0.5, 0.5))
    assert boxes == [(256 + 112, 116, 32, 24)]  # the chip's centre 32 x 24 pixels, in file coordinates
    assert view.rgb.shape == (96, 128, 3) and view.size == (256, 256)
    info = describe(tmp_path, chip, DisplayRecipe())
    assert info.kind == BANDS and (info.width, info.height, info.n_bands) == (256, 256, 4)


def test_describe_dicom(ct: Path) -> None:
    info = describe(ct, ItemRef("ct.dcm"), DisplayRecipe())
    assert info.kind == GREY and info.is_dicom and info.modality == "CT"
    assert info.value_range == (-1024.0, 3071.0)  # int16 after the rescale, limited to the HU a CT window means
    assert info.default_window == (-600.0, 1500.0)
    assert describe(ct, ItemRef("ct.dcm"), DisplayRecipe(window="ct_bone")).default_window == (400.0, 1800.0)


def test_plain_png_and_escaping_ids_are_refused(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(ImageLoadError, match="neither DICOM nor TIFF"):
        render_view(tmp_path, ItemRef("a.png"), DisplayRecipe(), ViewerSettings())
    with pytest.raises(ImageLoadError, match="refused"):
        render_view(tmp_path / "a.png", ItemRef("../x.dcm"), DisplayRecipe(), ViewerSettings())


def test_settings_validate_and_round_trip() -> None:
    s = ViewerSettings(40, 400, (4, 3, 2), (1, 99))
    assert ViewerSettings.from_dict(s.to_dict()) == s and s.percentiles == (1.0, 99.0)
    for bad in ({"window_center": 1}, {"window_center": 1, "window_width": 0},
                {"bands": [1, 2]}, {"percentiles": [50, 10]}, {"window_center": "x", "window_width": 3}):
        with pytest.raises((RecipeError, TypeError)):
            ViewerSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in bad.items()})
        assert ViewerSettings.from_dict(bad) == ViewerSettings()  # a damaged stored view: the default one
    assert ViewerSettings.from_dict("junk") == ViewerSettings()


def test_saving_maps_to_presets_and_band_ranges(ct: Path) -> None:
    recipe = DisplayRecipe(band_ranges=((1, 0.0, 5.0),))
    dicom = describe(ct, ItemRef("ct.dcm"), DisplayRecipe())
    assert ViewerSettings(-600, 1500).project_recipe(recipe, dicom).window == "ct_lung"
    manual = ViewerSettings(10, 20).project_recipe(recipe, dicom)
    assert (manual.window, manual.window_center, manual.window_width) == ("manual", 10.0, 20.0)
    raster = viewer.ViewInfo(GREY, 8, 8, 1, "", (0.0, 65535.0), None, False)
    saved = ViewerSettings(32000, 20000).project_recipe(recipe, raster)
    assert saved.window == "auto" and saved.band_range(1) == (22000.0, 42000.0) and saved.stretch == "percentile"
    assert ViewerSettings().apply(recipe) is recipe
    assert ViewerSettings(percentiles=(5, 95)).apply(recipe).band_ranges == ()  # computed for other percentiles
