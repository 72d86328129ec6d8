"""Pick the torch device for training and inference: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import os

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """Resolve a device preference.

    Args:
        preference: ``"auto"`` (CUDA if available, then MPS, then CPU), or an explicit
            torch device string such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
            Under ``torchrun`` with ``"auto"``/``"cuda"``, ``LOCAL_RANK`` picks the GPU.

    Returns:
        The device.

    Raises:
        ValueError: If an explicitly requested accelerator is not available.
    """
    pref = (preference or "auto").strip().lower()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(pref)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"pick_device: {preference!r} requested but CUDA is not available here")
        if device.index is None:
            device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"pick_device: {preference!r} requested but MPS is not available here")
    return device


def device_name(device: torch.device) -> str:
    """Human-readable name, e.g. ``"cuda:0 (NVIDIA H100 80GB HBM3)"`` or ``"cpu (2 threads)"``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
