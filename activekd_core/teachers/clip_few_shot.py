"""CLIP few-shot teacher: CLAP-style class prototypes fitted on the cached image features.

CLAP (Silva-Rodriguez et al., CVPR 2024), as used by PCoreSet's few-shot teacher: a
linear probe whose class prototypes start at the zero-shot text prototypes, trained
with cross-entropy on ``scale * cos(image, prototype)`` plus a class-adaptive L2 pull
towards the zero-shot prototypes:

``loss = CE + l2_weight * mean_c(alpha_c * ||w_c - t_c||^2)``,

where ``alpha_c`` is the zero-shot model's mean probability of the true class on the
labeled images of class ``c`` (classes the text already recognises are held close to
it). Optimiser as in the reference: SGD lr 0.01, momentum 0.9, 10 % linear warm-up then
linear decay. The prototypes are refitted from scratch on all labels at every ``fit``.

Differences from the reference, on purpose: training runs on the cached, un-augmented
image features (no image augmentation, so a round costs milliseconds, not an epoch of
CLIP passes), and classes with no label yet get ``alpha_c = unlabeled_weight`` (default
1) so their prototypes stay at the zero-shot text instead of drifting.
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
    """Hyper-parameters of the CLAP fit.

    Attributes:
        steps: Optimisation steps (full batch when labels <= batch_size).
        lr: SGD learning rate.
        momentum: SGD momentum.
        warmup_frac: Fraction of steps of linear warm-up.
        l2_weight: Weight of the pull towards the zero-shot prototypes.
        unlabeled_weight: ``alpha_c`` for classes without labels.
        batch_size: Labeled features per step (sampled with replacement when more).
        seed: Seed for the minibatch sampling.
    """

    steps: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    warmup_frac: float = 0.1
    l2_weight: float = 1.0
    unlabeled_weight: float = 1.0
    batch_size: int = 1024
    seed: int = 0


def fit_clap_prototypes(
    features: npt.ArrayLike,
    y: npt.ArrayLike,
    zero_shot: npt.ArrayLike,
    scale: float,
    config: ClapConfig | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit CLAP prototypes on labeled image features.

    Args:
        features: ``(L, D)`` image features of the labeled images (normalised here).
        y: ``(L,)`` class indices.
        zero_shot: ``(C, D)`` zero-shot text prototypes (start point and anchor).
        scale: Logit scale applied to the cosines.
        config: Hyper-parameters.

    Returns:
        ``(prototypes (C, D) float32, info)``; ``info`` holds the class weights
        ``alpha``, train accuracy and loss before and after.
    """
    cfg = config or ClapConfig()
    x = F.normalize(torch.as_tensor(np.asarray(features, dtype=np.float32)), dim=-1)
    t = torch.as_tensor(np.asarray(zero_shot, dtype=np.float32)).clone()
    labels = torch.as_tensor(np.asarray(y, dtype=np.int64))
    n_classes = t.shape[0]
    with torch.no_grad():
        zs_probs = torch.softmax(scale * x @ F.normalize(t, dim=-1).T, dim=1)
        counts = torch.bincount(labels, minlength=n_classes).float()
        true_p = torch.zeros(n_classes).index_add_(0, labels, zs_probs[torch.arange(len(labels)), labels])
        alpha = torch.where(counts > 0, true_p / counts.clamp_min(1), torch.full_like(counts, cfg.unlabeled_weight))

    w = t.clone().requires_grad_(True)
    opt = torch.optim.SGD([w], lr=cfg.lr, momentum=cfg.momentum)
    warm = max(1, int(cfg.warmup_frac * cfg.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (cfg.steps - s) / max(1, cfg.steps - warm))
    )
    gen = torch.Generator().manual_seed(cfg.seed)

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            logits = scale * x @ F.normalize(w, dim=-1).T
            return float(F.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).float().mean())

    loss0, acc0 = evaluate()
    for _ in range(cfg.steps):
        if len(labels) > cfg.batch_size:
            idx = torch.randint(len(labels), (cfg.batch_size,), generator=gen)
            xb, yb = x[idx], labels[idx]
        else:
            xb, yb = x, labels
        logits = scale * xb @ F.normalize(w, dim=-1).T
        pull = (alpha * (w - t).pow(2).sum(-1)).mean()
        loss = F.cross_entropy(logits, yb) + cfg.l2_weight * pull
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    loss1, acc1 = evaluate()
    info = {
        "alpha": alpha.tolist(),
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
        protos, info = fit_clap_prototypes(x, y[order], self.zero_shot.text_prototypes(), self.zero_shot.scale, self.config)
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

