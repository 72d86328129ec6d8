"""train_round under DistributedDataParallel: 2 CPU processes with gloo."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from activekd_core.distributed import DistInfo, rank_slice


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    colours = np.array([[220, 30, 30], [30, 200, 40], [40, 50, 230]], dtype=np.float64)
    px = np.clip(colours[y][:, None, None, :] + rng.normal(0, 25, (36, 12, 12, 3)), 0, 255).astype(np.uint8)
    teacher = np.full((36, 3), 0.1, np.float32)
    teacher[np.arange(36), y] = 0.8
    return px, y, teacher


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """Both launch styles in one process group (spawning is the slow part), and the collectives."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    from activekd_core import distributed

    info = distributed.init_distributed(torch.device("cpu"))
    found = {
        "one_fails": distributed.all_ok(rank != 1, info),
        "all_fine": distributed.all_ok(True, info),
        "gathered": distributed.all_gather_object({"rank": rank}, info),
        "info": [info.world_size, info.rank, info.backend],
    }
    (Path(out) / f"collectives{rank}.json").write_text(json.dumps(found))
    for mode in ("spmd", "follow"):
        folder = Path(out) / mode
        folder.mkdir(exist_ok=True)
        _train(rank, world, port, str(folder), mode)


def _train(rank: int, world: int, port: int, out: str, mode: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from activekd_core import distributed
    from activekd_core.student import save_student
    from activekd_core.training import TrainConfig, follow_train_round, train_round

    px, y, teacher = _data()
    labeled = np.array([0, 1, 12, 13, 24, 25])
    cfg = TrainConfig(image_size=12, steps=12, batch_labeled=8, batch_unlabeled=8, width=8, device="cpu", seed=2)
    if mode == "follow":
        if rank == 0:  # pixels as a .npy memory map: other ranks open the file themselves
            np.save(Path(out) / "pixels.npy", px)
            mm = np.load(Path(out) / "pixels.npy", mmap_mode="r")
            res = train_round(mm, labeled, y[labeled], teacher, cfg, checkpoint_path=Path(out) / "ckpt.safetensors")
        else:
            res = follow_train_round()
    else:  # every rank passes the same arguments (rank 0's are broadcast by value)
        res = train_round(px, labeled, y[labeled], teacher, cfg, checkpoint_path=Path(out) / "ckpt.safetensors")
    save_student(res.model, Path(out) / f"rank{rank}.safetensors", extra={"world_size": res.metrics["world_size"],
                                                                          "first": res.metrics["first_loss"],
                                                                          "final": res.metrics["final_loss"],
                                                                          "n_labeled": res.metrics["n_labeled"]})
    if mode == "follow":
        distributed.shutdown()


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("mode", ["spmd", "follow"])
def test_two_gloo_ranks_train_one_identical_model(two_rank_run, mode):
    from activekd_core.student import load_student

    tmp_path = two_rank_run / mode
    m0, h0 = load_student(tmp_path / "rank0.safetensors")
    m1, h1 = load_student(tmp_path / "rank1.safetensors")
    assert h0["extra"]["world_size"] == 2 == h1["extra"]["world_size"]
    assert h0["extra"]["n_labeled"] == 6 == h1["extra"]["n_labeled"]
    s0, s1 = m0.state_dict(), m1.state_dict()
    assert s0.keys() == s1.keys()
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    from activekd_core.student import build_student

    torch.manual_seed(2)  # the training seed: this is the untrained start
    init, _ = build_student("small_cnn", 3, width=8)
    assert not torch.equal(init.ce_head.weight, m0.ce_head.weight)  # it did train
    assert h0["extra"]["final"] < h0["extra"]["first"]
    assert (tmp_path / "ckpt.safetensors").is_file()  # written once, by rank 0


def test_all_ok_and_all_gather_object_across_ranks(two_rank_run):
    for rank in (0, 1):
        found = json.loads((two_rank_run / f"collectives{rank}.json").read_text())
        assert found["one_fails"] is False and found["all_fine"] is True  # one rank's failure reaches every rank
        assert found["gathered"] == [{"rank": 0}, {"rank": 1}]
        assert found["info"] == [2, rank, "gloo"]


def test_collectives_without_a_process_group():
    from activekd_core.distributed import DistInfo, all_gather_object, all_ok

    assert all_ok(True, DistInfo()) and not all_ok(False, DistInfo())
    assert all_gather_object("x", DistInfo()) == ["x"]


@pytest.mark.parametrize("batch,world", [(64, 2), (10, 3), (5, 4)])
def test_rank_slices_partition_the_batch(batch, world):
    parts = [rank_slice(batch, DistInfo(world_size=world, rank=r)) for r in range(world)]
    rows = [i for p in parts for i in range(batch)[p]]
    assert rows == list(range(batch))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_not_distributed_without_world_size(monkeypatch):
    from activekd_core.distributed import init_distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed(torch.device("cpu"))
    assert not info.enabled and info.is_main
