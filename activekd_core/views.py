"""Consistent teacher views: a fixed bank of ``V`` augmented views per image.

The reference distils from the teacher's output on the *same* augmented crop the student
sees (RandomResizedCrop(scale 0.5-1) + horizontal flip; Beyer et al., CVPR 2022: a
consistent teacher). Running the teacher at every step is too slow on a CPU, so each
image gets ``V`` views fixed once by a per-image seed; the teacher's output is computed
once per view (:func:`teacher_view_probs`, cached and resumable); at every step the
student draws one of those views, renders it (:func:`render_views`) and distils from that
view's teacher output.

A view is a box in *fractions* of the image, ``(y0, x0, h, w, flip)``, so the teacher
(at its resolution) and the student (at its own) see the same part of the picture. Boxes
follow RandomResizedCrop's sampling on the unit square: area fraction ``U(scale)``,
log-uniform aspect ratio in ``ratio``, up to 10 tries, else the whole image; the flip is a
fair coin. The seed of image ``i`` is ``(seed, key_i)``, where ``key_i`` is a stable
integer per image (:func:`image_keys`: CRC-32 of its id), so views do not change when
the pool grows or is reordered.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from activekd_core.progress import ProgressFn


@dataclass(frozen=True)
class ViewSpec:
    """How the view bank is drawn.

    Attributes:
        n_views: Views per image ``V`` (0: no bank, the student's own random crops).
        scale: Area fraction range of a crop (the reference: 0.5-1).
        ratio: Aspect ratio range (RandomResizedCrop's default 3/4-4/3).
        flip: Horizontal flips (a fair coin per view).
        seed: Seed shared by all images (combined with each image's key).
    """

    n_views: int = 8
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (cache keys, provenance)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def image_keys(ids: Sequence[str]) -> np.ndarray:
    """A stable integer per image id (CRC-32 of its UTF-8 bytes)."""
    return np.asarray([zlib.crc32(str(i).encode("utf-8")) for i in ids], dtype=np.int64)


def view_boxes(keys: npt.ArrayLike, spec: ViewSpec) -> np.ndarray:
    """The ``V`` views of every image: float32 ``(N, V, 5)`` rows ``(y0, x0, h, w, flip)`` in fractions.

    Args:
        keys: One stable integer per image (:func:`image_keys`).
        spec: The bank's settings.
    """
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    v = int(spec.n_views)
    out = np.zeros((keys.size, v, 5), dtype=np.float32)
    lo, hi = math.log(spec.ratio[0]), math.log(spec.ratio[1])
    for n, key in enumerate(keys):
        rng = np.random.default_rng([int(spec.seed), int(key)])
        for j in range(v):
            box = (0.0, 0.0, 1.0, 1.0)
            for _ in range(10):
                area = rng.uniform(spec.scale[0], spec.scale[1])
                aspect = math.exp(rng.uniform(lo, hi))
                w, h = math.sqrt(area * aspect), math.sqrt(area / aspect)
                if w <= 1.0 and h <= 1.0:
                    box = (rng.uniform(0.0, 1.0 - h), rng.uniform(0.0, 1.0 - w), h, w)
                    break
            flip = float(spec.flip and rng.random() < 0.5)
            out[n, j] = (*box, flip)
    return out


def render_views(images: torch.Tensor, boxes: torch.Tensor | np.ndarray, size: int) -> torch.Tensor:
    """Crop each image to its box, resize to ``size`` (bilinear) and flip where the box says.

    Args:
        images: Float ``(B, C, H, W)`` (any affine normalisation: crop and resize commute
            with it).
        boxes: ``(B, 5)`` rows ``(y0, x0, h, w, flip)`` in fractions of the image.
        size: Output side.

    Returns:
        Float ``(B, C, size, size)`` on ``images``' device.
    """
    from torchvision.ops import roi_align

    b, _, height, width = images.shape
    bx = torch.as_tensor(boxes, dtype=torch.float32, device=images.device).reshape(b, 5)
    y0, x0, h, w, flip = bx.unbind(1)
    rois = torch.stack(
        [torch.arange(b, dtype=torch.float32, device=images.device), x0 * width, y0 * height,
         (x0 + w) * width, (y0 + h) * height], dim=1)
    out = roi_align(images.float(), rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return torch.where(flip.bool()[:, None, None, None], out.flip(3), out)


def render_views_uint8(pixels: npt.NDArray[np.uint8], boxes: np.ndarray, size: int) -> np.ndarray:
    """:func:`render_views` for uint8 ``(B, S, S, 3)`` pixels; returns uint8 ``(B, size, size, 3)``."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
    out = render_views(x, boxes, size)
    return out.round().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def teacher_view_probs(
    pixels: npt.NDArray[np.uint8],
    boxes: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    num_classes: int,
    *,
    size: int | None = None,
    cache_root: Path | None = None,
    cache_fields: dict[str, Any] | None = None,
    chunk: int = 256,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """The teacher's probabilities on every view, computed once: float32 ``(N, V, C)``.

    Args:
        pixels: uint8 ``(N, S, S, 3)`` images the views are cut from.
        boxes: ``(N, V, 5)`` views (:func:`view_boxes`).
        predict: Teacher on uint8 view pixels ``(B, size, size, 3)`` -> ``(B, C)`` probabilities.
        num_classes: ``C``.
        size: Side of a rendered view (default: the pixels' side).
        cache_root: Folder for a resumable cache entry (:class:`FeatureCache`); None: no cache.
        cache_fields: What identifies the teacher and pool (added to the cache key with
            the boxes' hash and ``size``). Required with ``cache_root``.
        chunk: Images per teacher call.
        progress: ``progress(done_images, total, message)``.
    """
    n, v = boxes.shape[0], boxes.shape[1]
    size = int(size or pixels.shape[1])
    writer = None
    if cache_root is not None:
        import hashlib

        from activekd_core.teachers.feature_cache import FeatureCache

        if cache_fields is None:
            raise ValueError("teacher_view_probs: cache_fields are required with cache_root")
        fields = {**cache_fields, "boxes": hashlib.sha256(np.ascontiguousarray(boxes).tobytes()).hexdigest()[:16],
                  "size": size, "kind": "teacher_view_probs"}
        cache = FeatureCache(cache_root, fields)
        if cache.complete:
            return np.asarray(cache.load(), dtype=np.float32).reshape(n, v, num_classes)
        with cache.lock():
            if cache.complete:
                return np.asarray(cache.load(), dtype=np.float32).reshape(n, v, num_classes)
            writer = cache.open_writer(n, v * num_classes)
            _fill(pixels, boxes, predict, num_classes, size, chunk, writer.done, progress, writer)
            return np.asarray(writer.finalize(), dtype=np.float32).reshape(n, v, num_classes)
    return _fill(pixels, boxes, predict, num_classes, size, chunk, 0, progress, None)


def _fill(pixels: np.ndarray, boxes: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], c: int, size: int,
          chunk: int, start: int, progress: ProgressFn | None, writer: Any) -> np.ndarray:
    n, v = boxes.shape[0], boxes.shape[1]
    out = np.empty((n, v, c), dtype=np.float32) if writer is None else None
    for s in range(start, n, chunk):
        e = min(n, s + chunk)
        rep = np.repeat(np.asarray(pixels[s:e]), v, axis=0)
        views = render_views_uint8(rep, boxes[s:e].reshape(-1, 5), size)
        probs = np.asarray(predict(views), dtype=np.float32).reshape(e - s, v, c)
        if writer is not None:
            writer.write(s, probs.reshape(e - s, v * c))
        else:
            out[s:e] = probs  # type: ignore[index]
        if progress is not None:
            progress(e, n, f"teacher on {e:,}/{n:,} images x {v} views")
    return out  # type: ignore[return-value]
