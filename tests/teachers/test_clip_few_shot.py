"""CLAP few-shot teacher: prototype fitting on synthetic features and on the tiny CLIP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from activekd_core.images import ImagePool
from activekd_core.teachers import ClapConfig, ClipFewShotTeacher, ClipZeroShotTeacher, fit_clap_prototypes, make_teacher

torch.set_num_threads(1)


def _separable(seed: int = 0, n_per: int = 20, c: int = 4, d: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((c, d))
    y = np.repeat(np.arange(c), n_per)
    x = centres[y] + 0.3 * rng.standard_normal((len(y), d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    # Zero-shot prototypes that are wrong: a rotation of the true directions.
    text = np.roll(centres, 1, axis=0) + 0.5 * rng.standard_normal((c, d))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    return x.astype(np.float32), y, text.astype(np.float32)


def test_fit_moves_prototypes_and_improves_train_accuracy() -> None:
    x, y, text = _separable()
    protos, info = fit_clap_prototypes(x, y, text, scale=100.0, config=ClapConfig(steps=200))
    assert info["train_acc_before"] < 0.5
    assert info["train_acc_after"] == 1.0
    assert info["train_ce_after"] < info["train_ce_before"]
    assert np.linalg.norm(protos - text, axis=1).min() > 1e-3
    pred = (x @ (protos / np.linalg.norm(protos, axis=1, keepdims=True)).T).argmax(1)
    assert (pred == y).mean() == 1.0


def test_l2_pull_keeps_prototypes_near_zero_shot() -> None:
    x, y, _ = _separable(seed=1)
    # Half-right zero-shot prototypes (each mixes its class mean with the next one's).
    means = np.stack([x[y == c].mean(0) for c in range(4)])
    text = means + np.roll(means, 1, axis=0)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    loose, _ = fit_clap_prototypes(x, y, text, 100.0, ClapConfig(steps=150, l2_weight=0.0))
    tight, info = fit_clap_prototypes(x, y, text, 100.0, ClapConfig(steps=150, l2_weight=50.0))
    assert np.linalg.norm(tight - text) < np.linalg.norm(loose - text)
    assert np.linalg.norm(tight - text) < 0.2 * np.linalg.norm(loose - text)
    # alpha = zero-shot mean probability of the true class per class.
    assert len(info["alpha"]) == 4 and all(0 < a < 1 for a in info["alpha"])


def test_unlabeled_class_prototype_stays_at_zero_shot() -> None:
    x, y, text = _separable(seed=2)
    keep = y != 3
    protos, info = fit_clap_prototypes(x[keep], y[keep], text, 100.0, ClapConfig(steps=100, unlabeled_weight=1.0))
    assert info["alpha"][3] == 1.0
    moved = np.linalg.norm(protos - text, axis=1)
    assert moved[3] < moved[:3].max()


def test_refit_from_scratch_is_deterministic() -> None:
    x, y, text = _separable(seed=3, n_per=500)
    cfg = ClapConfig(steps=50, batch_size=64, seed=4)
    a, _ = fit_clap_prototypes(x, y, text, 100.0, cfg)
    b, _ = fit_clap_prototypes(x, y, text, 100.0, cfg)
    np.testing.assert_array_equal(a, b)


@pytest.fixture()
def pool(tmp_path: Path) -> ImagePool:
    rng = np.random.default_rng(0)
    ids = []
    for i in range(12):
        arr = np.zeros((32, 32, 3), np.uint8)
        arr[..., i % 3] = 200
        arr += rng.integers(0, 40, arr.shape, dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / f"{i:02d}.png")
        ids.append(f"{i:02d}.png")
    return ImagePool(root=tmp_path, ids=ids)


def test_few_shot_teacher_on_tiny_clip(pool: ImagePool, tmp_path: Path) -> None:
    zs = ClipZeroShotTeacher(["r", "g", "b"], model_name="akd-tiny-clip", pretrained=None, cache_dir=tmp_path / "cache",
                             device="cpu", num_workers=0)
    fs = ClipFewShotTeacher(zs, ClapConfig(steps=100))
    before = fs.predict_proba(pool)
    np.testing.assert_allclose(before, zs.predict_proba(pool), atol=1e-6)
    assert "not fitted yet" in fs.describe()["display_name"]
    y_all = np.arange(12) % 3
    labeled = np.array([0, 1, 2, 3, 4, 5])
    fs.fit(pool, labeled, y_all[labeled])
    p = fs.predict_proba(pool)
    assert p.shape == (12, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert zs.images_encoded == 12  # fit and predict reuse the cached features
    d = fs.describe()
    json.dumps(d)
    assert d["kind"] == "clip_few_shot" and d["fitted"] and d["fit"]["n_labels"] == 6
    assert d["fit"]["train_acc_after"] >= d["fit"]["train_acc_before"]
    fs.fit(pool, np.array([], np.int64), np.array([], np.int64))
    np.testing.assert_allclose(fs.predict_proba(pool), before, atol=1e-6)
    rebuilt = make_teacher(fs.spec(), cache_dir=tmp_path / "cache", device="cpu")
    assert isinstance(rebuilt, ClipFewShotTeacher) and rebuilt.config.steps == 100


def _reference_clap(x: np.ndarray, y: np.ndarray, raw_text: np.ndarray, scale: float, steps: int,
                    batches: list[np.ndarray]) -> np.ndarray:
    """Independent re-statement of the reference CLAP loop, with the SGD-momentum update and the
    warm-up/decay schedule written out by hand (autograd only for the gradient)."""
    xt = torch.as_tensor(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=torch.float64)
    t = torch.as_tensor(raw_text, dtype=torch.float64)
    yt = torch.as_tensor(y)
    c = t.shape[0]
    zs = torch.softmax(scale * xt @ (t / t.norm(dim=1, keepdim=True)).T, dim=1)
    onehot = torch.nn.functional.one_hot(yt, c).double()
    alpha = torch.diag(zs.T @ onehot) / onehot.sum(0)  # every class has a label in this case
    w = t.clone()
    buf = torch.zeros_like(w)
    warm = 0.1 * steps
    for s, idx in enumerate(batches):
        factor = s / max(1.0, warm) if s < warm else max(0.0, (steps - s) / max(1.0, steps - warm))
        wg = w.clone().requires_grad_(True)
        logits = scale * xt[idx] @ (wg / wg.norm(dim=1, keepdim=True)).T
        loss = torch.nn.functional.cross_entropy(logits, yt[idx]) + (alpha * ((wg - t) ** 2).sum(1)).mean()
        (grad,) = torch.autograd.grad(loss, wg)
        buf = grad if s == 0 else 0.9 * buf + grad
        w = w - 0.01 * factor * buf
    return w.numpy()


def test_clap_update_matches_an_independent_reference_on_a_small_case() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    raw = (3.0 * rng.normal(size=(3, 5))).astype(np.float32)  # raw text embeddings: norm far from 1
    cfg = ClapConfig(batch_size=4, seed=11)
    steps = 300 * 6 // 4  # floor(300 * L / batch)
    gen = torch.Generator().manual_seed(11)
    batches = [torch.randint(6, (4,), generator=gen).numpy() for _ in range(steps)]  # same draws as the fit
    ours, info = fit_clap_prototypes(x, y, raw, 10.0, cfg)
    assert info["steps"] == steps == 450
    ref = _reference_clap(x.astype(np.float64), y, raw.astype(np.float64), 10.0, steps, batches)
    np.testing.assert_allclose(ours, ref, rtol=2e-4, atol=2e-5)
    # the prototypes stay on the raw scale (not unit vectors) and the pull targets the raw text
    assert np.linalg.norm(ours, axis=1).min() > 2.0


def test_clap_defaults_are_the_reference() -> None:
    from activekd_core.teachers.clip_few_shot import clap_steps, warmup_linear

    cfg = ClapConfig()
    assert (cfg.lr, cfg.momentum, cfg.batch_size, cfg.warmup_frac, cfg.l2_weight) == (0.01, 0.9, 64, 0.1, 1.0)
    assert [clap_steps(n, cfg) for n in (1, 10, 64, 100)] == [4, 46, 300, 468]
    assert warmup_linear(0, 100, 0.1) == 0.0 and warmup_linear(5, 100, 0.1) == 0.5
    assert warmup_linear(10, 100, 0.1) == 1.0 and warmup_linear(55, 100, 0.1) == 0.5


def test_raw_text_prototypes_are_the_unnormalised_means(tmp_path: Path) -> None:
    zs = ClipZeroShotTeacher(["r", "g"], model_name="akd-tiny-clip", pretrained=None, cache_dir=tmp_path / "cache",
                             device="cpu", num_workers=0)
    raw, unit = zs.raw_text_prototypes(), zs.text_prototypes()
    assert raw.shape == unit.shape
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    if all(len(t) == 1 for t in zs.class_texts):  # one template: the same direction
        np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, atol=1e-5)
