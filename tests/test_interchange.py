"""Predictions out and labels in: CSV/JSONL/Parquet, Label Studio, Hugging Face datasets, the CLI.

Every format is read back by its own library (pandas for Parquet, json for Label Studio
tasks, ``datasets.load_from_disk``), as a user's next tool would read it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from activekd_core.cli import main
from activekd_core.label_studio import labeling_config, labels_from_label_studio
from activekd_core.csv_safe import neutralize_cell as spreadsheet_safe
from activekd_core.predictions import prediction_table
from activekd_core.project import Project
from test_project import make_images, new_project, siblings  # noqa: F401 (siblings: autouse fixture)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Project, dict[str, str]]:
    root = tmp_path / "images"
    truth = make_images(root, per_class=4)
    p = new_project(tmp_path, root)
    ids = sorted(truth)
    for i in ids[:5]:
        p.label(i, truth[i], annotator="ann")
    p.skip(ids[5])
    p.unsure(ids[6])
    p.teacher_probs()  # cache the (fake) teacher's probabilities
    yield p, truth
    p.close()


def test_prediction_table_by_hand() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.45, 0.45], [0.0, 0.0, 1.0]], dtype=np.float32)
    table = prediction_table(
        ["a.png", "b.png", "c.png"], ["x", "y", "z"], {"a.png": ("label", "y", "ann", 2), "c.png": ("skip", None, "bob", 3)},
        audit_ids=["b.png"], teacher_probs=probs,
    )
    assert list(table["state"]) == ["label", "unlabeled", "skip"]
    assert list(table["label"]) == ["y", "", ""] and list(table["audit"]) == [False, True, False]
    assert list(table["teacher_pred"]) == ["x", "y", "z"]  # a tie goes to the lower class index
    np.testing.assert_allclose(table["teacher_margin"], [0.5, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(table["teacher_p[z]"], probs[:, 2])
    assert "student_pred" not in table.columns
    assert table["round"].tolist()[0] == 2 and pd.isna(table["round"].tolist()[1])
    with pytest.raises(ValueError, match="expected"):
        prediction_table(["a"], ["x", "y"], {}, teacher_probs=np.ones((1, 3)))


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_spreadsheet_formulas_are_neutralised(text: str) -> None:
    assert spreadsheet_safe(text) == "'" + text
    assert spreadsheet_safe("plain") == "plain" and spreadsheet_safe(-1.5) == -1.5


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_prediction_exports_read_back(project, tmp_path: Path, fmt: str) -> None:
    p, truth = project
    rep = p.export_predictions(fmt, tmp_path / f"pred.{fmt}")
    assert rep.count == len(p.pool())
    if fmt == "csv":
        back = pd.read_csv(rep.dest, keep_default_na=False)
    elif fmt == "jsonl":
        back = pd.read_json(rep.dest, lines=True)
    else:
        back = pd.read_parquet(rep.dest)
    assert list(back["id"]) == p.pool().ids
    by_id = back.set_index("id")
    ids = sorted(truth)
    assert by_id.loc[ids[0], "state"] == "label" and by_id.loc[ids[0], "label"] == truth[ids[0]]
    assert by_id.loc[ids[5], "state"] == "skip" and by_id.loc[ids[6], "state"] == "unsure"
    assert by_id.loc[ids[8], "state"] == "unlabeled"
    teacher = np.asarray(p.cached_teacher_probs())
    cols = [f"teacher_p[{c}]" for c in p.classes]
    np.testing.assert_allclose(back[cols].to_numpy(dtype=np.float64), teacher, atol=1e-6)
    assert list(back["teacher_pred"]) == [p.classes[k] for k in teacher.argmax(axis=1)]


def test_label_studio_round_trip(project, tmp_path: Path) -> None:
    p, truth = project
    rep = p.export_label_studio(tmp_path / "ls" / "tasks.json")
    tasks = json.loads(rep.dest.read_text())
    config = (tmp_path / "ls" / "tasks.config.xml").read_text()
    assert len(tasks) == len(p.pool()) and rep.count == len(tasks)
    assert all(f'<Choice value="{c}"/>' in config for c in p.classes)
    teacher = np.asarray(p.cached_teacher_probs())
    first = tasks[0]
    assert first["data"]["activekd_id"] == p.pool().ids[0]
    assert first["data"]["image"] == "/data/local-files/?d=" + p.pool().ids[0]
    pred = first["predictions"][0]
    assert pred["result"][0]["value"]["choices"] == [p.classes[int(teacher[0].argmax())]]
    assert pred["score"] == pytest.approx(float(teacher[0].max()))
    labeled = {t["data"]["activekd_id"]: t["annotations"][0]["result"][0]["value"]["choices"][0]
               for t in tasks if "annotations" in t}
    assert labeled == p.store.current_labels()

    # An expert corrects one image and labels another in Label Studio, cancels a third.
    ids = sorted(truth)
    edited = json.loads(json.dumps(tasks))
    by_id = {t["data"]["activekd_id"]: t for t in edited}
    other = next(c for c in p.classes if c != truth[ids[0]])
    by_id[ids[0]]["annotations"].append({"result": [{"type": "choices", "value": {"choices": [other]}}]})
    by_id[ids[9]]["annotations"] = [{"result": [{"type": "choices", "value": {"choices": [truth[ids[9]].upper()]}}]}]
    by_id[ids[10]]["annotations"] = [{"was_cancelled": True, "result": [{"type": "choices", "value": {"choices": ["red"]}}]}]
    src = tmp_path / "ls_export.json"
    src.write_text(json.dumps(edited))
    result = p.import_label_studio(src)
    labels = p.store.current_labels()
    assert labels[ids[0]] == other and labels[ids[9]] == truth[ids[9]]
    assert ids[10] not in labels
    assert any(pr.value == ids[10] and "cancelled" in pr.reason for pr in result.problems)


def test_label_studio_import_from_foreign_tasks(tmp_path: Path) -> None:
    """Tasks made in Label Studio itself: matched by the path in the image URL, problems reported."""
    ids = ["cats/a.png", "dogs/a.png", "dogs/b.png"]
    tasks = [
        {"id": 7, "data": {"image": "/data/local-files/?d=photos/cats/a.png"},
         "annotations": [{"result": [{"type": "choices", "value": {"choices": ["cat"]}}]}]},
        {"id": 8, "data": {"image": "/data/upload/1/a.png"},  # a.png is ambiguous in the pool
         "annotations": [{"result": [{"type": "choices", "value": {"choices": ["dog"]}}]}]},
        {"id": 9, "data": {"image": "https://host/x/dogs/b.png"},
         "annotations": [{"result": [{"type": "choices", "value": {"choices": ["wolf"]}}]}]},
        {"id": 10, "data": {"image": "/data/local-files/?d=dogs/b.png"}, "annotations": []},
        "not a task",
    ]
    src = tmp_path / "export.json"
    src.write_text(json.dumps(tasks))
    got = labels_from_label_studio(src, ids, ["cat", "dog"])
    assert got.labels == {"cats/a.png": "cat"}
    reasons = {pr.row: pr.reason for pr in got.problems}
    assert "not in this project's pool" in reasons[2]
    assert "unknown class" in reasons[3] and "no annotation" in reasons[4] and "not a JSON object" in reasons[5]
    (tmp_path / "bad.json").write_text("{}")
    from activekd_core.labels_import import LabelImportError

    with pytest.raises(LabelImportError, match="list of tasks"):
        labels_from_label_studio(tmp_path / "bad.json", ids, ["cat", "dog"])


def test_labeling_config_escapes_class_names() -> None:
    xml = labeling_config(['a"b', "<c>"])
    assert '<Choice value=\'a"b\'/>' in xml and "&lt;c&gt;" in xml


def test_hf_dataset_reads_back(project, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    p, truth = project
    rep = p.export_hf_dataset(tmp_path / "hf")
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert rep.count == 5 and len(ds) == 5
    assert ds.features["label"].names == p.classes
    for row in ds:
        assert ds.features["label"].int2str(row["label"]) == truth[row["id"]]
        assert row["image"].size == (24, 20)


def test_cli_export_formats(project, tmp_path: Path, capsys) -> None:
    p, _ = project
    folder = p.path()
    assert main(["export", "--project", str(folder), "--format", "parquet", "--predictions", "--out",
                 str(tmp_path / "p.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "p.parquet")) == len(p.pool())
    assert main(["export", "--project", str(folder), "--format", "csv", "--out", str(tmp_path / "l.csv")]) == 0
    with open(tmp_path / "l.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 5
    assert main(["export", "--project", str(folder), "--format", "jsonl", "--out", str(tmp_path / "l.jsonl")]) == 0
    assert len((tmp_path / "l.jsonl").read_text().splitlines()) == 5
    assert main(["export", "--project", str(folder), "--format", "label-studio", "--out", str(tmp_path / "t.json")]) == 0
    assert main(["export", "--project", str(folder), "--format", "imagefolder", "--out", str(tmp_path / "tree")]) == 0
    assert sum(1 for f in (tmp_path / "tree").rglob("*.png")) == 5
    assert "wrote 5 images" in capsys.readouterr().out
    assert main(["export", "--project", str(folder), "--format", "hf-dataset", "--predictions", "--out",
                 str(tmp_path / "x")]) == 2
    assert "--predictions applies to" in capsys.readouterr().err
    assert main(["export", "--project", str(tmp_path / "nothing"), "--format", "csv", "--out", str(tmp_path / "y")]) == 2
