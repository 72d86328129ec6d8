"""Input guards shared by every bias metric: probability matrices, labels aligned with pool rows, class names.

Each guard raises ``ValueError`` naming the argument and what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def check_probs(probs: npt.ArrayLike, name: str = "probs", *, atol: float = 1e-3) -> np.ndarray:
    """Validate a probability matrix and return it as float64.

    Args:
        probs: Array ``(N, C)`` with non-negative rows summing to 1.
        name: Argument name used in error messages.
        atol: Tolerance on row sums.

    Returns:
        The matrix as a float64 array.

    Raises:
        ValueError: If the array is not 2-D, has no columns, holds NaN/inf or negative
            values, or a row does not sum to 1.
    """
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"bias: {name} must be a 2-D (N, C) probability array, got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"bias: {name} holds NaN or infinite values")
    if arr.size and arr.min() < -1e-9:
        raise ValueError(f"bias: {name} holds negative probabilities (min {arr.min():.3g})")
    if arr.shape[0]:
        sums = arr.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
        if bad.size:
            raise ValueError(
                f"bias: {name} row {int(bad[0])} sums to {sums[bad[0]]:.6g}, not 1 "
                f"({bad.size} bad rows); pass probabilities, not logits"
            )
    return arr


def check_labels(
    y: npt.ArrayLike, labeled: npt.ArrayLike, n: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate human labels against a pool of ``n`` rows and ``num_classes`` classes.

    Args:
        y: Class index per labeled image.
        labeled: Pool row index per labeled image (same length as ``y``, no duplicates).
        n: Pool size.
        num_classes: Number of classes.

    Returns:
        ``(y, labeled)`` as int64 arrays.

    Raises:
        ValueError: On length mismatch, out-of-range values or duplicate indices.
    """
    y_arr = np.asarray(y).reshape(-1)
    lab = np.asarray(labeled).reshape(-1)
    if y_arr.size and not np.issubdtype(y_arr.dtype, np.integer):
        raise ValueError(f"bias: y must hold integer class indices, got dtype {y_arr.dtype}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"bias: labeled must hold integer pool indices, got dtype {lab.dtype}")
    y_arr = y_arr.astype(np.int64)
    lab = lab.astype(np.int64)
    if y_arr.shape != lab.shape:
        raise ValueError(f"bias: y has {y_arr.size} labels but labeled has {lab.size} indices")
    if lab.size:
        if lab.min() < 0 or lab.max() >= n:
            raise ValueError(f"bias: labeled index out of range [0, {n}): {lab.min()}..{lab.max()}")
        if np.unique(lab).size != lab.size:
            raise ValueError("bias: labeled holds duplicate pool indices")
        if y_arr.min() < 0 or y_arr.max() >= num_classes:
            raise ValueError(f"bias: class index out of range [0, {num_classes}): {y_arr.min()}..{y_arr.max()}")
    return y_arr, lab


def class_names(classes: Sequence[str] | None, num_classes: int) -> list[str]:
    """Return class names, defaulting to ``"0".."C-1"``; checks the count matches."""
    if classes is None:
        return [str(i) for i in range(num_classes)]
    names = [str(c) for c in classes]
    if len(names) != num_classes:
        raise ValueError(f"bias: {len(names)} class names given for {num_classes} probability columns")
    return names
