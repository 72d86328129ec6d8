"""train_round / predict_student on tiny CPU problems."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from activekd_core.student import build_student, load_student
from activekd_core.training import (
    TrainConfig,
    TrainingCancelled,
    derive_steps,
    reference_steps,
    uncapped_steps,
    lr_factor,
    predict_student,
    train_round,
)

torch.set_num_threads(1)

COLOURS = np.array([[220, 30, 30], [30, 200, 40], [40, 50, 230]], dtype=np.float64)


def _separable(n_per_class: int = 20, size: int = 16, seed: int = 0):
    """Three classes of noisy solid-colour images; teacher is right with 0.8 confidence."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    base = COLOURS[y][:, None, None, :]
    px = np.clip(base + rng.normal(0, 25, (len(y), size, size, 3)), 0, 255).astype(np.uint8)
    teacher = np.full((len(y), 3), 0.1, np.float32)
    teacher[np.arange(len(y)), y] = 0.8
    return px, y, teacher


def _cfg(**kw) -> TrainConfig:
    base = dict(image_size=16, steps=30, batch_labeled=16, batch_unlabeled=16, width=8, device="cpu", flip=True)
    base.update(kw)
    return TrainConfig(**base)


def test_training_reduces_loss_and_learns_separable_classes(tmp_path):
    px, y, teacher = _separable()
    labeled = np.array([0, 1, 20, 21, 40, 41])
    seen = []
    res = train_round(px, labeled, y[labeled], teacher, _cfg(steps=60), progress=lambda d, t, m: seen.append((d, t, m)),
                      checkpoint_path=tmp_path / "round.safetensors")
    m = res.metrics
    assert m["steps"] == 60 and m["final_loss"] < 0.6 * m["first_loss"]
    assert m["device"] == "cpu" and m["images_per_second"] > 0 and m["kd"] is True
    probs, feats = predict_student(res.model, px)
    assert probs.shape == (60, 3) and feats.shape == (60, 32)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == y).mean() > 0.9
    assert seen[-1][0] == 60 and seen[-1][1] == 60 and "loss" in seen[-1][2] and "done" in seen[-1][2]
    # one time-left estimate, from the pace of the latest steps (the job-level ETA is gone from the page)
    assert any("s left" in msg for _, _, msg in seen[:-1])
    loaded, header = load_student(tmp_path / "round.safetensors", arch="small_cnn")
    assert header["extra"]["metrics"]["steps"] == 60
    p2, _ = predict_student(loaded, px)
    np.testing.assert_allclose(p2, probs, atol=1e-5)


def test_training_is_seed_deterministic_on_cpu():
    px, y, teacher = _separable()
    labeled = np.array([0, 20, 40])
    a = train_round(px, labeled, y[labeled], teacher, _cfg(steps=8, seed=3)).model.state_dict()
    b = train_round(px, labeled, y[labeled], teacher, _cfg(steps=8, seed=3)).model.state_dict()
    c = train_round(px, labeled, y[labeled], teacher, _cfg(steps=8, seed=4)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_data_loader_workers_do_not_change_the_result():
    px, y, teacher = _separable(n_per_class=8)
    labeled = np.array([0, 8, 16])
    a = train_round(px, labeled, y[labeled], teacher, _cfg(steps=4, seed=1)).model.state_dict()
    b = train_round(px, labeled, y[labeled], teacher, _cfg(steps=4, seed=1, num_workers=2)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ce_only_mode_trains_only_the_ce_head_and_predicts_with_it():
    px, y, _ = _separable()
    labeled = np.array([0, 1, 20, 21, 40, 41])
    res = train_round(px, labeled, y[labeled], None, _cfg(kd=False, steps=40, seed=5, num_classes=3))
    torch.manual_seed(5)
    fresh, _ = build_student("small_cnn", 3, width=8)
    assert torch.equal(res.model.kd_head.weight, fresh.kd_head.weight)
    assert not torch.equal(res.model.ce_head.weight, fresh.ce_head.weight)
    assert res.model.alpha == 1.0 and res.metrics["kd"] is False and res.metrics["final_kd_unlabeled"] is None
    probs, _ = predict_student(res.model, px)
    x = torch.from_numpy(px)
    from activekd_core.student import prepare_batch

    with torch.no_grad():
        ce, _ = res.model(prepare_batch(x))
    np.testing.assert_allclose(probs, torch.softmax(ce, -1).numpy(), atol=1e-5)
    assert (probs.argmax(1) == y).mean() > 0.9


def test_cancel_raises_and_leaves_previous_checkpoint_untouched(tmp_path):
    px, y, teacher = _separable(n_per_class=8)
    labeled = np.array([0, 8, 16])
    ckpt = tmp_path / "student.safetensors"
    train_round(px, labeled, y[labeled], teacher, _cfg(steps=3), checkpoint_path=ckpt)
    before = ckpt.read_bytes()
    cancel = threading.Event()

    def progress(done, total, msg):
        if done >= 2:
            cancel.set()

    with pytest.raises(TrainingCancelled) as info:
        train_round(px, labeled, y[labeled], teacher, _cfg(steps=50, log_every=1, seed=9), progress=progress,
                    cancel=cancel, checkpoint_path=ckpt)
    assert info.value.step == 2 and info.value.total == 50
    assert ckpt.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["student.safetensors"]


def test_pixels_of_another_size_are_resized_to_image_size():
    px, y, teacher = _separable(n_per_class=6, size=24)
    res = train_round(px, np.array([0, 6, 12]), np.array([0, 1, 2]), teacher, _cfg(steps=3, image_size=16))
    assert res.model.image_size == 16
    probs, feats = predict_student(res.model, px)
    assert probs.shape == (18, 3)


def test_schedule_and_derived_steps():
    assert lr_factor(0, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 0.1) == pytest.approx(0.5)
    assert lr_factor(99, 100, 0.1) == pytest.approx(1 / 90)
    assert derive_steps(TrainConfig(steps=7), 10, 10) == 7


def _paper_steps(n_labeled: int) -> int:
    """Independent re-statement of the reference loop: pad the labeled list to a multiple of
    64 by repeating it, then count the 64-image batches of 200 passes over it."""
    padded = n_labeled
    while padded % 64:
        padded += 1
    return sum(padded // 64 for _epoch in range(200))


@pytest.mark.parametrize("n_labeled", [1, 10, 63, 64, 65, 128, 129, 200, 1000, 1600])
def test_reference_step_rule_grows_with_the_labels(n_labeled):
    # The pool size no longer matters (the old rule gave 219 steps for any L on a 1,400-image pool).
    for n_pool in (100, 1400, 1_000_000):
        assert derive_steps(TrainConfig(), n_labeled, n_pool) == _paper_steps(n_labeled)
    assert reference_steps(n_labeled) == _paper_steps(n_labeled)


def test_step_cap_and_legacy_pool_rule():
    assert derive_steps(TrainConfig(max_steps=500), 1000, 10) == 500
    assert uncapped_steps(TrainConfig(max_steps=500), 1000, 10) == 3200
    assert derive_steps(TrainConfig(max_steps=5000), 10, 10) == 200
    pool = TrainConfig(step_rule="pool")
    assert derive_steps(pool, 10, 1400) == 219 and derive_steps(pool, 900, 1400) == 219
    assert derive_steps(pool, 10, 10) == pool.min_steps
    with pytest.raises(ValueError, match="step_rule"):
        derive_steps(TrainConfig(step_rule="nope"), 10, 10)


def test_round_records_its_step_count_from_the_rule():
    px, y, teacher = _separable(n_per_class=30)
    labeled = np.arange(0, 90, 1)[:70]  # 70 labels -> 2 batches of 64 per pass
    cfg = _cfg(steps=None, epochs=3, batch_labeled=64)
    res = train_round(px, labeled, y[labeled], teacher, cfg)
    assert res.metrics["steps"] == 3 * 2 == res.metrics["steps_uncapped"]
    assert res.metrics["step_rule"] == "reference"
    capped = train_round(px, labeled, y[labeled], teacher, _cfg(steps=None, epochs=3, batch_labeled=64, max_steps=4))
    assert capped.metrics["steps"] == 4 and capped.metrics["steps_uncapped"] == 6


def test_bad_inputs_are_clear_errors():
    px, y, teacher = _separable(n_per_class=4)
    with pytest.raises(ValueError, match="uint8"):
        train_round(px.astype(np.float32), [0], [0], teacher, _cfg())
    with pytest.raises(ValueError, match="teacher_probs"):
        train_round(px, [0], [0], None, _cfg())
    with pytest.raises(ValueError, match="duplicates"):
        train_round(px, [0, 0], [0, 0], teacher, _cfg())
    with pytest.raises(ValueError, match=r"\(N=12, C\)"):
        train_round(px, [0], [0], teacher[:5], _cfg())
    with pytest.raises(ValueError, match="out of range"):
        train_round(px, [0], [7], teacher, _cfg())


def test_every_round_records_pretrained_or_random(tmp_path, monkeypatch):
    from test_student import _fake_imagenet_file

    from activekd_core.student import PretrainedWeightsMissing

    px, y, teacher = _separable(n_per_class=4, size=32)
    labeled = np.array([0, 4, 8])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    cfg = _cfg(arch="mobilenet_v3_small", image_size=32, steps=2)
    with pytest.raises(PretrainedWeightsMissing, match="hub/checkpoints"):  # never a silent random init
        train_round(px, labeled, y[labeled], teacher, cfg)
    assert train_round(px, labeled, y[labeled], teacher, _cfg(arch="mobilenet_v3_small", image_size=32, steps=2,
                                                             pretrained=False)).metrics["init"] == "random"
    _fake_imagenet_file(tmp_path / "th", "mobilenet_v3_small")
    assert train_round(px, labeled, y[labeled], teacher, cfg).metrics["init"] == "pretrained"


def test_step_time_measurement_needs_no_weights(tmp_path, monkeypatch):
    from activekd_core.training import measure_step_seconds

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))  # no ImageNet file anywhere
    sps = measure_step_seconds(_cfg(arch="mobilenet_v3_small", image_size=32), num_classes=3, steps=2)
    assert sps > 0


def test_imbalance_options_change_training_and_default_off():
    """Class-weighted CE and logit-adjusted teacher targets take effect; both are off by default (the paper)."""
    px, y, teacher = _separable()
    labeled = np.array([0, 1, 2, 3, 4, 5, 20, 40])  # 6 / 1 / 1 labels
    teacher = teacher.copy()
    teacher[:, 0] += 0.3  # a teacher that over-predicts class 0
    teacher /= teacher.sum(1, keepdims=True)
    assert TrainConfig().ce_class_weight is False and TrainConfig().teacher_logit_adjust == 0.0

    def kd_head_class0_share(**kw):
        res = train_round(px, labeled, y[labeled], teacher, _cfg(steps=40, **kw))
        res.model.alpha = 0.0  # the KD head alone: what the targets taught it
        p, _ = predict_student(res.model, px)
        return p[:, 0].mean(), res

    base_share, base = kd_head_class0_share()
    adj_share, _ = kd_head_class0_share(teacher_logit_adjust=1.0)
    assert adj_share < base_share - 0.02  # the teacher's prior is removed from the targets
    cw = train_round(px, labeled, y[labeled], teacher, _cfg(steps=40, ce_class_weight=True))
    w0 = base.model.ce_head.weight.detach()
    assert not torch.allclose(w0, cw.model.ce_head.weight.detach())
    ce_only = train_round(px, labeled, y[labeled], None, _cfg(steps=10, kd=False, num_classes=3, ce_class_weight=True))
    assert ce_only.metrics["steps"] == 10
