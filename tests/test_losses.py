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
