"""Demo datasets: real image files in class sub-folders, idempotent, crash-safe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activekd_core import demo_data
from activekd_core.demo_data import MANIFEST, demo_names, materialize_demo
from activekd_core.images import load_rgb, scan_images
from activekd_core.labels_import import labels_from_subfolders


def test_digits_small_subset_is_readable_and_labelled(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    ds = materialize_demo("digits", tmp_path, per_class=3)
    assert ds.name == "digits" and ds.root == (tmp_path / "digits").resolve()
    assert ds.classes == [str(d) for d in range(10)]
    assert len(ds.labels) == 30
    assert ds.prompts["3"] == "a photo of a handwritten digit 3"
    pool = scan_images(ds.root)
    assert pool.problems == []
    assert sorted(pool.ids) == sorted(ds.labels)
    assert labels_from_subfolders(pool) == ds.labels
    digits = load_digits()
    for image_id, label in ds.labels.items():
        index = int(Path(image_id).stem.split("_")[1])
        assert digits.target[index] == int(label)
    sample = next(iter(ds.labels))
    img = load_rgb(ds.root / sample)
    assert img.size == (64, 64)
    arr = np.asarray(img.convert("L")).astype(float)
    index = int(Path(sample).stem.split("_")[1])
    small = np.asarray(Image.fromarray(arr.astype(np.uint8)).resize((8, 8), Image.Resampling.BOX)).astype(float)
    ink = digits.images[index] / 16.0
    assert np.corrcoef(small.ravel(), -ink.ravel())[0, 1] > 0.9, "dark digit on light background"
    assert arr.max() > 200 and arr.min() < 80


def test_textile_limit_round_robin_and_bytes_copied(tmp_path: Path) -> None:
    import conformal_clip_data as ccd

    ds = materialize_demo("textile", tmp_path, limit=7)
    assert ds.classes == ["nominal", "local defect", "global defect"]
    assert len(ds.labels) == 7
    counts = {c: list(ds.labels.values()).count(c) for c in ds.classes}
    assert counts == {"nominal": 3, "local defect": 2, "global defect": 2}
    assert all(ds.prompts[c] for c in ds.classes) and "no defect" in ds.prompts["nominal"]
    sources = {"nominal": ccd.nominal_dir(), "local defect": ccd.local_dir(), "global defect": ccd.global_dir()}
    for image_id, label in ds.labels.items():
        assert image_id.startswith(label + "/")
        copied = (ds.root / image_id).read_bytes()
        assert copied == (Path(sources[label]) / Path(image_id).name).read_bytes()
    pool = scan_images(ds.root)
    assert len(pool) == 7 and pool.problems == []
    assert load_rgb(pool.path(0)).size == (250, 250)


def test_second_call_is_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = materialize_demo("digits", tmp_path, per_class=2)
    spec = demo_data.DEMOS["digits"]

    def boom() -> dict:
        raise AssertionError("source data read again although the folder is complete")

    monkeypatch.setitem(demo_data.DEMOS, "digits", demo_data._Spec(spec.classes, spec.prompts, spec.description, boom))
    again = materialize_demo("digits", tmp_path, per_class=2)
    assert again.labels == first.labels


def test_half_written_folder_is_completed(tmp_path: Path) -> None:
    ds = materialize_demo("digits", tmp_path, per_class=4)
    manifest = ds.root / MANIFEST
    victims = sorted(ds.labels)[:5]
    manifest.unlink()  # as if killed before the end
    (ds.root / victims[0]).unlink()
    (ds.root / victims[1]).write_bytes(b"")  # damaged
    leftover = ds.root / "3" / "digit_9999.png.tmp"
    leftover.write_bytes(b"partial")
    kept_by_user = ds.root / "3" / "my_notes.txt"
    kept_by_user.write_text("not ours")
    again = materialize_demo("digits", tmp_path, per_class=4)
    assert again.labels == ds.labels
    assert manifest.exists() and json.loads(manifest.read_text())["per_class"] == 4
    for victim in victims[:2]:
        assert load_rgb(ds.root / victim).size == (64, 64)
    assert not leftover.exists() and kept_by_user.exists()
    assert sorted(scan_images(ds.root).ids) == sorted(ds.labels)


def test_changed_parameters_resync_folder(tmp_path: Path) -> None:
    big = materialize_demo("digits", tmp_path, per_class=3)
    small = materialize_demo("digits", tmp_path, limit=4)
    assert len(small.labels) == 4 and set(small.labels.values()) == {"0", "1", "2", "3"}
    assert sorted(scan_images(small.root).ids) == sorted(small.labels)
    assert set(small.labels) < set(big.labels)


def test_unknown_name_and_bad_arguments(tmp_path: Path) -> None:
    assert demo_names() == ["textile", "digits"]
    with pytest.raises(ValueError, match="unknown demo dataset 'cifar'"):
        materialize_demo("cifar", tmp_path)
    with pytest.raises(ValueError, match="per_class"):
        materialize_demo("digits", tmp_path, per_class=0)
    assert not (tmp_path / "cifar").exists()
