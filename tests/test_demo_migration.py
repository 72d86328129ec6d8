"""Demo projects after the neutral-name layout: old projects open unchanged, new ones hide the class.

An "old" demo project is one the first materialiser made: images in
``data/<name>/<class>/<file>``, image ids that name the class, a manifest with the labels
inside the image root. It is rebuilt here as that code wrote it, so the test does not
depend on the old code still existing.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from activekd_core.demo_data import materialize_demo, read_truth
from activekd_core.images import scan_images
from activekd_core.project import DEFAULT_STRATEGY, Project, open_demo

TEXTILE_CLASSES = ["nominal", "local defect", "global defect"]


def _package_folders() -> dict[str, Path]:
    import conformal_clip_data as ccd

    return {"nominal": Path(ccd.nominal_dir()), "local defect": Path(ccd.local_dir()),
            "global defect": Path(ccd.global_dir())}


def _old_layout_project(base: Path, per_class: int) -> dict[str, str]:
    """``base/data/textile/<class>/textile_NNNN.jpg`` + the version-1 manifest + the project over it."""
    root = base / "data" / "textile"
    labels: dict[str, str] = {}
    for label, folder in _package_folders().items():
        (root / label).mkdir(parents=True)
        for src in sorted(folder.iterdir())[:per_class]:
            shutil.copyfile(src, root / label / src.name)
            labels[f"{label}/{src.name}"] = label
    (root / ".activekd_demo.json").write_text(json.dumps(
        {"name": "textile", "version": 1, "per_class": per_class, "limit": None, "labels": labels}))
    project = Project.create(base / "projects" / "textile", root, [(c, "") for c in TEXTILE_CLASSES],
                             {"kind": "standin"}, "small_cnn", 10, DEFAULT_STRATEGY, name="Demo: textile")
    project.store.set_setting("demo", {"name": "textile", "root": str(root.resolve()), "description": "old"})
    project.close()
    return labels


def test_an_old_layout_demo_project_opens_with_its_labels_and_images(tmp_path: Path) -> None:
    old = _old_layout_project(tmp_path, per_class=4)
    old_root = tmp_path / "data" / "textile"
    before = {p: p.read_bytes() for p in old_root.rglob("*") if p.is_file()}
    with Project.open(tmp_path / "projects" / "textile") as project:
        project.label("local defect/textile_0001.jpg", "local defect", annotator="ada")

    with open_demo("textile", tmp_path, per_class=4) as project:  # the new code, same home
        assert project.pool().root.resolve() == old_root.resolve()
        assert sorted(project.pool().ids) == sorted(old)
        assert project.store.current_labels() == {"local defect/textile_0001.jpg": "local defect"}
        assert [e.annotator for e in project.image_history("local defect/textile_0001.jpg")] == ["ada"]
        for image_id, label in old.items():
            data = project.image_bytes(image_id)
            assert data == (_package_folders()[label] / Path(image_id).name).read_bytes()
            with Image.open(io.BytesIO(data)) as img:
                assert img.convert("RGB").size == (250, 250)
        batch = project.current_batch()  # still ready to label, never the labeled image
        assert batch is not None and "local defect/textile_0001.jpg" not in [i.image_id for i in batch.batch.items]
        project.label(batch.batch.items[0].image_id, "nominal")
        assert len(project.store.current_labels()) == 2
    assert not (tmp_path / "data" / "textile-v2").exists()  # nothing materialised for an existing project
    assert {p: p.read_bytes() for p in old_root.rglob("*") if p.is_file()} == before


def test_a_new_demo_project_shows_no_class_and_imports_the_truth_on_request(tmp_path: Path) -> None:
    with open_demo("textile", tmp_path, per_class=4) as project:
        ids = project.pool().ids
        root = project.pool().root.resolve()
        assert root == (tmp_path / "data" / "textile-v2" / "images").resolve()
        assert len(ids) == 12 and project.store.current_labels() == {}
        for image_id in ids:
            assert "/" not in image_id and not any(w in image_id.lower() for w in ("nominal", "local", "global"))
        assert sorted(scan_images(root).ids) == sorted(ids)  # the image root holds the images only
        truth_file = root.parent / "truth.csv"
        result = project.import_labels_csv(truth_file, annotator="import:me")
        assert result.problems == [] and project.store.current_labels() == read_truth(truth_file)
        assert sorted(set(read_truth(truth_file).values())) == sorted(TEXTILE_CLASSES)


def test_the_simulated_oracle_gets_the_true_class_of_every_neutral_image(tmp_path: Path) -> None:
    from activekd_core.simulation_data import load_dataset

    data = load_dataset("textile", 8, tmp_path)
    demo = materialize_demo("textile", tmp_path)
    assert data.ids == sorted(demo.labels) and data.skipped == [] and data.classes == TEXTILE_CLASSES
    assert [data.classes[c] for c in data.y] == [demo.labels[i] for i in data.ids]
    # independently of the sidecar: each file's bytes are those of a source image in its class's folder
    class_of_bytes = {src.read_bytes(): label for label, folder in _package_folders().items()
                      for src in folder.iterdir()}
    truth = [class_of_bytes[(demo.root / i).read_bytes()] for i in data.ids]
    assert [data.classes[c] for c in data.y] == truth
    assert np.bincount(data.y).tolist() == [1000, 500, 500]
