"""A project on a folder of mixed DICOM, multi-band 16-bit GeoTIFF and PNG files.

The scan lists DICOM files (with and without extension), frames and rasters as items and
reports the files it refuses; the page, the pixel cache and the teacher all read the same
8-bit RGB through ``load_image`` with the project's display recipe; a round trains on it;
and no patient data from a DICOM header ends up anywhere in the project folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from activekd_core.display_recipe import DisplayRecipe
from activekd_core.images import load_image, scan_images
from activekd_core.pixel_cache import cache_file, decode_pool_with_report
from activekd_core.project import DB_NAME, Project

TRAIN = {"steps": 4, "batch_labeled": 8, "batch_unlabeled": 8, "image_size": 16, "device": "cpu", "width": 8}
CLASSES = [("scan", "a CT scan"), ("photo", "a photo")]
PATIENT_NAME = "Quxbrandt^Zelphinia"
PATIENT_ID = "PID-QX-7313"
BIRTH_DATE = "19230405"
SECRETS = ("Quxbrandt", "Zelphinia", PATIENT_ID, BIRTH_DATE)
SOFT_TISSUE = DisplayRecipe(window="ct_soft_tissue")


def write_ct(path: Path, frames: int = 1) -> Path:
    """A CT written by pydicom: rows 0-9 at 40 HU, 10-19 air (-1000 HU), 20-29 bone (1000 HU).

    Frame ``k`` (0-based) of a multi-frame file adds ``100 * k`` HU to the 40 HU band.
    """
    stored = np.zeros((frames, 30, 20), dtype=np.int16)
    for k in range(frames):
        stored[k, 0:10] = 40 + 100 * k + 1024
        stored[k, 10:20] = -1000 + 1024
        stored[k, 20:30] = 1000 + 1024
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.Modality = "CT"
    ds.set_pixel_data(stored if frames > 1 else stored[0], "MONOCHROME2", 16)
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.WindowCenter = -600  # the header's own window differs from the project's preset
    ds.WindowWidth = 1500
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def make_mixed(root: Path) -> Path:
    """The folder: CTs with and without extension, a DICOMDIR, a truncated CT, a GeoTIFF, PNGs, a README."""
    (root / "ct").mkdir(parents=True)
    ct = write_ct(root / "ct" / "ct_a.dcm")
    shutil.copy(ct, root / "ct" / "1.2.840.113619.2.55.3.9")  # a PACS export: no extension
    write_ct(root / "ct" / "ct_b.dcm")
    data = ct.read_bytes()
    (root / "ct" / "cut.dcm").write_bytes(data[: len(data) - 400])  # pixel data cut short
    dicomdir = get_testdata_file("DICOMDIR", download=False)
    if dicomdir is None:
        pytest.skip("pydicom's DICOMDIR test file is not bundled")
    shutil.copy(dicomdir, root / "ct" / "DICOMDIR")
    (root / "ct" / "README").write_text("exported by the PACS\n")
    bands = np.empty((40, 30, 13), dtype=np.uint16)
    for b in range(13):
        bands[:, :, b] = 1000 * (b + 1)
    bands[:, :, 0] = np.linspace(0, 10000, 40 * 30).reshape(40, 30).astype(np.uint16)
    geokeys = [1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32632, 3076, 0, 1, 9001]
    tifffile.imwrite(
        root / "s2.tif", bands, photometric="minisblack", planarconfig="contig", tile=(16, 16), compression="zlib",
        extratags=[(33550, "d", 3, (10.0, 10.0, 0.0), True), (33922, "d", 6, (0.0, 0.0, 0.0, 3e5, 5e6, 0.0), True),
                   (34735, "H", len(geokeys), geokeys, True)],
    )
    rng = np.random.default_rng(0)
    for k in range(4):
        noise = rng.integers(0, 40, (24, 24, 3))
        Image.fromarray((noise + [200, 60 + 20 * k, 30]).clip(0, 255).astype(np.uint8)).save(root / f"photo_{k}.png")
    return root


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    return make_mixed(tmp_path / "images")


def create(tmp_path: Path, root: Path, name: str = "proj", **kw) -> Project:
    args = dict(teacher_spec={"kind": "standin"}, student_arch="small_cnn", batch_size=2, strategy="random",
                train=TRAIN, recipe=SOFT_TISSUE)
    args.update(kw)
    return Project.create(tmp_path / name, root, CLASSES, **args)


def test_mixed_folder_scans_shows_and_trains(tmp_path: Path, mixed: Path) -> None:
    project = create(tmp_path, mixed)
    try:
        ids = project.pool().ids
        assert set(ids) == {"ct/1.2.840.113619.2.55.3.9", "ct/ct_a.dcm", "ct/ct_b.dcm", "s2.tif",
                            "photo_0.png", "photo_1.png", "photo_2.png", "photo_3.png"}
        report = dict(project.scan_report().skipped)
        assert set(report) == {"ct/DICOMDIR", "ct/cut.dcm"}  # the README is no image: not reported
        assert "DICOMDIR" in report["ct/DICOMDIR"]
        assert "truncated" in report["ct/cut.dcm"]

        # The project's window (soft tissue 40/400), not the header's lung window.
        for image_id in ("ct/ct_a.dcm", "ct/1.2.840.113619.2.55.3.9"):
            arr = np.asarray(project.load_image(image_id))
            assert arr.shape == (30, 20, 3)
            assert np.all(np.abs(arr[0:10].astype(int) - 128) <= 1)  # 40 HU: mid-grey
            assert np.all(arr[10:20] == 0) and np.all(arr[20:30] == 255)  # air black, bone white
        same = np.asarray(load_image(mixed, "ct/ct_a.dcm", recipe=SOFT_TISSUE))
        assert np.array_equal(same, np.asarray(project.load_image("ct/ct_a.dcm")))
        header_window = np.asarray(load_image(mixed, "ct/ct_a.dcm"))  # default recipe: the file's own window
        assert not np.array_equal(header_window, same)
        raster = np.asarray(project.load_image("s2.tif"))
        assert raster.shape == (40, 30, 3) and raster.dtype == np.uint8 and raster[..., 0].std() > 10

        for image_id in ids:
            project.label(image_id, "scan" if image_id.startswith("ct/") else "photo")
        record = project.retrain()
        assert record.status == "done"
        decoded = decode_pool_with_report(project.pool(), TRAIN["image_size"], cache_dir=project.path("cache", "pixels"))
        assert decoded.from_cache and decoded.failures == {}
        row = ids.index("ct/ct_a.dcm")
        assert np.abs(decoded.pixels[row, 2, 8].astype(int) - 128).max() <= 2  # the trained-on pixels are windowed
        assert project.teacher_probs().shape == (len(ids), 2)
    finally:
        project.close()


def test_recipe_is_stored_and_keys_the_caches(tmp_path: Path, mixed: Path) -> None:
    soft = create(tmp_path, mixed, "soft")
    lung = create(tmp_path, mixed, "lung", recipe=DisplayRecipe(window="ct_lung"))
    plain = create(tmp_path, mixed, "plain", recipe=None)
    try:
        ranges = soft.recipe.band_ranges  # the GeoTIFF's pool-wide stretch, stored at creation
        assert ranges and plain.recipe.band_ranges == ranges
        with Project.open(tmp_path / "soft") as reopened:
            assert reopened.recipe == replace(SOFT_TISSUE, band_ranges=ranges)
        assert plain.recipe == DisplayRecipe(band_ranges=ranges)
        fingerprints = {p.pool().fingerprint() for p in (soft, lung, plain)}
        assert len(fingerprints) == 3
        cache = tmp_path / "cache"
        assert cache_file(soft.pool(), 16, cache) != cache_file(lung.pool(), 16, cache)
        assert soft.teacher_cache_key() != lung.teacher_cache_key()
        assert not np.array_equal(np.asarray(soft.load_image("ct/ct_a.dcm")), np.asarray(lung.load_image("ct/ct_a.dcm")))
        # A pool without a recipe is the default recipe's pool: existing caches stay valid.
        assert scan_images(mixed).fingerprint() == scan_images(mixed, recipe=DisplayRecipe()).fingerprint()
    finally:
        for p in (soft, lung, plain):
            p.close()


def test_frames_each_gives_one_item_per_frame(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    write_ct(root / "series.dcm", frames=3)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "x.png")
    project = create(tmp_path, root, recipe=DisplayRecipe(window="ct_soft_tissue", frames="each"))
    try:
        assert project.pool().ids == ["series.dcm#1", "series.dcm#2", "series.dcm#3", "x.png"]
        second = np.asarray(project.load_image("series.dcm#2"))  # 140 HU with 40/400: (140 + 160) / 400
        assert abs(int(second[0, 0, 0]) - round(300 / 400 * 255)) <= 1
        assert project.image_file_id("series.dcm#2") == "series.dcm"
        created = project.pool().fingerprint()
    finally:
        project.close()
    reopened = Project.open(tmp_path / "proj")  # pool from the store: items stat their file
    try:
        assert reopened.pool().fingerprint() == created
        assert np.array_equal(np.asarray(reopened.load_image("series.dcm#2")), second)
    finally:
        reopened.close()


def test_no_patient_data_in_database_reports_exports_or_caches(tmp_path: Path, mixed: Path) -> None:
    project = create(tmp_path, mixed)
    try:
        for image_id in project.pool().ids:
            project.label(image_id, "scan" if image_id.startswith("ct/") else "photo")
        project.retrain()
        report = project.scan_report()
        project.export_labels("csv")
        project.export_labels("json")
        exported = project.export_imagefolder()
        assert exported.skipped == []
        assert (exported.dest / "scan" / "ct__ct_a.dcm.png").is_file()  # display pixels, not the DICOM file
        assert project.image_bytes("ct/ct_a.dcm")[:4] == b"\x89PNG"
        texts = [json.dumps([str(report.root), report.skipped])]
    finally:
        project.close()
    folder = tmp_path / "proj"
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert folder / DB_NAME in files and any(p.suffix == ".json" and "pixels" in p.parts for p in files)
    for secret in SECRETS:
        assert not any(secret in text for text in texts)
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"{secret} found in {path}"
    assert PATIENT_ID.encode() in (mixed / "ct" / "ct_a.dcm").read_bytes()  # the check can fail


def test_thumbnail_and_zoom_of_a_frame_show_the_windowed_pixels(tmp_path: Path) -> None:
    import io

    import streamlit as st

    from pages._session import image_path, thumbnail, zoom_png

    root = tmp_path / "images"
    root.mkdir()
    write_ct(root / "series.dcm", frames=3)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "x.png")
    st.cache_data.clear()
    project = create(tmp_path, root, recipe=DisplayRecipe(window="ct_soft_tissue", frames="each"))
    try:
        assert image_path(project, "series.dcm#3") == (root / "series.dcm").resolve()
        with Image.open(io.BytesIO(thumbnail(project, "series.dcm#1", 60))) as thumb:
            arr = np.asarray(thumb.convert("RGB"))
        assert arr.shape == (60, 40, 3)  # 30 x 20 enlarged by a whole factor
        assert abs(int(arr[5, 5, 0]) - 128) <= 1 and arr[30, 5, 0] == 0 and arr[55, 5, 0] == 255
        data, _window, size = zoom_png(project, "series.dcm#1", 1.0, (0.5, 0.5))
        assert size == (20, 30) and data[:4] == b"\x89PNG"
        assert thumbnail(project, "x.png", 16)[:4] == b"\x89PNG"  # plain images unchanged
    finally:
        project.close()
        st.cache_data.clear()


def test_frames_listed_in_frame_order_and_bare_non_images_ignored(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    write_ct(root / "series", frames=11)  # no extension: found by content
    (root / "LICENSE").write_text("MIT\n")
    (root / "1.2.3").write_bytes(b"\x00" * 300)  # a digits-only suffix that is not DICOM
    (root / "empty").write_bytes(b"")
    pool = scan_images(root, recipe=DisplayRecipe(frames="each"))
    assert pool.ids == [f"series#{k}" for k in range(1, 12)]  # 2 before 10
    assert pool.problems == []
    assert pool.image_size("series#10") == (20, 30)
    middle = scan_images(root)
    assert middle.ids == ["series"]
    wide = DisplayRecipe(window="manual", window_center=500, window_width=1000)
    shown = np.asarray(load_image(root, "series", recipe=wide))
    assert np.array_equal(shown, np.asarray(load_image(root, "series#6", recipe=wide)))  # the middle of 11 frames
    assert not np.array_equal(shown, np.asarray(load_image(root, "series#1", recipe=wide)))


def test_a_file_named_like_a_frame_id_is_reported_not_duplicated(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    write_ct(root / "s", frames=2)  # a PACS export without extension: items s#1, s#2
    write_ct(root / "s#2")  # a real file whose name is the second frame's id
    seen: list[tuple[int, int]] = []
    pool = scan_images(root, recipe=DisplayRecipe(frames="each"), progress=lambda d, t, m: seen.append((d, t)))
    # The id "s#2" names the file (as every later lookup of the id will): the frames of "s" are refused.
    assert pool.ids == ["s#2"]
    assert [p.id for p in pool.problems] == ["s"] and "another file's name" in pool.problems[0].reason
    assert np.array_equal(np.asarray(load_image(root, "s#2")), np.asarray(load_image(root, "s#2", ref=pool.item_ref("s#2"))))
    assert seen[-1] == (2, 2)
