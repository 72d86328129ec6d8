"""Command line: ``python -m activekd_core simulate ...``.

Subcommands:

* ``simulate``: the oracle simulation of :mod:`activekd_core.simulation`, e.g.::

      python -m activekd_core simulate --dataset digits --strategies random,pcoreset \\
          --rounds 3 --seeds 1 --out /tmp/x

  ``--kd on`` (default; DHO distillation), ``--no-kd`` / ``--kd off`` (CE-only) or
  ``--kd both``. Teacher: ``--teacher standin`` (default; offline stand-in, not CLIP),
  ``--teacher clip --clip-model NAME --clip-pretrained PATH`` (local weights only) or
  ``--teacher precomputed FILE``. Progress goes to stderr, the summary table to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO


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
        help="standin (default, offline, not CLIP) | clip | precomputed FILE",
    )
    sim.add_argument("--clip-model", default="ViT-B-32", help="open_clip model name for --teacher clip")
    sim.add_argument("--clip-pretrained", default=None, help="local CLIP checkpoint file or folder for --teacher clip")
    sim.add_argument("--arch", default="small_cnn", choices=["small_cnn", "resnet18", "mobilenet_v3_small"])
    sim.add_argument("--image-size", type=int, default=None, help="pixel side (default 16 for digits (8x8 sources), else 64)")
    sim.add_argument("--steps", type=int, default=None, help="steps per round (default: derived from the pool size)")
    sim.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    sim.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy machine)")
    sim.add_argument("--workers", type=int, default=0, help="DataLoader workers for training")
    sim.add_argument("--data-dir", type=Path, default=None, help="cache for demo images and pixels (default OUT/data)")
    sim.add_argument("--test-frac", type=float, default=0.2, help="held-out test fraction (default 0.2)")
    sim.add_argument(
        "--reference-frac",
        type=float,
        default=0.02,
        help="fraction the stand-in teacher is fit on (default 0.02: an imperfect teacher)",
    )
    return parser


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
        summary_table,
    )

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    teacher = args.teacher[0]
    precomputed = None
    if teacher == "precomputed":
        if len(args.teacher) != 2:
            print("error: --teacher precomputed needs a FILE: --teacher precomputed probs.csv", file=sys.stderr)
            return 2
        precomputed = Path(args.teacher[1])
    elif len(args.teacher) != 1 or teacher not in ("standin", "clip"):
        print(f"error: --teacher {' '.join(args.teacher)}: use standin, clip or precomputed FILE", file=sys.stderr)
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
            clip_model=args.clip_model,
            clip_pretrained=args.clip_pretrained,
            precomputed=precomputed,
            arch=args.arch,
            image_size=args.image_size,
            steps=args.steps,
            device=args.device,
            num_workers=args.workers,
            data_dir=args.data_dir,
            test_frac=args.test_frac,
            reference_frac=args.reference_frac,
        )
        term = _TerminalProgress(sys.stderr)
        start = time.perf_counter()
        rows = run_simulation(config, log=term.log, progress=term.progress)
    except (SimulationError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    term.log(f"done in {format_duration(time.perf_counter() - start)}; results in {args.out / 'results.csv'}")
    teacher_line = (args.out / "summary.txt").read_text(encoding="utf-8").splitlines()[0]
    print(teacher_line)
    print(summary_table(rows))
    print(f"plot: {args.out / 'accuracy.html'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    if args.command == "simulate":
        return _simulate(args)
    return 2  # pragma: no cover - argparse enforces the choices
