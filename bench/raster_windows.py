"""Reading one chip of a large tiled GeoTIFF-like scene: our window read vs decoding the whole image.

Writes a tiled (512 x 512), Deflate-compressed, 4-band uint16 scene (a smooth pattern
plus noise, so it compresses like real imagery) once, then times, in this process:

* reference: ``tifffile.imread`` of the whole first page, then slicing the chip;
* ours: :func:`activekd_core.raster_images.read_window` (only the tiles under the chip),
  and :func:`read_raster_rgb` for the same chip (read + stretch to 8-bit RGB).

Peak Python/NumPy memory of each is measured with ``tracemalloc`` (NumPy reports its
buffers to it). Prints the ratios; nothing is asserted.

Usage::

    python bench/raster_windows.py            # 4096 x 4096 (seconds)
    python bench/raster_windows.py --full     # 10980 x 10980, a Sentinel-2 10 m tile (minutes)
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np
import tifffile

from activekd_core.display_recipe import DisplayRecipe
from activekd_core.raster_images import read_raster_rgb, read_window


def make_scene(path: Path, side: int, bands: int = 4) -> None:
    """Write the scene row block by row block (never the whole array in memory)."""
    rng = np.random.default_rng(0)
    block = 512

    def tiles():  # yields tiles in the order tifffile expects (row-major)
        for y in range(0, side, block):
            for x in range(0, side, block):
                yy, xx = np.mgrid[y : y + block, x : x + block]
                base = (2000 + 1500 * np.sin(xx / 300.0) * np.cos(yy / 410.0)).astype(np.float32)
                tile = np.stack([base + 300 * b for b in range(bands)], axis=-1)
                tile += rng.normal(0, 40, tile.shape).astype(np.float32)
                yield np.clip(tile, 0, 65535).astype(np.uint16)

    tifffile.imwrite(
        path, tiles(), shape=(side, side, bands), dtype=np.uint16, tile=(block, block),
        photometric="minisblack", planarconfig="contig", compression="zlib", bigtiff=True,
    )


def measure(fn):  # type: ignore[no-untyped-def]
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="10980 x 10980 (a Sentinel-2 10 m tile)")
    parser.add_argument("--work", default="/tmp/akd_raster_bench")
    args = parser.parse_args()
    side = 10980 if args.full else 4096
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"scene_{side}.tif"
    if not path.exists():
        t0 = time.perf_counter()
        make_scene(path, side)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
    window = (side // 2 - 300, side // 3, 512, 512)  # straddles 2 x 2 tiles
    x, y, w, h = window
    limit = side * side + 1

    ref, ref_s, ref_mb = measure(lambda: tifffile.imread(path)[y : y + h, x : x + w, :3].copy())
    ours, ours_s, ours_mb = measure(lambda: read_window(path, window, bands=[1, 2, 3], max_pixels=limit))
    assert np.array_equal(ref, ours), "window read differs from the whole-image read"
    _, rgb_s, rgb_mb = measure(lambda: read_raster_rgb(path, DisplayRecipe(), window=window))

    print(f"scene {side} x {side} x 4 uint16, tiles 512, deflate; chip {w} x {h} at ({x}, {y})")
    print(f"{'method':42s} {'seconds':>8s} {'peak MB':>8s}")
    print(f"{'reference: imread whole page, then slice':42s} {ref_s:8.3f} {ref_mb:8.1f}")
    print(f"{'read_window (tiles under the chip)':42s} {ours_s:8.3f} {ours_mb:8.1f}")
    print(f"{'read_raster_rgb (window + stretch)':42s} {rgb_s:8.3f} {rgb_mb:8.1f}")
    print(f"speed-up {ref_s / ours_s:.0f}x, memory {ref_mb / max(ours_mb, 1e-6):.0f}x less")


if __name__ == "__main__":
    main()
