"""Thumbnails rendered ahead into the project folder: used only while the file and recipe are unchanged,
never read or written outside the project folder."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from activekd_core.image_view import BytesCache
from activekd_core.paths import PathOutsideRoot
from activekd_core.project import Project, thumbnails
from activekd_core.thumbnail_cache import CACHE_DIR, ThumbnailCache, entry_key, file_fingerprint

CLASSES = [("red", ""), ("green", ""), ("blue", "")]
BOX = 32


def _png(color: tuple[int, int, int], size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def _pixel(data: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB").getpixel((3, 3))


@pytest.fixture()
def project(tmp_path: Path):
    root = tmp_path / "images"
    rows = []
    for k, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(3):
            (root / name / f"{i}.png").write_bytes(_png((200 if k == 0 else 0, 200 if k == 1 else 0, 200 if k == 2 else 0)))
            rows.append(f"{name}/{i}.png,0.4,0.3,0.3\n")
    table = tmp_path / "teacher.csv"
    table.write_text("id,red,green,blue\n" + "".join(rows))
    p = Project.create(tmp_path / "proj", root, CLASSES, {"kind": "precomputed", "path": str(table)}, batch_size=3)
    yield p
    p.close()


def _no_render(monkeypatch) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("decoded although a valid thumbnail was on disk")

    monkeypatch.setattr(thumbnails, "render", refuse)


def test_prerendered_thumbnail_is_served_from_disk_without_decoding(project, monkeypatch) -> None:
    ids = ["red/0.png", "green/1.png"]
    assert thumbnails.prerender(project, ids, BOX) == 2
    assert thumbnails.prerender(project, ids, BOX) == 0  # already there: nothing rendered twice
    files = list((project.folder / CACHE_DIR).rglob("*.png"))
    assert len(files) == 2 and all(f.resolve().is_relative_to(project.folder.resolve()) for f in files)
    _no_render(monkeypatch)
    data = thumbnails.thumbnail_png(project, "green/1.png", BOX, BytesCache(1 << 20))
    assert _pixel(data) == (0, 200, 0)
    with Image.open(io.BytesIO(data)) as img:
        assert max(img.size) == BOX


def test_a_changed_file_is_rendered_afresh_not_shown_from_the_old_entry(project) -> None:
    image_id = "red/0.png"
    thumbnails.prerender(project, [image_id], BOX)
    path = project.image_root / image_id
    before = path.stat()
    path.write_bytes(_png((0, 0, 250)))  # same size in bytes is not needed: the identity is what counts
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # even with the old modification time put back
    assert _pixel(thumbnails.thumbnail_png(project, image_id, BOX)) == (0, 0, 250)


def test_another_recipe_or_size_never_reads_the_entry(project, monkeypatch) -> None:
    image_id = "blue/2.png"
    thumbnails.prerender(project, [image_id], BOX)
    stat = thumbnails.file_stat(project, image_id)
    disk = ThumbnailCache(project.folder)
    recipe = project.recipe.key()
    assert disk.get(entry_key(image_id, file_fingerprint(stat), BOX, recipe)) is not None
    assert disk.get(entry_key(image_id, file_fingerprint(stat), BOX, recipe + "x")) is None
    assert disk.get(entry_key(image_id, file_fingerprint(stat), BOX * 2, recipe)) is None
    rendered = []
    monkeypatch.setattr(thumbnails, "render", lambda p, i, b: rendered.append((i, b)) or _png((1, 2, 3), b))
    thumbnails.thumbnail_png(project, image_id, BOX, recipe_key=recipe + "x")
    assert rendered == [(image_id, BOX)]


def test_cache_folder_leading_out_of_the_project_is_refused(project, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (project.folder / "cache").mkdir(exist_ok=True)
    (project.folder / CACHE_DIR).symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathOutsideRoot):
        thumbnails.prerender(project, ["red/0.png"], BOX)
    assert list(outside.iterdir()) == []
    key = entry_key("red/0.png", (1, 2, 3, 4, 5), BOX, "r")
    (outside / key[:2]).mkdir()
    (outside / key[:2] / f"{key}.png").write_bytes(_png((9, 9, 9)))
    assert ThumbnailCache(project.folder).get(key) is None  # planted outside: never read
    assert _pixel(thumbnails.thumbnail_png(project, "red/0.png", BOX)) == (200, 0, 0)  # rendered instead


def test_linked_entries_and_sub_folders_are_not_followed(project, tmp_path: Path) -> None:
    disk = ThumbnailCache(project.folder)
    folder = disk.folder(create=True)
    planted = tmp_path / "planted.png"
    planted.write_bytes(_png((7, 7, 7)))
    key = entry_key("red/0.png", (1, 2, 3, 4, 5), BOX, "r")
    (folder / key[:2]).mkdir()
    (folder / key[:2] / f"{key}.png").symlink_to(planted)
    assert disk.get(key) is None
    key2 = entry_key("red/1.png", (1, 2, 3, 4, 5), BOX, "r")
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    (elsewhere / f"{key2}.png").write_bytes(_png((8, 8, 8)))
    (folder / key2[:2]).symlink_to(elsewhere, target_is_directory=True)
    assert disk.get(key2) is None
    with pytest.raises(PathOutsideRoot):
        disk.put(key2, _png((8, 8, 8)))


def test_keys_are_digests_and_entries_are_png(project) -> None:
    disk = ThumbnailCache(project.folder)
    with pytest.raises(ValueError):
        disk.get("../../etc/passwd")
    with pytest.raises(ValueError):
        disk.put(entry_key("a", (1,), 1, "r"), b"not a png")
    key = entry_key("a", (1,), 1, "r")
    assert disk.get(key) is None
    disk.put(key, _png((1, 1, 1)))
    assert _pixel(disk.get(key)) == (1, 1, 1)


def test_prune_removes_the_oldest_entries_first(project) -> None:
    disk = ThumbnailCache(project.folder)
    keys = [entry_key(f"img{i}", (i,), BOX, "r") for i in range(4)]
    sizes = []
    for n, key in enumerate(keys):
        path = disk.put(key, _png((n, n, n), 48))
        sizes.append(path.stat().st_size)
        os.utime(path, ns=(10**18 + n * 10**9, 10**18 + n * 10**9))
    assert disk.prune(sizes[2] + sizes[3]) == 2
    assert [disk.get(k) is not None for k in keys] == [False, False, True, True]


def test_unreadable_image_is_skipped_by_prerender(project) -> None:
    (project.image_root / "red/2.png").write_bytes(b"broken")
    assert thumbnails.prerender(project, ["red/2.png", "../outside.png", "green/0.png"], BOX) == 1
    assert len(list((project.folder / CACHE_DIR).rglob("*.png"))) == 1
