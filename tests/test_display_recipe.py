"""The display recipe (validation, JSON, cache key), item ids and chip windows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from activekd_core.display_pixels import fit_size, linear_window
from activekd_core.display_recipe import WINDOW_PRESETS, DisplayRecipe, RecipeError, window_presets_for
from activekd_core.image_items import ItemRef, chip_windows, split_item_id


def test_key_is_stable_and_changes_with_every_field() -> None:
    base = DisplayRecipe()
    assert base.key() == DisplayRecipe().key()
    assert DisplayRecipe(bands=[4, 3, 2]).key() == DisplayRecipe(bands=(4, 3, 2)).key()  # normalised
    assert DisplayRecipe(window_center=40, window_width=400, window="manual").key() == DisplayRecipe(
        window="manual", window_center=40.0, window_width=400.0
    ).key()
    variants = [
        replace(base, window="ct_lung"),
        replace(base, frames="each"),
        replace(base, bands=(4, 3, 2)),
        replace(base, stretch="minmax"),
        replace(base, percentiles=(1.0, 99.0)),
        replace(base, band_ranges=((1, 0.0, 10.0),)),
        replace(base, nodata=0.0),
        replace(base, chip_size=256),
        replace(base, chip_size=256, chip_overlap=16),
    ]
    keys = {v.key() for v in variants} | {base.key()}
    assert len(keys) == len(variants) + 1


def test_json_round_trip_and_hostile_json() -> None:
    recipe = DisplayRecipe(
        window="manual", window_center=-600, window_width=1500, frames="each", bands=(4, 3, 2),
        stretch="percentile", band_ranges=((3, 1.5, 900.0), (2, 0, 1000)), nodata=-9999, chip_size=512, chip_overlap=64,
    )
    again = DisplayRecipe.from_json(recipe.to_json())
    assert again == recipe and again.key() == recipe.key()
    assert recipe.band_ranges[0][0] == 2  # sorted by band
    for bad, why in [
        ('{"window": "ct_spleen"}', "window"),
        ('{"bands": [1, 2]}', "1 .grey. or 3"),
        ('{"bands": [0, 1, 2]}', "band number"),
        ('{"percentiles": [98, 2]}', "percentiles"),
        ('{"nodata": NaN}', "NaN"),
        ('{"chip_size": 256, "chip_overlap": 256}', "chip_overlap"),
        ('{"chip_overlap": 8}', "chip_overlap"),
        ('{"window": "manual"}', "window_center"),
        ('{"band_ranges": [[1, 5, 2]]}', "below"),
        ('{"band_ranges": [[1, 0, 2], [1, 0, 3]]}', "twice"),
        ('{"surprise": 1}', "unknown"),
        ('{"version": 99}', "version"),
        ("[1, 2]", "object"),
        ("{", "not valid JSON"),
        ('{"window_width": 0.5, "window_center": 0, "window": "manual"}', "at least 1"),
        ('{"chip_size": true}', "integer"),
    ]:
        with pytest.raises(RecipeError, match=why):
            DisplayRecipe.from_json(bad)
    with pytest.raises(RecipeError, match="too long"):
        DisplayRecipe.from_json(" " * 200_000)


def test_window_values_and_presets() -> None:
    assert DisplayRecipe().window_values() is None
    assert DisplayRecipe(window="ct_soft_tissue").window_values() == (40.0, 400.0)
    assert DisplayRecipe(window="ct_lung").window_values() == (-600.0, 1500.0)
    assert DisplayRecipe(window="ct_bone").window_values() == (400.0, 1800.0)
    assert DisplayRecipe(window="ct_brain").window_values() == (40.0, 80.0)
    assert [p.name for p in window_presets_for("CT")] == list(WINDOW_PRESETS)
    assert window_presets_for("MR") == []


def test_linear_window_matches_dicom_formula() -> None:
    x = np.array([-1000.0, -160.0, -159.5, 39.5, 40.0, 239.0, 239.5, 3000.0])
    y = linear_window(x, 40, 400)
    assert y[0] == 0 and y[1] == 0  # at or below c - 0.5 - (w - 1) / 2 = -160
    assert y[2] == pytest.approx((((-159.5 - 39.5) / 399) + 0.5) * 255)
    assert y[3] == pytest.approx(127.5) and y[4] == pytest.approx(127.8195, abs=1e-3)
    assert y[5] == pytest.approx(255.0) and y[6] == 255 and y[7] == 255
    exact = linear_window(np.array([-160.0, 40.0, 240.0]), 40, 400, "LINEAR_EXACT")
    assert exact.tolist() == [0.0, 127.5, 255.0]


def test_item_ids_round_trip() -> None:
    assert ItemRef("a/b.dcm", frame=0).item_id == "a/b.dcm#1"
    assert ItemRef("a/b.dcm", frame=4, id_frame=False).item_id == "a/b.dcm"
    assert ItemRef("s.tif", window=(512, 0, 256, 256)).item_id == "s.tif@512,0,256,256"
    assert split_item_id("a/b.dcm#3") == ItemRef("a/b.dcm", frame=2)
    assert split_item_id("s.tif@512,0,256,256") == ItemRef("s.tif", window=(512, 0, 256, 256))
    assert split_item_id("plain.png") == ItemRef("plain.png")
    assert split_item_id("odd#0") == ItemRef("odd#0")  # frames are numbered from 1
    files = {"scan#2", "x@1,2,3,4.tif"}
    assert split_item_id("scan#2", files.__contains__) == ItemRef("scan#2")  # a file really named so
    assert split_item_id("x@1,2,3,4.tif", files.__contains__) == ItemRef("x@1,2,3,4.tif")
    assert split_item_id("ghost#2", files.__contains__) == ItemRef("ghost#2")  # no file "ghost"
    with pytest.raises(ValueError):
        ItemRef("x", frame=0, window=(0, 0, 1, 1))


def test_chip_windows_cover_the_image() -> None:
    windows = chip_windows(1000, 700, 256, 32)
    assert sorted({w[0] for w in windows}) == [0, 224, 448, 672, 744]
    covered = np.zeros((700, 1000), dtype=bool)
    for x, y, w, h in windows:
        assert (w, h) == (256, 256) and x + w <= 1000 and y + h <= 700
        covered[y : y + h, x : x + w] = True
    assert covered.all()
    assert chip_windows(100, 50, 256) == [(0, 0, 100, 50)]
    assert chip_windows(512, 512, 256) == [(0, 0, 256, 256), (256, 0, 256, 256), (0, 256, 256, 256), (256, 256, 256, 256)]
    with pytest.raises(ValueError):
        chip_windows(10, 10, 8, 8)


def test_fit_size() -> None:
    img = np.zeros((100, 40, 3), dtype=np.uint8)
    assert fit_size(img, max_side=50).shape == (50, 20, 3)
    assert fit_size(img, max_side=200) is img
    assert fit_size(img) is img
    assert fit_size(img, min_side=20).shape == (50, 20, 3)  # shorter side becomes 20
    assert fit_size(np.zeros((30, 90, 3), dtype=np.uint8), min_side=24).shape == (24, 72, 3)
    assert fit_size(img, min_side=64) is img  # never enlarged
    with pytest.raises(ValueError):
        fit_size(img, max_side=10, min_side=10)


def test_parse_bands_from_a_person() -> None:
    from activekd_core.display_recipe import RecipeError, parse_bands

    assert parse_bands("  ") is None
    assert parse_bands("4, 3, 2") == (4, 3, 2) and parse_bands("4 3 2") == (4, 3, 2) and parse_bands("7") == (7,)
    for bad in ("4, 3", "a, b, c", "0", "1, 2, 99999999", "-1 2 3"):
        with pytest.raises(RecipeError):
            parse_bands(bad)
