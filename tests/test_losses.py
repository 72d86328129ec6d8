"""DHO loss and CE-only loss against explicit hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from activekd_core.losses import ce_loss, dho_loss, kd_loss, teacher_logits_from_probs


def _softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def _hand_kd(student: list[list[float]], teacher_p: list[list[float]], t: float) -> float:
    """T^2 * mean_rows sum_c p_T log(p_T / q_T) with p_T = softmax(log p / T), q_T = softmax(s / T)."""
    total = 0.0
    for s_row, p_row in zip(student, teacher_p):
        p_t = _softmax([math.log(v) / t for v in p_row])
        q_t = _softmax([v / t for v in s_row])
        total += sum(a * (math.log(a) - math.log(b)) for a, b in zip(p_t, q_t))
    return t * t * total / len(student)


def _hand_ce(logits: list[list[float]], y: list[int]) -> float:
    return sum(-math.log(_softmax(row)[c]) for row, c in zip(logits, y)) / len(y)


CE_L = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]
KD_L = [[1.0, -0.5, 0.0], [0.3, 1.2, -0.7]]
KD_U = [[0.0, 0.0, 2.0], [-1.0, 0.5, 0.5], [0.7, 0.1, 0.2]]
Y = [0, 2]
T_L = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]
T_U = [[0.05, 0.05, 0.9], [0.3, 0.4, 0.3], [0.6, 0.3, 0.1]]


def test_kd_loss_matches_hand_computation():
    got = kd_loss(torch.tensor(KD_U), torch.tensor(T_U), temperature=2.0).item()
    assert got == pytest.approx(_hand_kd(KD_U, T_U, 2.0), rel=1e-5)


def test_kd_loss_is_zero_when_student_matches_teacher():
    p = torch.tensor(T_U)
    assert kd_loss(torch.log(p), p, 2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_teacher_probs_equal_teacher_logits_under_softmax():
    # softmax(log p / T) == softmax(z / T) when p = softmax(z): probs lose nothing.
    z = torch.tensor([[3.0, -1.0, 0.5], [0.0, 2.0, 1.0]])
    p = torch.softmax(z, -1)
    for t in (1.0, 2.0, 4.0):
        a = torch.softmax(teacher_logits_from_probs(p) / t, -1)
        b = torch.softmax(z / t, -1)
        assert torch.allclose(a, b, atol=1e-6)


def test_dho_loss_matches_hand_computation():
    loss, parts = dho_loss(
        torch.tensor(CE_L), torch.tensor(KD_L), torch.tensor(KD_U), torch.tensor(Y),
        torch.tensor(T_L), torch.tensor(T_U), temperature=2.0,
    )
    ce = _hand_ce(CE_L, Y)
    kd_l = _hand_kd(KD_L, T_L, 2.0)
    kd_u = _hand_kd(KD_U, T_U, 2.0)
    assert loss.item() == pytest.approx(0.5 * ce + 0.5 * (kd_l + kd_u), rel=1e-5)
    assert parts["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert parts["kd_l"].item() == pytest.approx(kd_l, rel=1e-5)
    assert parts["kd_u"].item() == pytest.approx(kd_u, rel=1e-5)


def test_dho_gradients_reach_both_heads_only_through_their_terms():
    ce = torch.tensor(CE_L, requires_grad=True)
    kdl = torch.tensor(KD_L, requires_grad=True)
    kdu = torch.tensor(KD_U, requires_grad=True)
    loss, _ = dho_loss(ce, kdl, kdu, torch.tensor(Y), torch.tensor(T_L), torch.tensor(T_U))
    loss.backward()
    # d(0.5*CE)/d ce_logits = 0.5 * (softmax - onehot) / B
    expected = [[0.5 * (p - (1.0 if c == y else 0.0)) / 2 for c, p in enumerate(_softmax(row))] for row, y in zip(CE_L, Y)]
    assert torch.allclose(ce.grad, torch.tensor(expected), atol=1e-6)
    assert kdl.grad.abs().sum() > 0 and kdu.grad.abs().sum() > 0


def test_ce_only_loss_is_plain_cross_entropy():
    assert ce_loss(torch.tensor(CE_L), torch.tensor(Y)).item() == pytest.approx(_hand_ce(CE_L, Y), rel=1e-6)


def test_kd_loss_rejects_shape_mismatch_and_bad_temperature():
    with pytest.raises(ValueError, match="shape"):
        kd_loss(torch.zeros(2, 3), torch.full((2, 4), 0.25))
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.zeros(2, 3), torch.full((2, 3), 1 / 3), temperature=0.0)


def test_hard_zero_teacher_probability_stays_finite():
    p = torch.tensor([[1.0, 0.0, 0.0]])
    assert math.isfinite(kd_loss(torch.zeros(1, 3), p).item())


def test_class_weighted_ce_matches_hand_computation():
    from activekd_core.losses import balanced_class_weights

    y = [0, 0, 0, 1]
    w = balanced_class_weights(y, 3)
    # L / (K * n_c): 4 / (2 * 3) for class 0, 4 / (2 * 1) for class 1, 1 for the unlabeled class 2.
    assert w.tolist() == pytest.approx([2 / 3, 2.0, 1.0])
    logits = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, 1.0, 0.0], [0.5, -0.5, 0.0]]
    per = [-math.log(_softmax(row)[c]) for row, c in zip(logits, y)]
    hand = sum(w[c] * v for c, v in zip(y, per)) / sum(w[c] for c in y)
    got = ce_loss(torch.tensor(logits), torch.tensor(y), torch.tensor(w)).item()
    assert got == pytest.approx(hand, rel=1e-5)
    assert got != pytest.approx(_hand_ce(logits, y), rel=1e-3)  # the weighting changes the loss
    assert balanced_class_weights([1, 0, 2, 1, 0, 2], 3).tolist() == pytest.approx([1.0, 1.0, 1.0])
    parts = dho_loss(torch.tensor(CE_L), torch.tensor(KD_L), torch.tensor(KD_U), torch.tensor(Y), torch.tensor(T_L),
                     torch.tensor(T_U), ce_weight=torch.tensor([1.0, 1.0, 3.0]))[1]
    # classes 0 and 2 weighted 1 and 3: weighted mean of the two per-row CE terms
    rows = [-math.log(_softmax(r)[c]) for r, c in zip(CE_L, Y)]
    assert parts["ce"].item() == pytest.approx((rows[0] + 3 * rows[1]) / 4, rel=1e-5)


def test_logit_adjusted_teacher_removes_the_prior():
    import numpy as np

    from activekd_core.losses import logit_adjusted_probs

    p = np.array([[0.9, 0.05, 0.05], [0.8, 0.15, 0.05], [0.4, 0.3, 0.3]])
    prior = p.mean(0)
    got = logit_adjusted_probs(p, 1.0)
    hand = p / prior
    hand /= hand.sum(1, keepdims=True)
    np.testing.assert_allclose(got, hand, rtol=1e-5)
    np.testing.assert_allclose(logit_adjusted_probs(p, 0.0), p, rtol=1e-6)
    half = logit_adjusted_probs(p, 0.5, prior=[0.5, 0.25, 0.25])
    h = p / np.sqrt([0.5, 0.25, 0.25])
    np.testing.assert_allclose(half, h / h.sum(1, keepdims=True), rtol=1e-5)
    assert got[:, 0].mean() < p[:, 0].mean()  # the over-predicted class loses mass
    with pytest.raises(ValueError, match="prior"):
        logit_adjusted_probs(p, 1.0, prior=[0.5, 0.5])
