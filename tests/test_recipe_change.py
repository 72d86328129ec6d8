"""The pool-wide stretch stored at creation, and changing an existing project's display recipe.

Band percentiles are computed once on the pool (tifffile-written 16-bit multi-band
rasters) and stored in the recipe; ``Project.set_display_recipe`` validates, stores the
recipe with a history entry and makes every cache (pixel cache, thumbnails, teacher
features and probabilities) use new keys, so nothing read afterwards comes from the old
recipe's caches.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from test_mixed_pool import CLASSES, TRAIN, make_mixed, write_ct

from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_view import BytesCache
from activekd_core.pixel_cache import cache_file, decode_pool_with_report
from activekd_core.pool_stretch import pool_band_ranges
from activekd_core.project import Project, ProjectError
from activekd_core.view_models.session import thumbnail_png

SOFT_TISSUE = DisplayRecipe(window="ct_soft_tissue")


def write_rasters(root: Path, n: int = 3, bands: int = 4) -> list[np.ndarray]:
    """``n`` 16-bit rasters of ``bands`` bands (band b holds values around 1000 * b), written by tifffile."""
    rng = np.random.default_rng(7)
    arrays = []
    for k in range(n):
        arr = np.empty((20, 24, bands), dtype=np.uint16)
        for b in range(bands):
            arr[:, :, b] = rng.integers(1000 * (b + 1), 1000 * (b + 1) + 500 + 100 * k, (20, 24))
        tifffile.imwrite(root / f"scene_{k}.tif", arr, photometric="minisblack", planarconfig="contig")
        arrays.append(arr)
    return arrays


def _create(tmp_path: Path, root: Path, name: str = "proj", recipe: DisplayRecipe | None = SOFT_TISSUE) -> Project:
    return Project.create(tmp_path / name, root, CLASSES, {"kind": "standin"}, "small_cnn", 2, "random",
                          train=TRAIN, recipe=recipe)


def _expected_ranges(arrays: list[np.ndarray], bands: tuple[int, ...], pct=(2.0, 98.0)) -> dict[int, tuple[float, float]]:
    out = {}
    for b in bands:
        values = np.concatenate([a[:, :, b - 1].reshape(-1).astype(np.float64) for a in arrays])
        low, high = np.percentile(values, pct)
        out[b] = (float(low), float(high))
    return out


def test_band_percentiles_are_computed_on_the_pool_and_stored_at_creation(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    arrays = write_rasters(root)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "photo.png")
    project = _create(tmp_path, root, recipe=DisplayRecipe(bands=(4, 3, 2)))
    try:
        stored = {b: (lo, hi) for b, lo, hi in project.recipe.band_ranges}
        expected = _expected_ranges(arrays, (2, 3, 4))
        assert stored.keys() == expected.keys()
        for b in expected:
            assert stored[b] == pytest.approx(expected[b])
        # The display uses the pool's limits, not the image's own: the same value is the same grey everywhere.
        lo4, hi4 = stored[4]
        arr = np.asarray(project.load_image("scene_0.tif"))
        raw = arrays[0][:, :, 3].astype(np.float64)
        want = np.clip((raw - lo4) / (hi4 - lo4), 0, 1) * 255
        assert np.abs(arr[:, :, 0].astype(int) - np.round(want)).max() <= 1
    finally:
        project.close()
    reopened = Project.open(tmp_path / "proj")
    try:
        assert reopened.recipe.band_ranges == project.recipe.band_ranges  # stored, not recomputed
        assert reopened.config["display_recipe"]["band_ranges"]
    finally:
        reopened.close()


def test_a_pool_without_rasters_stores_no_ranges(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    for k in range(3):
        Image.new("RGB", (8, 8), (10 * k, 20, 30)).save(root / f"p{k}.png")
    project = _create(tmp_path, root, recipe=None)
    try:
        assert project.recipe == DisplayRecipe()  # existing caches of plain pools keep their keys
    finally:
        project.close()


def test_eight_bit_and_nan_only_rasters_do_not_enter_the_stretch(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    arrays = write_rasters(root, n=2, bands=3)
    tifffile.imwrite(root / "eight.tif", np.full((10, 10, 3), 250, np.uint8), photometric="rgb")
    from activekd_core.images import scan_images

    pool = scan_images(root, recipe=DisplayRecipe())
    ranges = {b: (lo, hi) for b, lo, hi in pool_band_ranges(pool, DisplayRecipe())}
    expected = _expected_ranges(arrays, (1, 2, 3))
    for b in expected:
        assert ranges[b] == pytest.approx(expected[b])


def _thumb(project: Project, image_id: str, cache: BytesCache) -> np.ndarray:
    with Image.open(io.BytesIO(thumbnail_png(project, image_id, 64, cache))) as img:
        return np.asarray(img.convert("RGB"))


def test_changing_the_recipe_rekeys_every_cache_and_is_kept_in_the_history(tmp_path: Path) -> None:
    mixed = make_mixed(tmp_path / "images")
    project = _create(tmp_path, mixed)
    try:
        ids = project.pool().ids
        for image_id in ids[:4]:
            project.label(image_id, "scan" if image_id.startswith("ct/") else "photo")
        row = ids.index("ct/ct_a.dcm")
        pixels_dir = project.path("cache", "pixels")
        before_pixels = decode_pool_with_report(project.pool(), 16, cache_dir=pixels_dir)
        assert abs(int(before_pixels.pixels[row, 2, 8, 0]) - 128) <= 2  # soft tissue: 40 HU mid-grey
        old_pixel_file = cache_file(project.pool(), 16, pixels_dir)
        old_probs = np.array(project.teacher_probs())
        old_teacher_file = project.last_teacher_file
        old_key = project.teacher_cache_key()
        cache = BytesCache(1 << 24)
        old_thumb = _thumb(project, "ct/ct_a.dcm", cache)
        old_ranges = project.recipe.band_ranges
        old_fingerprint = project.pool().fingerprint()  # what the CLIP teachers' feature cache is keyed by
        assert old_ranges  # the GeoTIFF's stretch was stored at creation

        stored = project.set_display_recipe(replace(project.recipe, window="ct_lung"), note={"source": "test"})

        assert stored.window == "ct_lung" and project.recipe == stored
        assert stored.band_ranges == old_ranges  # bands and stretch unchanged: ranges kept
        history = project.display_recipe_history()
        assert len(history) == 1 and history[0]["source"] == "test"
        assert history[0]["before"]["window"] == "ct_soft_tissue" and history[0]["after"]["window"] == "ct_lung"
        assert project.pool().fingerprint() != old_fingerprint
        # Student inputs: a new pixel cache file, decoded with the lung window (40 HU -> 236).
        assert cache_file(project.pool(), 16, pixels_dir) != old_pixel_file
        after_pixels = decode_pool_with_report(project.pool(), 16, cache_dir=pixels_dir)
        assert not after_pixels.from_cache
        assert abs(int(after_pixels.pixels[row, 2, 8, 0]) - round(1390 / 1500 * 255)) <= 2
        # Teacher: a new key and file; recomputed from the newly windowed pixels.
        assert project.teacher_cache_key() != old_key
        new_probs = np.array(project.teacher_probs())
        assert project.last_teacher_file != old_teacher_file
        assert not np.allclose(new_probs[row], old_probs[row])
        # Thumbnails: the same cache object gives the new window's pixels.
        new_thumb = _thumb(project, "ct/ct_a.dcm", cache)
        assert abs(int(old_thumb[5, 5, 0]) - 128) <= 1 and abs(int(new_thumb[5, 5, 0]) - 236) <= 1
        # Storing the same recipe again is no change.
        assert project.set_display_recipe(project.recipe) == stored
        assert len(project.display_recipe_history()) == 1
    finally:
        project.close()
    reopened = Project.open(tmp_path / "proj")
    try:
        assert reopened.recipe == stored
        assert abs(int(np.asarray(reopened.load_image("ct/ct_a.dcm"))[5, 5, 0]) - 236) <= 1
    finally:
        reopened.close()


def test_new_bands_recompute_the_stored_ranges(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    arrays = write_rasters(root)
    project = _create(tmp_path, root, recipe=None)
    try:
        assert {b for b, _, _ in project.recipe.band_ranges} == {1, 2, 3}
        stored = project.set_display_recipe(replace(project.recipe, bands=(4, 3, 2)))
        ranges = {b: (lo, hi) for b, lo, hi in stored.band_ranges}
        expected = _expected_ranges(arrays, (2, 3, 4))
        assert ranges.keys() == expected.keys()
        for b in expected:
            assert ranges[b] == pytest.approx(expected[b])
        explicit = replace(stored, band_ranges=((2, 0.0, 1.0), (3, 0.0, 1.0), (4, 0.0, 1.0)))
        assert project.set_display_recipe(explicit).band_ranges == explicit.band_ranges  # set on purpose: kept
    finally:
        project.close()


def test_refused_changes_leave_the_recipe_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    write_rasters(root, n=1, bands=4)
    write_ct(root / "ct.dcm")
    project = _create(tmp_path, root)
    before = project.recipe
    try:
        with pytest.raises(ProjectError, match="frames"):
            project.set_display_recipe(replace(before, frames="each"))
        with pytest.raises(ProjectError, match="chip_size"):
            project.set_display_recipe(replace(before, chip_size=16))
        with pytest.raises(ProjectError, match="scene_0.tif"):
            project.set_display_recipe(replace(before, bands=(7, 6, 5)))  # the raster has 4 bands
        with pytest.raises(ProjectError, match="window"):
            project.set_display_recipe({**before.to_dict(), "window": "x-ray vision"})
        with pytest.raises(ProjectError, match="DisplayRecipe"):
            project.set_display_recipe("ct_lung")  # type: ignore[arg-type]
        assert project.recipe == before and project.display_recipe_history() == []
    finally:
        project.close()
    with Project.open(tmp_path / "proj") as reopened:
        assert reopened.recipe == before
