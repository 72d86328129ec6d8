"""Settings of one training round and how many steps it runs.

:class:`TrainConfig` holds the settings of :func:`activekd_core.training.train_round`,
:class:`TrainResult` what it returns.

**Number of steps** (:func:`derive_steps`). ``config.steps`` if set; otherwise the
reference rule (``step_rule="reference"``, PCoreSet's ``train_active_others.py``): the
``L`` labeled images padded to a multiple of ``batch_labeled`` and iterated ``epochs``
times, i.e. ``epochs * ceil(L / batch_labeled)`` steps (200 * ceil(L / 64): 200 steps
up to 64 labels, 5,000 at 1,600), so later rounds train longer as labels grow. The
legacy ``step_rule="pool"`` gives ``max(min_steps, ceil(steps_per_pool * N /
batch_unlabeled))`` for a pool of ``N`` images, the same at every round (a cheap CPU
setting; it under-trains later rounds). ``max_steps`` caps either rule (the user's
"cap steps" option); ``metrics`` record the steps run, the uncapped count and the rule.

The learning rate follows :func:`lr_factor`: linear warm-up, then linear decay to 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activekd_core.student import DHOStudent

__all__ = [
    "STEP_RULES",
    "TrainConfig",
    "TrainResult",
    "derive_steps",
    "lr_factor",
    "reference_steps",
    "uncapped_steps",
]


@dataclass
class TrainConfig:
    """Settings of one training round.

    Attributes:
        arch: Student backbone (``small_cnn``, ``resnet18``, ``mobilenet_v3_small``).
        image_size: Side length the student sees; pixels of another size are resized
            on the device.
        steps: Optimisation steps; ``None`` derives them with ``step_rule`` (module notes).
        batch_labeled: Labeled rows per step (sampled with replacement).
        batch_unlabeled: Unlabeled rows per step (used only with ``kd=True``).
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_frac: Fraction of steps with linear warm-up.
        temperature: KD temperature ``T``.
        kd: ``True`` for the DHO loss, ``False`` for the CE-only (no-distillation) baseline.
        alpha: CE-head weight of the combined prediction (forced to 1.0 when ``kd=False``).
        beta: KD-logit temperature of the combined prediction.
        seed: Seed of the student initialisation, batch sampling and augmentation.
        device: ``"auto"`` or a torch device string.
        num_workers: DataLoader worker processes (0 = gather in the main process).
        num_classes: Class count; taken from ``teacher_probs`` when given, else this,
            else ``max(y) + 1``.
        augment: Random crop (reflect padding ``image_size // 8``) on/off.
        flip: Random horizontal flips (turn off for digits or text).
        amp: bf16 autocast on CUDA.
        channels_last: channels_last memory format on CUDA.
        pretrained: Start torchvision backbones from ImageNet weights (the paper's
            student); ``False`` = explicit random init. Ignored for ``small_cnn``.
        weights: Local ImageNet weights file for torchvision backbones.
        use_local_cache: Look for torchvision's cached ImageNet weights file.
        download_weights: Download missing ImageNet weights into torchvision's cache
            (off: a missing file is a clear error saying where to put it).
        width: Width of ``small_cnn``.
        step_rule: ``"reference"`` (``epochs * ceil(L / batch_labeled)``) or ``"pool"``
            (legacy, from the pool size).
        epochs: Passes over the padded labeled set (reference rule; 200 in the paper).
        steps_per_pool: Passes over the pool (``"pool"`` rule only).
        min_steps: Lower bound of the ``"pool"`` rule.
        max_steps: Cap on derived steps (``None``: no cap).
        log_every: Progress interval in steps (``None``: about 50 reports per round).
        ce_class_weight: Class-weighted CE for the CE head
            (:func:`activekd_core.losses.balanced_class_weights` of this round's labels);
            off in the paper.
        teacher_logit_adjust: ``tau`` of logit-adjusted teacher targets
            (:func:`activekd_core.losses.logit_adjusted_probs`, prior = the teacher's mean
            prediction over the pool); 0 (off) in the paper.
    """

    arch: str = "small_cnn"
    image_size: int = 32
    steps: int | None = None
    batch_labeled: int = 64
    batch_unlabeled: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    temperature: float = 2.0
    kd: bool = True
    alpha: float = 0.5
    beta: float = 1.0
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    num_classes: int | None = None
    augment: bool = True
    flip: bool = True
    amp: bool = True
    channels_last: bool = True
    pretrained: bool = True
    weights: Path | None = None
    use_local_cache: bool = True
    download_weights: bool = False
    width: int = 16
    step_rule: str = "reference"
    epochs: int = 200
    steps_per_pool: float = 10.0
    min_steps: int = 200
    max_steps: int | None = None
    log_every: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    ce_class_weight: bool = False
    teacher_logit_adjust: float = 0.0


@dataclass
class TrainResult:
    """What :func:`train_round` returns.

    Attributes:
        model: The trained student (unwrapped from DDP), in eval mode.
        metrics: Steps, losses, seconds, images/s, device and settings.
        device: The device string the model lives on.
    """

    model: DHOStudent
    metrics: dict[str, Any]
    device: str


STEP_RULES: tuple[str, ...] = ("reference", "pool")


def reference_steps(n_labeled: int, batch_labeled: int = 64, epochs: int = 200) -> int:
    """PCoreSet's steps per round: ``epochs * ceil(n_labeled / batch_labeled)`` (the labeled
    set padded to a multiple of the batch and iterated ``epochs`` times)."""
    if n_labeled < 1 or batch_labeled < 1 or epochs < 1:
        raise ValueError(f"reference_steps: need n_labeled, batch_labeled, epochs >= 1, got {n_labeled}, {batch_labeled}, {epochs}")
    return int(epochs) * math.ceil(int(n_labeled) / int(batch_labeled))


def uncapped_steps(config: TrainConfig, n_labeled: int, n_pool: int) -> int:
    """Steps the config's rule asks for before ``max_steps`` (``config.steps`` when set)."""
    if config.steps is not None:
        if config.steps < 1:
            raise ValueError(f"TrainConfig.steps must be >= 1, got {config.steps}")
        return int(config.steps)
    if config.step_rule == "reference":
        return reference_steps(max(1, n_labeled), config.batch_labeled, config.epochs)
    if config.step_rule == "pool":
        raw = math.ceil(config.steps_per_pool * n_pool / max(1, config.batch_unlabeled))
        return int(max(config.min_steps, raw))
    raise ValueError(f"TrainConfig.step_rule must be one of {STEP_RULES}, got {config.step_rule!r}")


def derive_steps(config: TrainConfig, n_labeled: int, n_pool: int) -> int:
    """Steps for a round: ``config.steps``, or the rule in the module notes, capped by ``max_steps``.

    Args:
        config: The round's settings.
        n_labeled: Labeled images ``L`` this round trains on.
        n_pool: Images in the pool (the ``"pool"`` rule only).
    """
    steps = uncapped_steps(config, n_labeled, n_pool)
    if config.steps is None and config.max_steps is not None:
        if config.max_steps < 1:
            raise ValueError(f"TrainConfig.max_steps must be >= 1 or None, got {config.max_steps}")
        steps = min(steps, int(config.max_steps))
    return steps


def lr_factor(step: int, total: int, warmup_frac: float) -> float:
    """Linear warm-up over ``warmup_frac * total`` steps, then linear decay to 0 at ``total``."""
    warm = max(1, int(round(warmup_frac * total)))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))
