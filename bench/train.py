"""Training throughput benchmark: ``train_round`` against a bare training loop, same run.

On CUDA (default sizes): resnet18 at 224 px, batch 128 labeled + 128 unlabeled, bf16
autocast, channels_last, uint8 pool in pinned host memory fed by DataLoader workers,
normalisation/augmentation on the GPU. Sized to finish in well under 5 minutes on an
H100-class card. On CPU it runs a tiny configuration (small_cnn, 32 px) so CI can
smoke-test the script.

Reported: images/s of ``train_round`` (the real pipeline, data loading included), images/s
of a bare loop on GPU-resident tensors with the same model, optimiser and loss (the
reference), their ratio, peak GPU memory, and GPU utilisation sampled with
``nvidia-smi`` while ``train_round`` runs.

Usage::

    python bench/train.py                 # sizes chosen by the device
    python bench/train.py --device cpu    # tiny smoke run
    python bench/train.py --steps 400 --workers 12
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activekd_core.devices import device_name, pick_device  # noqa: E402
from activekd_core.losses import dho_loss  # noqa: E402
from activekd_core.student import build_student  # noqa: E402
from activekd_core.training import TrainConfig, train_round  # noqa: E402


class GpuSampler:
    """Samples GPU utilisation (%) and memory (MiB) with nvidia-smi in a thread."""

    def __init__(self, index: int, period: float = 0.5) -> None:
        self.index = index
        self.period = period
        self.util: list[float] = []
        self.mem: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = shutil.which("nvidia-smi") is not None

    def _run(self) -> None:
        cmd = [
            "nvidia-smi",
            f"--id={self.index}",
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
        ]
        while not self._stop.is_set():
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip()
                util, mem = (float(v) for v in out.split(",")[:2])
                self.util.append(util)
                self.mem.append(mem)
            except Exception:  # nvidia-smi hiccup: skip the sample
                pass
            self._stop.wait(self.period)

    def __enter__(self) -> "GpuSampler":
        if self.available:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> str:
        if not self.util:
            return "n/a (nvidia-smi not available)"
        # Drop the first samples (model build, worker start-up).
        u = np.array(self.util[2:] or self.util)
        return f"mean {u.mean():.0f}%, median {np.median(u):.0f}%, max {u.max():.0f}% over {len(u)} samples; nvidia-smi memory max {max(self.mem):,.0f} MiB"


def bare_loop(arch: str, size: int, bl: int, bu: int, steps: int, classes: int, device: torch.device) -> float:
    """Images/s of the same model/optimiser/loss on tensors already on the device (no data pipeline)."""
    torch.manual_seed(0)
    model, _ = build_student(arch, classes, use_local_cache=False)
    on_cuda = device.type == "cuda"
    model.to(device)
    if on_cuda:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(bl + bu, 3, size, size, device=device)
    if on_cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (bl,), device=device)
    t = torch.softmax(torch.randn(bl + bu, classes, device=device), -1)
    warm = max(2, steps // 10)
    for i in range(steps + warm):
        if i == warm:
            if on_cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=on_cuda):
            ce, kd = model(x)
        loss, _ = dho_loss(ce[:bl], kd[:bl], kd[bl:], y, t[:bl], t[bl:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if on_cuda:
        torch.cuda.synchronize(device)
    return (bl + bu) * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arch", default=None, help="default resnet18 on CUDA, small_cnn on CPU")
    parser.add_argument("--size", type=int, default=None, help="default 224 on CUDA, 32 on CPU")
    parser.add_argument("--batch-labeled", type=int, default=None, help="default 128 on CUDA, 16 on CPU")
    parser.add_argument("--batch-unlabeled", type=int, default=None, help="default 128 on CUDA, 16 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="default 400 on CUDA, 20 on CPU")
    parser.add_argument("--pool", type=int, default=None, help="images in the synthetic pool (default 8192 / 256)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default 8 on CUDA, 0 on CPU)")
    parser.add_argument("--classes", type=int, default=100)
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    cuda = device.type == "cuda"
    arch = args.arch or ("resnet18" if cuda else "small_cnn")
    size = args.size or (224 if cuda else 32)
    bl = args.batch_labeled or (128 if cuda else 16)
    bu = args.batch_unlabeled or (128 if cuda else 16)
    steps = args.steps or (400 if cuda else 20)
    pool = args.pool or (8192 if cuda else 256)
    workers = args.workers if args.workers is not None else (8 if cuda else 0)
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    print(f"config: {arch} at {size}px, batch {bl}+{bu}, {steps} steps, pool {pool:,} uint8 images, {workers} workers")

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    pixels = rng.integers(0, 256, (pool, size, size, 3), dtype=np.uint8)
    teacher = rng.dirichlet(np.ones(args.classes), size=pool).astype(np.float32)
    labeled = rng.choice(pool, size=min(pool // 2, 10 * args.classes), replace=False)
    y = rng.integers(0, args.classes, len(labeled))
    print(f"synthetic pool: {pixels.nbytes / 2**20:,.0f} MiB in {time.perf_counter() - t0:.1f}s")

    config = TrainConfig(
        arch=arch,
        image_size=size,
        steps=steps,
        batch_labeled=bl,
        batch_unlabeled=bu,
        device=str(device),
        num_workers=workers,
        use_local_cache=False,
        pretrained=False,  # throughput only: the weights do not change the speed
        log_every=max(1, steps // 5),
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with GpuSampler(device.index or 0) if cuda else _Null() as sampler:
        result = train_round(pixels, labeled, y, teacher, config, progress=lambda d, t, m: print("  " + m, flush=True))
    pipe = result.metrics["images_per_second_steady"] or result.metrics["images_per_second"]
    print(
        f"train_round: {pipe:,.0f} images/s steady (after the first 10% of steps); "
        f"{result.metrics['images_per_second']:,.0f} images/s over all {steps} steps ({result.metrics['seconds']:.1f}s)"
    )
    if cuda:
        print(f"peak GPU memory (torch allocated): {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
        print(f"GPU utilisation during train_round: {sampler.summary()}")
    ref = bare_loop(arch, size, bl, bu, max(10, steps // 2), args.classes, device)
    print(f"bare loop (reference, tensors on device, no data pipeline): {ref:,.0f} images/s")
    print(f"ratio train_round / bare loop: {pipe / ref:.2f}")
    if cuda:
        print(f"target >= 2,500 images/s on an H100-class card: {'met' if pipe >= 2500 else 'NOT met'}")
    return 0


class _Null:
    def __enter__(self) -> "_Null":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
