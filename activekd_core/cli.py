"""Command line: ``python -m activekd_core simulate|train|extract-features ...``.

Subcommands:

* ``simulate``: the oracle simulation of :mod:`activekd_core.simulation`, e.g.::

      python -m activekd_core simulate --dataset digits --strategies random,pcoreset \\
          --rounds 3 --seeds 1 --out /tmp/x

  ``--kd on`` (default; DHO distillation), ``--no-kd`` / ``--kd off`` (CE-only) or
  ``--kd both``. Teacher: ``--teacher standin`` (default; offline stand-in, not CLIP),
  ``--teacher clip --clip-model NAME --clip-pretrained PATH`` (local weights only),
  ``--teacher clip_few_shot`` (CLAP refit as the labels grow; ``--clap-refit``) or
  ``--teacher precomputed:FILE``. Progress goes to stderr, the summary table to stdout.
* ``summarize DIR``: the summary table of a (possibly still running) simulation's
  ``results.csv``, and its plot redrawn.
* ``train --project DIR``: one training round of a project (``Project.retrain``). Under
  ``torchrun --nproc_per_node=N -m activekd_core train --project DIR`` rank 0 runs the
  round (teacher, pixels, store, checkpoint) and the other ranks join its DDP training
  (:func:`activekd_core.training.follow_train_round`). Multi-node: add ``--nnodes``,
  ``--node_rank`` and ``--rdzv_endpoint`` as usual for torchrun.
* ``export --project DIR --format FMT [--predictions] --out PATH``: labels or
  predictions as csv/jsonl/parquet, Label Studio tasks, a Hugging Face dataset or an
  ImageFolder tree (:mod:`activekd_core.predictions`, :mod:`activekd_core.label_studio`,
  :mod:`activekd_core.hf_dataset`).
* ``extract-features --project DIR``: the teacher's probabilities for the pool (CLIP
  teachers cache their image features). Under ``torchrun --nproc_per_node=N`` each rank
  encodes a contiguous run of whole batches of the pool into its own resumable shard,
  rank 0 merges the shards into the project's ordinary feature cache entry (complete
  only after the merge; the same entry a single process writes) and then computes the
  probabilities (:func:`activekd_core.teachers.features.extract_features_sharded`).
  Only rank 0 opens the database; every rank writes its shard inside the project folder,
  so it must be on a shared filesystem across nodes. Teachers
  without CLIP features (stand-in, precomputed) run on rank 0 only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from activekd_core.distributed import DistInfo


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m activekd_core", description="ActiveKD Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser(
        "simulate",
        help="oracle simulation of active learning + distillation (PCoreSet protocol)",
        description="Simulate labeling with a perfect oracle on a labelled dataset and compare strategies.",
    )
    sim.add_argument("--dataset", required=True, help="digits, textile, or a folder with one sub-folder per class")
    sim.add_argument("--strategies", default="random,entropy,coreset,pcoreset", help="comma-separated strategy names")
    sim.add_argument("--rounds", type=int, default=8, help="training rounds; round r has C*(r+1) labels (default 8)")
    sim.add_argument("--seeds", default="3", help="number of seeds (0..S-1) or a comma list (default 3)")
    kd = sim.add_mutually_exclusive_group()
    kd.add_argument("--kd", choices=["on", "off", "both"], default="on", help="distillation on, off (CE-only) or both")
    kd.add_argument("--no-kd", action="store_true", help="same as --kd off: CE-only students")
    sim.add_argument("--out", required=True, type=Path, help="output folder (results.csv, summary.txt, accuracy.html)")
    sim.add_argument(
        "--teacher",
        nargs="+",
        default=["standin"],
        metavar="KIND [FILE]",
        help="standin (default, offline, not CLIP) | clip (zero-shot) | clip_few_shot (CLAP, refit as labels "
        "grow) | precomputed:FILE (or: precomputed FILE)",
    )
    sim.add_argument("--clap-refit", choices=["after", "before"], default="after",
                     help="few-shot teacher refit: after (default, the reference: round r distils from the CLAP fit "
                     "on round r-1's labels) or before (on round r's labels, as the app does)")
    sim.add_argument("--clip-model", default="ViT-B-32", help="open_clip model name for --teacher clip")
    sim.add_argument("--clip-pretrained", default=None, help="local CLIP checkpoint file or folder for --teacher clip")
    sim.add_argument("--preset", choices=["reference", "cpu-fast"], default="reference",
                     help="student settings: reference = the paper's ImageNet-pretrained resnet18 at 224 px (needs "
                     "torchvision's weights file; a GPU to be quick); cpu-fast = a random-init small CNN at 16 px "
                     "(digits) or 64 px, seconds per round on a CPU")
    sim.add_argument("--arch", default=None, choices=["small_cnn", "resnet18", "mobilenet_v3_small"],
                     help="student backbone (default: the preset's)")
    sim.add_argument("--image-size", type=int, default=None, help="pixel side (default: the preset's)")
    sim.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                     help="ImageNet-pretrained torchvision student (default: the preset's)")
    sim.add_argument("--download-weights", action="store_true",
                     help="download missing ImageNet student weights into torchvision's cache (needs network)")
    sim.add_argument("--steps", type=int, default=None,
                     help="fixed steps per round (default: the --step-rule, which grows with the labels)")
    sim.add_argument("--step-rule", choices=["reference", "pool"], default="reference",
                     help="reference: 200 * ceil(labels / 64) steps (the paper); pool: from the pool size, "
                     "constant across rounds (cheap, under-trains later rounds)")
    sim.add_argument("--epochs", type=int, default=200, help="passes over the padded labeled set (reference rule)")
    sim.add_argument("--max-steps", type=int, default=None, help="cap on derived steps per round")
    sim.add_argument("--views", type=int, default=None,
                     help="consistent teacher views per image, the reference's RandomResizedCrop(0.5-1)+flip "
                     "(stand-in teacher only; default 0 = the student's own crops against whole-image teacher "
                     "outputs: the stand-in is poor on crops, see bench/REPRODUCTION.md)")
    sim.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    sim.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: small students gain little from more, and extra threads "
        "spin-wait badly on a busy machine)",
    )
    sim.add_argument("--workers", type=int, default=0, help="DataLoader workers for training")
    sim.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="cache for demo images and pixels (default $ACTIVEKD_DATA_DIR or ~/.cache/activekd/simulate)",
    )
    sim.add_argument("--test-frac", type=float, default=0.2, help="held-out test fraction (default 0.2)")
    sim.add_argument(
        "--reference-frac",
        type=float,
        default=0.02,
        help="fraction the stand-in teacher is fit on (default 0.02: an imperfect teacher)",
    )
    sim.add_argument(
        "--imbalance",
        type=float,
        default=None,
        metavar="SHARE",
        help="make the pool imbalanced: the majority class is SHARE of it (e.g. 0.9), the others share the rest",
    )
    sim.add_argument("--majority", default=None, help="majority class name for --imbalance (default: the largest)")
    sim.add_argument(
        "--start",
        choices=["auto", "random", "per_class"],
        default="auto",
        help="initial labels: one per class (the paper), C random images, or auto (random with --imbalance)",
    )
    sim.add_argument("--ce-class-weight", action="store_true", help="class-weighted CE for the student's CE head")
    sim.add_argument(
        "--teacher-logit-adjust",
        type=float,
        default=0.0,
        metavar="TAU",
        help="subtract TAU * log(teacher's mean predicted distribution) from the teacher's logits (default 0: off)",
    )
    sm = sub.add_parser(
        "summarize",
        help="print the summary table of a simulation's results.csv and redraw its plot",
    )
    sm.add_argument("results", type=Path, help="a simulation output folder or its results.csv")
    tr = sub.add_parser(
        "train",
        help="train one round of a project's student on its current labels (works under torchrun)",
        description="Train one round (Project.retrain). Under torchrun --nproc_per_node=N, rank 0 runs the round "
        "and the other ranks join its DistributedDataParallel training.",
    )
    tr.add_argument("--project", required=True, type=Path, help="project folder (holds project.db)")
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    fx = sub.add_parser(
        "extract-features",
        help="compute (and cache) the project's teacher features/probabilities for the whole pool",
        description="Compute the teacher's probabilities for the pool (CLIP teachers cache image features on "
        "disk). Under torchrun --nproc_per_node=N every rank encodes its shard of the pool and rank 0 merges "
        "them into one cache entry, then computes the probabilities.",
    )
    fx.add_argument("--project", required=True, type=Path, help="project folder (holds project.db)")
    fx.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ex = sub.add_parser(
        "export",
        help="export a project's labels or predictions (csv, jsonl, parquet, Label Studio, HF dataset, ImageFolder)",
        description="Export a project. csv/jsonl/parquet: the current human labels, or with --predictions the "
        "teacher and student predictions for every image. label-studio: tasks for every image with the model's "
        "prediction as pre-annotation (and <out stem>.config.xml, the labeling config). hf-dataset: the labeled "
        "images as a Hugging Face datasets folder (load_from_disk). imagefolder: the labeled images as "
        "<out>/<class>/<file>.",
    )
    ex.add_argument("--project", required=True, type=Path, help="project folder (holds project.db)")
    ex.add_argument("--format", required=True, choices=list(EXPORT_FORMATS), help="what to write")
    ex.add_argument("--predictions", action="store_true", help="csv/jsonl/parquet: predictions for every image")
    ex.add_argument("--out", required=True, type=Path, help="file (or folder for hf-dataset/imagefolder) to write")
    ex.add_argument("--image-url", default=None,
                    help="label-studio: image URL template, {id} = the image id (default /data/local-files/?d={id})")
    return parser


EXPORT_FORMATS = ("csv", "jsonl", "parquet", "label-studio", "hf-dataset", "imagefolder")


def _export(args: argparse.Namespace) -> int:
    from activekd_core.export import ExportError
    from activekd_core.project import Project, ProjectError

    if args.predictions and args.format not in ("csv", "jsonl", "parquet"):
        print(f"error: --predictions applies to csv, jsonl and parquet, not {args.format}", file=sys.stderr)
        return 2
    try:
        project = Project.open(args.project)
    except ProjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.format == "label-studio":
            report = project.export_label_studio(args.out, image_url=args.image_url)
        elif args.format == "hf-dataset":
            report = project.export_hf_dataset(args.out)
        elif args.format == "imagefolder":
            report = project.export_imagefolder(args.out)
        elif args.predictions:
            report = project.export_predictions(args.format, args.out)
        else:
            report = project.export_labels(args.format, args.out)
    except (ProjectError, ExportError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        project.close()
    for image_id, reason in report.skipped:
        print(f"skipped {image_id!r}: {reason}", file=sys.stderr)
    what = "rows" if args.format in ("csv", "jsonl", "parquet", "label-studio") else "images"
    print(f"wrote {report.count} {what} to {report.dest}" + (f" ({len(report.skipped)} skipped)" if report.skipped else ""))
    if report.document_root is not None:
        print(f"serve the images with LOCAL_FILES_SERVING_ENABLED=true LOCAL_FILES_DOCUMENT_ROOT={report.document_root}")
    return 0


class _TerminalProgress:
    """Training progress on a terminal: one rewritten line on a TTY, sparse lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0
        self.open_line = False

    def progress(self, done: int, total: int, message: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + message)
            self.stream.flush()
            self.open_line = True
        else:
            now = time.monotonic()
            if done == total or now - self.last > 10:
                self.last = now
                self.stream.write(message + "\n")
                self.stream.flush()

    def log(self, message: str) -> None:
        if self.open_line:
            self.stream.write("\r\033[K")
            self.open_line = False
        self.stream.write(message + "\n")
        self.stream.flush()


def _simulate(args: argparse.Namespace) -> int:
    from activekd_core.simulation import (
        SimulationConfig,
        SimulationError,
        format_duration,
        parse_seeds,
        run_simulation,
    )

    _set_threads(args.threads)
    teacher = args.teacher[0]
    precomputed = None
    if teacher.startswith("precomputed:") and len(args.teacher) == 1:  # --teacher precomputed:FILE
        teacher, precomputed = "precomputed", Path(teacher.split(":", 1)[1])
    elif teacher == "precomputed":
        if len(args.teacher) != 2:
            print("error: --teacher precomputed needs a FILE: --teacher precomputed probs.csv", file=sys.stderr)
            return 2
        precomputed = Path(args.teacher[1])
    elif len(args.teacher) != 1 or teacher not in ("standin", "clip", "clip_few_shot"):
        print(f"error: --teacher {' '.join(args.teacher)}: use standin, clip, clip_few_shot or precomputed:FILE",
              file=sys.stderr)
        return 2
    kd_modes = {"on": [True], "off": [False], "both": [True, False]}["off" if args.no_kd else args.kd]
    try:
        config = SimulationConfig(
            dataset=args.dataset,
            out=args.out,
            strategies=[s.strip() for s in args.strategies.split(",") if s.strip()],
            rounds=args.rounds,
            seeds=parse_seeds(args.seeds),
            kd_modes=kd_modes,
            teacher=teacher,
            clap_refit=args.clap_refit,
            clip_model=args.clip_model,
            clip_pretrained=args.clip_pretrained,
            precomputed=precomputed,
            preset=args.preset,
            arch=args.arch,
            image_size=args.image_size,
            pretrained=args.pretrained,
            download_weights=args.download_weights,
            steps=args.steps,
            step_rule=args.step_rule,
            epochs=args.epochs,
            max_steps=args.max_steps,
            views=args.views,
            device=args.device,
            num_workers=args.workers,
            data_dir=args.data_dir,
            test_frac=args.test_frac,
            reference_frac=args.reference_frac,
            imbalance=args.imbalance,
            majority=args.majority,
            start=args.start,
            ce_class_weight=args.ce_class_weight,
            teacher_logit_adjust=args.teacher_logit_adjust,
        )
        term = _TerminalProgress(sys.stderr)
        start = time.perf_counter()
        rows = run_simulation(config, log=term.log, progress=term.progress)
    except (SimulationError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    term.log(f"done in {format_duration(time.perf_counter() - start)}; results in {args.out / 'results.csv'}")
    print((args.out / "summary.txt").read_text(encoding="utf-8").rstrip("\n"))  # teacher line + table
    print(f"plot: {args.out / 'accuracy.html'}")
    return 0


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _train(args: argparse.Namespace) -> int:
    from activekd_core import distributed
    from activekd_core.devices import pick_device
    from activekd_core.project import Project, ProjectError
    from activekd_core.training import TrainingCancelled, follow_train_round

    _set_threads(args.threads)
    info = distributed.init_distributed(pick_device("auto"))
    term = _TerminalProgress(sys.stderr)
    try:
        if info.enabled and not info.is_main:
            result = follow_train_round()
            term.log(f"rank {info.rank}/{info.world_size}: trained its share ({result.metrics['steps']} steps)")
            # Leave together with rank 0 (which still writes the round): a rank that tore down
            # its gloo connections while rank 0 was still using them was killed by std::terminate.
            distributed.barrier(info)
            return 0
        if info.enabled:
            term.log(f"rank 0 of {info.world_size} ({info.backend}): training the round, other ranks follow")
        try:
            project = Project.open(args.project)
        except ProjectError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            record = project.retrain(progress=term.progress)
        except (ProjectError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except TrainingCancelled as exc:
            print(f"cancelled: {exc}", file=sys.stderr)
            return 1
        finally:
            project.close()
        m = record.metrics
        print(
            f"round {record.id}: {record.n_labeled} labels, {m.get('steps')} steps in {m.get('seconds', 0):.1f}s "
            f"({m.get('images_per_second', 0):,.0f} img/s on {m.get('device_name', m.get('device'))}), "
            f"checkpoint {record.checkpoint}"
        )
        distributed.barrier(info)  # the other ranks wait here for the round to be written
        return 0
    finally:
        distributed.shutdown()


def _extract_features(args: argparse.Namespace) -> int:
    from activekd_core import distributed
    from activekd_core.devices import pick_device

    _set_threads(args.threads)
    info = distributed.init_distributed(pick_device("auto"))
    term = _TerminalProgress(sys.stderr)
    try:
        if not info.enabled:
            return _teacher_probs(args.project, term)
        return _extract_features_sharded(args.project, info, term)
    finally:
        distributed.shutdown()


def _teacher_probs(folder: Path, term: _TerminalProgress, project: object | None = None) -> int:
    """Rank 0 / single process: the teacher's probabilities (features come from the cache when present)."""
    from activekd_core.project import Project, ProjectError

    try:
        project = project if project is not None else Project.open(folder)
    except ProjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        start = time.perf_counter()
        probs = project.teacher_probs(progress=term.progress)  # type: ignore[attr-defined]
    except (ProjectError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        project.close()  # type: ignore[attr-defined]
    print(f"teacher probabilities for {probs.shape[0]:,} images x {probs.shape[1]} classes "
          f"in {time.perf_counter() - start:.1f}s (cached in the project)")
    return 0


def _extract_features_sharded(folder: Path, info: DistInfo, term: _TerminalProgress) -> int:
    """Every rank encodes its shard of the pool; rank 0 merges the cache, then computes probabilities.

    Only rank 0 opens the project database (SQLite in WAL mode must not be shared over a
    network filesystem); it broadcasts the teacher spec, the pool and the cache folder,
    and the other ranks build the same teacher from them. Failures before the shared work
    (a project that does not open, a teacher that cannot load) are agreed on by all
    ranks, so no rank waits for one that gave up.
    """
    from activekd_core import distributed
    from activekd_core.images import ImagePool
    from activekd_core.project import Project, ProjectError
    from activekd_core.teachers import TeacherUnavailable, make_teacher, zero_shot_of

    rank, world = info.rank, info.world_size
    project = None
    plan = None
    if rank == 0:
        try:
            project = Project.open(folder)
            pool = project.pool()
            plan = {"spec": project.teacher_spec(), "root": str(pool.root), "ids": list(pool.ids),
                    "cache": str(project.path("cache", "features"))}
        except ProjectError as exc:
            print(f"error: {exc}", file=sys.stderr)
    plan = distributed.broadcast_object(plan, info)
    if plan is None:
        if project is not None:
            project.close()
        return 2
    clip = None
    problem = ""
    try:
        teacher = project.teacher() if project is not None else make_teacher(plan["spec"], cache_dir=plan["cache"])
        clip = zero_shot_of(teacher)  # a few-shot teacher shares its zero-shot's features
        if clip is not None:
            clip.load()
    except (ProjectError, TeacherUnavailable, ValueError, RuntimeError, OSError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if not distributed.all_ok(not problem, info):
        if project is not None:
            project.close()
        print(f"error: rank {rank}: {problem}" if problem else f"rank {rank}: stopping (another rank failed)",
              file=sys.stderr)
        return 2
    if clip is None:  # stand-in / precomputed teachers have no image features to shard
        kind = plan["spec"].get("kind")
        if project is None:
            term.log(f"rank {rank}/{world}: nothing to shard (teacher kind {kind!r} has no CLIP image features)")
            return 0
        term.log(f"rank 0 of {world}: teacher kind {kind!r} has no CLIP image features; computing on rank 0 only")
        return _teacher_probs(folder, term, project)

    def progress(done: int, total: int, message: str) -> None:
        term.progress(done, total, f"rank {rank}/{world}: {message}")

    try:
        pool = ImagePool(root=Path(plan["root"]), ids=plan["ids"])
        _, report = clip.image_features_distributed(pool, info, progress=progress)
    except Exception as exc:  # every rank has already agreed to stop (see extract_features_sharded)
        if project is not None:
            project.close()
        print(f"error: rank {rank}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    a, b = report["rows"]
    if report["cached"]:
        term.log(f"rank {rank}/{world}: features already cached, nothing encoded")
    else:
        resumed = f", resumed after {report['resumed_from']:,} rows" if report["resumed_from"] else ""
        term.log(f"rank {rank}/{world}: rows {a:,}:{b:,}, encoded {report['encoded']:,} images{resumed}")
    if project is None:
        return 0
    return _teacher_probs(folder, term, project)


def _recorded_imbalance(folder: Path) -> bool | None:
    """Whether a simulation's ``config.json`` records imbalanced pool or test classes (None: unknown)."""
    import json

    from activekd_core.metrics import is_imbalanced

    try:
        info = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        counts = info["pool_class_counts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return is_imbalanced(counts) or (info.get("config") or {}).get("imbalance") is not None


def _summarize(args: argparse.Namespace) -> int:
    from activekd_core.simulation import SimulationError, read_results, rows_imbalanced, summary_table, write_plot

    path = args.results / "results.csv" if args.results.is_dir() else args.results
    try:
        rows = read_results(path)
    except SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: {path}: no result rows yet", file=sys.stderr)
        return 2
    teacher = rows[0].get("teacher", "")
    if teacher:
        print(f"teacher: {teacher} (test accuracy {float(rows[0].get('teacher_accuracy', float('nan'))):.1%})")
    imbalanced = _recorded_imbalance(path.parent)
    print(summary_table(rows, imbalanced=imbalanced))
    if imbalanced is None:
        imbalanced = rows_imbalanced(rows)
    metric = "balanced_accuracy" if imbalanced and all(r.get("balanced_accuracy") not in (None, "") for r in rows) else "accuracy"
    files = write_plot(rows, path.parent, title=f"{rows[0].get('dataset', '')}: test {metric.replace('_', ' ')} vs labels",
                       metric=metric)
    print("plot: " + ", ".join(str(f) for f in files))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code.

    Any error is printed as one line on stderr (``error: <kind>: <message>``) with exit
    code 1; set ``ACTIVEKD_DEBUG=1`` to see the full traceback as well. Ctrl-C exits
    with 130.
    """
    args = _build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the command line reports, it does not crash
        if os.environ.get("ACTIVEKD_DEBUG", "").strip() in ("1", "true", "yes"):
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """``<kind>: <message>`` on one line, bounded, for any exception (kind omitted for our own errors)."""
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 2000:
        text = text[:2000] + "..."
    kind = type(exc).__name__
    ours = type(exc).__module__.startswith("activekd_core")
    return text if ours else f"{kind}: {text}"


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "summarize":
        return _summarize(args)
    if args.command == "train":
        return _train(args)
    if args.command == "extract-features":
        return _extract_features(args)
    if args.command == "export":
        return _export(args)
    return 2  # pragma: no cover - argparse enforces the choices
