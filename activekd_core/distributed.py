"""Multi-process training under ``torchrun`` (DistributedDataParallel).

Launch any training entry point with ``torchrun --nproc_per_node=N ...``; torchrun sets
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
:func:`init_distributed` then joins the process group (NCCL when the device is CUDA,
gloo otherwise) and :func:`activekd_core.training.train_round` does the rest:

* every rank builds the same fresh student from the same seed; DDP also broadcasts
  rank 0's parameters and buffers when it wraps the model;
* every step draws the *global* batch (``batch_labeled`` + ``batch_unlabeled`` rows)
  from the same per-step random stream on every rank, and each rank keeps its own
  contiguous slice (:func:`rank_slice`), so N ranks together see exactly the batch a
  single process would see; DDP averages the gradients;
* BatchNorm statistics are per rank during the step (DDP broadcasts rank 0's buffers
  at each forward, and :func:`sync_buffers` once more after the last step), so every
  rank ends with the same model, close to but not bit for bit the single-process one;
* only rank 0 reports progress and writes the checkpoint.

Teacher feature extraction (``extract-features``) shards the pool by rank instead; see
:func:`activekd_core.teachers.features.extract_features_sharded`.

Multi-node: run the same torchrun command on every node with ``--nnodes``,
``--node_rank`` and a shared ``--rdzv_endpoint`` (or ``--master_addr``/``--master_port``).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly trivial) process group.

    Attributes:
        world_size: Number of processes (1 when not distributed).
        rank: Global rank of this process.
        local_rank: Rank within this node (picks the GPU).
        backend: ``"nccl"``, ``"gloo"`` or ``""`` when not distributed.
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that logs and writes files)."""
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 if unset)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device | None = None) -> DistInfo:
    """Join the process group when launched with ``WORLD_SIZE > 1``; otherwise a no-op.

    Safe to call more than once: an existing process group is reused.

    Args:
        device: The training device; CUDA selects NCCL (and sets the current GPU), any
            other device gloo.

    Returns:
        The :class:`DistInfo` of this process.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this torch build")
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_nccl = device is not None and device.type == "cuda"
    backend = "nccl" if use_nccl else "gloo"
    if use_nccl:
        torch.cuda.set_device(device)
    # Long timeout: other ranks may wait while rank 0 computes teacher probabilities.
    minutes = int(os.environ.get("ACTIVEKD_DIST_TIMEOUT_MIN", "120"))
    dist.init_process_group(backend=backend, world_size=world, rank=rank, timeout=timedelta(minutes=minutes))
    return DistInfo(world, rank, local_rank, backend)


def current() -> DistInfo:
    """The process group this process is already in (trivial when none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_world_size(),
            dist.get_rank(),
            int(os.environ.get("LOCAL_RANK", "0")),
            str(dist.get_backend()),
        )
    return DistInfo()


def rank_slice(batch: int, info: DistInfo) -> slice:
    """The contiguous part of a global batch of ``batch`` rows that this rank processes.

    Rows are split as evenly as possible (``numpy.array_split`` semantics), so every
    rank gets ``batch // world`` or one more row.
    """
    base, extra = divmod(batch, info.world_size)
    start = info.rank * base + min(info.rank, extra)
    stop = start + base + (1 if info.rank < extra else 0)
    return slice(start, stop)


def wrap_model(model: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when ``info.enabled``; else return it unchanged."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        return DDP(model, device_ids=[device.index])
    return DDP(model)


def sync_buffers(model: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the *start* of each forward, so after the last step each
    rank holds running statistics updated by its own last batch; this makes the final
    models identical on all ranks.
    """
    if not info.enabled:
        return
    for buf in model.buffers():
        dist.broadcast(buf.data, src=0)


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; fine for labels and probabilities)."""
    if not info.enabled:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` when not distributed)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_ok(ok: bool, info: DistInfo) -> bool:
    """True on every rank when ``ok`` is true on all ranks; also a barrier.

    Use it instead of a bare :func:`barrier` after work that can fail on one rank: the
    others then learn of the failure at once instead of waiting at the next collective
    until the process-group timeout.
    """
    if not info.enabled:
        return bool(ok)
    device = torch.device("cuda", torch.cuda.current_device()) if info.backend == "nccl" else torch.device("cpu")
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def barrier(info: DistInfo) -> None:
    """Wait for all ranks (no-op when not distributed)."""
    if info.enabled:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group if one was joined.

    DistributedDataParallel wrappers sit in reference cycles; they are collected here, while
    the group still exists, so no reducer is torn down after its process group is gone.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
