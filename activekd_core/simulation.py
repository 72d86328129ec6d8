"""Oracle simulation of active learning with knowledge distillation (the PCoreSet protocol).

Protocol (Kang et al., 2025), on a dataset whose every image has a known label:

1. Split once (stratified, ``split_seed``): a held-out **test** split (``test_frac``);
   with the stand-in teacher also a disjoint **reference** split (``reference_frac``)
   that the teacher is fit on; the rest is the **pool** the learner draws from.
2. The teacher predicts probabilities for the pool and the test split once. Default:
   the offline stand-in teacher (a linear probe over fixed pixel features fit on the
   reference split; **not CLIP**, and labelled so in every output); or a CLIP
   zero-shot teacher from local weights; or probabilities precomputed in a file.
3. For each seed: start with **one random labeled image per class** (the same start for
   every strategy of that seed). For each round ``r = 0 .. rounds-1``: train a fresh
   DHO student on the labels so far (``kd=True``) or a CE-only student (``kd=False``),
   measure top-1 **test accuracy**, then (except after the last round) let the strategy
   pick ``budget = number of classes`` new images from the pool, using the student's
   combined probabilities (``pcoreset``, ``entropy``...) or pooled features
   (``coreset``); the oracle reveals their true labels.
   Round ``r`` therefore has ``C * (r + 1)`` labels.

The student's training seed depends only on (seed, round), so strategies differ only by
the images they picked; round 0 is trained once per (seed, kd) and shared.

Outputs in ``out``: ``results.csv`` (one row per strategy, kd, seed, round; written as
it goes), ``picks.jsonl`` (the image ids each strategy picked after each round, with
their scores), ``skipped.csv`` (every file left out, with the reason; also printed by the
command line), ``config.json`` (settings and teacher provenance), ``summary.txt`` (mean ±
std per strategy per round) and ``accuracy.html`` (plotly; ``accuracy.png`` too when
kaleido is installed).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from activekd_core.csv_safe import SafeDictWriter, write_rows
from activekd_core import metrics
from activekd_core.training import TrainConfig, predict_student, train_round

LogFn = Callable[[str], None]
ProgressFn = Callable[[int, int, str], None]

RESULT_COLUMNS = [
    "dataset",
    "strategy",
    "kd",
    "seed",
    "round",
    "n_labeled",
    "accuracy",
    "teacher_accuracy",
    "train_seconds",
    "select_seconds",
    "steps",
    "final_loss",
    "teacher",
    "arch",
    "image_size",
    "student_init",
    "views",
    "balanced_accuracy",
    "macro_f1",
    "recall_per_class",
    "labels_per_class",
    "rare_labels",
    "options",
]

#: Named student settings. ``reference``: the paper's student (ImageNet-pretrained
#: ResNet-18 at 224 px; needs torchvision's weights file offline, and a GPU to be quick).
#: ``cpu-fast``: a randomly initialised three-layer CNN at 16 px (digits) or 64 px, a few
#: seconds per round on one CPU core; not the paper's student.
PRESETS: dict[str, dict[str, Any]] = {
    "reference": {"arch": "resnet18", "image_size": 224, "pretrained": True},
    "cpu-fast": {"arch": "small_cnn", "image_size": None, "pretrained": False},
}


class SimulationError(ValueError):
    """The simulation cannot run with these settings or this data (the message says why)."""


@dataclass
class SimulationConfig:
    """Settings of an oracle simulation.

    Attributes:
        dataset: ``"digits"``, ``"textile"`` or a folder with one sub-folder per class.
        out: Output folder.
        strategies: Selection strategy names (see ``activekd_core.selection.STRATEGIES``).
        rounds: Training rounds per run (round ``r`` has ``C * (r + 1)`` labels).
        seeds: Seeds to run (each changes the initial labels, training and random picks).
        kd_modes: ``[True]`` (DHO distillation), ``[False]`` (CE-only) or both.
        teacher: ``"standin"``, ``"clip"`` (zero-shot), ``"clip_few_shot"`` (CLAP, refit
            on the labels as they grow) or ``"precomputed"``.
        clap_refit: When the few-shot teacher is refit: ``"after"`` (default, the
            reference protocol: round ``r``'s student distils from the CLAP fitted on
            round ``r - 1``'s labels; round 0 uses the zero-shot teacher) or ``"before"``
            (on round ``r``'s own labels, as the app does so that the newest labels help
            at once). "after" is the default here so that simulated numbers compare with
            the paper's.
        clip_model: open_clip model name for ``teacher="clip"``.
        clip_pretrained: Local checkpoint file/dir (or a tag already in the local cache).
        precomputed: Probability/logit file for ``teacher="precomputed"``.
        preset: ``"reference"`` (default) or ``"cpu-fast"`` (:data:`PRESETS`): the
            student's backbone, size and initialisation unless set below.
        arch: Student architecture (None: the preset's).
        image_size: Pixel side (None: the preset's; ``cpu-fast`` uses 16 for digits,
            whose source images are 8x8, so nothing is lost, and 64 otherwise).
        pretrained: ImageNet-pretrained torchvision student (None: the preset's).
        download_weights: Download missing ImageNet weights into torchvision's cache.
        steps: Steps per round. None: :func:`activekd_core.training.derive_steps` with
            ``step_rule``.
        step_rule: ``"reference"`` (default, the paper's ``epochs * ceil(L / 64)``
            steps, growing with the labels ``L``) or ``"pool"`` (``steps_per_pool``
            passes over the pool, at least ``min_steps``, the same at every round: a
            cheap CPU setting that under-trains later rounds).
        epochs: Passes over the padded labeled set (reference rule).
        max_steps: Cap on derived steps (None: no cap).
        steps_per_pool: Passes over the pool (``"pool"`` rule).
        min_steps: Lower bound of the ``"pool"`` rule.
        batch_labeled: Labeled rows per step.
        batch_unlabeled: Unlabeled rows per step.
        flip: Horizontal flips (default: off for digits, on otherwise).
        views: Consistent teacher views (:mod:`activekd_core.views`): ``V`` fixed
            RandomResizedCrop(0.5-1) (+ flip) views per image, the teacher's output
            computed once per view, the student distilling from the view it sees; the
            stand-in is the only teacher that can score views here. 0 (also None, the
            default): the student's own random crops against the teacher's output on the
            whole image.
            The reference's consistent views need a teacher that is accurate on crops:
            on digits the stand-in scores 52% on its views against 83% on whole images,
            and 8 views cost 6 points of student accuracy (bench/REPRODUCTION.md).
        test_frac: Held-out test fraction.
        reference_frac: Reference fraction for the stand-in teacher. Deliberately
            small (2%: ~18 digits, ~40 textile images) so that the teacher is useful but
            imperfect (~83% on digits, ~67% on textile), like zero-shot CLIP on a niche
            domain; a 10% reference makes the digits teacher ~98% accurate.
        split_seed: Seed of the test/reference split.
        data_dir: Where demo images and decoded pixels are cached (default
            :func:`default_data_dir`, shared by runs so demos are written once).
        device: Training device (``auto``, ``cpu``, ``cuda`` ...).
        num_workers: DataLoader workers for training.
        imbalance: Make the pool imbalanced (:func:`imbalance_pool`): the majority class's
            share of the pool (e.g. 0.9), the other classes sharing the rest equally. The
            test and reference splits keep the dataset's own distribution (the teacher's
            prior knowledge does not know the pool's imbalance; the test set measures every
            class's recall). None: the pool as split.
        majority: Class name of the majority class with ``imbalance`` (default: the
            first class with the most images).
        start: ``"per_class"`` (one random label per class, the paper's start, which
            presumes you already found every class), ``"random"`` (``C`` uniformly random
            pool images) or ``"auto"``: random with ``imbalance``, per-class otherwise.
        ce_class_weight: Class-weighted CE for the student's CE head (off in the paper).
        teacher_logit_adjust: ``tau`` of logit-adjusted teacher targets (0 in the paper).
    """

    dataset: str
    out: Path
    strategies: list[str] = field(default_factory=lambda: ["random", "entropy", "coreset", "pcoreset"])
    rounds: int = 8
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    kd_modes: list[bool] = field(default_factory=lambda: [True])
    teacher: str = "standin"
    clap_refit: str = "after"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = None
    precomputed: Path | None = None
    preset: str = "reference"
    arch: str | None = None
    image_size: int | None = None
    pretrained: bool | None = None
    download_weights: bool = False
    steps: int | None = None
    step_rule: str = "reference"
    epochs: int = 200
    max_steps: int | None = None
    steps_per_pool: float = 7.0
    min_steps: int = 100
    batch_labeled: int = 64
    batch_unlabeled: int = 64
    flip: bool | None = None
    views: int | None = None
    test_frac: float = 0.2
    reference_frac: float = 0.02
    split_seed: int = 0
    data_dir: Path | None = None
    device: str = "auto"
    num_workers: int = 0
    imbalance: float | None = None
    majority: str | None = None
    start: str = "auto"
    ce_class_weight: bool = False
    teacher_logit_adjust: float = 0.0


@dataclass
class LabeledData:
    """Images with ground truth, decoded to pixels.

    Attributes:
        name: Dataset name.
        classes: Class names (column order of every probability array).
        ids: Image ids, row order of ``pixels`` and ``y``.
        y: Ground-truth class index per row.
        pixels: uint8 ``(N, S, S, 3)``.
        root: Image root folder.
        prompts: Class -> CLIP prompt (demo datasets), else None.
        skipped: ``(id, reason)`` of every file left out (unreadable, undecodable, or
            outside any class folder), in id order.
    """

    name: str
    classes: list[str]
    ids: list[str]
    y: npt.NDArray[np.int64]
    pixels: npt.NDArray[np.uint8]
    root: Path
    prompts: dict[str, str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Splits:
    """Row indices of the three disjoint splits of a :class:`LabeledData`."""

    pool: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]
    reference: npt.NDArray[np.int64]


def default_data_dir() -> Path:
    """``$ACTIVEKD_DATA_DIR`` or ``~/.cache/activekd/simulate``: demo images and pixel caches."""
    env = os.environ.get("ACTIVEKD_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "activekd" / "simulate"


def load_dataset(dataset: str, image_size: int, data_dir: Path, log: LogFn | None = None) -> LabeledData:
    """Materialise a demo (or scan a class-folder tree) and decode it to pixels.

    Args:
        dataset: ``"digits"``, ``"textile"`` or a folder with class sub-folders.
        image_size: Pixel side of the decoded images.
        data_dir: Cache folder (demo images and the pixel cache go there).
        log: Receives one-line status messages.

    Raises:
        SimulationError: Unknown dataset, an empty folder, or fewer than 2 classes.
    """
    from activekd_core.images import ImagePool, display_id, scan_images
    from activekd_core.pixel_cache import decode_pool_with_report

    say = log or (lambda _m: None)
    data_dir = Path(data_dir)
    if dataset in ("digits", "textile"):
        from activekd_core.demo_data import materialize_demo

        say(f"materialising the {dataset} demo in {data_dir}")
        demo = materialize_demo(dataset, data_dir)
        root, classes, labels = demo.root, list(demo.classes), dict(demo.labels)
        prompts: dict[str, str] | None = dict(demo.prompts)
        name = dataset
    else:
        from activekd_core.labels_import import labels_from_subfolders

        root = Path(dataset)
        if not root.is_dir():
            raise SimulationError(f"--dataset {dataset!r}: not 'digits', 'textile' or an existing folder")
        pool = scan_images(root)
        labels = labels_from_subfolders(pool)
        classes = sorted(set(labels.values()))
        prompts = None
        name = root.name
    pool = scan_images(root)
    skipped = [(p.id, p.reason) for p in pool.problems]
    skipped += [(display_id(i), "not inside a class sub-folder (no label)") for i in pool.ids if i not in labels]
    ids = [i for i in pool.ids if i in labels]
    if not ids:
        raise SimulationError(f"{root}: no labelled images (expected one sub-folder per class)")
    if len(classes) < 2:
        raise SimulationError(f"{root}: need at least 2 classes, found {classes}")
    labelled_pool = ImagePool(root=pool.root, ids=ids, problems=list(pool.problems))
    say(f"decoding {len(ids):,} images to {image_size} px")
    decoded = decode_pool_with_report(labelled_pool, image_size, cache_dir=data_dir / "pixels")
    keep = np.array([row not in decoded.failures for row in range(len(ids))], dtype=bool)
    for row, message in sorted(decoded.failures.items()):
        # The failure text is "<id>: <reason>"; never train or test on the blank row.
        skipped.append((display_id(ids[row]), message.split(": ", 1)[-1]))
    pixels = np.asarray(decoded.pixels)[keep] if not keep.all() else np.asarray(decoded.pixels)
    ids = [i for i, k in zip(ids, keep) if k]
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[labels[i]] for i in ids], dtype=np.int64)
    skipped.sort()
    return LabeledData(name, classes, ids, y, pixels, Path(root), prompts, skipped)


def report_skipped(data: LabeledData, out: Path, say: LogFn) -> Path:
    """Write ``out/skipped.csv`` (``id, reason``; header only when nothing was skipped) and log each file.

    Args:
        data: The loaded dataset.
        out: The simulation's output folder.
        say: Receives one line per skipped file and a count (the CLI prints them on stderr).

    Returns:
        The CSV file written.
    """
    path = out / "skipped.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        write_rows(handle, ["id", "reason"], data.skipped)
    for image_id, reason in data.skipped:
        say(f"skipped {image_id!r}: {reason}")
    if data.skipped:
        say(f"{len(data.skipped)} file(s) skipped; listed in {path}")
    return path


def make_splits(y: npt.NDArray[np.int64], test_frac: float, reference_frac: float, seed: int) -> Splits:
    """Stratified, disjoint test / reference / pool splits (reference may be empty).

    Raises:
        SimulationError: A class has too few images for the splits.
    """
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    counts = np.bincount(y)
    if counts.min() < 3:
        raise SimulationError(f"every class needs at least 3 images for the splits; smallest has {counts.min()}")
    rest, test = train_test_split(rows, test_size=test_frac, stratify=y, random_state=seed)
    reference = np.array([], dtype=np.int64)
    if reference_frac > 0:
        size = reference_frac / (1.0 - test_frac)
        rest, reference = train_test_split(rest, test_size=size, stratify=y[rest], random_state=seed + 1)
    return Splits(np.sort(rest).astype(np.int64), np.sort(test).astype(np.int64), np.sort(reference).astype(np.int64))


def build_teacher_probs(
    config: SimulationConfig, data: LabeledData, splits: Splits, log: LogFn | None = None,
    holder: dict[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Teacher probabilities for every row of ``data`` (float32 ``(N, C)``) and its provenance.

    Rows of the reference split are filled too but never used by the learner. When
    ``holder`` is given, the teacher object is left in ``holder["teacher"]`` (for the
    view bank).
    """
    holder = holder if holder is not None else {}
    say = log or (lambda _m: None)
    from activekd_core.images import ImagePool

    if config.teacher == "standin":
        from activekd_core.teachers import StandInTeacher

        teacher = StandInTeacher(data.classes, seed=config.split_seed)
        say(f"fitting the offline stand-in teacher (NOT CLIP) on a reference split of {len(splits.reference)} images")
        teacher.fit_reference(data.pixels[splits.reference], data.y[splits.reference])
        holder["teacher"] = teacher
        chunk = 4096  # copies of read-only memmap chunks: bounded memory, writable arrays for torch
        probs = np.concatenate(
            [teacher.predict_proba_pixels(np.array(data.pixels[s : s + chunk])) for s in range(0, len(data.ids), chunk)]
        )
        return probs.astype(np.float32), teacher.describe()
    if config.teacher in ("clip", "clip_few_shot"):
        from activekd_core.teachers import ClipZeroShotTeacher

        if not config.clip_pretrained:
            raise SimulationError(f"--teacher {config.teacher} needs --clip-pretrained PATH (a local checkpoint file or folder)")
        prompts = data.prompts
        teacher = ClipZeroShotTeacher(
            data.classes,
            model_name=config.clip_model,
            pretrained=config.clip_pretrained,
            class_prompts=prompts,
            cache_dir=Path(config.data_dir or default_data_dir()) / "clip_features",
        )
        say(f"CLIP zero-shot teacher {config.clip_model} ({config.clip_pretrained}) over {len(data.ids):,} images")
        images = ImagePool(root=data.root, ids=list(data.ids))
        probs = teacher.predict_proba(images)
        if config.teacher == "clip_few_shot":
            from activekd_core.teachers import ClipFewShotTeacher

            few = ClipFewShotTeacher(teacher)
            holder["teacher"], holder["images"] = few, images
            return np.asarray(probs, dtype=np.float32), few.describe()
        return np.asarray(probs, dtype=np.float32), teacher.describe()
    if config.teacher == "precomputed":
        from activekd_core.teachers import PrecomputedTeacher

        if config.precomputed is None:
            raise SimulationError("--teacher precomputed needs a FILE")
        teacher = PrecomputedTeacher(config.precomputed, data.classes)
        probs = teacher.predict_proba(ImagePool(root=data.root, ids=list(data.ids)))
        return np.asarray(probs, dtype=np.float32), teacher.describe()
    raise SimulationError(f"unknown teacher {config.teacher!r}; use standin, clip, clip_few_shot or precomputed")


def resolve_student(config: SimulationConfig) -> tuple[str, int, bool]:
    """``(arch, image_size, pretrained)`` from the preset and the explicit settings.

    Raises:
        SimulationError: Unknown preset.
    """
    if config.preset not in PRESETS:
        raise SimulationError(f"unknown preset {config.preset!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[config.preset]
    arch = config.arch or preset["arch"]
    size = config.image_size or preset["image_size"] or (16 if config.dataset == "digits" else 64)
    pretrained = preset["pretrained"] if config.pretrained is None else bool(config.pretrained)
    return str(arch), int(size), bool(pretrained) and arch != "small_cnn"


def _few_shot_refit(holder: dict[str, Any], data: LabeledData, splits: Splits, say: LogFn
                    ) -> Callable[[np.ndarray], tuple[np.ndarray, float]]:
    """``fit(pool positions) -> (teacher probs on the pool, teacher test accuracy)`` for a CLAP teacher.

    Refits from scratch on the true labels of the given pool positions (no labels: the
    zero-shot teacher) from the cached CLIP features; results are memoised per label set.
    """
    teacher, images = holder["teacher"], holder["images"]
    memo: dict[tuple[int, ...], tuple[np.ndarray, float]] = {}
    y_test = data.y[splits.test]

    def fit(positions: np.ndarray) -> tuple[np.ndarray, float]:
        key = tuple(sorted(int(p) for p in positions))
        if key not in memo:
            rows = splits.pool[np.asarray(key, dtype=np.int64)]
            teacher.fit(images, rows, data.y[rows])
            probs = np.asarray(teacher.predict_proba(images), dtype=np.float32)
            acc = float((probs[splits.test].argmax(1) == y_test).mean())
            say(f"CLAP teacher refit on {len(rows)} labels: test accuracy {acc:.1%}")
            memo[key] = (np.ascontiguousarray(probs[splits.pool]), acc)
        return memo[key]

    return fit


def _view_bank(
    config: SimulationConfig, data: LabeledData, splits: Splits, teacher: Any, teacher_desc: dict[str, Any],
    size: int, flip: bool, data_dir: Path, say: LogFn,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The pool's view boxes ``(P, V, 5)`` and the teacher's outputs on them ``(P, V, C)``, or ``(None, None)``.

    Raises:
        SimulationError: Views asked for with a teacher that cannot score them here.
    """
    can = teacher is not None and hasattr(teacher, "predict_proba_pixels")
    n_views = 0 if config.views is None else int(config.views)
    if n_views <= 0:
        return None, None
    if not can:
        raise SimulationError(f"--views {n_views}: the {teacher_desc.get('kind')} teacher cannot score augmented views "
                              "here (only the stand-in can); use --views 0")
    from activekd_core.teachers.feature_cache import cache_key
    from activekd_core.views import ViewSpec, image_keys, teacher_view_probs, view_boxes

    spec = ViewSpec(n_views=n_views, flip=flip, seed=config.split_seed)
    ids = [data.ids[i] for i in splits.pool]
    boxes = view_boxes(image_keys(ids), spec)
    say(f"view bank: {n_views} views per image; teacher outputs on {len(ids) * n_views:,} views")
    fields = {"teacher": teacher_desc, "dataset": data.name, "ids": cache_key({"ids": ids}), "spec": spec.as_dict(),
              "pixels": size}
    probs = teacher_view_probs(data.pixels[splits.pool], boxes, teacher.predict_proba_pixels, len(data.classes),
                               cache_root=data_dir / "view_cache", cache_fields=fields)
    return boxes, probs


def imbalance_pool(
    pool: npt.NDArray[np.int64], y: npt.NDArray[np.int64], share: float, majority: int, seed: int
) -> npt.NDArray[np.int64]:
    """Subsample a pool so that class ``majority`` is ``share`` of it and the rest share equally.

    The majority class keeps every image; each other class keeps
    ``max(3, round(n_major * (1 - share) / share / (C - 1)))`` random images (at least 3,
    at most what it has), so ``share = 0.9`` with 780 majority images and 2 other classes
    keeps 43 of each (5% each).

    Args:
        pool: Row indices of the pool (into ``y``).
        y: Class index per row of the whole dataset.
        share: Majority share in (0, 1).
        majority: Class index of the majority class.
        seed: Seed of the subsampling.

    Returns:
        The kept rows, sorted.

    Raises:
        SimulationError: ``share`` outside (1/C, 1).
    """
    classes = np.unique(y[pool])
    if not (1.0 / len(classes) < share < 1.0):
        raise SimulationError(f"imbalance must be between 1/C = {1 / len(classes):.3f} and 1, got {share}")
    rng = np.random.default_rng([seed, 7])
    n_major = int((y[pool] == majority).sum())
    n_other = max(3, int(round(n_major * (1 - share) / share / (len(classes) - 1))))
    keep = [pool[y[pool] == majority]]
    for c in classes:
        if c == majority:
            continue
        rows = pool[y[pool] == c]
        keep.append(rng.choice(rows, size=min(n_other, len(rows)), replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)


def random_start(n_pool: int, num_classes: int, seed: int) -> np.ndarray:
    """``num_classes`` uniformly random pool positions (a start that does not presume every class is found)."""
    rng = np.random.default_rng([seed, 0])
    return np.sort(rng.choice(n_pool, size=min(num_classes, n_pool), replace=False)).astype(np.int64)


def rare_class_counts(y_labeled: npt.ArrayLike, num_classes: int) -> np.ndarray:
    """Labels per class (``(C,)`` int) of a labeled set."""
    return np.bincount(np.asarray(y_labeled, dtype=np.int64), minlength=num_classes)


def initial_labels(y_pool: npt.NDArray[np.int64], num_classes: int, seed: int) -> np.ndarray:
    """One random pool position per class present in the pool (the paper's start)."""
    rng = np.random.default_rng([seed, 0])
    picks = []
    for c in range(num_classes):
        rows = np.flatnonzero(y_pool == c)
        if len(rows):
            picks.append(int(rng.choice(rows)))
    return np.array(sorted(picks), dtype=np.int64)


def _teacher_label(describe: dict[str, Any]) -> str:
    if describe.get("kind") == "standin":
        return "offline stand-in (not CLIP)"
    return str(describe.get("display_name") or describe.get("kind"))


def _check_strategies(names: Sequence[str]) -> None:
    from activekd_core.selection import STRATEGIES

    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise SimulationError(f"unknown strategies {unknown}; available: {', '.join(sorted(STRATEGIES))}")


def run_simulation(
    config: SimulationConfig,
    log: LogFn | None = None,
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Run the oracle simulation described in the module notes.

    Args:
        config: Settings.
        log: One-line status messages (round results, phases).
        progress: Training progress ``(step, total, message)`` of the current round.

    Returns:
        The result rows (also written to ``config.out / "results.csv"``).

    Raises:
        SimulationError: Bad settings or data.
    """
    from activekd_core.selection import select

    say = log or (lambda _m: None)
    if config.rounds < 1:
        raise SimulationError(f"rounds must be >= 1, got {config.rounds}")
    if not config.seeds:
        raise SimulationError("need at least one seed")
    if not config.strategies:
        raise SimulationError("need at least one strategy")
    _check_strategies(config.strategies)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
    is_digits = config.dataset == "digits"
    arch, size, pretrained = resolve_student(config)
    flip = (not is_digits) if config.flip is None else config.flip

    data = load_dataset(config.dataset, size, data_dir, say)
    report_skipped(data, out, say)
    ref_frac = config.reference_frac if config.teacher == "standin" else 0.0
    splits = make_splits(data.y, config.test_frac, ref_frac, config.split_seed)
    majority = -1
    if config.imbalance is not None:
        if config.majority is None:
            majority = int(np.bincount(data.y[splits.pool]).argmax())
        elif config.majority in data.classes:
            majority = data.classes.index(config.majority)
        else:
            raise SimulationError(f"--majority {config.majority!r} is not a class of {data.name}: {data.classes}")
        splits.pool = imbalance_pool(splits.pool, data.y, config.imbalance, majority, config.split_seed)
        shares = np.bincount(data.y[splits.pool], minlength=len(data.classes)) / len(splits.pool)
        say(f"imbalanced pool: {', '.join(f'{n} {100 * v:.1f}%' for n, v in zip(data.classes, shares))}")
    start_mode = ("random" if config.imbalance is not None else "per_class") if config.start == "auto" else config.start
    if start_mode not in ("random", "per_class"):
        raise SimulationError(f"start must be auto, random or per_class, got {config.start!r}")
    options = ";".join(
        o
        for o in (
            f"imbalance={config.imbalance}" if config.imbalance is not None else "",
            f"start={start_mode}",
            "ce_class_weight" if config.ce_class_weight else "",
            f"teacher_logit_adjust={config.teacher_logit_adjust}" if config.teacher_logit_adjust else "",
        )
        if o
    )
    holder: dict[str, Any] = {}
    teacher_all, teacher_desc = build_teacher_probs(config, data, splits, say, holder)
    teacher_name = _teacher_label(teacher_desc)
    if pretrained:  # fail before the first round, with where to put the file
        from activekd_core.student import resolve_pretrained_file

        resolve_pretrained_file(arch, download=config.download_weights)
    c = len(data.classes)
    boxes_pool, views_pool = _view_bank(config, data, splits, holder.get("teacher"), teacher_desc, size, flip,
                                        data_dir, say)
    pool_px = np.ascontiguousarray(data.pixels[splits.pool])
    test_px = np.ascontiguousarray(data.pixels[splits.test])
    y_pool, y_test = data.y[splits.pool], data.y[splits.test]
    t_pool = np.ascontiguousarray(teacher_all[splits.pool])
    teacher_acc = float((teacher_all[splits.test].argmax(1) == y_test).mean())
    few_shot = _few_shot_refit(holder, data, splits, say) if config.teacher == "clip_few_shot" else None
    if config.clap_refit not in ("after", "before"):
        raise SimulationError(f"clap_refit must be 'after' or 'before', got {config.clap_refit!r}")
    round_teacher_acc = teacher_acc
    teacher_bacc = metrics.balanced_accuracy(y_test, teacher_all[splits.test].argmax(1))
    say(
        f"{data.name}: {c} classes, pool {len(splits.pool):,}, test {len(splits.test):,}, "
        f"reference {len(splits.reference):,}; teacher = {teacher_name}, test accuracy {teacher_acc:.1%}"
    )
    (out / "config.json").write_text(
        json.dumps(
            {
                "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
                "image_size": size,
                "arch": arch,
                "pretrained": pretrained,
                "flip": flip,
                "views": 0 if boxes_pool is None else int(boxes_pool.shape[1]),
                "classes": data.classes,
                "split_sizes": {"pool": len(splits.pool), "test": len(splits.test), "reference": len(splits.reference)},
                "teacher": teacher_desc,
                "teacher_label": teacher_name,
                "teacher_test_accuracy": teacher_acc,
                "teacher_test_balanced_accuracy": teacher_bacc,
                "pool_class_counts": np.bincount(y_pool, minlength=c).tolist(),
                "majority_class": data.classes[majority] if majority >= 0 else None,
                "start": start_mode,
            },
            indent=2,
            default=str,
        ),
        encoding="utf-8",
    )

    rows: list[dict[str, Any]] = []
    csv_path = out / "results.csv"
    picks_handle = open(out / "picks.jsonl", "w", encoding="utf-8")
    with picks_handle, open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = SafeDictWriter(handle, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        for kd in config.kd_modes:
            for seed in config.seeds:
                cache: dict[tuple[int, tuple[int, ...]], tuple[dict[str, Any], np.ndarray, np.ndarray]] = {}
                if start_mode == "random":
                    start_labels = random_start(len(y_pool), c, seed)
                else:
                    start_labels = initial_labels(y_pool, c, seed)
                for strategy in config.strategies:
                    labeled = start_labels.copy()
                    prev_labeled = np.empty(0, dtype=np.int64)  # round 0: the zero-shot teacher ("after")
                    for rnd in range(config.rounds):
                        key = (rnd, tuple(sorted(labeled.tolist())))
                        tag = f"[{'KD' if kd else 'CE'} seed {seed} {strategy} round {rnd + 1}/{config.rounds} · {len(labeled)} labels]"
                        probs = feats = None  # the last round selects nothing, so needs neither
                        if few_shot is not None:  # CLAP refit on this round's or the previous round's labels
                            t_pool, round_teacher_acc = few_shot(labeled if config.clap_refit == "before" else prev_labeled)
                        if key in cache:
                            res_metrics, probs, feats = cache[key]
                            acc = res_metrics["accuracy"]
                            test_pred = res_metrics["test_pred"]
                        else:
                            tcfg = TrainConfig(
                                arch=arch,
                                pretrained=pretrained,
                                download_weights=config.download_weights,
                                image_size=size,
                                steps=config.steps,
                                step_rule=config.step_rule,
                                epochs=config.epochs,
                                max_steps=config.max_steps,
                                steps_per_pool=config.steps_per_pool,
                                min_steps=config.min_steps,
                                batch_labeled=config.batch_labeled,
                                batch_unlabeled=config.batch_unlabeled,
                                kd=kd,
                                seed=seed * 1000 + rnd,
                                device=config.device,
                                num_workers=config.num_workers,
                                num_classes=c,
                                flip=flip,
                                ce_class_weight=config.ce_class_weight,
                                teacher_logit_adjust=config.teacher_logit_adjust,
                            )
                            prog = (lambda d, t, m, tag=tag: progress(d, t, f"{tag} {m}")) if progress else None
                            t_round = (views_pool if boxes_pool is not None else t_pool) if kd else None
                            res = train_round(pool_px, labeled, y_pool[labeled], t_round, tcfg, progress=prog,
                                              view_boxes=boxes_pool)
                            test_probs, _ = predict_student(res.model, test_px)
                            test_pred = test_probs.argmax(1)
                            acc = float((test_pred == y_test).mean())
                            if rnd < config.rounds - 1:  # the last round selects nothing
                                probs, feats = predict_student(res.model, pool_px)
                            res_metrics = dict(res.metrics, accuracy=acc, test_pred=test_pred)
                            if rnd == 0:
                                cache[key] = (res_metrics, probs, feats)
                        select_seconds = 0.0
                        if rnd < config.rounds - 1:
                            t0 = time.perf_counter()
                            # Chosen on the round-r student's pool outputs (probs: pcoreset, entropy...;
                            # features: coreset); `random` ignores both.
                            sel = select(
                                strategy,
                                probs=probs,
                                features=feats,
                                labeled=labeled,
                                labeled_y=y_pool[labeled],  # the oracle's TRUE labels (class_balanced)
                                k=c,
                                rng=np.random.default_rng([seed, 1 + rnd]),
                            )
                            select_seconds = time.perf_counter() - t0
                            picked = np.asarray(sel.indices, dtype=np.int64)
                            if len(np.intersect1d(picked, labeled)):
                                raise SimulationError(f"strategy {strategy} returned already labeled images")
                            next_labeled = np.concatenate([labeled, picked])
                            record = {
                                "strategy": strategy,
                                "kd": kd,
                                "seed": seed,
                                "round": rnd,
                                "picked_ids": [data.ids[splits.pool[i]] for i in picked],
                                "scores": [float(v) for v in np.asarray(sel.scores, dtype=np.float64)],
                            }
                            picks_handle.write(json.dumps(record) + "\n")
                            picks_handle.flush()
                        row = {
                            "dataset": data.name,
                            "strategy": strategy,
                            "kd": kd,
                            "seed": seed,
                            "round": rnd,
                            "n_labeled": int(len(labeled)),
                            "accuracy": round(acc, 6),
                            "teacher_accuracy": round(round_teacher_acc, 6),
                            "train_seconds": round(float(res_metrics["seconds"]), 3),
                            "select_seconds": round(select_seconds, 4),
                            "steps": res_metrics["steps"],
                            "final_loss": round(float(res_metrics["final_loss"]), 5),
                            "teacher": teacher_name,
                            "arch": arch,
                            "image_size": size,
                            "student_init": res_metrics.get("init", ""),
                            "views": res_metrics.get("views", 0),
                            **_class_columns(y_test, test_pred, y_pool[labeled], c, majority),
                            "options": options,
                        }
                        rows.append(row)
                        writer.writerow(row)
                        handle.flush()
                        say(
                            f"{tag} test accuracy {acc:.1%}, balanced {row['balanced_accuracy']:.1%} "
                            f"(train {res_metrics['seconds']:.1f}s)"
                        )
                        if rnd < config.rounds - 1:
                            prev_labeled, labeled = labeled, next_labeled
    imbalanced = metrics.is_imbalanced(np.bincount(y_pool, minlength=c)) or metrics.is_imbalanced(
        np.bincount(y_test, minlength=c)
    )
    summary = summary_table(rows, imbalanced=imbalanced)
    (out / "summary.txt").write_text(
        f"teacher: {teacher_name} (test accuracy {teacher_acc:.1%}, balanced accuracy {teacher_bacc:.1%})\n{summary}\n",
        encoding="utf-8",
    )
    plot_metric = "balanced_accuracy" if imbalanced else "accuracy"
    write_plot(
        rows,
        out,
        title=f"{data.name}: test {metrics.METRIC_LABELS[plot_metric]} vs labels (teacher: {teacher_name})",
        metric=plot_metric,
    )
    return rows


def _class_columns(
    y_test: np.ndarray, test_pred: np.ndarray, y_labeled: np.ndarray, c: int, majority: int
) -> dict[str, Any]:
    """Imbalance-aware columns of a result row (per-class lists are ``;``-joined)."""
    recall = metrics.per_class_recall(y_test, test_pred, c)
    found = rare_class_counts(y_labeled, c)
    rare = int(found.sum() - found[majority]) if majority >= 0 else ""
    return {
        "balanced_accuracy": round(metrics.balanced_accuracy(y_test, test_pred), 6),
        "macro_f1": round(metrics.macro_f1(y_test, test_pred), 6),
        "recall_per_class": ";".join("" if np.isnan(v) else f"{v:.4f}" for v in recall),
        "labels_per_class": ";".join(str(int(v)) for v in found),
        "rare_labels": rare,
    }


def read_results(path: Path) -> list[dict[str, Any]]:
    """Read a ``results.csv`` back with typed values (kd as bool, ints, floats).

    Raises:
        SimulationError: Missing file or columns.
    """
    path = Path(path)
    if not path.is_file():
        raise SimulationError(f"{path}: results file not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("strategy", "kd", "seed", "round", "n_labeled", "accuracy") if c not in (reader.fieldnames or [])]
        if missing:
            raise SimulationError(f"{path}: missing columns {missing}")
        rows = []
        for raw in reader:
            row: dict[str, Any] = dict(raw)
            row["kd"] = str(raw["kd"]).strip().lower() in ("true", "1", "yes")
            for key in ("seed", "round", "n_labeled", "steps", "image_size", "rare_labels"):
                if raw.get(key) not in (None, ""):
                    row[key] = int(raw[key])
            for key in ("accuracy", "teacher_accuracy", "train_seconds", "select_seconds", "final_loss",
                        "balanced_accuracy", "macro_f1"):
                if raw.get(key) not in (None, ""):
                    row[key] = float(raw[key])
            rows.append(row)
    return rows


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _table(sub: Sequence[dict[str, Any]], strategies: list[str], rounds: list[int], cell: Callable[[list[dict[str, Any]]], str]) -> str:
    head = ["round", "labels"] + strategies
    lines = [[str(x) for x in head]]
    for rnd in rounds:
        cells = [str(rnd), str(next(int(r["n_labeled"]) for r in sub if int(r["round"]) == rnd))]
        for s in strategies:
            cells.append(cell([r for r in sub if r["strategy"] == s and int(r["round"]) == rnd]))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines)


def _has(rows: Sequence[dict[str, Any]], key: str) -> bool:
    return bool(rows) and all(r.get(key) not in (None, "") for r in rows)


def rows_imbalanced(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether a results table came from an imbalanced pool (its ``options`` name ``imbalance=``)."""
    return any("imbalance=" in str(r.get("options", "")) for r in rows)


def summary_table(rows: Sequence[dict[str, Any]], *, imbalanced: bool | None = None) -> str:
    """Mean ± std per round (rows) and strategy (columns), one block per KD mode, and a ranking.

    Args:
        rows: Result rows (``results.csv``).
        imbalanced: Whether the classes are imbalanced (pool or test split); None: inferred
            from the rows' ``options``. When True and the rows carry ``balanced_accuracy``, the
            table shows and ranks by balanced accuracy and adds the rare-class labels found per
            round; otherwise it shows and ranks by accuracy. The ranking line says which
            metric ranks.
    """
    imbalanced = rows_imbalanced(rows) if imbalanced is None else imbalanced
    metric = "balanced_accuracy" if imbalanced and _has(rows, "balanced_accuracy") else "accuracy"
    label = metrics.METRIC_LABELS[metric]
    blocks = []
    for kd in sorted({bool(r["kd"]) for r in rows}, reverse=True):
        sub = [r for r in rows if bool(r["kd"]) == kd]
        strategies = list(dict.fromkeys(r["strategy"] for r in sub))
        rounds = sorted({int(r["round"]) for r in sub})
        n_seeds = len({r["seed"] for r in sub})

        def pct(cell_rows: list[dict[str, Any]], key: str = metric) -> str:
            if not cell_rows:
                return "-"
            m, sd = _mean_std([float(r[key]) * 100 for r in cell_rows])
            return f"{m:5.1f} ± {sd:4.1f}"

        mode = "KD (DHO student distilled from the teacher)" if kd else "no KD (CE-only student)"
        text = f"{mode}: test {label} %, mean ± std over {n_seeds} seed(s)\n{_table(sub, strategies, rounds, pct)}"
        if imbalanced and _has(sub, "rare_labels"):
            def rare(cell_rows: list[dict[str, Any]]) -> str:
                if not cell_rows:
                    return "-"
                m, sd = _mean_std([float(r["rare_labels"]) for r in cell_rows])
                return f"{m:4.1f} ± {sd:3.1f}"

            text += f"\n\nrare-class labels found (all classes but the majority), mean ± std\n{_table(sub, strategies, rounds, rare)}"
        last = rounds[-1]
        final = {}
        for s in strategies:
            cell_rows = [r for r in sub if r["strategy"] == s and int(r["round"]) == last]
            if cell_rows:
                final[s] = (_mean_std([float(r[metric]) * 100 for r in cell_rows])[0], cell_rows)
        order = sorted(final, key=lambda s: -final[s][0])
        others = [k for k in metrics.METRIC_NAMES if k != metric and _has(sub, k)]
        parts = []
        for s in order:
            extra = ", ".join(f"{metrics.METRIC_LABELS[k]} {pct(final[s][1], k).strip()}" for k in others)
            parts.append(f"{s} {final[s][0]:.1f}" + (f" ({extra})" if extra else ""))
        why = " (classes are imbalanced)" if metric == "balanced_accuracy" else ""
        text += f"\n\nranked by {label}{why} at round {last}: " + "; ".join(parts)
        blocks.append(text)
    return "\n\n".join(blocks)


def write_plot(
    rows: Sequence[dict[str, Any]], out: Path, title: str = "test accuracy vs labels", metric: str = "accuracy"
) -> list[Path]:
    """Plot a metric vs number of labels (mean ± std) to ``accuracy.html`` (+ PNG with kaleido).

    Args:
        rows: Result rows.
        out: Output folder.
        title: Plot title.
        metric: ``"accuracy"`` or ``"balanced_accuracy"`` (imbalanced classes) or ``"macro_f1"``.

    Returns:
        The files written.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    keys = list(dict.fromkeys((r["strategy"], bool(r["kd"])) for r in rows))
    for strategy, kd in keys:
        sub = [r for r in rows if r["strategy"] == strategy and bool(r["kd"]) == kd]
        xs = sorted({int(r["n_labeled"]) for r in sub})
        stats = [_mean_std([float(r[metric]) * 100 for r in sub if int(r["n_labeled"]) == x]) for x in xs]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[m for m, _ in stats],
                error_y={"type": "data", "array": [s for _, s in stats], "visible": True},
                mode="lines+markers",
                name=f"{strategy} ({'KD' if kd else 'no KD'})",
                line={"dash": "solid" if kd else "dot"},
            )
        )
    fig.update_layout(title=title, xaxis_title="labeled images", yaxis_title=f"test {metrics.METRIC_LABELS[metric]} (%)",
                      template="plotly_white")
    written = [out / "accuracy.html"]
    fig.write_html(str(written[0]), include_plotlyjs=True, full_html=True)
    try:
        import kaleido  # noqa: F401

        fig.write_image(str(out / "accuracy.png"))
        written.append(out / "accuracy.png")
    except Exception:  # kaleido missing or without a browser: HTML only
        pass
    return written


def parse_seeds(text: str) -> list[int]:
    """``"3"`` -> ``[0, 1, 2]``; ``"0,5,7"`` -> ``[0, 5, 7]``."""
    text = text.strip()
    if "," in text:
        return [int(s) for s in text.split(",") if s.strip()]
    n = int(text)
    if n < 1:
        raise SimulationError(f"--seeds must be >= 1, got {n}")
    return list(range(n))


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``."""
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
