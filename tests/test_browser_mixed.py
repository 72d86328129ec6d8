"""Issue 13, done when: a project on mixed DICOM, TIFF and PNG files labels, trains and explores in Chromium.

The folder holds pydicom-written CTs with window tags and patient data (with and without
extension), pydicom's own CT_small.dcm, a 13-band 16-bit GeoTIFF and a 4-band 16-bit TIFF
(tifffile), PNGs, and files the scan must refuse: a truncated DICOM, a DICOMDIR and a
NaN-only float TIFF. The project (offline stand-in teacher) is created with the core and
served pinned; in Chromium the Project page's scan report names every skipped file, every
image of the batch is labeled by clicks, a round trains from the Train page and Explore
draws the probability space. Then no page text, export, log or other file of the project
folder holds the patient name, id or birth date written into the DICOM headers.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser_support import CHROMIUM, Server, served_browser  # noqa: E402
from test_browser import _settled, _wait, playwright_api  # noqa: E402,F401
from test_mixed_pool import SECRETS, make_mixed  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: install Debian's chromium package"),
]

TRAIN_FAST = {"steps": 4, "batch_labeled": 8, "batch_unlabeled": 8, "image_size": 16, "augment": False}
CLASSES = [("scan", "a CT scan"), ("picture", "a picture")]
SKIPPED = {"ct/DICOMDIR", "ct/cut.dcm", "nan.tif"}


def _folder(root: Path) -> list[str]:
    """The mixed image folder; returns the patient values to look for (ours and CT_small's)."""
    make_mixed(root)
    ct_small = get_testdata_file("CT_small.dcm", download=False)
    if ct_small is None:
        pytest.skip("pydicom's CT_small.dcm test file is not bundled")
    shutil.copy(ct_small, root / "ct" / "CT_small.dcm")
    bands = np.random.default_rng(3).integers(200, 4000, (48, 40, 4), dtype=np.uint16)
    tifffile.imwrite(root / "multi.tif", bands, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(root / "nan.tif", np.full((16, 16), np.nan, dtype=np.float32))
    real = pydicom.dcmread(ct_small)
    theirs = [str(real.get(tag) or "") for tag in ("PatientName", "PatientID", "PatientBirthDate")]
    return [*SECRETS, *(v for v in theirs if len(v) >= 6)]


def test_mixed_formats_label_train_explore_without_patient_data(tmp_path: Path) -> None:
    from activekd_core.display_recipe import DisplayRecipe
    from activekd_core.project import Project
    from activekd_core.store import Store

    images = tmp_path / "images"
    secrets = _folder(images)
    folder = tmp_path / "project"
    with Project.create(folder, images, CLASSES, {"kind": "standin"}, "small_cnn", 10, "random", train=TRAIN_FAST,
                        recipe=DisplayRecipe(window="ct_soft_tissue")) as project:
        assert {s[0] for s in project.scan_report().skipped} == SKIPPED
        ids = list(project.pool().ids)
        assert len(ids) == 10 and "ct/CT_small.dcm" in ids and "multi.tif" in ids
        assert project.recipe.band_ranges  # the 16-bit rasters' stretch, stored at creation
        batch = project.ensure_batch().batch
    items = [it.image_id for it in batch.items]
    assert sorted(items) == sorted(ids)

    def labels() -> dict[str, str]:
        with Store.open(folder / "project.db") as s:
            return s.current_labels()

    texts: list[str] = []
    server = Server(tmp_path / "home", tmp_path / "streamlit.log", env={"ACTIVEKD_PROJECT": str(folder)})
    (tmp_path / "home").mkdir()
    with served_browser(server, (1500, 1300)) as (url, browser, page):
        page.set_default_timeout(60_000)
        # No native save dialog: the grid's CSV export falls back to an ordinary download.
        page.add_init_script("window.showSaveFilePicker = undefined;")
        # --- Project page: the scan report names every skipped file, with its reason
        page.goto(url + "/project")
        page.get_by_text("Scan report: 10 usable images, 3 skipped").wait_for(timeout=90_000)
        _settled(page)
        report = page.locator("[data-testid='stExpander']").filter(has_text="Scan report").first
        grid = report.locator("[data-testid='stDataFrame']")
        grid.wait_for()
        grid.hover()  # the grid draws on a canvas: read its rows through its own CSV download
        with page.expect_download() as download:
            # the toolbar overlaps the expander's summary: click the button itself, not a point on screen
            grid.get_by_role("button", name="Download as CSV").evaluate("b => b.click()")
        shown = Path(download.value.path()).read_text(encoding="utf-8-sig")
        texts.append(shown)
        for name in SKIPPED:
            assert name in shown, (name, shown)
        assert "truncated" in shown and "no valid pixels" in shown and "DICOMDIR" in shown
        texts.append(page.inner_text("body"))
        # --- Label page: every image of the batch shown and labeled by a click
        page.get_by_role("link", name="Label").click()
        key = f"lbl_batch-{batch.id}"
        page.locator(f".st-key-{key}_0_card .akd-classes button[data-k='0']:visible").wait_for(state="visible", timeout=90_000)
        _wait(lambda: page.locator("[class*='st-key-lbl_card_'] img").count() == len(items), 60, "every image")
        expected: dict[str, str] = {}
        for pos, image_id in enumerate(items):
            k = 0 if image_id.startswith("ct/") else 1
            button = page.locator(f".st-key-{key}_{pos}_card .akd-classes button[data-k='{k}']:visible")
            button.scroll_into_view_if_needed()
            _settled(page)
            button.click()
            expected[image_id] = CLASSES[k][0]
            _wait(lambda: labels() == expected, 30, f"the label of {image_id}")
        _settled(page)
        texts.append(page.inner_text("body"))
        # --- Train page: one round on the labels
        page.get_by_role("link", name="Train").click()
        start = page.locator(".st-key-trn_start button:visible")
        start.wait_for(timeout=90_000)
        start.click()
        page.get_by_text("finished in").wait_for(timeout=300_000)
        _settled(page)
        texts.append(page.inner_text("body"))
        with Store.open(folder / "project.db") as s:
            assert [(r.status, r.n_labeled) for r in s.rounds()] == [("done", len(items))]
        # --- Explore page: the probability space is drawn
        page.get_by_role("link", name="Explore").click()
        page.get_by_text("Explore the probability spaces").wait_for(timeout=90_000)
        page.locator("[data-testid='stPlotlyChart']").first.wait_for(timeout=120_000)
        _settled(page)
        texts.append(page.inner_text("body"))
        # --- Review page
        page.get_by_role("link", name="Review").click()
        _settled(page)
        texts.append(page.inner_text("body"))
    with Project.open(folder) as project:
        assert project.undecodable_images() == []  # every pool image decoded for training
        for fmt in ("csv", "json", "jsonl", "parquet"):
            project.export_labels(fmt)
        project.export_predictions("csv")
        assert project.export_imagefolder().skipped == []
        project.export_label_studio()
    files = [f for f in folder.rglob("*") if f.is_file()] + [tmp_path / "streamlit.log"]
    assert any("exports" in f.parts for f in files) and any("logs" in f.parts for f in files)
    for secret in secrets:
        for text in texts:
            assert secret not in text
        for f in files:
            assert secret.encode() not in f.read_bytes(), f"{secret} found in {f}"
    assert SECRETS[2].encode() in (images / "ct" / "ct_a.dcm").read_bytes()  # the check can fail
