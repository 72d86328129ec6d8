"""Time from project creation to the first batch on screen while the CLIP teacher encodes the pool (issue 14).

One run, in the order a user meets it:

1. ``Project.create`` on a ``make_pool.py`` folder with a CLIP zero-shot teacher
   (default ViT-B-32, random weights, CPU);
2. the Label page in AppTest (``app.py`` pinned to the project), whose first run starts
   the teacher's pass over the images (``features`` job) and the selection (``select``
   job) in worker processes, exactly as in the app;
3. the page is rerun every ``--poll`` seconds until the batch is stored, then once more:
   "on screen" is the end of that run, with the page's "Chosen from the N of M images
   encoded so far" caption checked;
4. the reference: waiting for the whole extraction before selecting (what the app did
   before; the extraction job is cancelled at the end of the run). Measured when the extraction ends within ``--full-timeout`` (then the second
   batch, chosen from every row, is timed too); otherwise estimated from the measured
   images/s as ``time of the first encoded batch + remaining images / rate`` and said so.

Usage::

    python bench/make_pool.py --n 10000 --out /work/wt/first-batch-data/pool
    nice -n 10 python bench/first_batch.py --pool /work/wt/first-batch-data/pool --work /tmp/akd_first_batch
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

TARGET_S = 60.0


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _captions(at: Any) -> list[str]:
    return [str(c.value) for c in at.caption]


def _progress(folder: Path) -> dict[str, Any] | None:
    """The progress record of the project's unfinished feature cache entry (read as a file: no model load here)."""
    for path in (folder / "cache" / "features").glob("*/progress.json"):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The timed run; returns every number (seconds from the start of project creation)."""
    from activekd_core.project import PARTIAL_SPACE, Project
    from activekd_core.project.teacher_probs import FEATURES_JOB

    manifest = json.loads((args.pool / "pool.json").read_text())
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    folder = work / "project"
    os.environ["ACTIVEKD_PROJECT"] = str(folder)
    os.environ["ACTIVEKD_HOME"] = str(work / "home")
    spec = {"kind": "clip_zero_shot", "model_name": args.model, "pretrained": None, "device": "cpu"}
    out: dict[str, Any] = {"uptime_before": _uptime(), "model": args.model, "n": manifest["n"]}

    t0, t0_wall = time.perf_counter(), time.time()
    project = Project.create(folder, args.pool, [(c, "") for c in manifest["classes"]], spec, batch_size=args.batch)
    out["create_s"] = time.perf_counter() - t0
    n = len(project.pool())

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
    at.run()
    out["page_first_run_s"] = time.perf_counter() - t0
    first_rows_s = None
    while project.current_batch() is None:
        if time.perf_counter() - t0 > args.full_timeout:
            raise SystemExit("no batch within --full-timeout")
        failed = project.jobs().latest("select")
        if failed is not None and failed.state in ("failed", "interrupted"):
            raise SystemExit(f"selection failed: {failed.error}")
        record = _progress(folder)
        if first_rows_s is None and record is not None and int(record.get("done", 0)) > 0:
            first_rows_s = time.perf_counter() - t0
        time.sleep(args.poll)
    out["batch_stored_s"] = time.perf_counter() - t0
    at.run()
    out["on_screen_s"] = time.perf_counter() - t0
    view = project.current_batch()
    note = project.batch_partial_note(view.batch.id)
    captions = [c for c in _captions(at) if c.startswith("Chosen from the")]
    out.update(partial=note, space=view.batch.space, caption=captions[0] if captions else None,
               page_errors=[e.message for e in at.exception], first_rows_s=first_rows_s,
               uptime_first_batch=_uptime())
    if not view.batch.space.endswith(PARTIAL_SPACE):
        print("note: the first batch was chosen from every row (the extraction had finished)", flush=True)

    # ---- the reference: the whole extraction before a selection --------------------------------
    samples: list[tuple[float, int]] = []
    while True:
        job = project.jobs().latest(FEATURES_JOB)
        record = _progress(folder)
        if record is not None:
            samples.append((time.perf_counter() - t0, int(record["done"])))
        if job is not None and job.state != "running":
            break
        if time.perf_counter() - t0 > args.full_timeout:
            break
        time.sleep(5.0)
    out["rate_samples"] = samples[:: max(1, len(samples) // 20)]
    if len(samples) >= 2 and samples[-1][1] > samples[0][1]:
        (ta, da), (tb, db) = samples[0], samples[-1]
        out["rate"] = (db - da) / (tb - ta)
    job = project.jobs().latest(FEATURES_JOB)
    if job is not None and job.state == "done":
        out["extraction_done_s"] = (job.finished or time.time()) - t0_wall
        truth = {i: i.split("/")[0] for i in project.pool().ids}
        for item in view.batch.items:
            project.label(item.image_id, truth[item.image_id])
        ts = time.perf_counter()
        second = project.next_batch()
        out["second_batch_select_s"] = time.perf_counter() - ts
        out["second_space"] = second.batch.space
        out["second_partial"] = project.batch_partial_note(second.batch.id)
        out["reference_s"] = out["extraction_done_s"] + out["second_batch_select_s"]
        out["reference_kind"] = "measured: extraction end (features job) + a selection on all rows"
    elif out.get("rate") and first_rows_s is not None:
        out["reference_s"] = first_rows_s + n / out["rate"]
        out["reference_kind"] = (f"estimated: first encoded rows at {first_rows_s:.0f} s + {n:,} images / "
                                 f"{out['rate']:.1f} images/s (extraction not finished within --full-timeout)")
    out["uptime_after"] = _uptime()
    _stop_extraction(project, FEATURES_JOB)
    project.close()
    return out


def _stop_extraction(project: Any, kind: str) -> None:
    """Cancel the still-running extraction job (it would go on encoding for hours), killing it if it lingers."""
    job = project.jobs().running(kind)
    if job is None:
        return
    project.jobs().cancel(job.id)  # honoured before the next encode batch
    deadline = time.monotonic() + 120
    while project.jobs().running(kind) is not None and time.monotonic() < deadline:
        time.sleep(1.0)
    if project.jobs().running(kind) is not None:
        try:
            os.kill(job.pid, 9)
        except OSError:
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=Path, required=True, help="a make_pool.py folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/akd_first_batch"))
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch", type=int, default=10, help="project batch size (default 10)")
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between page reruns while selecting")
    ap.add_argument("--full-timeout", type=float, default=1500.0,
                    help="seconds to wait for the whole extraction (the reference) before estimating it")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    res = run(args)
    first = res["on_screen_s"]
    print(f"machine: {os.cpu_count()} CPUs; {res['uptime_before']}")
    print(f"pool {res['n']:,} images, teacher CLIP {res['model']} (random weights, CPU)")
    print(f"project created in {res['create_s']:.1f} s; Label page first run done at {res['page_first_run_s']:.1f} s")
    print(f"first encoded rows at {res['first_rows_s'] or float('nan'):.1f} s; batch stored at "
          f"{res['batch_stored_s']:.1f} s; on screen (AppTest rerun) at {first:.1f} s "
          f"(target {TARGET_S:.0f} s: {'met' if first <= TARGET_S else 'MISSED'})")
    print(f"partial note: {res['partial']}; caption: {res['caption']!r}; page errors: {res['page_errors']}")
    if "rate" in res:
        print(f"extraction rate while labeling could start: {res['rate']:.1f} images/s")
    if "reference_s" in res:
        print(f"reference, whole extraction then selection: {res['reference_s']:.0f} s ({res['reference_kind']})")
        print(f"ratio reference / first batch on screen: {res['reference_s'] / first:.1f}x")
    if "second_batch_select_s" in res:
        print(f"second batch after extraction: {res['second_batch_select_s']:.1f} s, space {res['second_space']!r}, "
              f"partial note {res['second_partial']}")
    print(f"load after: {res['uptime_after']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
