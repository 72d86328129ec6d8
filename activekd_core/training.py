"""Train a fresh DHO student for one active-learning round, and predict with it.

One call of :func:`train_round` = one round of the PCoreSet/DHO protocol:

* a **fresh** student every call (seeded by ``config.seed``);
* AdamW, lr ``1e-3``, 10% linear warm-up then linear decay to 0;
* every step: ``batch_labeled`` labeled rows sampled **with replacement** plus
  ``batch_unlabeled`` rows from the unlabeled part of the pool (without replacement
  inside a batch; the whole pool if nothing is unlabeled), one backbone pass over both;
* DHO loss (:func:`activekd_core.losses.dho_loss`) or, with ``kd=False``, CE only on
  the labeled rows (the unlabeled batch is then not loaded at all);
* device auto (CUDA, then MPS, then CPU); bf16 autocast and channels_last on CUDA;
* images are uint8 ``(N, S, S, 3)`` arrays (a memmap is fine): the DataLoader workers
  only gather bytes (pinned memory on CUDA); conversion to float, ImageNet
  normalisation, resizing to ``config.image_size`` and augmentation (random crop with
  reflect padding, optional horizontal flip) happen on the device.

**Number of steps** (:func:`derive_steps`). ``config.steps`` if set; otherwise the
reference rule (``step_rule="reference"``, PCoreSet's ``train_active_others.py``): the
``L`` labeled images padded to a multiple of ``batch_labeled`` and iterated ``epochs``
times, i.e. ``epochs * ceil(L / batch_labeled)`` steps (200 * ceil(L / 64): 200 steps
up to 64 labels, 5,000 at 1,600), so later rounds train longer as labels grow. The
legacy ``step_rule="pool"`` gives ``max(min_steps, ceil(steps_per_pool * N /
batch_unlabeled))`` for a pool of ``N`` images, the same at every round (a cheap CPU
setting; it under-trains later rounds). ``max_steps`` caps either rule (the user's
"cap steps" option); ``metrics`` record the steps run, the uncapped count and the rule.

**Determinism.** Batch rows come from a per-step stream ``default_rng([seed, step])``
and augmentation from a seeded generator, so on CPU two runs with the same seed (and
thread count) give identical weights, whatever the number of DataLoader workers.

**Throughput.** ``metrics["images_per_second"]`` counts every step;
``images_per_second_steady`` leaves out the first 10% (worker start-up, cuDNN autotuning).

**Cancel.** ``cancel`` (a :class:`threading.Event`) is checked before every step;
when set, training stops and :class:`TrainingCancelled` is raised. The checkpoint is
written only after the last step, to a temporary file then renamed, so a cancelled
round leaves any previous checkpoint untouched.

Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in DDP and each rank
takes a slice of every global batch (see :mod:`activekd_core.distributed`). Rank 0's
inputs and config are broadcast to the other ranks and replace theirs, so other ranks
may call :func:`train_round` with the same arguments or :func:`follow_train_round`
with none.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from activekd_core import distributed
from activekd_core.devices import device_name, pick_device
from activekd_core.losses import balanced_class_weights, ce_loss, dho_loss, logit_adjusted_probs
from activekd_core.student import DHOStudent, build_student, prepare_batch, save_student
from activekd_core.views import render_views

ProgressFn = Callable[[int, int, str], None]


class TrainingCancelled(Exception):
    """Training stopped because the cancel event was set.

    Attributes:
        step: Number of optimisation steps completed before stopping.
    """

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"training cancelled after {step} of {total} steps")
        self.step = step
        self.total = total


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


class _RoundBatches(Dataset):
    """Map-style dataset whose item ``step`` is this rank's whole batch for that step."""

    def __init__(
        self,
        pixels: np.ndarray,
        labeled: np.ndarray,
        y: np.ndarray,
        unlabeled: np.ndarray,
        teacher: np.ndarray | None,
        steps: int,
        batch_labeled: int,
        batch_unlabeled: int,
        seed: int,
        part_l: slice,
        part_u: slice,
        view_boxes: np.ndarray | None = None,
    ) -> None:
        self.pixels = pixels
        self.view_boxes = view_boxes
        self.labeled = labeled
        self.y = y
        self.unlabeled = unlabeled
        self.teacher = teacher
        self.steps = steps
        self.bl = batch_labeled
        self.bu = batch_unlabeled
        self.seed = seed
        self.part_l = part_l
        self.part_u = part_u

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, int(step)])
        li = rng.integers(0, len(self.labeled), size=self.bl)[self.part_l]
        rows_l = self.labeled[li]
        out = {
            "xl": torch.from_numpy(np.ascontiguousarray(self.pixels[rows_l])),
            "yl": torch.from_numpy(self.y[li]),
        }
        rows_u = None
        if self.teacher is not None:
            replace = len(self.unlabeled) < self.bu
            ui = rng.choice(len(self.unlabeled), size=self.bu, replace=replace)[self.part_u]
            rows_u = self.unlabeled[ui]
            out["xu"] = torch.from_numpy(np.ascontiguousarray(self.pixels[rows_u]))
        if self.view_boxes is None:
            if rows_u is not None:
                out["tl"] = torch.from_numpy(self.teacher[rows_l])  # type: ignore[index]
                out["tu"] = torch.from_numpy(self.teacher[rows_u])  # type: ignore[index]
            return out
        # One of each image's fixed views, and the teacher's output on that same view.
        n_views = self.view_boxes.shape[1]
        vl = rng.integers(0, n_views, size=self.bl)[self.part_l]
        out["boxes_l"] = torch.from_numpy(self.view_boxes[rows_l, vl])
        if rows_u is not None:
            vu = rng.integers(0, n_views, size=self.bu)[self.part_u]
            out["boxes_u"] = torch.from_numpy(self.view_boxes[rows_u, vu])
            out["tl"] = torch.from_numpy(self.teacher[rows_l, vl])  # type: ignore[index]
            out["tu"] = torch.from_numpy(self.teacher[rows_u, vu])  # type: ignore[index]
        return out


def _to_model_input(
    pixels: Tensor, device: torch.device, image_size: int, channels_last: bool
) -> Tensor:
    x = prepare_batch(pixels, device)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def augment_batch(x: Tensor, generator: torch.Generator, pad: int, flip: bool) -> Tensor:
    """Random crop (reflect padding ``pad``) and optional horizontal flip, per image, on ``x``'s device.

    Args:
        x: Float images ``(B, 3, H, W)``.
        generator: Random generator on ``x``'s device.
        pad: Padding in pixels (0 disables the crop).
        flip: Flip each image left-right with probability 0.5.
    """
    b, _, h, w = x.shape
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
        rows = dy[:, None] + torch.arange(h, device=x.device)[None, :]
        cols = dx[:, None] + torch.arange(w, device=x.device)[None, :]
        bidx = torch.arange(b, device=x.device)[:, None, None]
        # Advanced indices around a slice put the batch dims first: (B, H, W, C).
        x = xp[bidx, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(b, generator=generator, device=x.device) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def _check_inputs(
    pixels: np.ndarray, labeled: np.ndarray, y: np.ndarray, teacher_probs: np.ndarray | None, kd: bool,
    view_boxes: np.ndarray | None = None,
) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        shape = getattr(pixels, "shape", None)
        raise ValueError(f"train_round: pixels must be a uint8 array (N, S, S, 3), got {getattr(pixels, 'dtype', type(pixels))} {shape}")
    n = pixels.shape[0]
    if labeled.ndim != 1 or len(labeled) == 0:
        raise ValueError("train_round: need at least one labeled row (labeled is empty or not 1-D)")
    if len(labeled) != len(y):
        raise ValueError(f"train_round: {len(labeled)} labeled rows but {len(y)} labels")
    if labeled.min() < 0 or labeled.max() >= n:
        raise ValueError(f"train_round: labeled indices must lie in [0, {n}), got {labeled.min()}..{labeled.max()}")
    if len(np.unique(labeled)) != len(labeled):
        raise ValueError("train_round: labeled indices contain duplicates")
    if y.min() < 0:
        raise ValueError("train_round: labels must be class indices >= 0")
    if view_boxes is not None and (view_boxes.ndim != 3 or view_boxes.shape[0] != n or view_boxes.shape[2] != 5
                                   or view_boxes.shape[1] < 1):
        raise ValueError(f"train_round: view_boxes must be (N={n}, V, 5), got {tuple(view_boxes.shape)}")
    if kd:
        if teacher_probs is None:
            raise ValueError("train_round: kd=True needs teacher_probs (N, C); use kd=False for CE-only training")
        if view_boxes is not None:
            if teacher_probs.ndim != 3 or teacher_probs.shape[:2] != view_boxes.shape[:2]:
                raise ValueError(f"train_round: with view_boxes (N, V, 5) the teacher's outputs must be per view "
                                 f"(N, V, C); got {tuple(teacher_probs.shape)} for {tuple(view_boxes.shape)}")
        elif teacher_probs.ndim != 2 or teacher_probs.shape[0] != n:
            raise ValueError(
                f"train_round: teacher_probs must be (N={n}, C), got {tuple(teacher_probs.shape)}"
            )


def _memmap_source(pixels: np.ndarray) -> str | None:
    """The .npy file ``pixels`` maps in full, if any (other ranks can then open it themselves)."""
    filename = getattr(pixels, "filename", None)
    if not isinstance(pixels, np.memmap) or not filename or not str(filename).endswith(".npy"):
        return None
    try:
        ref = np.load(filename, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if ref.shape != pixels.shape or ref.dtype != pixels.dtype or getattr(ref, "offset", None) != pixels.offset:
        return None
    return str(filename)


def _send_round(
    info: distributed.DistInfo,
    pixels: np.ndarray,
    labeled: np.ndarray,
    y: np.ndarray,
    teacher_probs: np.ndarray | None,
    config: TrainConfig,
    exclude: np.ndarray | None = None,
    view_boxes: np.ndarray | None = None,
) -> None:
    source = _memmap_source(pixels)
    spec = {
        "pixels_path": source,
        "pixels": None if source else np.ascontiguousarray(pixels),
        "labeled": labeled,
        "y": y,
        "teacher_probs": None if teacher_probs is None else np.asarray(teacher_probs, dtype=np.float32),
        "config": config,
        "exclude": exclude,
        "view_boxes": view_boxes,
    }
    distributed.broadcast_object(spec, info)


def _receive_round(
    info: distributed.DistInfo,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, TrainConfig, np.ndarray | None, np.ndarray | None]:
    spec = distributed.broadcast_object(None, info)
    pixels = np.load(spec["pixels_path"], mmap_mode="r") if spec["pixels_path"] else spec["pixels"]
    return (pixels, spec["labeled"], spec["y"], spec["teacher_probs"], spec["config"], spec.get("exclude"),
            spec.get("view_boxes"))


def follow_train_round(progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> TrainResult:
    """Join the round that rank 0 trains (non-zero ranks under ``torchrun``).

    Rank 0 calls :func:`train_round` with the real inputs (e.g. inside
    ``Project.retrain``); the other ranks call this, receive rank 0's labels, teacher
    probabilities, config and pixels (by file path when they are a ``.npy`` memory
    map, else by value) and train their share of every batch.
    """
    return train_round(None, None, None, None, None, progress=progress, cancel=cancel)  # type: ignore[arg-type]


def train_round(
    pixels: npt.NDArray[np.uint8],
    labeled: npt.ArrayLike,
    y: npt.ArrayLike,
    teacher_probs: npt.NDArray[np.floating] | None,
    config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    checkpoint_path: Path | None = None,
    exclude: npt.ArrayLike | None = None,
    view_boxes: npt.NDArray[np.floating] | None = None,
) -> TrainResult:
    """Train a fresh DHO student on one round's labels (module notes give the recipe).

    Args:
        pixels: uint8 images ``(N, S, S, 3)`` of the whole pool, in pool order.
        labeled: Pool row indices of the labeled images (int, unique).
        y: Class index of each labeled row.
        teacher_probs: Teacher probabilities ``(N, C)`` for every pool row (needed when
            ``config.kd``; ignored otherwise).
        config: Training settings (defaults: :class:`TrainConfig`).
        progress: ``progress(step, total, message)`` with loss, images/s and ETA.
        cancel: Set it to stop; :class:`TrainingCancelled` is raised.
        checkpoint_path: Where to write the trained student (safetensors, atomic).
        exclude: Pool rows never trained on (e.g. images that could not be decoded, whose
            rows are blank); they must not be labeled.
        view_boxes: A fixed bank of views ``(N, V, 5)`` (:mod:`activekd_core.views`).
            Each step every row uses one of its views (replacing the random crop and
            flip), and with ``kd`` then ``teacher_probs`` must be ``(N, V, C)``: the
            teacher's output on each view, so the student distils from the teacher on the
            very view it sees.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: Inconsistent inputs (the message says which).
        TrainingCancelled: ``cancel`` was set.
    """
    config = config or TrainConfig()
    device = pick_device(config.device)
    info = distributed.init_distributed(device)
    if info.enabled and not info.is_main:
        # Rank 0 is the source of truth: its inputs and config replace this rank's.
        pixels, labeled, y, teacher_probs, config, exclude, view_boxes = _receive_round(info)
        device = pick_device(config.device)
    labeled = np.asarray(labeled, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if view_boxes is not None:
        view_boxes = np.ascontiguousarray(view_boxes, dtype=np.float32)
    _check_inputs(pixels, labeled, y, teacher_probs, config.kd, view_boxes)
    excluded = np.unique(np.asarray(exclude if exclude is not None else [], dtype=np.int64))
    if excluded.size and (excluded.min() < 0 or excluded.max() >= pixels.shape[0]):
        raise ValueError("train_round: excluded rows out of range")
    if np.isin(labeled, excluded).any():
        raise ValueError("train_round: a labeled row is also excluded (an undecodable image cannot be trained on)")
    if info.enabled and info.is_main:
        _send_round(info, pixels, labeled, y, teacher_probs, config, excluded, view_boxes)
    teacher = None
    if config.kd:
        teacher = np.ascontiguousarray(teacher_probs, dtype=np.float32)
        if config.teacher_logit_adjust:
            teacher = logit_adjusted_probs(teacher, config.teacher_logit_adjust)
        num_classes = teacher.shape[-1]
    else:
        num_classes = config.num_classes or int(y.max()) + 1
    if y.max() >= num_classes:
        raise ValueError(f"train_round: label {int(y.max())} out of range for {num_classes} classes")

    n = pixels.shape[0]
    mask = np.ones(n, dtype=bool)
    mask[labeled] = False
    mask[excluded] = False
    unlabeled = np.flatnonzero(mask)
    if len(unlabeled) == 0:
        keep = np.ones(n, dtype=bool)
        keep[excluded] = False
        unlabeled = np.flatnonzero(keep)
    steps = derive_steps(config, len(labeled), n)

    torch.manual_seed(config.seed)
    model, init_info = build_student(
        config.arch,
        num_classes,
        pretrained=config.pretrained,
        weights=config.weights,
        use_local_cache=config.use_local_cache,
        download=config.download_weights,
        width=config.width,
    )
    model.alpha = config.alpha if config.kd else 1.0
    model.beta = config.beta
    model.image_size = config.image_size  # type: ignore[assignment]
    if not config.kd:
        model.kd_head.requires_grad_(False)
    on_cuda = device.type == "cuda"
    use_cl = on_cuda and config.channels_last
    use_amp = on_cuda and config.amp
    model.to(device)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    model.train()
    net: nn.Module = distributed.wrap_model(model, device, info)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, config.warmup_frac))

    data = _RoundBatches(
        pixels,
        labeled,
        y,
        unlabeled,
        teacher,
        steps,
        config.batch_labeled,
        config.batch_unlabeled,
        config.seed,
        distributed.rank_slice(config.batch_labeled, info),
        distributed.rank_slice(config.batch_unlabeled, info),
        view_boxes,
    )
    loader = DataLoader(
        data,
        batch_size=None,
        shuffle=False,
        num_workers=config.num_workers,
        pin_memory=on_cuda,
        persistent_workers=False,
        prefetch_factor=4 if config.num_workers > 0 else None,
    )
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed * 1009 + 17 + info.rank)
    pad = max(1, config.image_size // 8) if config.augment else 0
    log_every = config.log_every or max(1, steps // 50)
    losses = torch.zeros(steps, device=device)
    parts = torch.zeros(steps, 3, device=device)
    per_step_images = config.batch_labeled + (config.batch_unlabeled if config.kd else 0)
    ce_weight = torch.from_numpy(balanced_class_weights(y, num_classes)).to(device) if config.ce_class_weight else None

    if on_cuda:
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    warm_steps = max(1, steps // 10)
    warm_time: float | None = None
    start = time.perf_counter()
    last_report = (start, 0)  # (time, steps done) at the previous progress report
    done = 0
    report = progress if info.is_main else None
    for step, batch in enumerate(loader):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled(done, steps)
        yl = batch["yl"].to(device, non_blocking=True)
        if view_boxes is not None:  # the bank's views replace the random crop and flip
            xl = render_views(prepare_batch(batch["xl"], device), batch["boxes_l"], config.image_size)
            if config.kd:
                xu = render_views(prepare_batch(batch["xu"], device), batch["boxes_u"], config.image_size)
        else:
            xl = _to_model_input(batch["xl"], device, config.image_size, False)
            if config.kd:
                xu = _to_model_input(batch["xu"], device, config.image_size, False)
        bl = xl.shape[0]
        x = torch.cat([xl, xu], 0) if config.kd else xl
        if view_boxes is None and (pad or (config.flip and config.augment)):
            x = augment_batch(x, gen, pad, config.flip and config.augment)
        if use_cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
            ce_logits, kd_logits = net(x)
        if config.kd:
            tl = batch["tl"].to(device, non_blocking=True)
            tu = batch["tu"].to(device, non_blocking=True)
            loss, lp = dho_loss(
                ce_logits[:bl], kd_logits[:bl], kd_logits[bl:], yl, tl, tu, config.temperature, ce_weight
            )
            parts[step] = torch.stack([lp["ce"], lp["kd_l"], lp["kd_u"]])
        else:
            loss = ce_loss(ce_logits, yl, ce_weight)
            parts[step, 0] = loss.detach()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses[step] = loss.detach()
        done = step + 1
        if done == warm_steps and steps > warm_steps:
            if on_cuda:
                torch.cuda.synchronize(device)
            warm_time = time.perf_counter()
        if report is not None and (done % log_every == 0 or done == steps):
            now = time.perf_counter()
            window = losses[max(0, done - log_every) : done].mean().item()
            # pace of the latest steps (the first ones include warm-up): an ETA that is not inflated
            per_step = (now - last_report[0]) / max(done - last_report[1], 1)
            last_report = (now, done)
            ips = per_step_images / max(per_step, 1e-9)
            eta = per_step * (steps - done)
            left = f"about {eta:.0f} s left" if done < steps else "done"
            report(done, steps, f"step {done}/{steps} · loss {window:.4f} · {ips:,.0f} img/s · {left}")
    if on_cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if cancel is not None and cancel.is_set() and done < steps:
        raise TrainingCancelled(done, steps)

    distributed.sync_buffers(model, info)
    if net is not model:
        del net  # drop the DDP wrapper (and its reducer) now, not at some later collection
    model.eval()
    tail = max(1, steps // 10)
    loss_cpu = losses.float().cpu().numpy()
    parts_cpu = parts.float().cpu().numpy()
    metrics: dict[str, Any] = {
        "steps": steps,
        "steps_uncapped": uncapped_steps(config, len(labeled), n),
        "step_rule": "fixed" if config.steps is not None else config.step_rule,
        "first_loss": float(loss_cpu[:tail].mean()),
        "final_loss": float(loss_cpu[-tail:].mean()),
        "final_ce": float(parts_cpu[-tail:, 0].mean()),
        "final_kd_labeled": float(parts_cpu[-tail:, 1].mean()) if config.kd else None,
        "final_kd_unlabeled": float(parts_cpu[-tail:, 2].mean()) if config.kd else None,
        "seconds": seconds,
        "images_per_second": per_step_images * steps / max(seconds, 1e-9),
        "images_per_second_steady": (
            per_step_images * (steps - warm_steps) / max(start + seconds - warm_time, 1e-9)
            if warm_time is not None
            else None
        ),
        "device": str(device),
        "device_name": device_name(device),
        "world_size": info.world_size,
        "arch": config.arch,
        "init": init_info["init"],
        "image_size": config.image_size,
        "views": 0 if view_boxes is None else int(view_boxes.shape[1]),
        "kd": config.kd,
        "alpha": model.alpha,
        "beta": model.beta,
        "n_labeled": int(len(labeled)),
        "n_pool": int(n),
        "num_classes": int(num_classes),
        "amp_bf16": use_amp,
        "channels_last": use_cl,
        "seed": config.seed,
    }
    if checkpoint_path is not None and info.is_main:
        cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
        save_student(model, Path(checkpoint_path), extra={"metrics": metrics, "config": cfg})
        metrics["checkpoint"] = str(checkpoint_path)
    distributed.barrier(info)
    return TrainResult(model=model, metrics=metrics, device=str(device))


def measure_step_seconds(config: TrainConfig, num_classes: int, steps: int = 4) -> float:
    """Seconds per optimisation step of ``config`` on this machine, measured on synthetic data.

    Trains ``steps`` steps (at least 2) of a fresh student on random pixels at
    ``config.image_size`` with the real batch sizes and loss, and returns the mean time
    of the steps after the first (which pays for start-up). Used to estimate a round's
    time before it starts.
    """
    from dataclasses import replace

    steps = max(2, int(steps))
    n = config.batch_labeled + config.batch_unlabeled
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (n, config.image_size, config.image_size, 3), dtype=np.uint8)
    labeled = np.arange(config.batch_labeled)
    y = np.arange(config.batch_labeled) % num_classes
    teacher = np.full((n, num_classes), 1.0 / num_classes, dtype=np.float32) if config.kd else None
    # Weights do not change the speed: a random init needs no weights file.
    cfg = replace(config, steps=steps, num_classes=num_classes, log_every=steps, num_workers=0, pretrained=False,
                  weights=None)
    res = train_round(px, labeled, y, teacher, cfg)
    steady = res.metrics.get("images_per_second_steady")
    per_step_images = config.batch_labeled + (config.batch_unlabeled if config.kd else 0)
    if steady:
        return per_step_images / float(steady)
    return float(res.metrics["seconds"]) / steps


@torch.inference_mode()
def predict_student(
    model: nn.Module,
    pixels: npt.NDArray[np.uint8],
    batch_size: int = 256,
    device: str | torch.device | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    image_size: int | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Combined probabilities and pooled features of the student for every image.

    Args:
        model: A trained :class:`DHOStudent` (or DDP wrapper).
        pixels: uint8 ``(N, S, S, 3)``.
        batch_size: Images per forward pass.
        device: Where to run (default: where the model's parameters are).
        alpha: CE-head weight (default: the model's, 1.0 for a CE-only student).
        beta: KD temperature (default: the model's).
        image_size: Side the student expects (default: the size it was trained at,
            else the pixels' own size).

    Returns:
        ``(probs (N, C) float32, features (N, D) float32)``.
    """
    student: DHOStudent = getattr(model, "module", model)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"predict_student: pixels must be uint8 (N, S, S, 3), got {pixels.dtype} {pixels.shape}")
    dev = torch.device(device) if device is not None else next(student.parameters()).device
    student.to(dev)
    was_training = student.training
    student.eval()
    size = image_size or getattr(student, "image_size", None) or pixels.shape[1]
    a = student.alpha if alpha is None else alpha
    b = student.beta if beta is None else beta
    use_amp = dev.type == "cuda"
    use_cl = dev.type == "cuda"
    from activekd_core.student import combine_probs

    probs = np.empty((pixels.shape[0], student.num_classes), dtype=np.float32)
    feats = np.empty((pixels.shape[0], student.feature_dim), dtype=np.float32)
    for start in range(0, pixels.shape[0], batch_size):
        chunk = torch.from_numpy(np.array(pixels[start : start + batch_size]))  # copy: memmaps are read-only
        x = _to_model_input(chunk, dev, size, use_cl)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
            ce, kd, f = student.forward_all(x)
        probs[start : start + len(chunk)] = combine_probs(ce, kd, a, b).float().cpu().numpy()
        feats[start : start + len(chunk)] = f.float().cpu().numpy()
    if was_training:
        student.train()
    return probs, feats
