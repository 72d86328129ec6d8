"""Issue 9 item 4: a pool image replaced by a symbolic link to a file outside the image
root (after it was scanned or first shown) is never read, by any reader.

One core function opens pool images (``activekd_core.images.open_image_file``, used by
``load_image``); these tests swap a file for an escaping link and check every reader:
the core opener (also when the swap happens between the check and the open), the
training pixel cache, both teachers' decoders, the ImageFolder export, duplicate
detection and the pages' thumbnails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activekd_core import image_open, images
from activekd_core.images import ImageLoadError, load_image, open_image_file, scan_images
from activekd_core.paths import PathOutsideRoot

ROOT = Path(__file__).resolve().parent.parent
SECRET = (250, 10, 200)  # the colour of the file outside the root


@pytest.fixture
def swapped(tmp_path: Path) -> tuple[Path, images.ImagePool]:
    """A scanned root of three grey images; then ``b.png`` is replaced by a link to a secret outside."""
    root = tmp_path / "root"
    root.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (16, 16), (90, 90, 90)).save(root / name)
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    Image.new("RGB", (16, 16), SECRET).save(secret)
    pool = scan_images(root)
    assert pool.ids == ["a.png", "b.png", "c.png"]
    assert np.asarray(load_image(root, "b.png"))[0, 0].tolist() == [90, 90, 90]  # fine before the swap
    (root / "b.png").unlink()
    (root / "b.png").symlink_to(secret)
    return root, pool


def _shows_secret(arr: np.ndarray) -> bool:
    return bool(np.all(np.abs(arr.reshape(-1, 3).astype(int) - SECRET) <= 3, axis=1).any())


def test_core_opener_refuses_a_file_swapped_for_an_escaping_link(swapped) -> None:
    root, _ = swapped
    with pytest.raises(PathOutsideRoot):
        open_image_file(root, "b.png")
    with pytest.raises(ImageLoadError, match="refused"):
        load_image(root, "b.png")
    with open_image_file(root, "a.png") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_swap_between_the_check_and_the_open_is_refused(tmp_path: Path, monkeypatch) -> None:
    """The check passes on a real file; the file (or its folder) becomes a link just before open()."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "sub" / "x.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (8, 8), SECRET).save(outside / "x.png")
    real_open = image_open._os_open

    def swap_file(path, flags):  # type: ignore[no-untyped-def]
        (root / "sub" / "x.png").unlink()
        (root / "sub" / "x.png").symlink_to(outside / "x.png")
        return real_open(path, flags)

    monkeypatch.setattr(image_open, "_os_open", swap_file)
    with pytest.raises(PathOutsideRoot):
        open_image_file(root, "sub/x.png")

    (root / "sub" / "x.png").unlink()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "sub" / "x.png")

    def swap_folder(path, flags):  # type: ignore[no-untyped-def]
        (root / "sub").rename(tmp_path / "old_sub")
        (root / "sub").symlink_to(outside, target_is_directory=True)
        return real_open(path, flags)

    monkeypatch.setattr(image_open, "_os_open", swap_folder)
    with pytest.raises(PathOutsideRoot):
        open_image_file(root, "sub/x.png")


def test_pixel_cache_never_trains_on_the_outside_file(swapped) -> None:
    from activekd_core.pixel_cache import decode_pool_with_report

    root, pool = swapped
    result = decode_pool_with_report(pool, 8)
    assert set(result.failures) == {1} and "refused" in result.failures[1]
    assert not _shows_secret(np.asarray(result.pixels))


def test_teacher_decoders_never_read_the_outside_file(swapped) -> None:
    pytest.importorskip("torch")
    from activekd_core.teachers.features import _PoolImages
    from activekd_core.teachers.standin import pool_pixels

    root, pool = swapped
    assert not _shows_secret(pool_pixels(pool, size=8))
    import torch

    dataset = _PoolImages(pool, lambda img: torch.from_numpy(np.asarray(img).copy()), 0, 3, 16)
    tensor, row, reason = dataset[1]
    assert row == 1 and "refused" in reason and not tensor.any()
    assert dataset[0][2] == "" and dataset[0][0].shape == (16, 16, 3)


def test_imagefolder_export_and_duplicates_never_copy_the_outside_file(swapped, tmp_path: Path) -> None:
    from activekd_core.export import export_imagefolder
    from activekd_core.images import find_duplicates
    from activekd_core.store import ImageRecord, Store

    root, pool = swapped
    store = Store.create(tmp_path / "p.db")
    store.add_images([ImageRecord(i, r, str(root / i), 16, 16, True, None) for r, i in enumerate(pool.ids)])
    store.set_classes([("grey", ""), ("other", "")])
    for image_id in pool.ids:
        store.label(image_id, "grey")
    for mode in ("copy", "hardlink"):
        report = export_imagefolder(store, root, tmp_path / f"export_{mode}", mode=mode)
        assert report.count == 2 and [i for i, _ in report.skipped] == ["b.png"]
        exported = sorted(p.name for p in (tmp_path / f"export_{mode}" / "grey").iterdir())
        assert exported == ["a.png", "c.png"]
    (root / "d.png").symlink_to(tmp_path / "outside" / "secret.png")
    pool.ids.append("d.png")
    assert find_duplicates(images.ImagePool(root=root, ids=list(pool.ids))) == [["a.png", "c.png"]]


def test_page_thumbnail_refuses_a_file_swapped_after_it_was_shown(tmp_path: Path, monkeypatch) -> None:
    sys.path.insert(0, str(ROOT))
    import streamlit as st

    from activekd_core.project import Project
    from pages._session import thumbnail

    root = tmp_path / "root"
    root.mkdir()
    for k, name in enumerate(["a.png", "b.png", "c.png", "d.png"]):
        Image.new("RGB", (16, 16), (40 * k, 40, 40)).save(root / name)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (16, 16), SECRET).save(secret)
    st.cache_data.clear()
    project = Project.create(tmp_path / "proj", root, [("x", ""), ("y", "")], teacher_spec={"kind": "standin"},
                             student_arch="small_cnn", batch_size=2, strategy="random")
    try:
        assert thumbnail(project, "b.png", 16)[:4] == b"\x89PNG"  # shown once (and cached by the old code)
        (root / "b.png").unlink()
        (root / "b.png").symlink_to(secret)
        with pytest.raises((PathOutsideRoot, ImageLoadError)):
            thumbnail(project, "b.png", 16)
    finally:
        project.close()
        st.cache_data.clear()
