"""Offline stand-in teacher (not CLIP): naming, valid probabilities, learning digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from activekd_core.images import ImagePool
from activekd_core.teachers import STANDIN_LABEL, StandInTeacher, make_teacher, standin_features

CLASSES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    gray = (d.images / 16.0 * 255).astype(np.uint8)
    gray = np.repeat(np.repeat(gray, 3, axis=1), 3, axis=2)  # 24x24
    return np.repeat(gray[..., None], 3, axis=3), d.target.astype(np.int64)


def test_features_are_deterministic_and_shaped(digits: tuple[np.ndarray, np.ndarray]) -> None:
    px, _ = digits
    a = standin_features(px[:50])
    b = standin_features(px[:50], batch=7)
    assert a.shape == (50, 432) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.isfinite(a).all()
    with pytest.raises(ValueError, match="pixels must be"):
        standin_features(px[:5, :, :, 0])


def test_uniform_before_labels_and_says_so(digits: tuple[np.ndarray, np.ndarray]) -> None:
    t = StandInTeacher(CLASSES)
    p = t.predict_proba_pixels(digits[0][:5])
    np.testing.assert_allclose(p, 0.1)
    d = t.describe()
    json.dumps(d)
    assert d["kind"] == "standin" and d["label"] == STANDIN_LABEL and d["uniform"] and not d["is_clip"]
    assert "not CLIP" in d["display_name"] and "uniform" in d["display_name"]


def test_reference_probe_learns_digits(digits: tuple[np.ndarray, np.ndarray]) -> None:
    px, y = digits
    perm = np.random.default_rng(0).permutation(len(y))
    ref, test = perm[:400], perm[400:]
    t = StandInTeacher(CLASSES)
    t.fit_reference(px[ref], y[ref])
    p = t.predict_proba_pixels(px[test])
    assert p.shape == (len(test), 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    acc = (p.argmax(1) == y[test]).mean()
    assert acc > 0.85, acc  # chance is 0.10
    assert "reference set of 400" in t.describe()["display_name"]


def test_few_shot_probe_and_temperature(digits: tuple[np.ndarray, np.ndarray]) -> None:
    px, y = digits
    lab = np.concatenate([np.flatnonzero(y == c)[:3] for c in range(10)])
    sharp = StandInTeacher(CLASSES)
    sharp.fit_pixels(px, lab, y[lab])
    p = sharp.predict_proba_pixels(px)
    assert (p.argmax(1) == y).mean() > 0.5
    soft = StandInTeacher(CLASSES, temperature=4.0)
    soft.fit_pixels(px, lab, y[lab])
    q = soft.predict_proba_pixels(px)
    np.testing.assert_array_equal(p.argmax(1), q.argmax(1))
    assert q.max(1).mean() < p.max(1).mean()
    assert sharp.describe()["mode"] == "few-shot" and "30 project labels" in sharp.display_name()


def test_unseen_classes_keep_small_mass_and_single_class(digits: tuple[np.ndarray, np.ndarray]) -> None:
    px, y = digits
    lab = np.concatenate([np.flatnonzero(y == c)[:5] for c in (0, 1)])
    t = StandInTeacher(CLASSES, smoothing=0.05)
    t.fit_pixels(px, lab, y[lab])
    p = t.predict_proba_pixels(px[:20])
    np.testing.assert_allclose(p[:, 2:], 0.005, atol=1e-6)
    one = StandInTeacher(CLASSES, smoothing=0.1)
    one.fit_pixels(px, lab[:3], y[lab[:3]])
    q = one.predict_proba_pixels(px[:3])
    np.testing.assert_allclose(q[:, 0], 0.91, atol=1e-5)


def test_pool_interface_from_files(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    px, y = digits
    idx = np.concatenate([np.flatnonzero(y == c)[:8] for c in range(3)])
    ids = []
    for k, i in enumerate(idx):
        Image.fromarray(px[i]).resize((40, 40)).save(tmp_path / f"{k:03d}.png")
        ids.append(f"{k:03d}.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    pool = ImagePool(root=tmp_path, ids=ids + ["bad.png"])
    t = make_teacher({"kind": "standin", "classes": ["0", "1", "2"], "temperature": 1.0})
    assert isinstance(t, StandInTeacher)
    labeled = np.array([0, 1, 8, 9, 16, 17])
    t.fit(pool, labeled, y[idx][labeled])
    p = t.predict_proba(pool)
    assert p.shape == (25, 3)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p[:24].argmax(1) == y[idx]).mean() > 0.6
    t.fit(pool, np.array([], np.int64), np.array([], np.int64))
    np.testing.assert_allclose(t.predict_proba(pool), 1 / 3, atol=1e-6)


def test_class_balanced_probe_does_not_collapse_on_an_imbalanced_pool(digits: tuple[np.ndarray, np.ndarray]) -> None:
    # A pool that is ~90% digit 0 and 5% each of digits 1 and 2, with labels in the same
    # proportions (18 / 1 / 1). With strong regularisation (small C, as a probe on a few
    # labels of a hard domain effectively is) the unweighted probe's intercept carries the
    # 90% prior and it answers "0" for everything; the class-balanced probe does not.
    px, y = digits
    rows = np.concatenate([np.flatnonzero(y == 0)[:170], np.flatnonzero(y == 1)[:10], np.flatnonzero(y == 2)[:10]])
    pool, yp = px[rows], y[rows]
    lab = np.concatenate([np.arange(18), [170, 180]])
    classes = ["0", "1", "2"]
    balanced = StandInTeacher(classes, C=0.001)
    balanced.fit_pixels(pool, lab, yp[lab])
    pred = balanced.predict_proba_pixels(pool).argmax(1)
    shares = np.bincount(pred, minlength=3) / len(pred)
    assert shares.min() >= 0.03, shares  # every class is predicted for a reasonable share
    recall = [(pred[yp == c] == c).mean() for c in range(3)]
    assert min(recall) >= 0.5, recall
    plain = StandInTeacher(classes, C=0.001, class_weight=None)
    plain.fit_pixels(pool, lab, yp[lab])
    plain_shares = np.bincount(plain.predict_proba_pixels(pool).argmax(1), minlength=3) / len(pred)
    assert plain_shares[0] > 0.97  # the collapse the balanced fit removes (the old default)
    assert balanced.describe()["spec"]["class_weight"] == "balanced"
    with pytest.raises(ValueError, match="class_weight"):
        StandInTeacher(classes, class_weight="auto")
