"""Benchmark 2-D layouts of probability vectors: PCA vs UMAP, cold vs warm, and the Explore path.

Usage:
    .venv/bin/python bench/projection.py            # small: 500 points, C = 3 and 10
    .venv/bin/python bench/projection.py --full     # 2,000 and 20,000 points, C = 3 and 10

Part A, per (N, C), in a *new* Python process: import time of umap, first UMAP fit (cold: numba
compiles or loads its on-disk cache), second fit on other data of the same shape (warm), PCA
time, and the child's peak RSS. Ratios are against PCA measured in the same child. The CPU
columns (process CPU seconds) are less sensitive to other jobs sharing the cores than wall time;
a seeded UMAP fit is mostly single-threaded, so on an idle machine wall ~= CPU.

Part B, per N, the page's path through ``LayoutJob`` (fresh worker, warm-up included): time
until the first UMAP view is ready (teacher), time for a second layout in the now-warm worker
(student), and the time of a later view served from the disk cache.

Part C (``--restart``): a server's first 2,000-point UMAP view through ``LayoutJob`` (worker
start, warm-up and fit), each in a new process that stands for a server start, all with the
same fresh ``ACTIVEKD_HOME``: ``off`` (``ACTIVEKD_NUMBA_CACHE=0``: every start compiles, the
old behaviour, the reference), ``first start`` (empty numba cache: compiles and writes it) and
``restart`` (loads the cache). Prints each time and the ratio to ``off``.

Data: "real-ish" teacher-like probabilities: softmax(3 * onehot(true class) + N(0, 1.2^2)),
which clusters near the simplex corners with a spread of uncertain points.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def realish_probs(n: int, c: int, seed: int) -> np.ndarray:
    """Teacher-like probabilities: confident near corners plus uncertain points."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, c, n)
    logits = 3.0 * np.eye(c)[truth] + rng.normal(0.0, 1.2, (n, c))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def child(n: int, c: int, metric: str) -> None:
    """Runs in a new process; prints one JSON line."""
    t0 = time.perf_counter()
    from activekd_core import projection as pj

    t_core = time.perf_counter() - t0
    t1 = time.perf_counter()
    import umap  # noqa: F401

    t_import = time.perf_counter() - t1
    a, b = realish_probs(n, c, 0), realish_probs(n, c, 1)
    params = pj.LayoutParams(metric=metric)  # type: ignore[arg-type]
    t2 = time.perf_counter()
    pj.pca_layout(a, metric)  # type: ignore[arg-type]
    t_pca = time.perf_counter() - t2
    t3, c3 = time.perf_counter(), time.process_time()
    pj.umap_layout(a, params)
    t_cold, c_cold = time.perf_counter() - t3, time.process_time() - c3
    t4, c4 = time.perf_counter(), time.process_time()
    pj.umap_layout(b, params)
    t_warm, c_warm = time.perf_counter() - t4, time.process_time() - c4
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "c": c, "metric": metric, "core_import_s": t_core, "umap_import_s": t_import,
                      "pca_s": t_pca, "umap_first_fit_s": t_cold, "umap_warm_fit_s": t_warm,
                      "umap_first_fit_cpu_s": c_cold, "umap_warm_fit_cpu_s": c_warm, "peak_rss_mb": rss_mb,
                      "input_mb": a.nbytes / 2**20}))


def run_child(n: int, c: int, metric: str) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n), str(c), metric],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process_wall_s"] = wall
    return row


def job_path(n: int, c: int) -> dict:
    """First and later Explore views through LayoutJob with a fresh worker."""
    from activekd_core import projection as pj

    teacher, student = realish_probs(n, c, 10), realish_probs(n, c, 11)
    with tempfile.TemporaryDirectory() as tmp:
        job = pj.LayoutJob(tmp)
        try:
            t0 = time.perf_counter()
            first = job.request(teacher)
            t_return = time.perf_counter() - t0
            done = job.wait(first.key, timeout=1800)
            t_first = time.perf_counter() - t0
            assert done is not None, job.status(first.key)
            t1 = time.perf_counter()
            s = job.request(student)
            s_done = job.wait(s.key, timeout=1800)
            t_second = time.perf_counter() - t1
            assert s_done is not None, job.status(s.key)
            t2 = time.perf_counter()
            hit = job.request(teacher)
            t_hit = time.perf_counter() - t2
            assert hit.from_cache
            t3 = time.perf_counter()
            tr = job.request_transform(student, done)
            tr_done = job.wait(tr.key, timeout=1800)
            t_transform = time.perf_counter() - t3
        finally:
            job.close()
    return {"n": n, "c": c, "request_returns_s": t_return, "first_umap_view_s": t_first,
            "warm_worker_layout_s": t_second, "cached_view_s": t_hit, "transform_s": t_transform,
            "warm_up_s": job.warm_seconds,
            "transform_trust": None if tr_done is None else tr_done.meta.get("trust_transform"),
            "refit_trust": pj.transform_faithfulness(student, s_done.coords)}


def restart_child(n: int) -> None:
    """One 'server start': a fresh LayoutJob, time until the first UMAP layout of n points is ready."""
    from activekd_core import projection as pj

    probs = realish_probs(n, 10, 10)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        job = pj.LayoutJob(tmp)
        try:
            first = job.request(probs)
            done = job.wait(first.key, timeout=1800)
            seconds = time.perf_counter() - t0
            assert done is not None and done.method_used == "umap", job.status(first.key)
        finally:
            job.close()
    worker = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker, reaped by close()
    print(json.dumps({"n": n, "first_view_s": seconds, "warm_up_s": job.warm_seconds,
                      "cpu_s": time.process_time() - c0 + worker.ru_utime + worker.ru_stime}))


def restart_runs(n: int) -> None:
    print(f"\nPart C: first {n:,}-point UMAP view after a server start (new process each; LayoutJob incl. warm-up)")
    with tempfile.TemporaryDirectory() as home:
        rows = {}
        for label, extra in (("off (no disk cache)", {"ACTIVEKD_NUMBA_CACHE": "0"}), ("first start", {}),
                             ("restart", {}), ("restart again", {})):
            env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "ACTIVEKD_NUMBA_CACHE")}
            env.update({"ACTIVEKD_HOME": home, **extra})
            load = os.getloadavg()[0]
            out = subprocess.run([sys.executable, __file__, "--restart-child", str(n)], capture_output=True,
                                 text=True, check=True, cwd=ROOT, env=env)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows[label] = r
            ref = rows["off (no disk cache)"]["first_view_s"]
            ref_cpu = rows["off (no disk cache)"]["cpu_s"]
            print(f"  {label:20s} first view {r['first_view_s']:6.1f} s (worker warm-up {r['warm_up_s']:5.1f} s; "
                  f"CPU {r['cpu_s']:5.1f} s, page + worker)   off/this {ref / r['first_view_s']:5.2f}x "
                  f"(CPU {ref_cpu / r['cpu_s']:5.2f}x)   load avg {load:.1f}")
        size = sum(f.stat().st_size for f in Path(home, "numba_cache").rglob("*") if f.is_file())
        print(f"  numba cache on disk: {size / 2**20:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="2,000 and 20,000 points (default: 500)")
    ap.add_argument("--metric", default="euclidean", choices=["euclidean", "hellinger"])
    ap.add_argument("--skip-job", action="store_true", help="skip part B (LayoutJob path)")
    ap.add_argument("--restart", action="store_true", help="part C only: first start vs restart (numba disk cache)")
    ap.add_argument("--restart-n", type=int, default=2000, help="points for --restart (default 2,000)")
    ap.add_argument("--child", nargs=3, metavar=("N", "C", "METRIC"), help=argparse.SUPPRESS)
    ap.add_argument("--restart-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(int(args.child[0]), int(args.child[1]), args.child[2])
        return
    if args.restart_child:
        restart_child(args.restart_child)
        return
    if args.restart:
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
              f"load avg {os.getloadavg()[0]:.1f} at start; python {platform.python_version()}")
        restart_runs(args.restart_n)
        return
    sizes = [2000, 20000] if args.full else [500]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"load avg {os.getloadavg()[0]:.1f} at start; python {platform.python_version()}")
    print("\nPart A: new process per row (first fit = cold), metric", args.metric)
    print(f"{'N':>6} {'C':>3} {'import':>7} {'PCA':>7} {'UMAP 1st':>9} {'UMAP warm':>9} {'warm/PCA':>9} "
          f"{'1st/warm':>8} {'proc wall':>9} {'RSS MB':>7} {'CPU 1st':>8} {'CPU warm':>8}")
    for n in sizes:
        for c in (3, 10):
            r = run_child(n, c, args.metric)
            print(f"{n:>6} {c:>3} {r['umap_import_s']:>6.1f}s {r['pca_s']*1000:>5.1f}ms {r['umap_first_fit_s']:>8.1f}s "
                  f"{r['umap_warm_fit_s']:>8.1f}s {r['umap_warm_fit_s']/max(r['pca_s'],1e-9):>8.0f}x "
                  f"{r['umap_first_fit_s']/max(r['umap_warm_fit_s'],1e-9):>7.1f}x {r['process_wall_s']:>8.1f}s "
                  f"{r['peak_rss_mb']:>7.0f} {r['umap_first_fit_cpu_s']:>7.1f}s {r['umap_warm_fit_cpu_s']:>7.1f}s")
    if args.skip_job:
        return
    print("\nPart B: Explore path via LayoutJob (fresh worker incl. warm-up; C = 10)")
    print(f"{'N':>6} {'returns':>8} {'1st UMAP view':>13} {'warm layout':>11} {'cached view':>11} "
          f"{'transform':>9} {'trust tr/refit':>15}")
    for n in sizes:
        r = job_path(n, 10)
        trust = "n/a" if r["transform_trust"] is None else f"{r['transform_trust']:.3f}/{r['refit_trust']:.3f}"
        print(f"{n:>6} {r['request_returns_s']*1000:>6.0f}ms {r['first_umap_view_s']:>12.1f}s "
              f"{r['warm_worker_layout_s']:>10.1f}s {r['cached_view_s']*1000:>9.1f}ms {r['transform_s']:>8.1f}s "
              f"{trust:>15}")
    print(f"\nload avg at end {os.getloadavg()[0]:.1f} (other jobs share these cores; times are wall-clock)")


if __name__ == "__main__":
    main()
