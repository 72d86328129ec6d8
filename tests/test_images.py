"""Image scanning, loading modes, fingerprints and duplicate detection."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activekd_core.images import (
    IMAGE_SUFFIXES,
    ImageLoadError,
    ImagePool,
    find_duplicates,
    load_rgb,
    scan_images,
)


def save(path: Path, img: Image.Image, fmt: str | None = None, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


def colour(rgb: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def test_scan_finds_every_suffix_recursively_in_sorted_order(tmp_path: Path) -> None:
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".gif": "GIF"}
    assert set(formats) == IMAGE_SUFFIXES
    for k, (suffix, fmt) in enumerate(sorted(formats.items())):
        save(tmp_path / f"d{k % 2}" / "deeper" / f"img{k}{suffix.upper() if k == 3 else suffix}", colour((k * 20, 0, 0)), fmt)
    (tmp_path / "readme.md").write_text("no image")
    pool = scan_images(tmp_path)
    assert len(pool) == len(formats)
    assert pool.ids == sorted(pool.ids)
    assert all("/" in i and not i.startswith("/") for i in pool.ids)
    assert pool.problems == []
    for i in range(len(pool)):
        assert load_rgb(pool.path(i)).size == (8, 6)


def test_ids_are_posix_relative_and_pool_paths_absolute(tmp_path: Path) -> None:
    save(tmp_path / "a" / "b" / "x.png", colour((1, 2, 3)))
    pool = scan_images(tmp_path)
    assert pool.ids == ["a/b/x.png"]
    assert pool.root == tmp_path.resolve()
    assert pool.path(0) == tmp_path.resolve() / "a" / "b" / "x.png"
    assert pool.index_of() == {"a/b/x.png": 0}


@pytest.mark.parametrize(
    "mode,value,expected",
    [
        ("L", 100, (100, 100, 100)),
        ("LA", (0, 0), (255, 255, 255)),  # fully transparent -> white
        ("LA", (40, 255), (40, 40, 40)),
        ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
        ("RGBA", (10, 20, 30, 0), (255, 255, 255)),
        ("1", 1, (255, 255, 255)),
        ("I", 5, (0, 0, 0)),  # constant 32-bit image stretches to 0
    ],
)
def test_modes_convert_to_rgb(tmp_path: Path, mode: str, value: object, expected: tuple[int, int, int]) -> None:
    img = Image.new(mode, (4, 4), value)  # type: ignore[arg-type]
    path = save(tmp_path / f"x_{mode}{'.tif' if mode == 'I' else '.png'}", img)
    out = load_rgb(path)
    assert out.mode == "RGB"
    assert tuple(np.asarray(out)[0, 0]) == expected


def test_float_tiff_with_nan_is_stretched(tmp_path: Path) -> None:
    arr = np.linspace(-1.0, 1.0, 16, dtype=np.float32).reshape(4, 4)
    arr[0, 0] = np.nan
    path = save(tmp_path / "f.tif", Image.fromarray(arr))
    out = np.asarray(load_rgb(path))[..., 0]
    assert out.max() == 255
    assert out[3, 3] == 255 and out[0, 1] == 0


def test_semi_transparent_rgba_composited_on_white(tmp_path: Path) -> None:
    path = save(tmp_path / "half.png", Image.new("RGBA", (2, 2), (0, 0, 0, 128)))
    value = np.asarray(load_rgb(path))[0, 0, 0]
    assert 120 <= value <= 135


def test_max_pixels_checked_from_header(tmp_path: Path) -> None:
    path = save(tmp_path / "big.png", Image.new("RGB", (300, 200)))
    with pytest.raises(ImageLoadError, match="300x200"):
        load_rgb(path, max_pixels=50_000)
    pool = scan_images(tmp_path, max_pixels=50_000)
    assert pool.ids == [] and "exceeds the limit" in pool.problems[0].reason
    assert scan_images(tmp_path).ids == ["big.png"]


def test_draft_size_keeps_at_least_requested_side(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    path = save(tmp_path / "p.jpg", img, quality=90)
    small = load_rgb(path, draft_size=100)
    assert min(small.size) >= 100 and small.size[0] < 640
    assert load_rgb(path).size == (640, 480)
    png = save(tmp_path / "p.png", img)
    # Other formats are box-reduced right after decoding, keeping at least twice the side asked for.
    assert load_rgb(png, draft_size=100).size == (320, 240)
    assert load_rgb(png, draft_size=200).size == (640, 480)
    assert load_rgb(png).size == (640, 480)


def test_missing_file_error_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError) as info:
        load_rgb(tmp_path / "gone.png")
    assert "gone.png" in str(info.value) and "not found" in info.value.reason


def test_fingerprint_uses_scan_stats_and_recheck(tmp_path: Path) -> None:
    a = save(tmp_path / "a.png", colour((1, 1, 1)))
    save(tmp_path / "b.png", colour((2, 2, 2)))
    pool = scan_images(tmp_path)
    first = pool.fingerprint()
    assert first == pool.fingerprint()
    save(a, colour((9, 9, 9), size=(9, 9)))
    os.utime(a, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert pool.fingerprint() == first, "cheap: no disk access after the scan"
    changed = pool.fingerprint(recheck=True)
    assert changed != first
    assert scan_images(tmp_path).fingerprint() == changed
    reordered = ImagePool(root=pool.root, ids=list(reversed(pool.ids)))
    assert reordered.fingerprint() != changed


def test_fingerprint_speed_is_independent_of_disk_after_scan(tmp_path: Path) -> None:
    save(tmp_path / "a.png", colour((1, 1, 1)))
    pool = scan_images(tmp_path)
    pool.ids = pool.ids * 20_000  # 20k rows sharing one cached stat
    pool.root = tmp_path / "moved-away"  # would fail to stat if touched
    assert len(pool.fingerprint()) == 16


def test_find_duplicates_groups_identical_bytes_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8))
    data = io.BytesIO()
    img.save(data, "PNG")
    for name in ("x/1.png", "y/2.png", "z/3.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data.getvalue())
    save(tmp_path / "other.png", img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))  # same size, other bytes
    save(tmp_path / "x" / "small.png", colour((0, 0, 0)))
    pool = scan_images(tmp_path)
    calls: list[tuple[int, int]] = []
    groups = find_duplicates(pool, progress=lambda d, t, m: calls.append((d, t)))
    assert groups == [["x/1.png", "y/2.png", "z/3.png"]]
    assert calls and calls[-1][0] == calls[-1][1]


def test_scan_progress_reports_total(tmp_path: Path) -> None:
    for k in range(3):
        save(tmp_path / f"{k}.png", colour((k, k, k)))
    seen: list[tuple[int, int, str]] = []
    scan_images(tmp_path, progress=lambda d, t, m: seen.append((d, t, m)))
    assert seen[-1][:2] == (3, 3)


def test_scan_without_verify_only_checks_entries(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_bytes(b"not really")
    (tmp_path / "empty.png").write_bytes(b"")
    pool = scan_images(tmp_path, verify=False)
    assert pool.ids == ["fake.png"]
    assert [p.id for p in pool.problems] == ["empty.png"]


def test_fingerprint_cached_until_ids_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool hashes its ids once; a new ids list (or length) invalidates the cached value."""
    import activekd_core.image_pool as pool_mod  # ImagePool.fingerprint hashes there

    for k in range(3):
        save(tmp_path / f"{k}.png", colour((k, k, k)))
    pool = scan_images(tmp_path)
    first = pool.fingerprint()
    hashed = []
    real_sha = pool_mod.hashlib.sha256
    monkeypatch.setattr(pool_mod.hashlib, "sha256", lambda *a: hashed.append(1) or real_sha(*a))
    assert [pool.fingerprint() for _ in range(5)] == [first] * 5 and hashed == []
    pool.ids = pool.ids[:2]  # a new list: recomputed
    second = pool.fingerprint()
    assert second != first and len(hashed) == 1
    pool.ids.append("2.png")  # same list object, new length: recomputed
    assert pool.fingerprint() == first and len(hashed) == 2
    assert pool.fingerprint(recheck=True) == first and len(hashed) == 3


def test_scan_keeps_header_sizes(tmp_path: Path) -> None:
    """A verifying scan records each usable image's (width, height); no scan, no size."""
    save(tmp_path / "a.png", colour((1, 1, 1), size=(24, 20)))
    save(tmp_path / "b.jpg", colour((2, 2, 2), size=(7, 11)), "JPEG")
    (tmp_path / "c.png").write_bytes(b"not an image")
    pool = scan_images(tmp_path)
    assert pool.ids == ["a.png", "b.jpg"]
    assert pool.image_size("a.png") == (24, 20) and pool.image_size("b.jpg") == (7, 11)
    assert pool.image_size("c.png") is None
    assert scan_images(tmp_path, verify=False).image_size("a.png") is None
    assert ImagePool(root=tmp_path, ids=["a.png"]).image_size("a.png") is None
