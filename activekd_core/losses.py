"""Training losses of the DHO student.

DHO loss (as used by PCoreSet), per step with a labeled batch ``x_l`` and an
unlabeled batch ``x_u``::

    loss = 0.5 * CE(ce_head(x_l), y) + 0.5 * (KD(x_l) + KD(x_u))
    KD(x) = T^2 * KL( softmax(t(x) / T) || softmax(kd_head(x) / T) ),  T = 2, batchmean

**Teacher given as probabilities.** Teachers here return probabilities ``p`` (rows
sum to 1), not logits. We use ``t = log p`` as the teacher logits. This is exact,
not an approximation: if the teacher's logits were ``z`` with ``p = softmax(z)``, then
``log p = z - logsumexp(z)``, which differs from ``z`` by a per-row constant, and
softmax is invariant to that, so ``softmax(log p / T) == softmax(z / T)`` for every
``T``. Probabilities are clamped at ``1e-8`` before the log so that a hard zero
stays finite.

**CE-only mode** (the "no distillation" baseline): ``ce_loss`` trains only the CE
head on the labeled batch; the KD head receives no gradient and stays at its random
initialisation. Such a student therefore predicts with the CE head alone
(``alpha = 1`` in :func:`activekd_core.student.combine_probs`).

**Options for imbalanced pools** (both off by default, as in the paper):

* class-weighted CE (:func:`balanced_class_weights`): the CE head's loss weights each
  labeled image by ``L / (K * n_c)`` (``L`` labels, ``K`` classes with a label, ``n_c``
  labels of its class; scikit-learn's "balanced" rule), so a class with 2 labels pulls as
  hard as one with 40. The weighted mean is normalised by the summed weights
  (``F.cross_entropy(weight=...)``).
* logit-adjusted teacher targets (:func:`logit_adjusted_probs`): the teacher's logits
  become ``log p - tau * log prior`` with ``prior`` the teacher's own mean predicted
  distribution over the pool (the "mean_prob" column of
  :func:`activekd_core.bias.priors`), then renormalised. ``tau = 1`` removes the
  teacher's prior completely (Menon et al., "Long-tail learning via logit adjustment",
  ICLR 2021, post-hoc form); ``tau = 0`` leaves the targets unchanged.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_TEMPERATURE = 2.0
_PROB_FLOOR = 1e-8


def teacher_logits_from_probs(teacher_probs: Tensor) -> Tensor:
    """Teacher logits ``log(clamp(p, 1e-8))`` from probabilities (see the module notes)."""
    return torch.log(teacher_probs.float().clamp_min(_PROB_FLOOR))


def kd_loss(student_kd_logits: Tensor, teacher_probs: Tensor, temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))`` averaged over the batch (batchmean).

    Args:
        student_kd_logits: KD-head logits ``(B, C)``.
        teacher_probs: Teacher probabilities ``(B, C)``; ``t = log p``.
        temperature: Distillation temperature ``T`` (> 0).

    Returns:
        A scalar tensor (float32).
    """
    if temperature <= 0:
        raise ValueError(f"kd_loss: temperature must be > 0, got {temperature}")
    if student_kd_logits.shape != teacher_probs.shape:
        raise ValueError(
            f"kd_loss: student logits {tuple(student_kd_logits.shape)} and teacher probabilities "
            f"{tuple(teacher_probs.shape)} differ in shape"
        )
    t = teacher_logits_from_probs(teacher_probs)
    log_q = F.log_softmax(student_kd_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(t / temperature, dim=-1)
    kl = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
    return kl * (temperature**2)


def ce_loss(ce_logits_labeled: Tensor, y: Tensor, weight: Tensor | None = None) -> Tensor:
    """Cross-entropy of the CE head on the labeled batch (mean over the batch; weighted mean with ``weight``)."""
    w = None if weight is None else weight.to(ce_logits_labeled.device, torch.float32)
    return F.cross_entropy(ce_logits_labeled.float(), y.long(), weight=w)


def balanced_class_weights(y: npt.ArrayLike, num_classes: int) -> np.ndarray:
    """Per-class CE weights ``L / (K * n_c)`` for classes with labels, 1 for classes without.

    Args:
        y: Class indices of the labeled images.
        num_classes: ``C``.

    Returns:
        float32 ``(C,)``; all ones when every class has the same count.
    """
    y = np.asarray(y, dtype=np.int64).ravel()
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    present = counts > 0
    w = np.ones(num_classes, dtype=np.float64)
    if present.any():
        w[present] = y.size / (present.sum() * counts[present])
    return w.astype(np.float32)


def logit_adjusted_probs(teacher_probs: npt.ArrayLike, tau: float, prior: npt.ArrayLike | None = None) -> np.ndarray:
    """Teacher probabilities with ``tau * log prior`` removed from their logits (module notes).

    Args:
        teacher_probs: ``(N, C)`` teacher probabilities, or ``(N, V, C)`` for a bank of views.
        tau: Strength (0: unchanged; 1: the prior removed).
        prior: ``(C,)`` prior to remove; default the mean over all rows (and views).

    Returns:
        float32 probabilities of the input's shape, summing to 1 over the last axis.
    """
    p = np.asarray(teacher_probs, dtype=np.float64)
    if tau == 0:
        return p.astype(np.float32)
    c = p.shape[-1]
    pi = p.reshape(-1, c).mean(axis=0) if prior is None else np.asarray(prior, dtype=np.float64)
    if pi.shape != (c,):
        raise ValueError(f"prior must have shape ({c},), got {pi.shape}")
    logits = np.log(np.clip(p, _PROB_FLOOR, None)) - tau * np.log(np.clip(pi / pi.sum(), _PROB_FLOOR, None))
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def dho_loss(
    ce_logits_l: Tensor,
    kd_logits_l: Tensor,
    kd_logits_u: Tensor,
    y: Tensor,
    teacher_probs_l: Tensor,
    teacher_probs_u: Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    ce_weight: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The DHO loss ``0.5 * CE(x_l) + 0.5 * (KD(x_l) + KD(x_u))``.

    Args:
        ce_logits_l: CE-head logits on the labeled batch ``(Bl, C)``.
        kd_logits_l: KD-head logits on the labeled batch ``(Bl, C)``.
        kd_logits_u: KD-head logits on the unlabeled batch ``(Bu, C)``.
        y: Class indices of the labeled batch ``(Bl,)``.
        teacher_probs_l: Teacher probabilities for the labeled batch ``(Bl, C)``.
        teacher_probs_u: Teacher probabilities for the unlabeled batch ``(Bu, C)``.
        temperature: ``T`` (2 in DHO/PCoreSet).
        ce_weight: Optional per-class CE weights ``(C,)`` (class-weighted CE; None in the paper).

    Returns:
        ``(loss, parts)`` with ``parts`` holding detached ``ce``, ``kd_l`` and ``kd_u``.
    """
    ce = ce_loss(ce_logits_l, y, ce_weight)
    kd_l = kd_loss(kd_logits_l, teacher_probs_l, temperature)
    kd_u = kd_loss(kd_logits_u, teacher_probs_u, temperature)
    loss = 0.5 * ce + 0.5 * (kd_l + kd_u)
    return loss, {"ce": ce.detach(), "kd_l": kd_l.detach(), "kd_u": kd_u.detach()}
