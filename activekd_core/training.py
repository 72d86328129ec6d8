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

**Number of steps.** ``config.steps`` if set; otherwise
``clip(ceil(steps_per_pool * N / batch_unlabeled), min_steps, max_steps)``, i.e. about
``steps_per_pool`` passes over the pool of ``N`` images for the unlabeled stream
(defaults 10 passes, 200..3000 steps; 200 steps for the 1.3k-image digits pool, 3000
for pools above ~19k images).

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
        steps: Optimisation steps; ``None`` derives them from the pool size (module notes).
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
        weights: Local ImageNet weights file for torchvision backbones.
        use_local_cache: Look for torchvision's cached ImageNet weights (never downloads).
        width: Width of ``small_cnn``.
        steps_per_pool: Passes over the pool used to derive ``steps``.
        min_steps: Lower bound of derived steps.
        max_steps: Upper bound of derived steps.
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
    weights: Path | None = None
    use_local_cache: bool = True
    width: int = 16
    steps_per_pool: float = 10.0
    min_steps: int = 200
    max_steps: int = 3000
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


def derive_steps(config: TrainConfig, n_pool: int) -> int:
    """Steps for a round: ``config.steps`` or the pool-size rule in the module notes."""
    if config.steps is not None:
        if config.steps < 1:
            raise ValueError(f"TrainConfig.steps must be >= 1, got {config.steps}")
        return int(config.steps)
    raw = math.ceil(config.steps_per_pool * n_pool / max(1, config.batch_unlabeled))
    return int(min(config.max_steps, max(config.min_steps, raw)))


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
    ) -> None:
        self.pixels = pixels
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
        if self.teacher is not None:
            replace = len(self.unlabeled) < self.bu
            ui = rng.choice(len(self.unlabeled), size=self.bu, replace=replace)[self.part_u]
            rows_u = self.unlabeled[ui]
            out["tl"] = torch.from_numpy(self.teacher[rows_l])
            out["xu"] = torch.from_numpy(np.ascontiguousarray(self.pixels[rows_u]))
            out["tu"] = torch.from_numpy(self.teacher[rows_u])
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
    pixels: np.ndarray, labeled: np.ndarray, y: np.ndarray, teacher_probs: np.ndarray | None, kd: bool
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
    if kd:
        if teacher_probs is None:
            raise ValueError("train_round: kd=True needs teacher_probs (N, C); use kd=False for CE-only training")
        if teacher_probs.ndim != 2 or teacher_probs.shape[0] != n:
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
) -> None:
    source = _memmap_source(pixels)
    spec = {
        "pixels_path": source,
        "pixels": None if source else np.ascontiguousarray(pixels),
        "labeled": labeled,
        "y": y,
        "teacher_probs": None if teacher_probs is None else np.asarray(teacher_probs, dtype=np.float32),
        "config": config,
    }
    distributed.broadcast_object(spec, info)


def _receive_round(info: distributed.DistInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, TrainConfig]:
    spec = distributed.broadcast_object(None, info)
    pixels = np.load(spec["pixels_path"], mmap_mode="r") if spec["pixels_path"] else spec["pixels"]
    return pixels, spec["labeled"], spec["y"], spec["teacher_probs"], spec["config"]


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
        pixels, labeled, y, teacher_probs, config = _receive_round(info)
        device = pick_device(config.device)
    labeled = np.asarray(labeled, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    _check_inputs(pixels, labeled, y, teacher_probs, config.kd)
    if info.enabled and info.is_main:
        _send_round(info, pixels, labeled, y, teacher_probs, config)
    teacher = None
    if config.kd:
        teacher = np.ascontiguousarray(teacher_probs, dtype=np.float32)
        if config.teacher_logit_adjust:
            teacher = logit_adjusted_probs(teacher, config.teacher_logit_adjust)
        num_classes = teacher.shape[1]
    else:
        num_classes = config.num_classes or int(y.max()) + 1
    if y.max() >= num_classes:
        raise ValueError(f"train_round: label {int(y.max())} out of range for {num_classes} classes")

    n = pixels.shape[0]
    mask = np.ones(n, dtype=bool)
    mask[labeled] = False
    unlabeled = np.flatnonzero(mask)
    if len(unlabeled) == 0:
        unlabeled = np.arange(n)
    steps = derive_steps(config, n)

    torch.manual_seed(config.seed)
    model, init_info = build_student(
        config.arch,
        num_classes,
        weights=config.weights,
        use_local_cache=config.use_local_cache,
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
    done = 0
    report = progress if info.is_main else None
    for step, batch in enumerate(loader):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled(done, steps)
        xl = _to_model_input(batch["xl"], device, config.image_size, False)
        yl = batch["yl"].to(device, non_blocking=True)
        bl = xl.shape[0]
        if config.kd:
            xu = _to_model_input(batch["xu"], device, config.image_size, False)
            x = torch.cat([xl, xu], 0)
        else:
            x = xl
        if pad or (config.flip and config.augment):
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
            elapsed = time.perf_counter() - start
            window = losses[max(0, done - log_every) : done].mean().item()
            ips = per_step_images * done / max(elapsed, 1e-9)
            eta = elapsed / done * (steps - done)
            report(done, steps, f"step {done}/{steps} · loss {window:.4f} · {ips:,.0f} img/s · ETA {eta:.0f}s")
    if on_cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if cancel is not None and cancel.is_set() and done < steps:
        raise TrainingCancelled(done, steps)

    distributed.sync_buffers(model, info)
    model.eval()
    tail = max(1, steps // 10)
    loss_cpu = losses.float().cpu().numpy()
    parts_cpu = parts.float().cpu().numpy()
    metrics: dict[str, Any] = {
        "steps": steps,
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
