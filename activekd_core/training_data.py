"""What one training step is fed: the round's batches, their device input and augmentation.

* :class:`RoundBatches`: a map-style dataset whose item ``step`` is this rank's whole batch
  for that step. Rows come from a per-step stream ``default_rng([seed, step])``, so the
  batches do not depend on the number of DataLoader workers; the workers only gather uint8
  bytes.
* :func:`to_model_input` and :func:`augment_batch`: conversion to float, ImageNet
  normalisation, resizing and augmentation (random crop with reflect padding, optional
  horizontal flip) on the device.
* :func:`check_inputs`: the boundary checks of ``train_round``'s arrays.
* :func:`send_round` / :func:`receive_round`: rank 0's inputs and config broadcast to the
  other ranks under ``torchrun`` (pixels by file path when they are a ``.npy`` memory map).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from activekd_core import distributed
from activekd_core.student import prepare_batch
from activekd_core.training_config import TrainConfig

__all__ = [
    "RoundBatches",
    "augment_batch",
    "check_inputs",
    "memmap_source",
    "receive_round",
    "send_round",
    "to_model_input",
]


class RoundBatches(Dataset):
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


def to_model_input(
    pixels: Tensor, device: torch.device, image_size: int, channels_last: bool
) -> Tensor:
    """uint8 ``(B, S, S, 3)`` pixels -> normalised float ``(B, 3, size, size)`` on ``device``."""
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


def check_inputs(
    pixels: np.ndarray, labeled: np.ndarray, y: np.ndarray, teacher_probs: np.ndarray | None, kd: bool,
    view_boxes: np.ndarray | None = None,
) -> None:
    """Raise ``ValueError`` (naming ``train_round``) when the round's arrays do not fit together."""
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


def memmap_source(pixels: np.ndarray) -> str | None:
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


def send_round(
    info: distributed.DistInfo,
    pixels: np.ndarray,
    labeled: np.ndarray,
    y: np.ndarray,
    teacher_probs: np.ndarray | None,
    config: TrainConfig,
    exclude: np.ndarray | None = None,
    view_boxes: np.ndarray | None = None,
) -> None:
    """Rank 0: broadcast this round's inputs and config to the other ranks."""
    source = memmap_source(pixels)
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


def receive_round(
    info: distributed.DistInfo,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, TrainConfig, np.ndarray | None, np.ndarray | None]:
    """Other ranks: receive rank 0's inputs and config (the counterpart of :func:`send_round`)."""
    spec = distributed.broadcast_object(None, info)
    pixels = np.load(spec["pixels_path"], mmap_mode="r") if spec["pixels_path"] else spec["pixels"]
    return (pixels, spec["labeled"], spec["y"], spec["teacher_probs"], spec["config"], spec.get("exclude"),
            spec.get("view_boxes"))
