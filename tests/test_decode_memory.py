"""Issue 9 item 14: decoding a huge, highly compressed image must not take ~1.5 GB, and
several decodes at once must share a memory budget instead of adding their peaks.

Peak memory itself is measured in ``bench/decode_memory.py``; here: the decode happens at
the size the caller needs, and the budget's bound logic holds under concurrency.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from activekd_core import decode_budget, image_decode, images
from activekd_core.images import DecodeBudget, estimate_decode_bytes, load_image, load_rgb


def _big_rgba_png(path: Path, side: int = 2400) -> Path:
    arr = np.zeros((side, side, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = 255
    arr[: side // 2, :, 3] = 0  # top half transparent: composited on white
    Image.fromarray(arr, "RGBA").save(path, optimize=False)
    return path


def test_large_png_is_reduced_before_any_conversion(tmp_path: Path, monkeypatch) -> None:
    path = _big_rgba_png(tmp_path / "big.png")
    converted: list[tuple[str, tuple[int, int]]] = []
    real_to_rgb = image_decode._to_rgb

    def spy(img, p):  # type: ignore[no-untyped-def]
        converted.append((img.mode, img.size))
        return real_to_rgb(img, p)

    monkeypatch.setattr(image_decode, "_to_rgb", spy)
    small = load_rgb(path, draft_size=224)
    # The mode conversions (RGBA -> composite -> RGB, each a full copy) ran on the reduced image.
    assert converted == [("RGBA", small.size)]
    assert 448 <= min(small.size) < 900 and small.mode == "RGB"
    arr = np.asarray(small)
    assert arr[0, 0].tolist() == [255, 255, 255] and arr[-1, -1].tolist() == [200, 0, 0]
    assert load_image(tmp_path, "big.png", draft_size=224).size == small.size
    assert load_rgb(path).size == (2400, 2400)  # no size asked for: full resolution


def test_estimate_counts_pillow_storage_and_reduction() -> None:
    full = estimate_decode_bytes(8000, 8000, "RGBA", reduced=False)
    reduced = estimate_decode_bytes(8000, 8000, "RGBA", reduced=True)
    assert reduced == 8000 * 8000 * 4 + 8000 * 8000  # the 256 MB of RGBA pixels plus a margin
    assert full > 3 * reduced // 2 and estimate_decode_bytes(100, 100, "L", reduced=True) < 100 * 100 * 3


def test_budget_bounds_bytes_in_flight_and_runs_an_oversize_request_alone() -> None:
    budget = DecodeBudget(100)
    in_flight: list[int] = []
    lock = threading.Lock()
    current = [0]

    def work(n: int) -> None:
        with budget.reserve(n):
            with lock:
                current[0] += min(n, 100)
                in_flight.append(current[0])
            time.sleep(0.002)
            with lock:
                current[0] -= min(n, 100)

    sizes = [30, 60, 45, 10, 250, 70, 5, 99, 100, 1] * 6
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, sizes))
    assert max(in_flight) <= 100 and budget.peak <= 100 and budget.in_use == 0


def test_concurrent_decodes_share_the_process_budget(tmp_path: Path, monkeypatch) -> None:
    """Four large decodes at once with room for one: never more than one reservation held."""
    from activekd_core.pixel_cache import decode_pool_with_report

    for k in range(4):
        _big_rgba_png(tmp_path / f"big{k}.png", side=1600)
    one = estimate_decode_bytes(1600, 1600, "RGBA", reduced=True)
    budget = DecodeBudget(one + one // 2)
    monkeypatch.setattr(decode_budget, "DECODE_BUDGET", budget)
    pool = images.scan_images(tmp_path)
    result = decode_pool_with_report(pool, 32, workers=4)
    assert not result.failures and budget.peak == one and budget.in_use == 0
    assert np.asarray(result.pixels)[:, -1, -1].tolist() == [[200, 0, 0]] * 4
