"""Zoomed views never exceed the viewport; the image-bytes cache is bounded in bytes."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from activekd_core.image_view import VIEWPORT, BytesCache, fit_image, png_bytes, render_zoom, zoom_window


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A 4000x3000 image with a known pixel pattern (a gradient plus a marker square)."""
    x = np.linspace(0, 255, 4000, dtype=np.float32)
    y = np.linspace(0, 255, 3000, dtype=np.float32)
    arr = np.stack([np.broadcast_to(x, (3000, 4000)), np.broadcast_to(y[:, None], (3000, 4000)),
                    np.full((3000, 4000), 128, np.float32)], axis=-1).astype(np.uint8)
    arr[1990:2010, 2990:3010] = (255, 0, 0)  # a red 20x20 square centred at (3000, 2000)
    return Image.fromarray(arr)


@pytest.mark.parametrize("zoom", [0.5, 1.0, 2.0, 8.0])
def test_zoom_of_a_4000x3000_image_is_never_larger_than_the_viewport(photo: Image.Image, zoom: float) -> None:
    window = zoom_window(*photo.size, zoom)
    view = render_zoom(photo, window)
    assert view.size == window.size
    assert view.size[0] <= VIEWPORT[0] and view.size[1] <= VIEWPORT[1]
    decoded = Image.open(io.BytesIO(png_bytes(view)))
    assert decoded.size == view.size
    if zoom == 8.0:  # the old code built a 32000x24000 image here
        left, top, right, bottom = window.box
        assert (right - left, bottom - top) == (VIEWPORT[0] // 8, VIEWPORT[1] // 8)
        assert view.size == (VIEWPORT[0] // 8 * 8, VIEWPORT[1] // 8 * 8)  # whole source pixels, 8x8 each


def test_zoom_shows_the_window_it_says_at_the_right_scale(photo: Image.Image) -> None:
    window = zoom_window(*photo.size, 8.0, center=(3000 / 4000, 2000 / 3000))
    left, top, _, _ = window.box
    view = np.asarray(render_zoom(photo, window))
    red = np.argwhere((view[..., 0] == 255) & (view[..., 1] == 0))
    (ry0, rx0), (ry1, rx1) = red.min(axis=0), red.max(axis=0)
    assert (rx1 - rx0 + 1, ry1 - ry0 + 1) == (160, 160)  # 20 source pixels x 8
    assert (rx0, ry0) == ((2990 - left) * 8, (1990 - top) * 8)


def test_window_stays_inside_the_image_and_small_images_are_whole() -> None:
    w = zoom_window(4000, 3000, 8.0, center=(1.0, 1.0))
    assert w.box[2] == 4000 and w.box[3] == 3000 and not w.whole
    w = zoom_window(4000, 3000, 8.0, center=(0.0, 0.0))
    assert w.box[:2] == (0, 0)
    digits = zoom_window(8, 8, 8.0)
    assert digits.whole and digits.box == (0, 0, 8, 8) and digits.size == (64, 64)
    tiny_view = zoom_window(4000, 3000, 1.0, viewport=(100, 50))
    assert tiny_view.size == (100, 50)
    with pytest.raises(ValueError):
        zoom_window(0, 10, 2.0)


def test_fit_image_bounds_thumbnails() -> None:
    assert fit_image(Image.new("RGB", (4000, 3000)), 320).size == (320, 240)
    assert fit_image(Image.new("RGB", (8, 8)), 320).size == (320, 320)
    assert fit_image(Image.new("RGB", (200, 100)), 320).size == (200, 100)


def test_bytes_cache_is_bounded_in_bytes_and_evicts_least_recent() -> None:
    cache = BytesCache(1000)
    made = []

    def make(n: int, tag: str):
        def inner() -> bytes:
            made.append(tag)
            return bytes(n)
        return inner

    cache.get_or_make("a", make(400, "a"))
    cache.get_or_make("b", make(400, "b"))
    assert cache.nbytes == 800 and len(cache) == 2
    cache.get_or_make("a", make(400, "a"))  # a hit: "a" becomes the most recent
    assert made == ["a", "b"]
    cache.get_or_make("c", make(400, "c"))  # over 1000 bytes: the least recent ("b") goes
    assert "a" in cache and "c" in cache and "b" not in cache
    assert cache.nbytes == 800
    big = cache.get_or_make("big", make(5000, "big"))  # larger than the bound: returned, not kept
    assert len(big) == 5000 and "big" not in cache and cache.nbytes <= 1000
    # many small values: the count is unbounded, the bytes are not
    for i in range(100):
        cache.get_or_make(i, make(10, str(i)))
    assert cache.nbytes <= 1000 and len(cache) == 100


def test_bytes_cache_from_threads_stays_bounded() -> None:
    cache = BytesCache(10_000)

    def work(t: int) -> None:
        for i in range(200):
            cache.get_or_make((t, i % 50), lambda: bytes(300))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert cache.nbytes <= 10_000 and len(cache) == cache.nbytes // 300


def test_the_label_pages_zoom_of_a_large_photo_stays_within_the_viewport(tmp_path, photo: Image.Image) -> None:
    """What the focus view sends to the browser at 8x: a viewport-sized window, cached by bytes."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from pages._session import image_bytes_cache, zoom_png

    photo.save(tmp_path / "big.png")
    from activekd_core.display_recipe import DisplayRecipe
    from activekd_core.images import load_image

    project = SimpleNamespace(image_root=tmp_path, recipe=DisplayRecipe(), is_plain_image=lambda i: True,
                              load_image=lambda i: load_image(tmp_path, i))  # what zoom_png uses of a Project
    before = image_bytes_cache().nbytes
    data, window, size = zoom_png(project, "big.png", 8.0, (0.5, 0.5))
    view = Image.open(io.BytesIO(data))
    assert size == (4000, 3000)
    assert view.size == window.size and view.size[0] <= VIEWPORT[0] and view.size[1] <= VIEWPORT[1]
    assert image_bytes_cache().nbytes == before + len(data) <= image_bytes_cache().max_bytes
