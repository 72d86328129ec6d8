"""Generate a pool of small labelled images for the scale benchmarks (issue 5, "the app at scale").

Writes ``N`` PNG images (default 32x32 px) in class sub-folders ``<out>/<class>/<nnnnnn>.png``,
10 classes of coloured shapes on noisy backgrounds (circle, square, triangle, cross, ring,
horizontal stripes, vertical stripes, diagonal stripes, dots, plain noise). Each image is
drawn from its own seeded random generator, so the pool is deterministic: the same
``--n``, ``--size`` and ``--seed`` give byte-identical files.

Idempotent: a ``pool.json`` manifest records the parameters; files already present are
kept (a rerun after an interruption only writes what is missing), and a rerun with
other parameters into the same folder is refused. Image ``i`` goes to class ``i % 10``.

Usage::

    python bench/make_pool.py                       # 2,000 images under ~/.activekd/bench/pool_2000
    python bench/make_pool.py --n 100000            # the issue's 100k pool (~1-2 min on 2 cores)
    python bench/make_pool.py --n 500 --out /tmp/p  # anywhere

The images are synthetic (no download); their only purpose is to exercise the app and
the core with many files. Ground truth is the folder name.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "cross", "ring", "hstripes", "vstripes", "diagonal", "dots", "noise")
MANIFEST = "pool.json"
FORMAT = 1


def default_out(n: int) -> Path:
    """Default output folder for a pool of ``n`` images."""
    home = Path(os.environ.get("ACTIVEKD_HOME") or "~/.activekd").expanduser()
    return home / "bench" / f"pool_{n}"


def image_relpath(i: int) -> str:
    """Relative path (the image id in a project) of image ``i``."""
    return f"{CLASSES[i % len(CLASSES)]}/{i:06d}.png"


def draw_image(i: int, size: int = 32, seed: int = 0) -> Image.Image:
    """Draw image ``i`` (class ``i % 10``) deterministically.

    Args:
        i: Image index.
        size: Side in pixels.
        seed: Pool seed (mixed with ``i``).

    Returns:
        An RGB image ``size`` x ``size``.
    """
    rng = np.random.default_rng([seed, i])
    cls = i % len(CLASSES)
    name = CLASSES[cls]
    # class-typical hue with spread, so colour alone is a weak (not perfect) cue
    hue = (cls / len(CLASSES) + rng.normal(0, 0.08)) % 1.0
    fg = tuple(int(255 * v) for v in _hsv_to_rgb(hue, 0.6 + 0.4 * rng.random(), 0.6 + 0.4 * rng.random()))
    bg_level = rng.integers(20, 110)
    noise = rng.normal(bg_level, 18 + 10 * rng.random(), size=(size, size, 3)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(noise, "RGB")
    d = ImageDraw.Draw(img)
    s = size
    r = s * (0.22 + 0.15 * rng.random())
    cx, cy = s / 2 + rng.normal(0, s * 0.08), s / 2 + rng.normal(0, s * 0.08)
    w = max(1, round(s * (0.06 + 0.05 * rng.random())))
    if name == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif name == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif name == "triangle":
        a = rng.random() * 2 * math.pi
        d.polygon([(cx + r * math.cos(a + k * 2 * math.pi / 3), cy + r * math.sin(a + k * 2 * math.pi / 3))
                   for k in range(3)], fill=fg)
    elif name == "cross":
        d.line([cx - r, cy, cx + r, cy], fill=fg, width=2 * w)
        d.line([cx, cy - r, cx, cy + r], fill=fg, width=2 * w)
    elif name == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=w + 1)
    elif name in ("hstripes", "vstripes", "diagonal"):
        period = max(3, round(s * (0.15 + 0.1 * rng.random())))
        off = int(rng.integers(period))
        for t in range(-s, 2 * s, period):
            t += off
            if name == "hstripes":
                d.line([0, t, s, t], fill=fg, width=w)
            elif name == "vstripes":
                d.line([t, 0, t, s], fill=fg, width=w)
            else:
                d.line([t, 0, t - s, s], fill=fg, width=w)
    elif name == "dots":
        for _ in range(int(rng.integers(5, 12))):
            x, y = rng.random(2) * s
            rr = max(1.0, s * 0.05)
            d.ellipse([x - rr, y - rr, x + rr, y + rr], fill=fg)
    else:  # "noise": coloured blotches only
        arr = np.asarray(img).astype(np.int16)
        tint = rng.normal(0, 40, size=(4, 4, 3))
        tint = np.kron(tint, np.ones((math.ceil(s / 4), math.ceil(s / 4), 1)))[:s, :s]
        img = Image.fromarray((arr + tint + np.array(fg) * 0.3).clip(0, 255).astype(np.uint8), "RGB")
    return img


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    import colorsys

    return colorsys.hsv_to_rgb(h, s, v)


def _write_range(args: tuple[str, int, int, int, int]) -> int:
    out, start, stop, size, seed = args
    root = Path(out)
    written = 0
    for i in range(start, stop):
        path = root / image_relpath(i)
        if path.is_file() and path.stat().st_size > 0:
            continue
        tmp = path.with_name(path.name + ".tmp")
        draw_image(i, size, seed).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)  # never a half-written PNG under the final name
        written += 1
    return written


def make_pool(out: Path | str, n: int = 2000, *, size: int = 32, seed: int = 0, workers: int | None = None,
              progress: bool = False) -> dict:
    """Write the pool (idempotent) and return its manifest.

    Args:
        out: Output folder (created).
        n: Number of images.
        size: Image side in pixels.
        seed: Pool seed.
        workers: Processes (default: CPU count).
        progress: Print progress lines to stderr.

    Returns:
        The manifest dict (also written to ``<out>/pool.json``) with ``written`` and
        ``seconds`` of this call added.

    Raises:
        ValueError: If ``n``/``size`` are invalid or the folder holds a pool made with
            other parameters.
    """
    if n < 1 or size < 8:
        raise ValueError(f"need n >= 1 and size >= 8, got n={n}, size={size}")
    out = Path(out).expanduser()
    manifest = {"format": FORMAT, "n": int(n), "size": int(size), "seed": int(seed), "classes": list(CLASSES)}
    mpath = out / MANIFEST
    if mpath.is_file():
        old = json.loads(mpath.read_text())
        if {k: old.get(k) for k in manifest} != manifest:
            raise ValueError(f"{mpath}: this folder holds a pool made with {old}, not {manifest}; "
                             "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    for c in CLASSES:
        (out / c).mkdir(exist_ok=True)
    t0 = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    chunk = max(200, math.ceil(n / (workers * 8)))
    tasks = [(str(out), s, min(n, s + chunk), size, seed) for s in range(0, n, chunk)]
    written = 0
    if workers == 1 or len(tasks) == 1:
        for t in tasks:
            written += _write_range(t)
    else:
        with ProcessPoolExecutor(workers) as ex:
            for k, w in enumerate(ex.map(_write_range, tasks), 1):
                written += w
                if progress:
                    print(f"  {min(n, k * chunk)}/{n} images", file=sys.stderr, end="\r")
    if progress:
        print(file=sys.stderr)
    tmp = mpath.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, mpath)  # written last: its presence means the pool is complete
    return dict(manifest, written=written, seconds=time.perf_counter() - t0, root=str(out))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of images (default 2000; the issue uses 100000)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default ~/.activekd/bench/pool_<n>)")
    ap.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = ap.parse_args(argv)
    out = args.out or default_out(args.n)
    info = make_pool(out, args.n, size=args.size, seed=args.seed, workers=args.workers, progress=True)
    print(f"{info['root']}: {info['n']} images ({info['written']} written now) in {info['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
