"""What callers dispatch on: the teacher Protocols and the one "CLIP part" rule, per teacher kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from activekd_core.teachers import (
    FittableTeacher,
    ImageFeatureTeacher,
    Teacher,
    TeacherUnavailable,
    make_teacher,
    zero_shot_of,
)

CLASSES = ["cat", "dog"]
TINY = {"model_name": "akd-tiny-clip", "pretrained": None, "templates": "single", "device": "cpu"}


def _precomputed(tmp_path: Path) -> dict:
    np.save(tmp_path / "p.npy", np.full((3, 2), 0.5, dtype=np.float32))
    (tmp_path / "ids.txt").write_text("a.png\nb.png\nc.png\n")
    return {"kind": "precomputed", "path": str(tmp_path / "p.npy"), "ids_path": str(tmp_path / "ids.txt")}


def test_zero_shot_of_finds_the_clip_part_of_each_kind(tmp_path: Path) -> None:
    zero = make_teacher({"kind": "clip_zero_shot", **TINY}, classes=CLASSES, cache_dir=tmp_path)
    few = make_teacher({"kind": "clip_few_shot", **TINY}, classes=CLASSES, cache_dir=tmp_path)
    standin = make_teacher({"kind": "standin"}, classes=CLASSES)
    pre = make_teacher(_precomputed(tmp_path), classes=CLASSES)

    assert zero_shot_of(zero) is zero
    assert zero_shot_of(few) is few.zero_shot  # the few-shot teacher shares its zero-shot's features
    assert zero_shot_of(standin) is None
    assert zero_shot_of(pre) is None
    assert all(isinstance(t, Teacher) for t in (zero, few, standin, pre))
    assert isinstance(zero, ImageFeatureTeacher) and not isinstance(few, ImageFeatureTeacher)
    assert [isinstance(t, FittableTeacher) for t in (zero, few, standin, pre)] == [False, True, True, False]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_accelerator_this_machine_lacks_is_teacher_unavailable(tmp_path: Path) -> None:
    teacher = make_teacher({"kind": "clip_zero_shot", **TINY}, classes=CLASSES, cache_dir=tmp_path, device="cuda")
    with pytest.raises(TeacherUnavailable, match="CUDA is not available"):
        teacher.load()
