"""Benchmark the k-center kernel behind PCoreSet (issue 5, "Selection kernel").

Part A -- against the published algorithm: PCoreSet picks on random Dirichlet probability
vectors, reference = recompute the distances from every remaining point to *all* centers
at every step (cost grows with k^2), ours = ``kcenter_greedy`` (running minimum). Same
input; the picks must be identical. Prints both times and the ratio.
Full size (``--full``): N=20,000, C=100, 100 labeled, k=400.

Part B -- the large case: ``plain`` (float32 running minimum, one matrix-vector product
over the whole matrix per pick), ``exact`` (the kernel's exact method: the same over
fixed row blocks) and ``lazy`` (the kernel's default CPU method), plus ``cuda`` when a GPU
is present. Each runs in its own process on the same saved input so that peak memory
(``ru_maxrss`` above the resident size after loading the input) is per method. Picks must
be identical to ``exact``. Full size (``--full``): N=100,000, C=1,000, 1,000 labeled,
k=1,000 (about 1 GB of disk in a temp folder, ~1.5 min on a 2-core CPU).

Part C (``--imagenet``) -- the largest case of the paper, issue 14: N=1,281,167, C=1,000,
1,000 labeled, k=1,000, Dirichlet(1) float32 probabilities in a memory-mapped ``.npy``
(5.1 GB, written once under ``bench/out/`` and reused; ``--cleanup`` deletes it). Each
method runs in its own process on the memory map; peak memory above the input is the peak
of the process's *anonymous* resident memory (``RssAnon``, sampled every 5 ms) above its
value after opening the map: the input's pages are file-backed and are not counted.
Methods: ``lazy`` (the kernel's default: lazy seeding + lazy picks), ``v1`` (the previous
kernel, commit 96be19b, loaded from git history: every block seeded up front by a
multi-threaded GEMM, then lazy picks), ``v1-1thread`` (the same with one BLAS thread, which
is how the current kernel seeds: its picks must equal ``lazy``'s bit for bit).

Default sizes are small so that CI can smoke-test the script in seconds. Usage::

    python bench/selection.py            # small, both parts
    python bench/selection.py --full     # the sizes of issue 5
    python bench/selection.py --full --part b --alpha 0.1
    python bench/selection.py --imagenet   # issue 14: v1 (previous kernel), v1-1thread, lazy; 5.1 GB under bench/out/
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activekd_core.selection import kcenter_greedy  # noqa: E402


def dirichlet_pool(n: int, c: int, n_labeled: int, alpha: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 Dirichlet(alpha) probability rows and random labeled rows."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, c), dtype=np.float32)
    for s in range(0, n, 10_000):
        x[s : s + 10_000] = rng.dirichlet(np.full(c, alpha), size=min(10_000, n - s))
    return x, np.sort(rng.choice(n, n_labeled, replace=False))


IMAGENET = (1_281_167, 1_000, 1_000, 1_000)  # N, C, labeled, k
OUT = Path(__file__).resolve().parent / "out"


def imagenet_input(n: int, c: int, n_labeled: int, seed: int) -> tuple[Path, Path]:
    """Write (once) Dirichlet(1) float32 rows as a ``.npy`` memory map plus the labeled rows.

    Dirichlet(1) is a normalised vector of standard exponentials; drawn in float32 chunks so
    that 5 GB is written in about a minute without a float64 copy.
    """
    OUT.mkdir(parents=True, exist_ok=True)
    data, labeled = OUT / f"imagenet_{n}x{c}_s{seed}.npy", OUT / f"imagenet_{n}x{c}_s{seed}_labeled.npy"
    if data.exists() and labeled.exists():
        return data, labeled
    rng = np.random.default_rng(seed)
    tmp = data.with_suffix(".part")
    x = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, c))
    step = 50_000
    for s in range(0, n, step):
        e = min(n, s + step)
        chunk = rng.standard_exponential(size=(e - s, c), dtype=np.float32)
        chunk /= chunk.sum(axis=1, keepdims=True)
        x[s:e] = chunk
    x.flush()
    del x
    os.replace(tmp, data)
    np.save(labeled, np.sort(rng.choice(n, n_labeled, replace=False)))
    return data, labeled


class _AnonPeak:
    """Peak anonymous resident memory (``RssAnon``) of this process, sampled in a thread."""

    def __init__(self, interval: float = 0.005) -> None:
        import threading

        self.base = _status_kb("RssAnon")
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
        self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, _status_kb("RssAnon"))

    def stop(self) -> float:
        """Stop sampling; the peak above the starting value, in MB."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kb("RssAnon"))
        return (self.peak - self.base) / 1024


def _seed_min(x: np.ndarray, xx: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    md = np.full(x.shape[0], np.inf, dtype=np.float32)
    lab = x[labeled]
    for s in range(0, x.shape[0], 4096):
        d2 = (xx[s : s + 4096, None] + xx[labeled][None, :]) - np.float32(2) * (x[s : s + 4096] @ lab.T)
        md[s : s + 4096] = d2.min(axis=1)
    md[labeled] = -np.inf
    return md


def published_reference(x: np.ndarray, labeled: np.ndarray, k: int) -> np.ndarray:
    """The published algorithm: each step, distances from every remaining point to all centers."""
    xx = np.einsum("ij,ij->i", x, x)
    centers = list(labeled.tolist())
    remaining = np.ones(x.shape[0], dtype=bool)
    remaining[labeled] = False
    picks = []
    for _ in range(k):
        rows = np.flatnonzero(remaining)
        cen = np.asarray(centers)
        best = np.empty(rows.size, dtype=np.float32)
        for s in range(0, rows.size, 2048):
            r = rows[s : s + 2048]
            d2 = (xx[r, None] + xx[cen][None, :]) - np.float32(2) * (x[r] @ x[cen].T)
            best[s : s + 2048] = d2.min(axis=1)
        i = int(rows[int(np.argmax(best))])
        picks.append(i)
        centers.append(i)
        remaining[i] = False
    return np.asarray(picks, dtype=np.int64)


def plain_running_min(x: np.ndarray, labeled: np.ndarray, k: int) -> np.ndarray:
    """Float32 running minimum, one matrix-vector product over the whole matrix per pick."""
    xx = np.einsum("ij,ij->i", x, x)
    md = _seed_min(x, xx, labeled)
    picks = np.empty(k, dtype=np.int64)
    for j in range(k):
        i = int(np.argmax(md))
        picks[j] = i
        md[i] = -np.inf
        np.minimum(md, (xx + xx[i]) - np.float32(2) * (x @ x[i]), out=md)
    return picks


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    """Reset the peak resident size (VmHWM) to the current one (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


V1_COMMIT = "96be19b"  # the kernel before lazy seeding (issue 14)


def _v1_kernel():
    """The previous k-center kernel, loaded from git history into a private module."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "-C", str(root), "show", f"{V1_COMMIT}:activekd_core/selection/kcenter.py"],
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "kcenter_v1.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("kcenter_v1", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(method: str, data: str, labeled: str, k: int, mmap: bool = False) -> None:
    """Run one method in this process and print a JSON line (time, peak memory above the input)."""
    x = np.load(data, mmap_mode="r" if mmap else None)
    lab = np.load(labeled)
    base = _status_kb("VmRSS")
    _reset_peak()
    anon = _AnonPeak() if mmap else None
    t, cpu = time.perf_counter(), time.process_time()
    if method.startswith("v1"):
        picks = _v1_kernel().kcenter_greedy(x, lab, k, device="cpu")
    elif method == "plain":
        picks = plain_running_min(x, lab, k)
    elif method == "lazy-gemm":  # the seeding before the k-d tree (GEMM against every labeled row)
        from activekd_core.selection import kcenter as kc

        kc._TREE_MIN_LABELED = 2**62
        picks = kcenter_greedy(x, lab, k, device="cpu", method="lazy")
    elif method == "cuda":
        import torch

        picks = kcenter_greedy(x, lab, k, device="cuda")
        torch.cuda.synchronize()
    else:
        picks = kcenter_greedy(x, lab, k, device="cpu", method=method)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = _status_kb("VmHWM")
    extra = anon.stop() if anon is not None else max(0, peak - base) / 1024
    print(json.dumps({"method": method, "seconds": seconds, "cpu_seconds": cpu, "extra_peak_mb": extra,
                      "input_mb": x.nbytes / 2**20, "picks": picks.tolist()}))


def part_a(n: int, c: int, n_labeled: int, k: int, alpha: float, seed: int) -> None:
    x, lab = dirichlet_pool(n, c, n_labeled, alpha, seed)
    print(f"\nA. published algorithm vs running minimum: N={n:,} C={c} labeled={n_labeled} k={k} Dirichlet({alpha})")
    t = time.perf_counter()
    ref = published_reference(x, lab, k)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    ours = kcenter_greedy(x, lab, k, device="cpu")
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    exact = kcenter_greedy(x, lab, k, device="cpu", method="exact")
    t_exact = time.perf_counter() - t
    same = bool(np.array_equal(ref, ours))
    print(f"  reference (recompute all centers each step): {t_ref:8.2f} s")
    print(f"  ours, exact running minimum:                 {t_exact:8.2f} s   ratio {t_ref / t_exact:6.1f}x")
    print(f"  ours, default (lazy running minimum):        {t_ours:8.2f} s   ratio {t_ref / t_ours:6.1f}x")
    print(f"  identical picks: reference vs default {same}, exact vs default {bool(np.array_equal(exact, ours))}")
    if not same:
        first = int(np.flatnonzero(ref != ours)[0])
        print(f"  first difference at pick {first}: reference {ref[first]}, ours {ours[first]}")


def part_b(n: int, c: int, n_labeled: int, k: int, alpha: float, seed: int, methods: list[str]) -> None:
    print(f"\nB. large case: N={n:,} C={c:,} labeled={n_labeled:,} k={k:,} Dirichlet({alpha}), one process per method")
    x, lab = dirichlet_pool(n, c, n_labeled, alpha, seed)
    with tempfile.TemporaryDirectory() as tmp:
        data, labeled = Path(tmp) / "x.npy", Path(tmp) / "labeled.npy"
        np.save(data, x)
        np.save(labeled, lab)
        del x
        results = {}
        for method in methods:
            out = subprocess.run([sys.executable, __file__, "--child", method, str(data), str(labeled), str(k)],
                                 check=True, capture_output=True, text=True)
            results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    ref_name = "exact" if "exact" in results else methods[0]
    ref = results[ref_name]
    print(f"  input matrix: {ref['input_mb']:.0f} MB float32; CPU = user+sys time of the process "
          f"(wall time inflates when other work shares the cores)")
    for method, r in results.items():
        same = r["picks"] == ref["picks"]
        base = results.get("plain", ref)
        print(f"  {method:6s} {r['seconds']:8.2f} s (CPU {r['cpu_seconds']:6.2f} s)   peak memory above input {r['extra_peak_mb']:6.1f} MB"
              f"   vs {'plain' if 'plain' in results else ref_name} {base['seconds'] / r['seconds']:5.2f}x"
              f" (CPU {base['cpu_seconds'] / r['cpu_seconds']:5.2f}x)   identical picks to {ref_name}: {same}")


def part_c(seed: int, methods: list[str], cleanup: bool) -> None:
    n, c, n_labeled, k = IMAGENET
    print(f"\nC. ImageNet size: N={n:,} C={c:,} labeled={n_labeled:,} k={k:,} Dirichlet(1), float32 memory map")
    t = time.perf_counter()
    data, labeled = imagenet_input(n, c, n_labeled, seed)
    print(f"  input {data} ({data.stat().st_size / 1e9:.2f} GB) ready in {time.perf_counter() - t:.1f} s")
    results = {}
    try:
        for method in methods:
            env = dict(os.environ, OPENBLAS_NUM_THREADS="1") if method == "v1-1thread" else None
            out = subprocess.run([sys.executable, __file__, "--child", method, str(data), str(labeled), str(k), "--mmap"],
                                 check=True, capture_output=True, text=True, env=env)
            results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if cleanup:
            data.unlink(missing_ok=True)
            labeled.unlink(missing_ok=True)
    ref_name = methods[0]
    ref = results[ref_name]
    print(f"  load average {os.getloadavg()[0]:.1f}; peak = anonymous memory above the input's map; reference = {ref_name}")
    for method, r in results.items():
        same = {m: r["picks"] == o["picks"] for m, o in results.items() if m != method}
        print(f"  {method:10s} {r['seconds']:8.2f} s (CPU {r['cpu_seconds']:7.2f} s)   peak memory above input {r['extra_peak_mb']:7.1f} MB"
              f"   {ref_name}/this {ref['seconds'] / r['seconds']:5.2f}x (CPU {ref['cpu_seconds'] / r['cpu_seconds']:5.2f}x)"
              f"   identical picks: {same}")
        if method != ref_name and r["picks"] != ref["picks"]:
            diff = [i for i, (a, b) in enumerate(zip(r["picks"], ref["picks"])) if a != b]
            print(f"             differs from {ref_name} at picks {diff[:8]} (same set: {set(r['picks']) == set(ref['picks'])})")


def part_d(n: int, seed: int, methods: list[str]) -> None:
    """Half the pool labeled over ten classes, a batch of ten (a project late in its life)."""
    c, n_labeled, k = 10, n // 2, 10
    print(f"\nD. many labeled: N={n:,} C={c} labeled={n_labeled:,} k={k} Dirichlet(0.3), one process per method")
    x, lab = dirichlet_pool(n, c, n_labeled, 0.3, seed)
    with tempfile.TemporaryDirectory() as tmp:
        data, labeled = Path(tmp) / "x.npy", Path(tmp) / "labeled.npy"
        np.save(data, x)
        np.save(labeled, lab)
        results = {}
        for method in methods:
            out = subprocess.run([sys.executable, __file__, "--child", method, str(data), str(labeled), str(k)],
                                 check=True, capture_output=True, text=True)
            results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    ref_name = methods[0]
    ref = results[ref_name]
    print(f"  load average {os.getloadavg()[0]:.1f}; reference = {ref_name}")
    for method, r in results.items():
        print(f"  {method:10s} {r['seconds']:8.2f} s (CPU {r['cpu_seconds']:7.2f} s)   peak memory above input "
              f"{r['extra_peak_mb']:7.1f} MB   {ref_name}/this {ref['seconds'] / r['seconds']:6.2f}x "
              f"(CPU {ref['cpu_seconds'] / r['cpu_seconds']:6.2f}x)   identical picks to {ref_name}: {r['picks'] == ref['picks']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="issue 5 sizes (slow)")
    parser.add_argument("--part", choices=["a", "b", "all"], default="all")
    parser.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration (1 = uniform on the simplex)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="plain,exact,lazy",
                        help="part B methods, comma-separated (plain, exact, lazy; cuda is added when present)")
    parser.add_argument("--imagenet", action="store_true",
                        help="part C only: N=1,281,167 C=1,000 (5.1 GB memory map under bench/out/, kept for reruns)")
    parser.add_argument("--cleanup", action="store_true", help="with --imagenet: delete the input afterwards")
    parser.add_argument("--many-labeled", type=int, metavar="N", default=0,
                        help="part D only: N rows over 10 classes, half labeled, k=10: k-d tree seeding vs GEMM seeding")
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "DATA", "LABELED", "K"), help=argparse.SUPPRESS)
    parser.add_argument("--mmap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        method, data, labeled, k = args.child
        child(method, data, labeled, int(k), mmap=args.mmap)
        return
    if args.many_labeled:
        print(f"machine: {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f}), numpy {np.__version__}")
        methods = [m.strip() for m in ("lazy-gemm,lazy" if args.methods == "plain,exact,lazy" else args.methods).split(",")]
        part_d(args.many_labeled, args.seed, methods)
        return
    if args.imagenet:
        print(f"machine: {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f}), numpy {np.__version__}")
        default = "v1,v1-1thread,lazy"
        methods = [m.strip() for m in (default if args.methods == "plain,exact,lazy" else args.methods).split(",") if m.strip()]
        part_c(args.seed, methods, args.cleanup)
        return
    import torch

    print(f"machine: {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f}), numpy {np.__version__}, "
          f"torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")
    if args.part in ("a", "all"):
        sizes = (20_000, 100, 100, 400) if args.full else (3_000, 100, 30, 60)
        part_a(*sizes, args.alpha, args.seed)
    if args.part in ("b", "all"):
        sizes = (100_000, 1_000, 1_000, 1_000) if args.full else (10_000, 200, 100, 100)
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if torch.cuda.is_available() and "cuda" not in methods:
            methods.append("cuda")
        part_b(*sizes, args.alpha, args.seed, methods)


if __name__ == "__main__":
    main()
