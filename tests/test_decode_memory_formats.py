"""DICOM frames and TIFF windows reserve from the process's decode budget before decoding.

Like Pillow decodes (tests/test_decode_memory.py), a DICOM frame read by pydicom and a
raster window read by tifffile hold their estimated peak
(:func:`activekd_core.decode_budget.estimate_array_decode_bytes`) while they decode and
stretch, so concurrent pixel-cache workers wait instead of adding their peaks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from test_mixed_pool import write_ct

from activekd_core import decode_budget, dicom_pixels, images, raster_display
from activekd_core.decode_budget import DecodeBudget, estimate_array_decode_bytes
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.images import load_image
from activekd_core.pixel_cache import decode_pool_with_report
from activekd_core.pool_stretch import pool_band_ranges


def _spy(monkeypatch, module, name: str, budget: DecodeBudget) -> list[int]:
    """Record the bytes reserved at the moment ``module.name`` is called."""
    seen: list[int] = []
    real = getattr(module, name)

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(budget.in_use)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def test_a_dicom_frame_is_decoded_inside_its_reservation(tmp_path: Path, monkeypatch) -> None:
    write_ct(tmp_path / "ct.dcm", frames=3)
    budget = DecodeBudget(1 << 30)
    monkeypatch.setattr(decode_budget, "DECODE_BUDGET", budget)
    seen = _spy(monkeypatch, dicom_pixels, "decode_frame", budget)
    arr = np.asarray(load_image(tmp_path, "ct.dcm#2", recipe=DisplayRecipe(window="ct_soft_tissue", frames="each")))
    one_frame = estimate_array_decode_bytes(20, 30, 1, 2)  # 20 x 30 pixels, 16 bits allocated
    assert seen == [one_frame] and budget.peak == one_frame and budget.in_use == 0
    assert arr.shape == (30, 20, 3)


def test_a_tiff_chip_reserves_only_its_window(tmp_path: Path, monkeypatch) -> None:
    scene = np.arange(200 * 160 * 5, dtype=np.uint16).reshape(200, 160, 5)
    tifffile.imwrite(tmp_path / "scene.tif", scene, photometric="minisblack", planarconfig="contig", tile=(32, 32))
    budget = DecodeBudget(1 << 30)
    monkeypatch.setattr(decode_budget, "DECODE_BUDGET", budget)
    seen = _spy(monkeypatch, raster_display, "read_page_window", budget)
    arr = np.asarray(load_image(tmp_path, "scene.tif@64,32,48,48", recipe=DisplayRecipe(chip_size=48)))
    chip = estimate_array_decode_bytes(48, 48, 3, 2)  # three shown bands of 16 bits
    assert seen == [chip] and budget.peak == chip and budget.in_use == 0
    assert arr.shape == (48, 48, 3)
    whole = estimate_array_decode_bytes(160, 200, 3, 2)
    load_image(tmp_path, "scene.tif", recipe=DisplayRecipe())
    assert seen[-1] == whole and budget.in_use == 0


def test_the_pool_stretch_sample_reserves_too(tmp_path: Path, monkeypatch) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.full((40, 30, 4), 500, np.uint16), photometric="minisblack",
                     planarconfig="contig")
    budget = DecodeBudget(1 << 30)
    monkeypatch.setattr(decode_budget, "DECODE_BUDGET", budget)
    seen = _spy(monkeypatch, raster_display, "read_page_window", budget)
    pool = images.scan_images(tmp_path)
    assert pool_band_ranges(pool, DisplayRecipe()) == ((1, 500.0, 500.0), (2, 500.0, 500.0), (3, 500.0, 500.0))
    assert seen == [estimate_array_decode_bytes(30, 40, 3, 2)] and budget.in_use == 0


class _CountingBudget(DecodeBudget):
    """A budget that also counts the reservations held at once and made in all."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.held = self.most_held = self.made = 0

    def _acquire(self, n: int) -> None:
        super()._acquire(n)
        with self._cond:
            self.held += 1
            self.made += 1
            self.most_held = max(self.most_held, self.held)

    def _release(self, n: int) -> None:
        with self._cond:
            self.held -= 1
        super()._release(n)


def test_concurrent_dicom_and_tiff_decodes_share_the_budget(tmp_path: Path, monkeypatch) -> None:
    """Four frames and four windows with room for one at a time: never two reservations held at once."""
    for k in range(4):
        write_ct(tmp_path / f"ct{k}.dcm")
        tifffile.imwrite(tmp_path / f"s{k}.tif", np.full((30, 20, 4), 1000 * (k + 1), np.uint16),
                         photometric="minisblack", planarconfig="contig")
    frame = estimate_array_decode_bytes(20, 30, 1, 2)
    window = estimate_array_decode_bytes(20, 30, 3, 2)
    assert window > frame
    budget = _CountingBudget(frame + frame // 2)  # one frame at a time; a window (larger) runs alone
    monkeypatch.setattr(decode_budget, "DECODE_BUDGET", budget)
    pool = images.scan_images(tmp_path, recipe=DisplayRecipe(window="ct_soft_tissue"))
    assert len(pool) == 8
    budget.made = 0  # count the pixel-cache decodes only
    result = decode_pool_with_report(pool, 16, workers=4)
    assert not result.failures and budget.in_use == 0
    assert budget.made >= 8 and budget.most_held == 1  # every item reserved; four workers waited their turn
    rows = pool.index_of()
    assert abs(int(np.asarray(result.pixels)[rows["ct0.dcm"], 2, 8, 0]) - 128) <= 2
