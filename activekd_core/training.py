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

**Number of steps**: :func:`activekd_core.training_config.derive_steps` (the reference
rule grows with the labels); settings in :class:`~activekd_core.training_config.TrainConfig`.
Batches, device input and augmentation: :mod:`activekd_core.training_data`.

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

import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader

from activekd_core import distributed
from activekd_core.devices import device_name, pick_device
from activekd_core.losses import balanced_class_weights, ce_loss, dho_loss, logit_adjusted_probs
from activekd_core.progress import Cancelled, ProgressFn
from activekd_core.student import DHOStudent, build_student, prepare_batch, save_student
from activekd_core.training_config import (
    STEP_RULES,
    TrainConfig,
    TrainResult,
    derive_steps,
    lr_factor,
    reference_steps,
    uncapped_steps,
)
from activekd_core.training_data import (
    RoundBatches,
    augment_batch,
    check_inputs,
    receive_round,
    send_round,
    to_model_input,
)
from activekd_core.views import render_views

__all__ = [
    "STEP_RULES",
    "ProgressFn",
    "TrainConfig",
    "TrainResult",
    "TrainingCancelled",
    "augment_batch",
    "derive_steps",
    "follow_train_round",
    "lr_factor",
    "measure_step_seconds",
    "predict_student",
    "reference_steps",
    "train_round",
    "uncapped_steps",
]


class TrainingCancelled(Cancelled):
    """Training stopped because the cancel event was set.

    Attributes:
        step: Number of optimisation steps completed before stopping.
    """

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"training cancelled after {step} of {total} steps")
        self.step = step
        self.total = total


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
        pixels, labeled, y, teacher_probs, config, exclude, view_boxes = receive_round(info)
        device = pick_device(config.device)
    labeled = np.asarray(labeled, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if view_boxes is not None:
        view_boxes = np.ascontiguousarray(view_boxes, dtype=np.float32)
    check_inputs(pixels, labeled, y, teacher_probs, config.kd, view_boxes)
    excluded = np.unique(np.asarray(exclude if exclude is not None else [], dtype=np.int64))
    if excluded.size and (excluded.min() < 0 or excluded.max() >= pixels.shape[0]):
        raise ValueError("train_round: excluded rows out of range")
    if np.isin(labeled, excluded).any():
        raise ValueError("train_round: a labeled row is also excluded (an undecodable image cannot be trained on)")
    if info.enabled and info.is_main:
        send_round(info, pixels, labeled, y, teacher_probs, config, excluded, view_boxes)
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

    data = RoundBatches(
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
            xl = to_model_input(batch["xl"], device, config.image_size, False)
            if config.kd:
                xu = to_model_input(batch["xu"], device, config.image_size, False)
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
    dev = pick_device(str(device)) if device is not None else next(student.parameters()).device
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
        x = to_model_input(chunk, dev, size, use_cl)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
            ce, kd, f = student.forward_all(x)
        probs[start : start + len(chunk)] = combine_probs(ce, kd, a, b).float().cpu().numpy()
        feats[start : start + len(chunk)] = f.float().cpu().numpy()
    if was_training:
        student.train()
    return probs, feats
