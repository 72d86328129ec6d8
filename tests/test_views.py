"""The consistent-teacher view bank: fixed views, rendering, cached teacher outputs, training on views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activekd_core.training import TrainConfig, train_round
from activekd_core.training_data import RoundBatches
from activekd_core.views import ViewSpec, image_keys, render_views_uint8, teacher_view_probs, view_boxes

torch.set_num_threads(1)


def test_views_are_fixed_per_image_and_follow_random_resized_crop():
    keys = image_keys([f"img_{i}.png" for i in range(50)])
    spec = ViewSpec(n_views=6, seed=3)
    boxes = view_boxes(keys, spec)
    assert boxes.shape == (50, 6, 5) and boxes.dtype == np.float32
    # the same image gets the same views whatever else is in the pool, and in any order
    np.testing.assert_array_equal(view_boxes(keys[[7]], spec)[0], boxes[7])
    np.testing.assert_array_equal(view_boxes(keys[::-1], spec)[::-1], boxes)
    assert not np.array_equal(view_boxes(keys, ViewSpec(n_views=6, seed=4)), boxes)
    y0, x0, h, w, flip = np.moveaxis(boxes, -1, 0)
    area = h * w
    assert area.min() >= 0.5 - 1e-6 and area.max() <= 1.0 + 1e-6  # scale 0.5-1
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y0 + h <= 1 + 1e-6).all() and (x0 + w <= 1 + 1e-6).all()
    ratio = w / h
    assert ratio.min() >= 0.75 - 1e-4 and ratio.max() <= 4 / 3 + 1e-4
    assert 0.3 < flip.mean() < 0.7 and len(np.unique(boxes[:, :, :4].reshape(-1, 4), axis=0)) == 300
    assert view_boxes(keys, ViewSpec(n_views=6, flip=False))[..., 4].max() == 0


def test_render_crops_resizes_and_flips_the_box():
    img = np.zeros((1, 8, 8, 3), np.uint8)
    img[0, :, :4] = 200  # left half bright
    left = render_views_uint8(img, np.array([[0.0, 0.0, 1.0, 0.25, 0.0]], np.float32), 2)
    assert left.shape == (1, 2, 2, 3) and (left == 200).all()
    right = render_views_uint8(img, np.array([[0.0, 0.75, 1.0, 0.25, 0.0]], np.float32), 2)
    assert (right == 0).all()
    whole = render_views_uint8(img, np.array([[0.0, 0.0, 1.0, 1.0, 1.0]], np.float32), 8)
    np.testing.assert_array_equal(whole[0], img[0, :, ::-1])  # full box, flipped


def test_teacher_outputs_are_cached_per_view_and_resume(tmp_path):
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    boxes = view_boxes(np.arange(10), ViewSpec(n_views=3))
    calls: list[int] = []

    def teacher(views: np.ndarray) -> np.ndarray:
        calls.append(len(views))
        m = views.reshape(len(views), -1).mean(1) / 255.0
        return np.stack([m, 1 - m], 1)

    plain = teacher_view_probs(px, boxes, teacher, 2, chunk=4)
    assert plain.shape == (10, 3, 2)
    # each view's output is the teacher on that rendered view
    np.testing.assert_allclose(plain[2, 1], teacher(render_views_uint8(px[[2]], boxes[2, [1]], 8))[0], rtol=1e-6)

    def crashing(views: np.ndarray) -> np.ndarray:
        if len(calls) >= 1:
            raise RuntimeError("killed")
        return teacher(views)

    calls.clear()
    fields = {"teacher": "mean"}
    with pytest.raises(RuntimeError):
        teacher_view_probs(px, boxes, crashing, 2, chunk=4, cache_root=tmp_path, cache_fields=fields)
    assert calls == [12]  # one chunk of 4 images x 3 views written before the crash
    calls.clear()
    resumed = teacher_view_probs(px, boxes, teacher, 2, chunk=4, cache_root=tmp_path, cache_fields=fields)
    assert calls == [12, 6]  # only the 6 remaining images
    np.testing.assert_allclose(resumed, plain, rtol=1e-6)
    calls.clear()
    again = teacher_view_probs(px, boxes, teacher, 2, chunk=4, cache_root=tmp_path, cache_fields=fields)
    assert calls == [] and np.array_equal(again, resumed)


def test_each_step_distils_from_the_teacher_on_the_view_the_student_sees():
    n, v, c = 30, 4, 4
    boxes = view_boxes(np.arange(n), ViewSpec(n_views=v))
    # teacher output on view j of every image says "class j": the pairing is visible
    teacher = np.tile(np.eye(c, dtype=np.float32)[None], (n, 1, 1))
    px = np.zeros((n, 8, 8, 3), np.uint8)
    data = RoundBatches(px, np.arange(5), np.zeros(5, np.int64), np.arange(5, n), teacher, 3, 16, 16, 0,
                         slice(None), slice(None), boxes)
    for step in range(3):
        batch = data[step]
        for part in ("l", "u"):
            target = batch[f"t{part}"].argmax(1).numpy()
            got = batch[f"boxes_{part}"].numpy()
            # the box handed to the student is view `target` of some image: the teacher output
            # it distils from belongs to the very view it sees
            for i in range(len(got)):
                assert np.flatnonzero((boxes[:, target[i]] == got[i]).all(1)).size == 1


def test_train_round_on_a_view_bank(tmp_path):
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 10)
    px = np.clip(np.array([[220, 30, 30], [30, 200, 40], [40, 50, 230]])[y][:, None, None, :]
                 + rng.normal(0, 20, (30, 16, 16, 3)), 0, 255).astype(np.uint8)
    boxes = view_boxes(np.arange(30), ViewSpec(n_views=4))
    teacher = np.full((30, 4, 3), 0.1, np.float32)
    teacher[np.arange(30), :, y] = 0.8
    cfg = TrainConfig(image_size=16, steps=20, batch_labeled=8, batch_unlabeled=8, width=8, device="cpu")
    res = train_round(px, [0, 10, 20], [0, 1, 2], teacher, cfg, view_boxes=boxes)
    assert res.metrics["views"] == 4 and res.metrics["steps"] == 20
    with pytest.raises(ValueError, match=r"per view \(N, V, C\)"):
        train_round(px, [0, 10, 20], [0, 1, 2], teacher[:, 0], cfg, view_boxes=boxes)
    with pytest.raises(ValueError, match="view_boxes"):
        train_round(px, [0, 10, 20], [0, 1, 2], teacher, cfg, view_boxes=boxes[:5])
    ce = train_round(px, [0, 10, 20], [0, 1, 2], None, TrainConfig(**{**cfg.__dict__, "kd": False}), view_boxes=boxes)
    assert ce.metrics["views"] == 4
