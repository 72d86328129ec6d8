"""decode_pool: geometry, row order, failures, on-disk cache reuse, resume, cancel."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activekd_core import pixel_cache
from activekd_core.images import ImagePool, scan_images
from activekd_core.pixel_cache import cache_file, decode_pool, decode_pool_with_report, resize_center_crop


def make_pool(root: Path, n: int) -> ImagePool:
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.new("RGB", (12 + k % 5, 10), (k * 7 % 256, 255 - k * 3 % 256, k % 256)).save(root / f"img_{k:03d}.png")
    return scan_images(root)


def test_center_crop_geometry() -> None:
    # 30x10: left third red, middle green, right third blue -> centre square is green
    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, :10] = (255, 0, 0)
    arr[:, 10:20] = (0, 255, 0)
    arr[:, 20:] = (0, 0, 255)
    out = resize_center_crop(Image.fromarray(arr), 5)
    assert out.shape == (5, 5, 3) and out.dtype == np.uint8
    # bicubic reads a little beyond the crop box: the outer columns may bleed slightly
    assert np.abs(out[:, 1:4].astype(int) - (0, 255, 0)).max() <= 3
    assert np.abs(out.astype(int) - (0, 255, 0)).max() <= 40
    tall = resize_center_crop(Image.fromarray(arr.transpose(1, 0, 2).copy()), 20)  # 10x30 tall
    assert tall.shape == (20, 20, 3)
    assert np.abs(tall[10, 10].astype(int) - (0, 255, 0)).max() <= 3
    up = resize_center_crop(Image.new("RGB", (1, 1), (9, 8, 7)), 4)
    assert (up == (9, 8, 7)).all()


def test_rows_follow_pool_order_in_memory(tmp_path: Path) -> None:
    pool = make_pool(tmp_path / "imgs", 7)
    pool.ids = list(reversed(pool.ids))
    pixels = decode_pool(pool, 6, workers=2)
    assert pixels.shape == (7, 6, 6, 3) and pixels.dtype == np.uint8
    for row, image_id in enumerate(pool.ids):
        k = int(image_id[4:7])
        assert tuple(pixels[row, 3, 3]) == (k * 7 % 256, 255 - k * 3 % 256, k % 256)


def test_cache_written_atomically_and_reused(tmp_path: Path) -> None:
    pool = make_pool(tmp_path / "imgs", 5)
    cache = tmp_path / "cache"
    first = decode_pool_with_report(pool, 8, cache_dir=cache)
    assert not first.from_cache and first.cache_path == cache_file(pool, 8, cache)
    assert isinstance(first.pixels, np.memmap) and not first.pixels.flags.writeable
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == sorted(
        [first.cache_path.name, first.cache_path.with_suffix(".json").name]
    )
    again = decode_pool_with_report(pool, 8, cache_dir=cache)
    assert again.from_cache
    assert np.array_equal(np.asarray(again.pixels), np.asarray(first.pixels))
    other_size = decode_pool_with_report(pool, 4, cache_dir=cache)
    assert not other_size.from_cache and other_size.pixels.shape == (5, 4, 4, 3)


def test_failed_rows_are_zero_reported_and_remembered(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pool = make_pool(tmp_path / "imgs", 4)
    pool.path(2).write_bytes(b"gone bad after the scan")
    cache = tmp_path / "cache"
    result = decode_pool_with_report(pool, 5, cache_dir=cache)
    assert list(result.failures) == [2]
    assert "img_002.png" in result.failures[2] and "not a recognised image format" in result.failures[2]
    assert not result.pixels[2].any() and result.pixels[[0, 1, 3]].reshape(3, -1).max(axis=1).min() > 0
    reused = decode_pool_with_report(pool, 5, cache_dir=cache)
    assert reused.from_cache and reused.failures == result.failures
    with caplog.at_level("WARNING"):
        decode_pool(pool, 5, cache_dir=cache)
    assert "img_002.png" in caplog.text


def test_half_written_cache_is_resumed_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixel_cache, "CHUNK_ROWS", 3)
    pool = make_pool(tmp_path / "imgs", 10)
    cache = tmp_path / "cache"
    cancel = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int, message: str) -> None:
        seen.append(done)
        if done >= 6:
            cancel.set()  # "killed" after two chunks

    with pytest.raises(InterruptedError):
        decode_pool_with_report(pool, 6, cache_dir=cache, progress=progress, cancel=cancel)
    final = cache_file(pool, 6, cache)
    assert not final.exists(), "no complete cache after an interrupted run"
    state = json.loads(final.with_name(final.stem + ".partial.json").read_text())
    assert state["done"] == 6

    decoded: list[int] = []
    real = pixel_cache.load_image

    def counting(root, image_id, **kw):  # type: ignore[no-untyped-def]
        decoded.append(1)
        return real(root, image_id, **kw)

    monkeypatch.setattr(pixel_cache, "load_image", counting)
    resumed = decode_pool_with_report(pool, 6, cache_dir=cache)
    assert len(decoded) == 4, "only the rows after the last flushed chunk are decoded again"
    assert final.exists() and not final.with_name(final.stem + ".partial.npy").exists()
    assert np.array_equal(np.asarray(resumed.pixels), decode_pool(pool, 6))


def test_corrupt_partial_state_restarts(tmp_path: Path) -> None:
    pool = make_pool(tmp_path / "imgs", 3)
    cache = tmp_path / "cache"
    final = cache_file(pool, 4, cache)
    cache.mkdir()
    final.with_name(final.stem + ".partial.npy").write_bytes(b"garbage")
    final.with_name(final.stem + ".partial.json").write_text("{not json")
    result = decode_pool_with_report(pool, 4, cache_dir=cache)
    assert np.array_equal(np.asarray(result.pixels), decode_pool(pool, 4))


def test_wrong_shape_complete_cache_is_ignored(tmp_path: Path) -> None:
    pool = make_pool(tmp_path / "imgs", 3)
    cache = tmp_path / "cache"
    final = cache_file(pool, 4, cache)
    cache.mkdir()
    np.save(final, np.zeros((2, 4, 4, 3), np.uint8))
    final.with_suffix(".json").write_text(json.dumps({"version": 1, "failures": {}}))
    result = decode_pool_with_report(pool, 4, cache_dir=cache)
    assert not result.from_cache and result.pixels.shape == (3, 4, 4, 3)


def test_empty_pool_and_bad_size(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    pool = scan_images(tmp_path / "e")
    assert decode_pool(pool, 8).shape == (0, 8, 8, 3)
    assert decode_pool(pool, 8, cache_dir=tmp_path / "c").shape == (0, 8, 8, 3)
    with pytest.raises(ValueError, match="positive"):
        decode_pool(pool, 0)


def test_sigkill_mid_decode_never_leaves_a_usable_half_cache(tmp_path: Path) -> None:
    """Fault injection: a real process decoding to the cache is SIGKILLed mid-pool; the
    next call resumes from the last flushed chunk and the result equals a clean decode."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pool = make_pool(tmp_path / "imgs", 60)
    cache = tmp_path / "cache"
    script = f"""
import time
from activekd_core import pixel_cache
from activekd_core.images import scan_images
pixel_cache.CHUNK_ROWS = 5
pool = scan_images({str(pool.root)!r})
pixel_cache.decode_pool(pool, 6, cache_dir={str(cache)!r}, progress=lambda d, t, m: time.sleep(0.2))
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1])
    final = cache_file(pool, 6, cache)
    state = final.with_name(final.stem + ".partial.json")
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if state.exists() and json.loads(state.read_text() or "{}").get("done", 0) >= 10:
                break
            assert proc.poll() is None, "decoder exited before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not final.exists()
    done_before = json.loads(state.read_text())["done"]
    assert 10 <= done_before < 60
    result = decode_pool_with_report(pool, 6, cache_dir=cache)
    assert not result.from_cache and result.failures == {}
    assert np.array_equal(np.asarray(result.pixels), decode_pool(pool, 6))
