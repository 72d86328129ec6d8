"""Sharded CLIP feature extraction under torchrun: 2 CPU ranks (gloo) write one merged cache.

The merged cache must equal a single-process extraction of the same pool. The shards are
runs of whole batches, so every batch holds the same images as in one process and the
features match bit for bit on the same machine (one torch thread per process).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from activekd_core.teachers.features import shard_cache, shard_rows
from activekd_core.teachers.feature_cache import FeatureCache

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
N_IMAGES, BATCH = 14, 4
SPEC = {"kind": "clip_zero_shot", "model_name": "akd-tiny-clip", "pretrained": None, "batch_size": BATCH,
        "num_workers": 0, "device": "cpu", "templates": "single"}


@pytest.mark.parametrize("n,batch,world", [(14, 4, 2), (100, 8, 3), (5, 4, 3), (0, 4, 2), (64, 64, 1)])
def test_shards_are_contiguous_runs_of_whole_batches(n, batch, world):
    parts = [shard_rows(n, batch, world, r) for r in range(world)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    for (a0, b0), (a1, _) in zip(parts, parts[1:]):
        assert b0 == a1  # contiguous, in rank order
    for a, b in parts:
        assert (a % batch == 0 or a == n) and (b % batch == 0 or b == n) and a <= b
    n_batches = [-(-(b - a) // batch) for a, b in parts]
    assert max(n_batches) - min(n_batches) <= 1
    with pytest.raises(ValueError, match="not in a world"):
        shard_rows(n, batch, world, world)


def _make_project(base: Path) -> Path:
    from activekd_core.project import Project

    rng = np.random.default_rng(3)
    root = base / "images"
    for i in range(N_IMAGES):
        cls = ("red", "blue")[i % 2]
        arr = rng.integers(0, 256, (20 + 3 * i, 40 - i, 3), dtype=np.uint8)
        arr[:, :, 0 if cls == "red" else 2] = 255
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / cls / f"im{i:02d}.png")
    project = Project.create(base / "project", root, [("red", "a red picture"), ("blue", "a blue picture")], dict(SPEC),
                             train={"steps": 4, "image_size": 16, "batch_labeled": 4, "batch_unlabeled": 4})
    folder = project.folder
    project.close()
    return folder


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_merge_one_cache_equal_to_single_process(tmp_path):
    from activekd_core.project import Project
    from activekd_core.teachers import make_teacher

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    folder = _make_project(tmp_path)
    with Project.open(folder) as project:
        pool = project.pool()
        spec = project.teacher_spec()
        reference = make_teacher(spec, cache_dir=tmp_path / "single")
        ref = np.array(reference.image_features(pool))
        ref_probs = reference.predict_proba(pool)
        assert reference.images_encoded == N_IMAGES and ref.shape[0] == N_IMAGES

        # Leave rank 1's shard half done, as a killed rank would: the launch below resumes it.
        cache = project.teacher().feature_cache(pool)
        start, stop = shard_rows(N_IMAGES, BATCH, 2, 1)
        assert (start, stop) == (8, 14)
        writer = shard_cache(cache, start, stop).open_writer(stop - start, ref.shape[1])
        writer.write(0, ref[start : start + BATCH])
        del writer

    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "activekd_core", "extract-features",
         "--project", str(folder), "--threads", "1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "rank 0/2: rows 0:8, encoded 8 images" in proc.stderr, log[-3000:]
    assert "rank 1/2: rows 8:14, encoded 2 images, resumed after 4 rows" in proc.stderr, log[-3000:]
    assert f"teacher probabilities for {N_IMAGES} images x 2 classes" in proc.stdout

    merged = FeatureCache(folder / "cache" / "features", cache.fields)
    assert merged.key == cache.key and merged.complete
    meta = merged.meta()
    assert meta["world_size"] == 2 and meta["shards"] == [[0, 8], [8, 14]] and meta["failed"] == []
    assert not (merged.dir / "shards").exists() and not (merged.dir / "features.partial.npy").exists()
    got = np.asarray(merged.load())
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    exact = bool(np.array_equal(got, ref))
    print(f"merged cache bit-identical to single process: {exact}")

    with Project.open(folder) as project:  # the app's single-process code reuses the merged entry
        probs = project.teacher_probs()
        np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=1e-5)
        again = make_teacher(spec, cache_dir=folder / "cache" / "features")
        np.testing.assert_array_equal(np.asarray(again.image_features(pool)), got)
        assert again.images_encoded == 0


def _finished_shard(cache: FeatureCache, start: int, stop: int, rows: np.ndarray, failed=None) -> None:
    writer = shard_cache(cache, start, stop).open_writer(stop - start, rows.shape[1])
    writer.write(0, rows[start:stop], failed)
    writer.finalize()


def test_interrupted_merge_resumes_and_keeps_failed_rows(tmp_path):
    from activekd_core.teachers.features import merge_shards

    rows = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    cache = FeatureCache(tmp_path, {"pool": "p"})
    ranges = [shard_rows(10, 4, 2, r) for r in range(2)]  # (0, 8), (8, 10)
    _finished_shard(cache, 0, 8, rows, failed=[[5, "b.png", "truncated"]])
    _finished_shard(cache, 8, 10, rows)
    partial = cache.open_writer(10, 3)  # a merge killed after its first rows
    partial.write(0, rows[:3])
    del partial
    assert not cache.complete
    out = merge_shards(cache, 10, 3, "float32", ranges, {"world_size": 2})
    np.testing.assert_array_equal(np.asarray(out), rows)
    meta = cache.meta()
    assert meta["resumed_from"] == 3 and meta["world_size"] == 2 and meta["failed"] == [[5, "b.png", "truncated"]]
    assert not (cache.dir / "shards").exists()


def test_missing_shard_fails_the_merge_and_says_why(tmp_path):
    from activekd_core.teachers.features import merge_shards

    rows = np.ones((10, 3), np.float32)
    cache = FeatureCache(tmp_path, {"pool": "p"})
    _finished_shard(cache, 0, 8, rows)  # rank 1's shard was written on another node's disk
    with pytest.raises(RuntimeError, match="rows 8:10 is not complete .* shared filesystem"):
        merge_shards(cache, 10, 3, "float32", [(0, 8), (8, 10)], {})
    assert not cache.complete and cache.progress()["done"] == 8
    assert (cache.dir / "shards").exists()  # kept for a rerun


@pytest.mark.slow
def test_torchrun_ranks_stop_together_when_the_project_does_not_open(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "activekd_core", "extract-features",
         "--project", str(tmp_path / "missing")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,  # a rank left waiting would time out
    )
    assert proc.returncode != 0
    assert "no project here" in proc.stderr
