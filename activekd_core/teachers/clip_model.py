"""Load an open_clip model for inference: the model, its eval transform and its tokenizer.

Where the weights come from is decided by :mod:`activekd_core.teachers.weights`;
:func:`load_clip` builds the model from that decision (seeded when the weights are
random), puts it in eval mode and in its inference form (:func:`inference_form`), and
turns any open_clip failure into a :class:`~activekd_core.teachers.base.TeacherUnavailable`
that names the checkpoint and says how to supply one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import open_clip
import torch

from activekd_core.teachers.base import TeacherUnavailable
from activekd_core.teachers.weights import how_to_supply, resolve_weights


@contextlib.contextmanager
def _quiet_open_clip_logging() -> Iterator[None]:
    """Raise the root logger to ERROR while open_clip builds a model (it logs every step)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def load_clip(
    model_name: str,
    pretrained: str | None,
    *,
    device: torch.device,
    seed: int = 0,
    hf_cache_dir: str | None = None,
) -> tuple[torch.nn.Module, Callable[[Any], torch.Tensor], Callable[[list[str]], torch.Tensor], dict[str, Any]]:
    """Build an open_clip model, its eval transform and tokenizer.

    Returns:
        ``(model, preprocess, tokenizer, weights_info)``; ``weights_info`` is the
        :func:`resolve_weights` result.

    Raises:
        TeacherUnavailable: See :func:`resolve_weights`; also when the checkpoint does
            not fit the architecture (the message names the file).
    """
    info = resolve_weights(model_name, pretrained, hf_cache_dir=hf_cache_dir)
    try:
        with _quiet_open_clip_logging(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                info["create_name"], pretrained=info["create_pretrained"], device=device, cache_dir=hf_cache_dir, **info["force"]
            )
    except TeacherUnavailable:
        raise
    except Exception as exc:  # open_clip raises RuntimeError/ValueError/KeyError for bad files
        source = info["create_pretrained"] or info["create_name"]
        raise TeacherUnavailable(
            f"could not load CLIP model {model_name!r} with weights {source}: {type(exc).__name__}: {exc}. "
            "Check that the checkpoint belongs to this architecture. " + how_to_supply(model_name, pretrained, None)
        ) from exc
    model.eval()
    model = inference_form(model)
    tokenizer = open_clip.get_tokenizer(info["create_name"])
    return model, preprocess, tokenizer, info


CPU_CLIP_MODELS: tuple[tuple[str, str], ...] = (
    ("ViT-B-32", "the default"),
    ("MobileCLIP2-S0", "about as many images per CPU-second as ViT-B-32 (256 px, a much smaller image tower)"),
)
"""open_clip architectures to offer a CPU-only user (``bench/teacher.py --models``; the
figures are in ``bench/README.md``).

Other MobileCLIP configurations (S1, S2, B) were slower than ViT-B-32 in PyTorch on the
CPU: they are built for mobile accelerators. Weights must be supplied locally (no
downloads here); see :func:`~activekd_core.teachers.weights.resolve_weights`.
"""


def inference_form(model: torch.nn.Module) -> torch.nn.Module:
    """Fold train-time branches into single convolutions (MobileCLIP's FastViT/MobileOne blocks).

    MobileCLIP towers are built in their multi-branch training form; ``timm``'s
    ``reparameterize_model`` turns them into the plain form they were designed to run in
    (the same function up to float rounding) and runs faster on a CPU (``bench/teacher.py
    --models``; figures in ``bench/README.md``). Models without such blocks (ViT, ResNet)
    are returned unchanged.
    """
    if not any(hasattr(m, "reparameterize") for m in model.modules()):
        return model
    from timm.utils.model import reparameterize_model

    return reparameterize_model(model, inplace=True)


__all__ = ["CPU_CLIP_MODELS", "inference_form", "load_clip"]
