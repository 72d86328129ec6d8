"""Peak memory of decoding a huge, highly compressed PNG (issue 9 item 14).

An 8000x8000 RGBA PNG of mostly one colour is ~250 KB on disk and 256 MB of pixels once
decoded. Before the fix, a decode for a 224 px training input kept full-size copies for
every mode conversion (RGBA -> composite on white -> RGB): ~1 GB per decode, and the
pixel cache ran 4 such decodes at once. Now the image is box-reduced right after
decoding (before any conversion) and every decode reserves its estimated peak from a
process-wide byte budget.

Each case runs in a fresh process; the figure is the process's peak resident size
(``ru_maxrss``) above its size after imports. The reference is the same code with the
reduction and the budget switched off (the old behaviour), measured in the same run.

    python bench/decode_memory.py              # 4000x4000 (quick)
    python bench/decode_memory.py --side 8000  # the issue's case
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from activekd_core import decode_budget, image_decode
from activekd_core.images import DecodeBudget, ImagePool
from activekd_core.pixel_cache import decode_pool_with_report
folder, mode, workers = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if mode == "reference":
    image_decode._reduce = lambda img, target: img
    decode_budget.DECODE_BUDGET = DecodeBudget(1 << 62)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pool = ImagePool(root=folder, ids=sorted(p.name for p in folder.glob("*.png"))[:workers])
result = decode_pool_with_report(pool, 224, workers=workers)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mb": (peak - base) / 1024, "failures": len(result.failures),
                  "budget_mb": decode_budget.DECODE_BUDGET.capacity / 2**20}))
"""


def make_images(folder: Path, side: int, copies: int) -> int:
    """Write ``copies`` copies of a ``side`` x ``side`` RGBA PNG (red, half transparent); returns its size."""
    import numpy as np
    from PIL import Image

    arr = np.zeros((side, side, 4), np.uint8)
    arr[..., 0] = 200
    arr[side // 2 :, :, 3] = 255
    Image.fromarray(arr, "RGBA").save(folder / "big0.png", compress_level=9)
    del arr
    data = (folder / "big0.png").read_bytes()
    for k in range(1, copies):
        (folder / f"big{k}.png").write_bytes(data)
    return len(data)


def run(folder: Path, mode: str, workers: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(folder), mode, str(workers)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=4000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        size = make_images(folder, args.side, 4)
        print(f"{args.side}x{args.side} RGBA PNG, {size / 1024:.0f} KB on disk, "
              f"{args.side * args.side * 4 / 2**20:.0f} MB of pixels; decoded to 224 px")
        print(f"{'case':<28}{'reference MB':>14}{'ours MB':>10}{'ratio':>8}")
        for workers in (1, 4):
            ref = run(folder, "reference", workers)
            ours = run(folder, "ours", workers)
            assert ref["failures"] == ours["failures"] == 0
            print(f"{f'{workers} decode(s) at once':<28}{ref['peak_mb']:>14.0f}{ours['peak_mb']:>10.0f}"
                  f"{ref['peak_mb'] / max(ours['peak_mb'], 1):>7.1f}x")
        print(f"(decode budget {ours['budget_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
