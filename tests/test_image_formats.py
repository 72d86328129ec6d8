"""The dispatch the image scan will use: candidates, sniffing, items and reasons on a mixed folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file

from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_formats import is_candidate_name, read_display_rgb, scan_entries, sniff_format
from activekd_core.image_items import split_item_id
from activekd_core.images import ImageLoadError


def _testdata(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not bundled")
    return str(path)


def _scan(root: Path, recipe: DisplayRecipe) -> tuple[list[str], dict[str, str], list[str]]:
    """What the wired scan is expected to do with these functions (see image_formats' docstring)."""
    items: list[str] = []
    problems: dict[str, str] = {}
    pillow: list[str] = []
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = Path(dirpath) / name
            file_id = path.relative_to(root).as_posix()
            if not is_candidate_name(name):
                continue
            kind = sniff_format(path)
            if kind == "other":
                if os.path.splitext(name)[1]:
                    pillow.append(file_id)
                continue  # an extensionless file that is not DICOM (README, LICENSE): not an image
            try:
                items.extend(item.item_id for item in scan_entries(path, file_id, recipe))
            except ImageLoadError as exc:
                problems[file_id] = exc.reason
    return sorted(items), problems, pillow


def test_mixed_folder(tmp_path: Path) -> None:
    root = tmp_path / "pool"
    (root / "pacs").mkdir(parents=True)
    shutil.copy(_testdata("CT_small.dcm"), root / "pacs" / "1.2.840.113619.2.55.3.604688119")
    shutil.copy(_testdata("examples_ybr_color.dcm"), root / "pacs" / "IM0002")
    shutil.copy(_testdata("DICOMDIR"), root / "pacs" / "DICOMDIR")
    shutil.copy(_testdata("MR_truncated.dcm"), root / "pacs" / "cut.dcm")
    (root / "pacs" / "README").write_text("exported by the PACS\n")
    (root / "notes.txt").write_text("not an image\n")
    tifffile.imwrite(root / "scene.tif", np.ones((600, 500, 4), dtype=np.uint16), photometric="minisblack", planarconfig="contig", tile=(128, 128))
    tifffile.imwrite(root / "hyper.tif", np.zeros((4, 4, 1000), dtype=np.uint8), photometric="minisblack", planarconfig="contig")
    Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "photo.png")

    recipe = DisplayRecipe(frames="each", chip_size=256, chip_overlap=0)
    items, problems, pillow = _scan(root, recipe)
    assert pillow == ["photo.png"]
    assert set(problems) == {"pacs/DICOMDIR", "pacs/cut.dcm", "hyper.tif"}
    assert "DICOMDIR" in problems["pacs/DICOMDIR"]
    assert "truncated" in problems["pacs/cut.dcm"]
    assert "too many bands" in problems["hyper.tif"]
    assert "pacs/1.2.840.113619.2.55.3.604688119" in items
    assert [i for i in items if i.startswith("pacs/IM0002#")] == sorted(f"pacs/IM0002#{k}" for k in range(1, 31))
    chips = [i for i in items if i.startswith("scene.tif@")]
    assert len(chips) == 6 and "scene.tif@244,344,256,256" in chips  # x: 0, 244 (edge); y: 0, 256, 344

    # Every item reads back through its id alone.
    is_file = lambda i: (root / i).is_file()  # noqa: E731
    for item_id in ("pacs/IM0002#30", "scene.tif@244,344,256,256", "pacs/1.2.840.113619.2.55.3.604688119"):
        ref = split_item_id(item_id, is_file)
        rgb = read_display_rgb(root / ref.file_id, ref, recipe, max_side=64)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and max(rgb.shape[:2]) <= 64
    with pytest.raises(ValueError, match="Pillow"):
        read_display_rgb(root / "photo.png", None, recipe)
