"""Settings of an oracle simulation (:func:`activekd_core.simulation.run_simulation`).

:class:`SimulationConfig` holds them, :data:`PRESETS` names the student settings and
:func:`resolve_student` turns both into the student's backbone, size and initialisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LogFn", "PRESETS", "SimulationConfig", "SimulationError", "resolve_student"]

LogFn = Callable[[str], None]

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
