"""CLIP few-shot teacher: CLAP class prototypes fitted on the cached image features.

CLAP (Silva-Rodriguez et al., CVPR 2024) as PCoreSet's few-shot teacher runs it
(erjui/PCoreSet ``clap_others.py``):

* prototypes ``w_c`` start at the RAW (unnormalised) mean text embeddings ``t_c`` and
  are pulled back towards them: ``loss = CE(scale * cos(x, w)) + l2_weight *
  mean_c(alpha_c * ||w_c - t_c||^2)`` (the raw scale matters: it sets how strong the pull
  and how large an SGD step on the normalised direction are);
* ``alpha_c`` = the zero-shot model's mean probability of the true class on class
  ``c``'s labeled images (a class with no label gets ``unlabeled_weight``, default 1:
  its prototype stays at the text; the reference's formula gives 0 there, a case its
  protocol never reaches because every class starts with one label);
* batches of 64 labeled images drawn with replacement, ``floor(300 * L / 64)`` steps;
* SGD lr 0.01, momentum 0.9, linear warm-up over 10 % of the steps then linear decay
  (the schedule of ``transformers.get_linear_schedule_with_warmup``: factor ``s /
  warm`` while ``s < warm``, then ``(total - s) / (total - warm)``).

The reference augments the labeled images (RandomResizedCrop 0.08-1 + flip) at every
step; here training runs on cached features: ``view_features`` (features of a view
bank, :mod:`activekd_core.views`) let each sample draw one of its views, otherwise the
un-augmented features are used. The prototypes are refitted from scratch on all labels
at every ``fit``.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from activekd_core.images import ImagePool
from activekd_core.teachers.base import ProgressFn, check_labels
from activekd_core.teachers.clip_zero_shot import ClipZeroShotTeacher, probs_from_features


@dataclass
class ClapConfig:
    """Hyper-parameters of the CLAP fit (defaults: the reference's).

    Attributes:
        steps: Optimisation steps; None = ``floor(repeats * L / batch_size)`` (at least 1).
        repeats: Passes over the labeled set that the step count covers (300).
        lr: SGD learning rate.
        momentum: SGD momentum.
        warmup_frac: Fraction of steps of linear warm-up.
        l2_weight: Weight of the pull towards the zero-shot prototypes.
        unlabeled_weight: ``alpha_c`` for classes without labels.
        batch_size: Labeled features per step, sampled with replacement.
        seed: Seed for the minibatch (and view) sampling.
    """

    steps: int | None = None
    repeats: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    warmup_frac: float = 0.1
    l2_weight: float = 1.0
    unlabeled_weight: float = 1.0
    batch_size: int = 64
    seed: int = 0


def clap_steps(n_labeled: int, config: ClapConfig) -> int:
    """Steps of a fit on ``n_labeled`` labels: ``config.steps`` or ``floor(repeats * L / batch_size)``, >= 1."""
    if config.steps is not None:
        return max(1, int(config.steps))
    return max(1, (int(config.repeats) * int(n_labeled)) // int(config.batch_size))


def warmup_linear(step: int, total: int, warmup_frac: float) -> float:
    """LR factor: ``step / warm`` while ``step < warm`` (``warm = warmup_frac * total``), then linear decay to 0."""
    warm = warmup_frac * total
    if step < warm:
        return float(step) / float(max(1.0, warm))
    return max(0.0, float(total - step) / float(max(1.0, total - warm)))


def fit_clap_prototypes(
    features: npt.ArrayLike,
    y: npt.ArrayLike,
    zero_shot: npt.ArrayLike,
    scale: float,
    config: ClapConfig | None = None,
    view_features: npt.ArrayLike | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit CLAP prototypes on labeled image features.

    Args:
        features: ``(L, D)`` image features of the labeled images, un-augmented
            (normalised here); they give ``alpha`` and, without ``view_features``, the
            training samples.
        y: ``(L,)`` class indices.
        zero_shot: ``(C, D)`` RAW (unnormalised) mean text embeddings: start point and anchor.
        scale: Logit scale applied to the cosines.
        config: Hyper-parameters.
        view_features: Optional ``(L, V, D)`` features of augmented views; each sampled
            image then uses one of its views, drawn at random.

    Returns:
        ``(prototypes (C, D) float32, unnormalised, info)``; ``info`` holds the class
        weights ``alpha``, the step count, train accuracy and loss before and after.
    """
    cfg = config or ClapConfig()
    x = F.normalize(torch.as_tensor(np.asarray(features, dtype=np.float32)), dim=-1)
    xv = None if view_features is None else F.normalize(torch.as_tensor(np.asarray(view_features, dtype=np.float32)), dim=-1)
    t = torch.as_tensor(np.asarray(zero_shot, dtype=np.float32)).clone()
    labels = torch.as_tensor(np.asarray(y, dtype=np.int64))
    n_classes = t.shape[0]
    with torch.no_grad():
        zs_probs = torch.softmax(scale * x @ F.normalize(t, dim=-1).T, dim=1)
        counts = torch.bincount(labels, minlength=n_classes).float()
        true_p = torch.zeros(n_classes).index_add_(0, labels, zs_probs[torch.arange(len(labels)), labels])
        alpha = torch.where(counts > 0, true_p / counts.clamp_min(1), torch.full_like(counts, cfg.unlabeled_weight))

    steps = clap_steps(len(labels), cfg)
    w = t.clone().requires_grad_(True)
    opt = torch.optim.SGD([w], lr=cfg.lr, momentum=cfg.momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_linear(s, steps, cfg.warmup_frac))
    gen = torch.Generator().manual_seed(cfg.seed)

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            logits = scale * x @ F.normalize(w, dim=-1).T
            return float(F.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).float().mean())

    loss0, acc0 = evaluate()
    for _ in range(steps):
        idx = torch.randint(len(labels), (cfg.batch_size,), generator=gen)
        if xv is not None:
            xb = xv[idx, torch.randint(xv.shape[1], (cfg.batch_size,), generator=gen)]
        else:
            xb = x[idx]
        logits = scale * xb @ F.normalize(w, dim=-1).T
        pull = (alpha * (w - t).pow(2).sum(-1)).mean()
        loss = F.cross_entropy(logits, labels[idx]) + cfg.l2_weight * pull
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    loss1, acc1 = evaluate()
    info = {
        "alpha": alpha.tolist(),
        "steps": steps,
        "train_ce_before": loss0,
        "train_acc_before": acc0,
        "train_ce_after": loss1,
        "train_acc_after": acc1,
        "mean_shift": float((w.detach() - t).norm(dim=-1).mean()),
    }
    return w.detach().numpy().astype(np.float32), info


class ClipFewShotTeacher:
    """CLAP few-shot teacher on top of a :class:`ClipZeroShotTeacher` (shares its feature cache).

    Before the first ``fit`` (or after a fit with no labels) it predicts exactly like the
    zero-shot teacher, and ``describe()`` says so.

    Args:
        zero_shot: The zero-shot teacher that supplies features, prototypes and scale.
        config: CLAP hyper-parameters.
    """

    kind = "clip_few_shot"

    def __init__(self, zero_shot: ClipZeroShotTeacher, config: ClapConfig | None = None) -> None:
        self.zero_shot = zero_shot
        self.classes: list[str] = zero_shot.classes
        self.config = config or ClapConfig()
        self.prototypes: np.ndarray | None = None
        self.fit_info: dict[str, Any] | None = None

    def fit(
        self,
        pool: ImagePool,
        labeled: npt.ArrayLike,
        y: npt.ArrayLike,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Refit the prototypes from scratch on all labels (features from the cache)."""
        labeled, y = check_labels(labeled, y, len(pool), len(self.classes))
        if labeled.size == 0:
            self.prototypes, self.fit_info = None, {"n_labels": 0}
            return
        feats = self.zero_shot.image_features(pool, progress=progress, cancel=cancel)
        order = np.argsort(labeled)  # sorted reads from the memmap
        x = np.asarray(feats[labeled[order]], dtype=np.float32)
        protos, info = fit_clap_prototypes(x, y[order], self.zero_shot.raw_text_prototypes(), self.zero_shot.scale,
                                           self.config)
        counts = np.bincount(y, minlength=len(self.classes))
        self.prototypes = protos
        self.fit_info = {"n_labels": int(labeled.size), "labels_per_class": counts.tolist(), **info}

    def predict_proba(
        self,
        pool: ImagePool,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Probabilities float32 ``(N, C)`` from the fitted prototypes (zero-shot ones before any fit)."""
        feats = self.zero_shot.image_features(pool, progress=progress, cancel=cancel)
        protos = self.prototypes if self.prototypes is not None else self.zero_shot.text_prototypes()
        protos = protos / np.linalg.norm(protos, axis=1, keepdims=True)
        return probs_from_features(feats, protos, self.zero_shot.scale, out=out)

    def spec(self) -> dict[str, Any]:
        """JSON spec for ``make_teacher`` (the zero-shot spec plus the CLAP config)."""
        base = self.zero_shot.spec()
        return {**base, "kind": self.kind, "clap": asdict(self.config)}

    def describe(self) -> dict[str, Any]:
        """Provenance: the zero-shot teacher's, the CLAP settings and the last fit."""
        zs = self.zero_shot.describe()
        fitted = self.prototypes is not None
        return {
            "kind": self.kind,
            "display_name": zs["display_name"].replace("zero-shot", "few-shot (CLAP)")
            + ("" if fitted else " — not fitted yet: zero-shot predictions"),
            "spec": self.spec(),
            "fitted": fitted,
            "fit": self.fit_info,
            "clap": asdict(self.config),
            "zero_shot": zs,
        }

