"""The teacher interface shared by every teacher, and small numeric helpers.

A teacher turns an :class:`~activekd_core.images.ImagePool` into soft labels: a float32
matrix with one row per pool image (pool order) and one column per class, each row a
probability vector. Every teacher also reports its full provenance through
``describe()`` (a JSON-serialisable dict with at least ``"kind"``, ``"display_name"``
and ``"spec"``; ``spec`` rebuilds the teacher through
:func:`activekd_core.teachers.make_teacher`).

Long teacher work reports through :data:`activekd_core.progress.ProgressFn` and stops with
:class:`activekd_core.progress.Cancelled`, the package's one callback type and cancel
exception (re-exported here).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from activekd_core.images import ImagePool
from activekd_core.progress import Cancelled, ProgressFn

if TYPE_CHECKING:  # annotations only: this module stays free of torch and open_clip
    from activekd_core.distributed import DistInfo
    from activekd_core.teachers.feature_cache import FeatureCache

__all__ = [
    "TEACHER_NAMES",
    "Cancelled",
    "FittableTeacher",
    "ImageFeatureTeacher",
    "ProgressFn",
    "Teacher",
    "TeacherDataError",
    "TeacherUnavailable",
    "WrapsZeroShot",
    "check_cancel",
    "check_labels",
    "softmax_rows",
    "teacher_name",
    "zero_shot_of",
]


class TeacherUnavailable(RuntimeError):
    """The teacher cannot run here (e.g. weights missing offline); the message says how to fix it."""


class TeacherDataError(ValueError):
    """A teacher input file or array is invalid; the message names the file and the problem."""


@runtime_checkable
class Teacher(Protocol):
    """What every teacher provides.

    Attributes:
        classes: Class names; column ``j`` of ``predict_proba`` is ``classes[j]``.
    """

    classes: list[str]

    def predict_proba(self, pool: ImagePool, progress: ProgressFn | None = None) -> np.ndarray:
        """Soft labels for every pool image: float32 ``(len(pool), len(classes))``, rows sum to 1."""
        ...

    def describe(self) -> dict[str, Any]:
        """Full provenance, JSON-serialisable, with keys ``kind``, ``display_name`` and ``spec``."""
        ...


@runtime_checkable
class FittableTeacher(Teacher, Protocol):
    """A teacher that learns from the project's labels (few-shot CLIP, stand-in probe)."""

    def fit(self, pool: ImagePool, labeled: np.ndarray, y: np.ndarray) -> None:
        """Refit from scratch on all labels: ``labeled`` int64 pool rows, ``y`` int64 class indices."""
        ...


@runtime_checkable
class ImageFeatureTeacher(Teacher, Protocol):
    """A CLIP teacher: cached image features scored against prompt prototypes (zero-shot CLIP)."""

    def load(self) -> None:
        """Load the model now; raises :class:`TeacherUnavailable` when it cannot be had."""
        ...

    def set_prompts(self, class_prompts: Any = None, templates: str | Sequence[str] | None = None) -> None:
        """Change the prompts; the next prediction reruns the text tower only."""
        ...

    def feature_cache(self, pool: ImagePool) -> FeatureCache:
        """The on-disk entry holding this pool's image features."""
        ...

    def image_features(
        self, pool: ImagePool, progress: ProgressFn | None = None, cancel: threading.Event | None = None
    ) -> np.ndarray:
        """L2-normalised image features ``(N, D)``, computed once per pool and cached."""
        ...

    def image_features_distributed(
        self, pool: ImagePool, info: DistInfo, progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[np.ndarray | None, dict[str, Any]]:
        """:meth:`image_features` shared across the ranks of a ``torchrun`` process group."""
        ...


@runtime_checkable
class PixelTeacher(Teacher, Protocol):
    """A teacher that scores pixels it is handed (augmented views), not only pool images (the stand-in)."""

    def predict_proba_pixels(self, pixels: npt.NDArray[np.uint8]) -> np.ndarray:
        """Soft labels ``(n, len(classes))`` for uint8 RGB images ``(n, H, W, 3)``."""
        ...


@runtime_checkable
class WrapsZeroShot(Teacher, Protocol):
    """A teacher built on a zero-shot CLIP teacher's features and prompts (few-shot CLAP)."""

    zero_shot: ImageFeatureTeacher


def zero_shot_of(teacher: object) -> ImageFeatureTeacher | None:
    """The zero-shot CLIP teacher whose image features and prompts ``teacher`` uses.

    That is ``teacher`` itself for a zero-shot CLIP teacher, the wrapped one for a
    few-shot teacher, and None for teachers without CLIP features (stand-in, precomputed).
    """
    if isinstance(teacher, WrapsZeroShot):
        return teacher.zero_shot
    if isinstance(teacher, ImageFeatureTeacher):
        return teacher
    return None


def softmax_rows(logits: npt.ArrayLike, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable row softmax in float32.

    Args:
        logits: ``(N, C)`` scores.
        temperature: Divides the logits first; > 1 gives softer rows.

    Returns:
        float32 ``(N, C)`` with rows summing to 1.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def check_labels(labeled: npt.ArrayLike, y: npt.ArrayLike, n_pool: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate the ``fit`` arguments and return them as int64 arrays.

    Raises:
        ValueError: On length mismatch, out-of-range rows or class indices, or duplicate rows.
    """
    labeled = np.asarray(labeled, dtype=np.int64).reshape(-1)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if labeled.shape != y.shape:
        raise ValueError(f"labeled has {labeled.size} rows but y has {y.size} labels")
    if labeled.size and (labeled.min() < 0 or labeled.max() >= n_pool):
        raise ValueError(f"labeled pool rows must be in [0, {n_pool}); got min {labeled.min()}, max {labeled.max()}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"class indices must be in [0, {n_classes}); got min {y.min()}, max {y.max()}")
    if np.unique(labeled).size != labeled.size:
        raise ValueError("labeled contains duplicate pool rows")
    return labeled, y


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("teacher work cancelled; completed rows are kept and will be resumed")


# The one name of each teacher kind, shown the same on every page and in every report.
TEACHER_NAMES: dict[str, str] = {
    "standin": "Offline stand-in (not CLIP)",
    "clip_zero_shot": "CLIP zero-shot",
    "clip_few_shot": "CLIP few-shot (CLAP)",
    "precomputed": "Precomputed probabilities",
}


def teacher_name(kind: object) -> str:
    """The display name of a teacher kind (the kind itself when unknown)."""
    return TEACHER_NAMES.get(str(kind), str(kind))
