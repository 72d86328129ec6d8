"""Project creation at scale: ``Project.create`` (scan + store) on a generated pool, ours against a reference checkout.

Each measurement runs in a fresh Python process (imports done before the clock starts),
creating a project from the same pool with a precomputed teacher file (no inference), and
reports wall and CPU time (process, all threads), peak RSS, the load average before and
after, and the ratio reference / ours. With ``--cold`` the pool's files are dropped from
the page cache first (``posix_fadvise(DONTNEED)`` on each file: nothing is modified), so
both runs read the disk as a user's first creation on a folder does.

The reference is another checkout of this repository (e.g. ``git worktree add --detach
/tmp/create-before <commit>``); its ``activekd_core`` is imported instead of ours. The
results of both runs are compared (image count, skipped files, the pool fingerprint and
the ``images`` table's rows): they must be identical.

Usage::

    python bench/create_scale.py --pool /work/bench1m/pool --work /tmp/akd_create \\
        --reference /tmp/create-before --cold
    python bench/app_scale.py --n 1000000 --pool /work/bench1m/pool --create-only --reference /tmp/create-before
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 120.0  # the issue: project creation at 1,000,000 images under 2 minutes


def load_average() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def evict(pool_root: Path) -> int:
    """Drop every file under ``pool_root`` from the page cache (advice only; nothing is written)."""
    n = 0
    for dirpath, _, filenames in os.walk(pool_root):
        for name in filenames:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    return n


def create_stage(code: Path, pool_root: Path, folder: Path, teacher_file: Path) -> dict[str, Any]:
    """In this (fresh) process: import ``code``'s ``activekd_core``, time ``Project.create``."""
    sys.path.insert(0, str(code))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import activekd_core.selection  # noqa: F401 - imports before the clock (torch alone takes seconds)
    import activekd_core.student  # noqa: F401
    import activekd_core.teachers  # noqa: F401
    from activekd_core.project import Project

    sys.path.insert(0, str(ROOT / "bench"))
    from make_pool import CLASSES

    shutil.rmtree(folder, ignore_errors=True)
    classes = [(c, f"a photo of a {c}") for c in CLASSES]
    load_before = load_average()
    w0, c0 = time.perf_counter(), time.process_time()
    project = Project.create(folder, pool_root, classes, {"kind": "precomputed", "path": str(teacher_file)},
                             batch_size=10, seed=0)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    pool = project.pool()
    res = {"wall": wall, "cpu": cpu, "load_before": load_before, "load_after": load_average(),
           "n_images": len(pool), "n_skipped": len(pool.problems), "fingerprint": pool.fingerprint(),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "code": str(code), "module": activekd_core.__file__}
    project.close()
    return res


def table_digest(db: Path) -> str:
    """SHA-256 of the ``images`` table's rows in id order (identical runs give identical digests)."""
    digest = hashlib.sha256()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for row in conn.execute("SELECT id, row, path, width, height, readable, reason FROM images ORDER BY id"):
            digest.update(repr(tuple(row)).encode("utf-8", "surrogateescape"))
    finally:
        conn.close()
    return digest.hexdigest()[:16]


def run_create(code: Path, pool_root: Path, folder: Path, teacher_file: Path, *, cold: bool) -> dict[str, Any]:
    """One measured creation in a fresh process (after evicting the pool when ``cold``)."""
    if cold:
        t0 = time.perf_counter()
        n = evict(pool_root)
        print(f"  evicted {n:,} files from the page cache ({time.perf_counter() - t0:.0f} s)", flush=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", "create", "--code", str(code),
           "--pool", str(pool_root), "--folder", str(folder), "--teacher", str(teacher_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"create stage failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])
    res["images_table"] = table_digest(folder / "project.db")
    return res


def teacher_file_for(pool_root: Path, work: Path) -> Path:
    """The precomputed teacher file for the pool (written once, reused)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from app_scale import write_teacher_file

    path = work / "teacher_probs.npz"
    if not path.exists():
        ids = sorted(str(p.relative_to(pool_root).as_posix()) for p in pool_root.glob("*/*.png"))
        write_teacher_file(pool_root, ids, path)
    return path


def compare(pool_root: Path, work: Path, reference: Path | None, *, cold: bool, repeat: int = 1) -> dict[str, Any]:
    """Create the project with the reference (when given) and with ours, alternately; print and return the figures."""
    work.mkdir(parents=True, exist_ok=True)
    teacher = teacher_file_for(pool_root, work)
    print(f"create_scale: pool {pool_root}, {os.cpu_count()} CPUs, load average {load_average()}, "
          f"{'cold' if cold else 'warm'} page cache", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"reference": [], "ours": []}
    for _ in range(repeat):
        for name, code in (("reference", reference), ("ours", ROOT)):
            if code is None:
                continue
            res = run_create(Path(code), pool_root, work / f"project_{name}", teacher, cold=cold)
            runs[name].append(res)
            print(f"  {name:9s} Project.create: {res['wall']:.2f} s wall / {res['cpu']:.2f} s CPU, "
                  f"{res['n_images']:,} images, {res['n_skipped']} skipped, peak RSS {res['peak_rss_mb']:.0f} MB, "
                  f"load {res['load_before']} -> {res['load_after']}", flush=True)
    ours = min(runs["ours"], key=lambda r: r["wall"])
    out: dict[str, Any] = {"ours": runs["ours"], "reference": runs["reference"], "cold": cold}
    print(f"ours: {ours['wall']:.2f} s wall / {ours['cpu']:.2f} s CPU; target {TARGET_S:.0f} s: "
          f"{ours['wall'] / TARGET_S:.2f}x of target ({'met' if ours['wall'] < TARGET_S else 'MISSED'})")
    if runs["reference"]:
        ref = min(runs["reference"], key=lambda r: r["wall"])
        same = all((r["n_images"], r["n_skipped"], r["fingerprint"], r["images_table"])
                   == (ours["n_images"], ours["n_skipped"], ours["fingerprint"], ours["images_table"])
                   for r in runs["reference"] + runs["ours"])
        out.update(ratio_wall=ref["wall"] / ours["wall"], ratio_cpu=ref["cpu"] / ours["cpu"], identical=same)
        print(f"reference / ours: {out['ratio_wall']:.2f}x wall, {out['ratio_cpu']:.2f}x CPU; "
              f"results identical (count, skipped, fingerprint, images table): {same}")
    print(f"load average at the end {load_average()}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=Path, required=True, help="a pool from make_pool.py")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default /tmp/akd_create)")
    ap.add_argument("--reference", type=Path, default=None, help="a reference checkout to compare with")
    ap.add_argument("--cold", action="store_true", help="drop the pool from the page cache before each run")
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs of each (the fastest is compared)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--stage", choices=["create"], help=argparse.SUPPRESS)
    ap.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--teacher", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage == "create":
        print("RESULT " + json.dumps(create_stage(args.code, args.pool, args.folder, args.teacher)))
        return 0
    out = compare(args.pool.resolve(), (args.work or Path("/tmp/akd_create")).resolve(), args.reference,
                  cold=args.cold, repeat=args.repeat)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
