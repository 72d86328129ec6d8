"""Exports of DICOM frames, GeoTIFF chips and their geo-reference, read back by each format's own library.

The image root holds a 3-frame CT written by pydicom (with patient data in its header), a
13-band uint16 GeoTIFF with GeoKeys written by tifffile, cut into 16-pixel chips, and a PNG.
Frames and chips are not files: every export must carry the display pixels the expert
labeled (the project's recipe, through ``load_image``), never the DICOM file, and keep each
chip's own geo-reference.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import tifffile
from PIL import Image

from activekd_core.display_recipe import DisplayRecipe
from activekd_core.export import GEO_FILE, export_imagefolder, label_rows
from activekd_core.geo_tags import item_geo, items_geo
from activekd_core.hf_dataset import export_hf_dataset
from activekd_core.images import is_plain_image, load_image, open_image_file
from activekd_core.label_studio import export_label_studio, label_studio_tasks, labels_from_label_studio
from activekd_core.predictions import GEO_METADATA_KEY, geo_sidecar_path, prediction_table, write_predictions
from activekd_core.store import ImageRecord, Store
from test_mixed_pool import SECRETS, TRAIN, write_ct

RECIPE = DisplayRecipe(window="ct_soft_tissue", frames="each", chip_size=16)
GEOKEYS = [1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32632, 3076, 0, 1, 9001]
FRAMES = ["ct/series.dcm#1", "ct/series.dcm#2", "ct/series.dcm#3"]
CHIPS = ["s2.tif@0,0,16,16", "s2.tif@14,24,16,16"]
IDS = FRAMES + CHIPS + ["photo.png"]
CLASSES = ["scan", "field"]
LABELS = {i: ("scan" if i.startswith("ct/") else "field") for i in IDS}


def write_geotiff(path: Path, *, transformation: bool = False) -> Path:
    bands = np.empty((40, 30, 13), dtype=np.uint16)
    for b in range(13):
        bands[:, :, b] = 1000 * (b + 1)
    bands[:, :, 0] = np.linspace(0, 10000, 40 * 30).reshape(40, 30).astype(np.uint16)
    if transformation:  # a rotated grid: 4x4 ModelTransformation instead of scale + tiepoint
        matrix = (10.0, 2.0, 0.0, 3e5, 1.0, -10.0, 0.0, 5e6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
        geo = [(34264, "d", 16, matrix, True)]
    else:
        geo = [(33550, "d", 3, (10.0, 10.0, 0.0), True), (33922, "d", 6, (0.0, 0.0, 0.0, 3e5, 5e6, 0.0), True)]
    tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="contig", tile=(16, 16), compression="zlib",
                     extratags=geo + [(34735, "H", len(GEOKEYS), GEOKEYS, True)])
    return path


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    (root / "ct").mkdir(parents=True)
    write_ct(root / "ct" / "series.dcm", frames=3)
    write_geotiff(root / "s2.tif")
    Image.fromarray(np.full((12, 12, 3), (10, 200, 30), dtype=np.uint8)).save(root / "photo.png")
    return root


def shown(root: Path, image_id: str) -> np.ndarray:
    """What the page shows for an item (the one display recipe)."""
    return np.asarray(load_image(root, image_id, recipe=RECIPE))


def renderer(root: Path):
    """The export renderer as the project facade has it: PNG of the display pixels, None for a plain image."""
    def render(image_id: str) -> bytes | None:
        if is_plain_image(root, image_id, recipe=RECIPE):
            return None
        buf = io.BytesIO()
        load_image(root, image_id, recipe=RECIPE).save(buf, format="PNG")
        return buf.getvalue()
    return render


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_no_patient_data(folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} found in {path}"


# ----------------------------------------------------------------------------- geo records
def test_chip_geo_is_reanchored_at_its_top_left_pixel(root: Path) -> None:
    geo = items_geo(root, IDS)
    assert set(geo) == set(CHIPS)  # frames and the PNG carry none, and the DICOM file is never read for it
    first, second = geo["s2.tif@0,0,16,16"], geo["s2.tif@14,24,16,16"]
    assert first["crs"] == "EPSG:32632" and first["epsg"] == 32632
    assert first["geotransform"] == [3e5, 10.0, 0.0, 5e6, 0.0, -10.0]
    assert second["window"] == [14, 24, 16, 16] and second["file"] == "s2.tif"
    assert second["geotransform"] == [3e5 + 140.0, 10.0, 0.0, 5e6 - 240.0, 0.0, -10.0]
    assert second["tags"]["ModelTiepointTag"] == [0.0, 0.0, 0.0, 3e5 + 140.0, 5e6 - 240.0, 0.0]
    assert second["tags"]["GeoKeyDirectoryTag"] == GEOKEYS and second["keys"]["ProjectedCSTypeGeoKey"] == 32632
    whole = item_geo(root, "s2.tif")
    assert whole is not None and whole["tags"]["ModelTiepointTag"] == [0.0, 0.0, 0.0, 3e5, 5e6, 0.0]
    write_geotiff(root / "odd@name.tif")  # a file whose own name holds "@"
    assert item_geo(root, "odd@name.tif")["window"] is None
    assert item_geo(root, "odd@name.tif@16,0,16,16")["geotransform"][0] == 3e5 + 160.0


def test_transformation_matrix_of_a_chip_moves_its_translation(tmp_path: Path) -> None:
    write_geotiff(tmp_path / "rot.tif", transformation=True)
    record = item_geo(tmp_path, "rot.tif@3,5,16,16")
    assert record is not None
    matrix = record["tags"]["ModelTransformationTag"]
    # x = 10 i + 2 j + 3e5, y = 1 i - 10 j + 5e6 at the chip's pixel (3, 5) of the scene.
    assert matrix[3] == 3e5 + 10 * 3 + 2 * 5 and matrix[7] == 5e6 + 3 - 10 * 5
    assert record["geotransform"] == [3e5 + 40.0, 10.0, 2.0, 5e6 - 47.0, 1.0, -10.0]


def test_geo_read_stays_inside_the_image_root(tmp_path: Path) -> None:
    outside = write_geotiff(tmp_path / "outside.tif")
    root = tmp_path / "images"
    root.mkdir()
    (root / "link.tif").symlink_to(outside)
    with pytest.raises(ValueError):
        open_image_file(root, "link.tif").close()
    assert items_geo(root, ["link.tif", "link.tif@0,0,16,16"]) == {}


# ----------------------------------------------------------------------------- predictions
@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_prediction_files_keep_the_geo_reference(root: Path, tmp_path: Path, fmt: str) -> None:
    geo = items_geo(root, IDS)
    probs = np.tile([0.7, 0.3], (len(IDS), 1))
    table = prediction_table(IDS, CLASSES, {}, teacher_probs=probs, geo=geo)
    dest = write_predictions(table, tmp_path / f"predictions.{fmt}", fmt, geo=geo)
    if fmt == "parquet":
        back = pd.read_parquet(dest)
        meta = json.loads(pq.read_schema(dest).metadata[GEO_METADATA_KEY])
        assert not geo_sidecar_path(dest).exists()
    else:
        back = pd.read_csv(dest, keep_default_na=False) if fmt == "csv" else pd.read_json(dest, lines=True)
        meta = json.loads(geo_sidecar_path(dest).read_text(encoding="utf-8"))
    assert meta["version"] == 1 and set(meta["items"]) == set(CHIPS)
    assert meta["items"]["s2.tif@14,24,16,16"]["tags"]["ModelTiepointTag"][3:5] == [3e5 + 140.0, 5e6 - 240.0]
    rows = back.set_index("id")
    assert rows.loc["s2.tif@14,24,16,16", "geo_crs"] == "EPSG:32632"
    assert json.loads(rows.loc["s2.tif@14,24,16,16", "geo_transform"]) == [3e5 + 140.0, 10.0, 0.0, 5e6 - 240.0, 0.0, -10.0]
    assert rows.loc["ct/series.dcm#2", "geo_crs"] == "" and rows.loc["photo.png", "geo_transform"] == ""


def test_prediction_table_without_geo_is_unchanged(root: Path, tmp_path: Path) -> None:
    table = prediction_table(["photo.png"], CLASSES, {}, geo=items_geo(root, ["photo.png"]))
    assert "geo_crs" not in table.columns
    dest = write_predictions(table, tmp_path / "p.csv", "csv", geo={})
    assert not geo_sidecar_path(dest).exists()


# ----------------------------------------------------------------------------- ImageFolder
def test_imagefolder_writes_frames_and_chips_as_display_pngs_with_geo_json(root: Path, tmp_path: Path) -> None:
    store = Store.create(tmp_path / "db.sqlite")
    try:
        store.add_images([ImageRecord(i, row, i, 16, 16, True, None) for row, i in enumerate(IDS)])
        store.set_classes([(c, f"a {c}") for c in CLASSES])
        store.add_labels(list(LABELS.items()), annotator="expert")
        report = export_imagefolder(store, root, tmp_path / "out", render=renderer(root))
        rows = {r["id"]: r for r in label_rows(store, root)}
    finally:
        store.close()
    assert rows["ct/series.dcm#2"]["path"] == str(root / "ct" / "series.dcm")  # the file holding the frame
    assert rows["s2.tif@14,24,16,16"]["path"] == str(root / "s2.tif") and rows["photo.png"]["path"] == str(root / "photo.png")
    out = tmp_path / "out"
    assert report.count == len(IDS) and report.skipped == []
    for image_id in FRAMES + CHIPS:
        folder = "scan" if image_id.startswith("ct/") else "field"
        png = out / folder / (image_id.replace("/", "__") + ".png")
        assert np.array_equal(png_pixels(png.read_bytes()), shown(root, image_id)), image_id
    assert (out / "field" / "photo.png").read_bytes() == (root / "photo.png").read_bytes()
    # Frames differ (40 HU + 100 HU per frame in the top band), so each file is its own frame.
    assert not np.array_equal(shown(root, FRAMES[0]), shown(root, FRAMES[2]))
    meta = json.loads((out / GEO_FILE).read_text(encoding="utf-8"))
    assert set(meta["items"]) == {"field/s2.tif@0,0,16,16.png", "field/s2.tif@14,24,16,16.png"}
    assert meta["items"]["field/s2.tif@14,24,16,16.png"]["id"] == "s2.tif@14,24,16,16"
    assert meta["items"]["field/s2.tif@14,24,16,16.png"]["geotransform"][0] == 3e5 + 140.0
    assert_no_patient_data(out)


def test_imagefolder_from_a_project_with_frames_and_chips(root: Path, tmp_path: Path) -> None:
    from activekd_core.project import Project

    project = Project.create(tmp_path / "proj", root, [("scan", "a CT scan"), ("field", "a field")],
                             teacher_spec={"kind": "standin"}, student_arch="small_cnn", batch_size=2,
                             strategy="random", train=TRAIN, recipe=RECIPE)
    try:
        ids = project.pool().ids
        assert set(FRAMES) <= set(ids) and {i for i in ids if i.startswith("s2.tif@")} >= set(CHIPS[:1])
        for image_id in ids:
            project.label(image_id, "scan" if image_id.startswith("ct/") else "field")
        report = project.export_imagefolder(tmp_path / "folder")
    finally:
        project.close()
    chips = [i for i in ids if i.startswith("s2.tif@")]
    meta = json.loads((report.dest / GEO_FILE).read_text(encoding="utf-8"))
    assert sorted(r["id"] for r in meta["items"].values()) == sorted(chips)
    assert (report.dest / "scan" / "ct__series.dcm#3.png").is_file()
    assert_no_patient_data(report.dest)


# ----------------------------------------------------------------------------- Label Studio
def test_label_studio_tasks_point_at_rendered_pngs_and_carry_geo(root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "project" / "exports" / "tasks.json"
    probs = np.tile([0.2, 0.8], (len(IDS), 1))
    report = export_label_studio(dest, root, IDS, CLASSES, {"ct/series.dcm#2": ("scan", "ann")},
                                 render=renderer(root), probs=probs, geo=items_geo(root, IDS))
    tasks = json.loads(dest.read_text(encoding="utf-8"))
    assert [t["data"]["activekd_id"] for t in tasks] == IDS and report.skipped == []
    serve = report.document_root
    assert serve == tmp_path.resolve()  # holds the image root and the PNG folder
    for task in tasks:
        image_id = task["data"]["activekd_id"]
        url = urlparse(task["data"]["image"])
        assert url.path == "/data/local-files/"
        served = serve / parse_qs(url.query)["d"][0]  # what Label Studio opens under LOCAL_FILES_DOCUMENT_ROOT
        assert served.is_file(), image_id
        if image_id == "photo.png":
            assert served.read_bytes() == (root / "photo.png").read_bytes()
        else:
            assert served.suffix == ".png" and np.array_equal(png_pixels(served.read_bytes()), shown(root, image_id))
        assert task["predictions"][0]["result"][0]["value"]["choices"] == ["field"]
    by_id = {t["data"]["activekd_id"]: t for t in tasks}
    assert by_id["s2.tif@14,24,16,16"]["meta"]["activekd_geo"]["geotransform"][3] == 5e6 - 240.0
    assert "meta" not in by_id["ct/series.dcm#1"]
    assert dest.with_name("tasks.config.xml").is_file()
    assert_no_patient_data(dest.parent)
    # The file Label Studio exports back (tasks + annotations) imports onto the same items.
    back = labels_from_label_studio(dest, IDS, CLASSES)
    assert back.labels == {"ct/series.dcm#2": "scan"}


def test_label_studio_plain_pool_keeps_image_ids_as_paths(root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "tasks.json"
    old = tmp_path / "tasks_images"
    old.mkdir()
    (old / "stale.png").write_bytes(b"x")  # from an earlier export of another pool
    report = export_label_studio(dest, root, ["photo.png"], CLASSES, {}, render=renderer(root))
    tasks = json.loads(dest.read_text(encoding="utf-8"))
    assert tasks == label_studio_tasks(["photo.png"], CLASSES, {})
    assert report.document_root == root.resolve() and not old.exists()


def test_label_studio_document_root_given_must_hold_images_and_pngs(root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "exports" / "tasks.json"
    report = export_label_studio(dest, root, ["photo.png"], CLASSES, {}, render=renderer(root), document_root=tmp_path)
    task = json.loads(dest.read_text(encoding="utf-8"))[0]
    assert parse_qs(urlparse(task["data"]["image"]).query)["d"] == ["images/photo.png"]
    assert report.document_root == tmp_path.resolve()
    with pytest.raises(ValueError, match="does not hold"):
        export_label_studio(dest, root, FRAMES, CLASSES, {}, render=renderer(root), document_root=root)


def test_label_studio_leaves_out_unreadable_items_with_the_reason(root: Path, tmp_path: Path) -> None:
    ids = ["ct/series.dcm#9", "photo.png"]  # a frame the file does not have
    report = export_label_studio(tmp_path / "t.json", root, ids, CLASSES, {}, render=renderer(root),
                                 probs=np.array([[0.9, 0.1], [0.4, 0.6]]))
    tasks = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert [t["data"]["activekd_id"] for t in tasks] == ["photo.png"]
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"] == ["field"]  # its own row of probs
    assert [i for i, _ in report.skipped] == ["ct/series.dcm#9"]


# ----------------------------------------------------------------------------- Hugging Face datasets
def test_hf_dataset_rows_hold_display_pixels_and_geo(root: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    render = renderer(root)

    def read_bytes(image_id: str) -> bytes:  # as Project.image_bytes: display PNG, else the file's bytes
        png = render(image_id)
        if png is not None:
            return png
        with open_image_file(root, image_id) as fh:
            return fh.read()

    labels = dict(LABELS)
    count, skipped = export_hf_dataset(labels, CLASSES, tmp_path / "hf", read_bytes, geo=items_geo(root, IDS))
    assert (count, skipped) == (len(IDS), [])
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert ds.features["label"].names == CLASSES and ds["id"] == list(labels)
    for row in ds:
        image_id = row["id"]
        assert np.array_equal(np.asarray(row["image"].convert("RGB")), shown(root, image_id)), image_id
        geo = json.loads(row["geo"]) if row["geo"] else None
        assert (geo is not None) == (image_id in CHIPS)
    raw = ds.cast_column("image", datasets.Image(decode=False))
    names = dict(zip(raw["id"], (r["path"] for r in raw["image"])))
    assert names["ct/series.dcm#2"] == "series.dcm#2.png" and names["photo.png"] == "photo.png"
    chip = json.loads(ds[ds["id"].index("s2.tif@14,24,16,16")]["geo"])
    assert chip["crs"] == "EPSG:32632" and chip["geotransform"][0] == 3e5 + 140.0
    assert_no_patient_data(tmp_path / "hf")


# ----------------------------------------------------------------------------- through the facade and the CLI
def _facade_wired() -> bool:
    import inspect

    from activekd_core.project import Project

    return "document_root" in inspect.signature(Project.export_label_studio).parameters


@pytest.mark.skipif(not _facade_wired(), reason="Project facade does not pass render/geo to the exports yet")
def test_cli_exports_of_a_project_with_frames_and_chips(root: Path, tmp_path: Path, capsys) -> None:
    datasets = pytest.importorskip("datasets")
    from activekd_core.cli import main
    from activekd_core.project import Project

    project = Project.create(tmp_path / "proj", root, [("scan", "a CT scan"), ("field", "a field")],
                             teacher_spec={"kind": "standin"}, student_arch="small_cnn", batch_size=2,
                             strategy="random", train=TRAIN, recipe=RECIPE)
    try:
        ids = project.pool().ids
        for image_id in ids:
            project.label(image_id, "scan" if image_id.startswith("ct/") else "field")
    finally:
        project.close()
    chips = sorted(i for i in ids if i.startswith("s2.tif@"))
    out = tmp_path / "out"
    for fmt, dest, extra in (("parquet", "p.parquet", ["--predictions"]), ("csv", "p.csv", ["--predictions"]),
                             ("label-studio", "ls/tasks.json", []), ("hf-dataset", "hf", [])):
        assert main(["export", "--project", str(tmp_path / "proj"), "--format", fmt, "--out", str(out / dest), *extra]) == 0
    meta = json.loads(pq.read_schema(out / "p.parquet").metadata[GEO_METADATA_KEY])
    assert sorted(meta["items"]) == chips
    assert sorted(json.loads(geo_sidecar_path(out / "p.csv").read_text())["items"]) == chips
    tasks = json.loads((out / "ls" / "tasks.json").read_text(encoding="utf-8"))
    served = [tmp_path.resolve() / parse_qs(urlparse(t["data"]["image"]).query)["d"][0] for t in tasks]
    assert all(p.is_file() for p in served) and sorted(t["data"]["activekd_id"] for t in tasks if "meta" in t) == chips
    assert f"LOCAL_FILES_DOCUMENT_ROOT={tmp_path.resolve()}" in capsys.readouterr().out
    ds = datasets.load_from_disk(str(out / "hf"))
    assert sorted(i for i, g in zip(ds["id"], ds["geo"]) if g) == chips
    assert_no_patient_data(out)
