"""Fault injection: a CLIP feature extraction killed with SIGKILL mid-pool, several times.

After every kill the cache entry is not complete (and cannot be loaded), the rows its
progress record counts as done are the right ones, and the next run resumes exactly there
(it encodes only the remaining rows). The final cache equals an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from activekd_core.images import ImagePool
from activekd_core.teachers.clip_zero_shot import ClipZeroShotTeacher
from activekd_core.teachers.feature_cache import FeatureCache

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
N_IMAGES, BATCH, KILLS = 40, 2, 8
THROTTLE_S = 0.02  # per batch in the child, so that a kill lands mid-pool rather than after it
CLASSES = ["warm", "cold"]

# A zygote: imports torch/open_clip and builds the model once, then forks one extraction
# process per "go" line. Each forked process is a real process that the test SIGKILLs;
# forking saves the ~5-10 s of imports per attempt on a busy 2-core machine.
ZYGOTE = r"""
import json, os, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from activekd_core.images import ImagePool
from activekd_core.teachers.clip_zero_shot import ClipZeroShotTeacher

root, cache_dir, throttle = sys.argv[1], sys.argv[2], float(sys.argv[3])
pool = ImagePool(root=Path(root), ids=sorted(json.loads(Path(root, "ids.json").read_text())))
teacher = ClipZeroShotTeacher(["warm", "cold"], model_name="akd-tiny-clip", pretrained=None, cache_dir=cache_dir,
                              device="cpu", batch_size=2, num_workers=0)
teacher.load()
for command in sys.stdin:
    pid = os.fork()
    if pid == 0:
        first = []

        def progress(done, total, message):
            if not first:
                first.append(done)
                print(f"START {os.getpid()} {done}", flush=True)
            time.sleep(throttle)

        teacher.image_features(pool, progress=progress)
        print(f"ENCODED {teacher.images_encoded}", flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(f"EXIT {status}", flush=True)
"""


def _teacher(cache: Path) -> ClipZeroShotTeacher:
    return ClipZeroShotTeacher(CLASSES, model_name="akd-tiny-clip", pretrained=None, cache_dir=cache, device="cpu",
                               batch_size=BATCH, num_workers=0)


def _pool(root: Path) -> ImagePool:
    rng = np.random.default_rng(7)
    ids = []
    for i in range(N_IMAGES):
        arr = rng.integers(0, 256, (16 + i % 9, 24 - i % 5, 3), dtype=np.uint8)
        name = f"img{i:03d}.png"
        Image.fromarray(arr).save(root / name)
        ids.append(name)
    (root / "ids.json").write_text(json.dumps(ids))
    return ImagePool(root=root, ids=sorted(ids))


class _Zygote:
    """The forking extraction runner (see ZYGOTE)."""

    def __init__(self, root: Path, cache_dir: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(root), str(cache_dir), str(THROTTLE_S)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)

    def run(self) -> tuple[int, int]:
        """Fork one extraction; returns ``(pid, row it starts at)``."""
        self.proc.stdin.write("go\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        words = self.expect("START")
        return int(words[0]), int(words[1])

    def expect(self, word: str) -> list[str]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith(word):
            self.proc.kill()
            raise AssertionError(f"zygote said {line!r} instead of {word}: {self.proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        return line.split()[1:]

    def close(self) -> None:
        self.proc.communicate(timeout=60)  # closes stdin: the zygote's loop ends


@pytest.mark.slow
def test_killed_extraction_resumes_and_never_looks_complete(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    pool = _pool(root)
    ref = np.array(_teacher(tmp_path / "reference").image_features(pool))
    cache_dir = tmp_path / "cache"
    probe = _teacher(cache_dir)
    cache = FeatureCache(cache_dir, probe.feature_cache(pool).fields)
    rnd = random.Random(11)
    kills, done, resume_points = 0, 0, []

    zygote = _Zygote(root, cache_dir)
    try:
        for _ in range(3 * KILLS):
            if kills == KILLS or done == N_IMAGES:  # (all rows written: killed between rename and meta.json)
                break
            pid, start = zygote.run()
            assert start == done, f"resumed at row {start}, but the progress record said {done}"
            resume_points.append(start)
            # A random moment within the rows still to do (about THROTTLE_S per batch plus encoding).
            deadline = time.monotonic() + rnd.uniform(0.0, 0.8) * (N_IMAGES - start) / BATCH * THROTTLE_S
            while time.monotonic() < deadline:
                assert not cache.complete, "cache looked complete while the extraction was still running"
                time.sleep(0.002)
            os.kill(pid, signal.SIGKILL)
            status = int(zygote.expect("EXIT")[0])
            if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
                pytest.fail(f"extraction finished before the kill (start {start}, status {status}); raise THROTTLE_S")
            kills += 1
            assert not cache.complete, f"kill {kills}: half-written cache is marked complete"
            with pytest.raises(FileNotFoundError):
                cache.load()
            state = cache.progress()
            done = int(state["done"]) if state else 0
            assert done % BATCH == 0 and 0 <= done <= N_IMAGES
            if done:  # the rows the progress record counts are the right ones (encoded in a seeded random order)
                partial = cache.partial()
                assert partial.rows.size == done and partial.status.seed is not None
                np.testing.assert_array_equal(partial.features, ref[partial.rows])

        assert kills == KILLS or (kills and done == N_IMAGES)
        _, start = zygote.run()
        encoded = int(zygote.expect("ENCODED")[0])
        assert int(zygote.expect("EXIT")[0]) == 0
    finally:
        zygote.close()
    assert start == done and encoded == N_IMAGES - done, (start, encoded, done)
    assert cache.complete and cache.progress() is None
    np.testing.assert_array_equal(np.asarray(cache.load()), ref)
    assert cache.meta()["resumed_from"] == done
    print(f"{kills} SIGKILLs mid-pool; resume points {resume_points + [start]}; final run encoded {encoded} of "
          f"{N_IMAGES}; merged cache equals an uninterrupted run")
