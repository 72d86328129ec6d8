"""Warnings when a model predicts a class for (almost) nothing or (almost) everything.

A model fit on a few labels of an imbalanced pool often "collapses": it answers the
majority class for every image (its accuracy then equals the majority share and looks
fine), or it never answers some class at all, so uncertainty- and coverage-based
selection rarely sees that class either. This module looks at the argmax predictions
over the whole pool and reports, per class:

* **almost nothing**: the class is predicted for at most ``max(NOTHING_COUNT,
  NOTHING_SHARE * N)`` images (defaults 0 images or 0.5% of the pool, whichever is
  larger). A rare class that is 1% of the pool and correctly predicted stays above it.
* **almost everything**: the class is predicted for at least ``EVERYTHING_SHARE``
  (default 97%) of the pool. On a pool whose majority is 90% a sound model predicts it
  for ~90%; 97% and more means the other classes are being swallowed.

Both thresholds are arguments; the warnings carry the counts so a page can show them
literally. The human label counts, when given, are quoted in the message (a class
predicted for nothing although you labeled 5 of them is a stronger signal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NOTHING_SHARE = 0.005
NOTHING_COUNT = 0
EVERYTHING_SHARE = 0.97


@dataclass(frozen=True)
class CollapseWarning:
    """One class a model predicts for (almost) nothing or (almost) everything.

    Attributes:
        model: Who predicts (e.g. ``"teacher"``, ``"student (round 3)"``).
        class_name: The class.
        kind: ``"nothing"`` or ``"everything"``.
        count: Images predicted as the class.
        n: Images predicted.
        labeled: Human labels of the class (None when unknown).
    """

    model: str
    class_name: str
    kind: str
    count: int
    n: int
    labeled: int | None = None

    @property
    def share(self) -> float:
        """``count / n``."""
        return self.count / self.n if self.n else float("nan")

    def text(self) -> str:
        """A one-line message, e.g. ``"The teacher predicts 'nominal' for 99.2% of the images (859 of 866)."``."""
        what = "almost everything" if self.kind == "everything" else ("nothing" if self.count == 0 else "almost nothing")
        msg = (
            f"{self.model[:1].upper()}{self.model[1:]} predicts '{self.class_name}' for {what}: "
            f"{self.count:,} of {self.n:,} images ({100 * self.share:.1f}%)"
        )
        if self.labeled:
            msg += f", although {self.labeled} labeled image(s) are of this class"
        return msg + "."


def collapse_warnings(
    probs: npt.ArrayLike,
    classes: Sequence[str],
    model: str,
    *,
    labeled_counts: Sequence[int] | None = None,
    nothing_share: float = NOTHING_SHARE,
    nothing_count: int = NOTHING_COUNT,
    everything_share: float = EVERYTHING_SHARE,
) -> list[CollapseWarning]:
    """Classes that ``probs`` (argmax) assigns to (almost) no image or to (almost) every image.

    Args:
        probs: ``(N, C)`` probabilities (or scores) over the pool.
        classes: Class names, column order.
        model: Name used in the message.
        labeled_counts: Human labels per class (quoted in the message), or None.
        nothing_share: A class predicted for at most this share of images is "almost nothing".
        nothing_count: ... or for at most this many images, whichever is larger.
        everything_share: A class predicted for at least this share is "almost everything".

    Returns:
        The warnings, "everything" first, then "nothing" by class order; empty when
        ``probs`` has no rows or every row is uniform ``1 / C`` (an untrained teacher, whose
        argmax says nothing). Identical non-uniform rows are a collapse and are reported.

    Raises:
        ValueError: ``probs`` is not ``(N, len(classes))``.
    """
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] != len(classes):
        raise ValueError(f"probs must be (N, {len(classes)}), got {p.shape}")
    if p.shape[0] == 0 or np.allclose(p, 1.0 / p.shape[1], atol=1e-6):
        return []
    counts = np.bincount(p.argmax(axis=1), minlength=len(classes))
    return collapse_from_counts(
        counts, classes, model, labeled_counts=labeled_counts, nothing_share=nothing_share,
        nothing_count=nothing_count, everything_share=everything_share,
    )


def collapse_from_counts(
    counts: Sequence[int] | npt.ArrayLike,
    classes: Sequence[str],
    model: str,
    *,
    labeled_counts: Sequence[int] | None = None,
    nothing_share: float = NOTHING_SHARE,
    nothing_count: int = NOTHING_COUNT,
    everything_share: float = EVERYTHING_SHARE,
) -> list[CollapseWarning]:
    """:func:`collapse_warnings` from the number of images predicted per class (``(C,)``)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (len(classes),):
        raise ValueError(f"counts must have shape ({len(classes)},), got {counts.shape}")
    n = int(counts.sum())
    if n == 0:
        return []
    labels = list(labeled_counts) if labeled_counts is not None else [None] * len(classes)
    limit = max(nothing_count, nothing_share * n)
    out = [
        CollapseWarning(model, str(classes[c]), "everything", int(counts[c]), n, labels[c])
        for c in range(len(classes))
        if counts[c] >= everything_share * n
    ]
    out += [
        CollapseWarning(model, str(classes[c]), "nothing", int(counts[c]), n, labels[c])
        for c in range(len(classes))
        if counts[c] <= limit
    ]
    return out
