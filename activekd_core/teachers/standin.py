"""Offline stand-in teacher (not CLIP): a linear probe over fixed, download-free image features.

Use it when no CLIP weights exist on the machine. It is always named "offline stand-in
(not CLIP)" in ``describe()`` and its display name, so nobody mistakes it for CLIP.

Features (:func:`standin_features`), deterministic and computed from a uint8
``(N, S, S, 3)`` array: a 16x16 grayscale thumbnail (256), 4x4 mean colours (48) and
4x4 cells of 8-bin gradient-orientation histograms (128, HOG-like, each cell
L2-normalised) = 432 values. The probe is scikit-learn's ``StandardScaler -> PCA ->
LogisticRegression``; the scaler and PCA are fit on all images available (the whole pool
in few-shot mode, the reference set in reference mode), the logistic regression on the
labeled ones, **class-balanced**: scikit-learn's ``class_weight="balanced"`` weights each
labeled image by ``n / (K * n_c)`` (``n`` labels, ``K`` classes seen, ``n_c`` labels of its
class), so every class carries the same total weight in the loss. Without it, on a pool
that is ~90% one class, a probe fit on a handful of labels predicts that class for
everything (its intercept absorbs the prior). ``class_weight=None`` restores the
unweighted fit. Probabilities are ``softmax(log p / temperature)`` (temperature > 1 is
softer), then smoothed by ``smoothing / C`` so classes unseen in the labels keep a
small mass.

Modes:

- few-shot: ``fit(pool, labeled, y)`` on the project's own labels; before any label it
  returns uniform rows and ``describe()`` says so;
- reference: ``fit_reference(pixels_or_pool, y)`` on a disjoint labelled reference set,
  to mimic a teacher with prior knowledge (used by the oracle simulation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from activekd_core.images import ImageLoadError, ImagePool, load_image
from activekd_core.teachers.base import ProgressFn, check_labels, softmax_rows

STANDIN_LABEL = "Offline stand-in (not CLIP)"  # = teachers.base.TEACHER_NAMES["standin"]
FEATURE_DIM = 256 + 48 + 128


def standin_features(pixels: npt.NDArray[np.uint8], batch: int = 4096) -> np.ndarray:
    """Fixed image features for the stand-in probe.

    Args:
        pixels: uint8 ``(N, S, S, 3)`` (any S >= 4; non-square is fine too).
        batch: Images per chunk (bounded memory).

    Returns:
        float32 ``(N, 432)``.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"pixels must be (N, H, W, 3) uint8, got {pixels.dtype} {pixels.shape}")
    out = np.empty((len(pixels), FEATURE_DIM), dtype=np.float32)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    bins = 8
    for s in range(0, len(pixels), batch):
        x = torch.from_numpy(np.ascontiguousarray(pixels[s : s + batch])).permute(0, 3, 1, 2).float() / 255.0
        gray = (x * weights).sum(1, keepdim=True)
        thumb = F.adaptive_avg_pool2d(gray, 16).flatten(1)
        colour = F.adaptive_avg_pool2d(x, 4).flatten(1)
        g = F.adaptive_avg_pool2d(gray, 32)[:, 0]
        gx = torch.zeros_like(g)
        gy = torch.zeros_like(g)
        gx[:, :, 1:-1] = g[:, :, 2:] - g[:, :, :-2]
        gy[:, 1:-1, :] = g[:, 2:, :] - g[:, :-2, :]
        mag = torch.sqrt(gx * gx + gy * gy)
        angle = torch.remainder(torch.atan2(gy, gx), torch.pi)  # unsigned orientation
        idx = torch.clamp((angle / torch.pi * bins).long(), max=bins - 1)
        hist = torch.zeros(len(g), bins, 32, 32).scatter_(1, idx.unsqueeze(1), mag.unsqueeze(1))
        hist = F.adaptive_avg_pool2d(hist, 4) * 64  # (n, bins, 4, 4) sums per 8x8 cell
        hist = F.normalize(hist.permute(0, 2, 3, 1).reshape(len(g), 16, bins), dim=-1).flatten(1)
        out[s : s + len(x)] = torch.cat([thumb, colour, hist], dim=1).numpy()
    return out


def pool_pixels(pool: ImagePool, size: int = 32, progress: ProgressFn | None = None) -> np.ndarray:
    """Decode a pool to uint8 ``(N, size, size, 3)`` (centre crop to square); unreadable images are grey."""
    out = np.full((len(pool), size, size, 3), 128, dtype=np.uint8)
    for i in range(len(pool)):
        try:
            rgb = load_image(pool.root, pool.ids[i], draft_size=size, recipe=pool.recipe, ref=pool.item_ref(pool.ids[i]))
            img = ImageOps.fit(rgb, (size, size), Image.Resampling.BILINEAR)
            out[i] = np.asarray(img, dtype=np.uint8)
        except ImageLoadError:
            pass
        if progress is not None and (i + 1) % 256 == 0:
            progress(i + 1, len(pool), f"Decoding images for the offline stand-in: {i + 1:,}/{len(pool):,}")
    return out


class StandInTeacher:
    """Offline stand-in (not CLIP): logistic-regression probe over :func:`standin_features`.

    Args:
        classes: Class names.
        temperature: Softness; probabilities are ``softmax(log p / temperature)``.
        image_size: Side of the decoded images when reading a pool.
        n_components: PCA components (capped by the data).
        C: Inverse L2 regularisation of the logistic regression.
        smoothing: Probability mass spread uniformly over all classes.
        seed: Seed for PCA/solver determinism.
        class_weight: ``"balanced"`` (default: each class weighs the same in the fit) or None.
    """

    kind = "standin"

    def __init__(
        self,
        classes: Sequence[str],
        *,
        temperature: float = 1.0,
        image_size: int = 32,
        n_components: int = 64,
        C: float = 1.0,
        smoothing: float = 0.01,
        seed: int = 0,
        class_weight: str | None = "balanced",
    ) -> None:
        if len(classes) < 2:
            raise ValueError(f"a teacher needs at least 2 classes, got {list(classes)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.classes = [str(c) for c in classes]
        self.temperature = float(temperature)
        self.image_size = int(image_size)
        self.n_components = int(n_components)
        self.C = float(C)
        self.smoothing = float(smoothing)
        self.seed = int(seed)
        if class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {class_weight!r}")
        self.class_weight = class_weight
        self.mode = "untrained"
        self.n_train = 0
        self.labels_per_class: list[int] = [0] * len(self.classes)
        self._probe: Pipeline | None = None
        self._present: np.ndarray | None = None
        self._pixels_cache: tuple[str, np.ndarray] | None = None

    # ---- fitting

    def _pixels(self, pool: ImagePool, progress: ProgressFn | None = None) -> np.ndarray:
        key = f"{pool.fingerprint()}:{self.image_size}"
        if self._pixels_cache is None or self._pixels_cache[0] != key:
            self._pixels_cache = (key, pool_pixels(pool, self.image_size, progress))
        return self._pixels_cache[1]

    def _fit_features(self, unlabeled: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        self._present = np.unique(y)
        if self._present.size < 2:
            self._probe = None  # one class seen: smoothed one-hot for it
        else:
            k = max(1, min(self.n_components, unlabeled.shape[0] - 1, unlabeled.shape[1]))
            scaler_pca = Pipeline([("scale", StandardScaler()), ("pca", PCA(n_components=k, random_state=self.seed))])
            scaler_pca.fit(unlabeled)
            clf = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed, class_weight=self.class_weight)
            clf.fit(scaler_pca.transform(x), y)
            self._probe = Pipeline(scaler_pca.steps + [("logreg", clf)])
        self.n_train = int(len(y))
        self.labels_per_class = np.bincount(y, minlength=len(self.classes)).tolist()

    def fit_pixels(self, pixels: npt.NDArray[np.uint8], labeled: npt.ArrayLike, y: npt.ArrayLike) -> None:
        """Few-shot mode on arrays: ``pixels`` is the whole pool ``(N, S, S, 3)``, ``labeled`` its labeled rows."""
        labeled, y = check_labels(labeled, y, len(pixels), len(self.classes))
        if labeled.size == 0:
            self.mode, self._probe, self._present, self.n_train = "untrained", None, None, 0
            self.labels_per_class = [0] * len(self.classes)
            return
        feats = standin_features(pixels)
        self._fit_features(feats, feats[labeled], y)
        self.mode = "few-shot"

    def fit(self, pool: ImagePool, labeled: npt.ArrayLike, y: npt.ArrayLike, progress: ProgressFn | None = None) -> None:
        """Few-shot mode: refit from scratch on the project's labels (no labels: uniform)."""
        labeled, y = check_labels(labeled, y, len(pool), len(self.classes))
        if labeled.size == 0:
            self.fit_pixels(np.zeros((len(pool), 4, 4, 3), np.uint8), labeled, y)
            return
        self.fit_pixels(self._pixels(pool, progress), labeled, y)

    def fit_reference(self, reference: ImagePool | npt.NDArray[np.uint8], y: npt.ArrayLike) -> None:
        """Reference mode: fit on a disjoint labelled reference set (every image labeled).

        Args:
            reference: An image pool or uint8 pixels ``(M, S, S, 3)``.
            y: ``(M,)`` class indices.
        """
        pixels = self._pixels(reference) if isinstance(reference, ImagePool) else np.asarray(reference)
        y = np.asarray(y, dtype=np.int64)
        _, y = check_labels(np.arange(len(pixels)), y, len(pixels), len(self.classes))
        feats = standin_features(pixels)
        self._fit_features(feats, feats, y)
        self.mode = "reference"

    # ---- prediction

    def predict_proba_features(self, feats: np.ndarray) -> np.ndarray:
        """Probabilities from :func:`standin_features` rows."""
        n, c = len(feats), len(self.classes)
        if self.mode == "untrained" or self._present is None:
            return np.full((n, c), 1.0 / c, dtype=np.float32)
        full = np.full((n, c), -np.inf, dtype=np.float64)
        if self._probe is None:
            full[:, self._present] = 0.0
        else:
            full[:, self._probe.classes_] = self._probe.predict_log_proba(feats)
        probs = softmax_rows(np.where(np.isfinite(full), full, -1e30), self.temperature)
        probs = (1.0 - self.smoothing) * probs + self.smoothing / c
        return probs.astype(np.float32)

    def predict_proba_pixels(self, pixels: npt.NDArray[np.uint8]) -> np.ndarray:
        """Probabilities for uint8 ``(N, S, S, 3)`` arrays (no files needed)."""
        if self.mode == "untrained":
            return np.full((len(pixels), len(self.classes)), 1.0 / len(self.classes), dtype=np.float32)
        return self.predict_proba_features(standin_features(pixels))

    def predict_proba(self, pool: ImagePool, progress: ProgressFn | None = None) -> np.ndarray:
        """float32 ``(N, C)``; uniform before any label in few-shot mode."""
        if self.mode == "untrained":
            return self.predict_proba_features(np.zeros((len(pool), FEATURE_DIM), np.float32))
        return self.predict_proba_pixels(self._pixels(pool, progress))

    # ---- provenance

    def display_name(self) -> str:
        """Name shown everywhere; always says it is not CLIP."""
        state = {
            "untrained": "no labels yet, uniform predictions",
            "few-shot": f"few-shot probe on {self.n_train} project labels",
            "reference": f"probe fit on a reference set of {self.n_train} labelled images",
        }[self.mode]
        return f"Offline stand-in (not CLIP): linear probe on pixel features — {state}"

    def spec(self) -> dict[str, Any]:
        """JSON spec for ``make_teacher`` (a fresh, unfitted teacher)."""
        return {
            "kind": self.kind,
            "classes": self.classes,
            "temperature": self.temperature,
            "image_size": self.image_size,
            "n_components": self.n_components,
            "C": self.C,
            "smoothing": self.smoothing,
            "seed": self.seed,
            "class_weight": self.class_weight,
        }

    def describe(self) -> dict[str, Any]:
        """Provenance, with ``label`` = "Offline stand-in (not CLIP)" and the fit state."""
        return {
            "kind": self.kind,
            "label": STANDIN_LABEL,
            "display_name": self.display_name(),
            "is_clip": False,
            "spec": self.spec(),
            "mode": self.mode,
            "uniform": self.mode == "untrained",
            "n_train": self.n_train,
            "labels_per_class": self.labels_per_class,
            "features": "16x16 gray + 4x4 colour + 4x4x8 gradient histograms (432), StandardScaler + PCA",
            "probe": f"sklearn LogisticRegression(C={self.C}, class_weight={self.class_weight!r})",
        }
