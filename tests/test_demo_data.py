"""Demo datasets: neutral image names, the truth in a sidecar outside the image root, idempotent, crash-safe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activekd_core import demo_data
from activekd_core.demo_data import (
    MANIFEST,
    TRUTH_FILE,
    demo_names,
    materialize_demo,
    neutral_name,
    read_truth,
    truth_for_root,
)
from activekd_core.images import load_rgb, scan_images
from activekd_core.labels_import import labels_from_csv, labels_from_subfolders

NEUTRAL = re.compile(r"img_[0-9a-f]{8}\.(jpg|png)")


def _textile_sources() -> dict[str, tuple[str, Path]]:
    """Neutral name -> (class, source file) for every textile image of the package."""
    import conformal_clip_data as ccd

    folders = {"nominal": ccd.nominal_dir(), "local defect": ccd.local_dir(), "global defect": ccd.global_dir()}
    return {
        neutral_name("textile", f"{label}/{src.name}", src.suffix): (label, src)
        for label, folder in folders.items()
        for src in Path(folder).iterdir()
    }


def test_digits_small_subset_is_readable_and_labelled(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    ds = materialize_demo("digits", tmp_path, per_class=3)
    assert ds.name == "digits" and ds.root == (tmp_path / "digits-v2" / "images").resolve()
    assert ds.classes == [str(d) for d in range(10)]
    assert len(ds.labels) == 30
    assert ds.prompts["3"] == "a photo of a handwritten digit 3"
    pool = scan_images(ds.root)
    assert pool.problems == []
    assert sorted(pool.ids) == sorted(ds.labels)
    assert all(NEUTRAL.fullmatch(i) for i in pool.ids), pool.ids
    assert labels_from_subfolders(pool) == {}  # the class is in no path
    digits = load_digits()
    index_of = {neutral_name("digits", f"{k:04d}", ".png"): k for k in range(len(digits.target))}
    for image_id, label in ds.labels.items():
        assert digits.target[index_of[image_id]] == int(label)
    sample = next(iter(ds.labels))
    img = load_rgb(ds.root / sample)
    assert img.size == (64, 64)
    arr = np.asarray(img.convert("L")).astype(float)
    small = np.asarray(Image.fromarray(arr.astype(np.uint8)).resize((8, 8), Image.Resampling.BOX)).astype(float)
    ink = digits.images[index_of[sample]] / 16.0
    assert np.corrcoef(small.ravel(), -ink.ravel())[0, 1] > 0.9, "dark digit on light background"
    assert arr.max() > 200 and arr.min() < 80


def test_truth_sidecar_lies_outside_the_image_root_and_imports_as_labels(tmp_path: Path) -> None:
    ds = materialize_demo("textile", tmp_path, per_class=4)
    assert ds.truth_file == (tmp_path / "textile-v2" / TRUTH_FILE).resolve()
    assert ds.truth_file.parent == ds.root.parent  # beside the image root, not inside it
    assert read_truth(ds.truth_file) == ds.labels == truth_for_root(ds.root)
    inside = [p.relative_to(ds.root).as_posix() for p in ds.root.rglob("*")]
    assert sorted(inside) == sorted(ds.labels)  # nothing but the images: no manifest, no truth
    pool = scan_images(ds.root)
    for image_id in pool.ids:
        assert not any(c.split()[0] in image_id.lower() for c in ds.classes), image_id
    # the user's explicit import: the sidecar is a labels CSV
    imported = labels_from_csv(ds.truth_file, pool, ds.classes)
    assert imported.labels == ds.labels and imported.problems == []


def test_textile_limit_round_robin_bytes_copied_and_truth_right(tmp_path: Path) -> None:
    ds = materialize_demo("textile", tmp_path, limit=7)
    assert ds.classes == ["nominal", "local defect", "global defect"]
    assert len(ds.labels) == 7
    counts = {c: list(ds.labels.values()).count(c) for c in ds.classes}
    assert counts == {"nominal": 3, "local defect": 2, "global defect": 2}
    assert all(ds.prompts[c] for c in ds.classes) and "no defect" in ds.prompts["nominal"]
    sources = _textile_sources()
    for image_id, label in ds.labels.items():
        assert NEUTRAL.fullmatch(image_id)
        source_class, src = sources[image_id]
        assert label == source_class
        assert (ds.root / image_id).read_bytes() == src.read_bytes()
    pool = scan_images(ds.root)
    assert len(pool) == 7 and pool.problems == []
    assert load_rgb(pool.path(0)).size == (250, 250)


def test_sorted_order_does_not_group_the_classes(tmp_path: Path) -> None:
    ds = materialize_demo("textile", tmp_path, per_class=30)
    in_order = [ds.labels[i] for i in scan_images(ds.root).ids]
    runs = 1 + sum(a != b for a, b in zip(in_order, in_order[1:]))
    assert len(in_order) == 90 and runs > 30, f"class runs in file order: {runs}"  # grouped by class: 3


def test_second_call_is_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = materialize_demo("digits", tmp_path, per_class=2)
    spec = demo_data.DEMOS["digits"]

    def boom() -> dict:
        raise AssertionError("source data read again although the folder is complete")

    monkeypatch.setitem(demo_data.DEMOS, "digits", demo_data._Spec(spec.classes, spec.prompts, spec.description, boom))
    again = materialize_demo("digits", tmp_path, per_class=2)
    assert again.labels == first.labels and again.truth_file == first.truth_file


def test_half_written_folder_is_completed(tmp_path: Path) -> None:
    ds = materialize_demo("digits", tmp_path, per_class=4)
    manifest = ds.root.parent / MANIFEST
    victims = sorted(ds.labels)[:5]
    manifest.unlink()  # as if killed before the end
    (ds.root / victims[0]).unlink()
    (ds.root / victims[1]).write_bytes(b"")  # damaged
    leftover = ds.root / "img_00000000.png.tmp"
    leftover.write_bytes(b"partial")
    kept_by_user = ds.root / "my_notes.txt"
    kept_by_user.write_text("not ours")
    again = materialize_demo("digits", tmp_path, per_class=4)
    assert again.labels == ds.labels
    assert manifest.exists() and json.loads(manifest.read_text())["per_class"] == 4
    for victim in victims[:2]:
        assert load_rgb(ds.root / victim).size == (64, 64)
    assert not leftover.exists() and kept_by_user.exists()
    assert sorted(scan_images(ds.root).ids) == sorted(ds.labels)


def test_a_tampered_truth_file_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    ds = materialize_demo("digits", tmp_path, per_class=2)
    ds.truth_file.write_text("id,label\n../../etc/passwd,0\n" + "".join(
        f"{i},{c}\n" for i, c in list(ds.labels.items())[1:]))
    again = materialize_demo("digits", tmp_path, per_class=2)
    assert again.labels == ds.labels == read_truth(ds.truth_file)


def test_changed_parameters_resync_folder(tmp_path: Path) -> None:
    big = materialize_demo("digits", tmp_path, per_class=3)
    small = materialize_demo("digits", tmp_path, limit=4)
    assert len(small.labels) == 4 and set(small.labels.values()) == {"0", "1", "2", "3"}
    assert sorted(scan_images(small.root).ids) == sorted(small.labels)
    assert set(small.labels) < set(big.labels)  # a name always denotes the same source image
    assert read_truth(small.truth_file) == small.labels


def test_an_old_layout_folder_is_left_alone(tmp_path: Path) -> None:
    old = tmp_path / "digits" / "3" / "digit_0003.png"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"kept as it was")
    (tmp_path / "digits" / ".activekd_demo.json").write_text('{"version": 1}')
    ds = materialize_demo("digits", tmp_path, per_class=1)
    assert old.read_bytes() == b"kept as it was" and (tmp_path / "digits" / ".activekd_demo.json").is_file()
    assert ds.root.parent.name == "digits-v2"


def test_unknown_name_and_bad_arguments(tmp_path: Path) -> None:
    assert demo_names() == ["textile", "digits"]
    with pytest.raises(ValueError, match="unknown demo dataset 'cifar'"):
        materialize_demo("cifar", tmp_path)
    with pytest.raises(ValueError, match="per_class"):
        materialize_demo("digits", tmp_path, per_class=0)
    assert not (tmp_path / "cifar").exists() and not (tmp_path / "cifar-v2").exists()
