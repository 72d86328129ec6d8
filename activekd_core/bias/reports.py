"""Page-level bundles: every Teacher-bias page metric in one :class:`BiasReport`; a before/after :class:`TeacherComparison`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from activekd_core.bias.calibration import (
    entropy_histogram,
    expected_calibration_error,
    normalized_entropy,
    reliability_bins,
)
from activekd_core.bias.classification import ClassificationReport, classification_report, confident_mistakes, priors
from activekd_core.bias.disagreement import DisagreementMetric, disagreement_summary, disagreement_table, top_disagreements
from activekd_core.bias.inputs import check_labels, check_probs, class_names


@dataclass
class BiasReport:
    """Everything the Teacher-bias page shows for one teacher (and optionally the student).

    Attributes:
        teacher: Metrics of the teacher on labeled images.
        priors: Output of ``priors`` for the teacher.
        reliability: Output of ``reliability_bins`` for the teacher.
        ece: Teacher expected calibration error.
        entropy: Output of ``entropy_histogram`` (with labeled correct/wrong counts).
        mean_entropy: Mean normalised teacher entropy over the pool.
        mistakes: Output of ``confident_mistakes`` for the teacher.
        student: Student metrics, when student probabilities were given.
        student_ece: Student ECE, when given.
        disagreements: Output of ``disagreement_table``, when given.
        disagreement_counts: Output of ``disagreement_summary``, when given.
        most_disagreeing: Output of ``top_disagreements`` over the pool, when given.
        n_bins: Calibration bins used.
    """

    teacher: ClassificationReport
    priors: pd.DataFrame
    reliability: pd.DataFrame
    ece: float
    entropy: pd.DataFrame
    mean_entropy: float
    mistakes: pd.DataFrame
    student: ClassificationReport | None = None
    student_ece: float | None = None
    disagreements: pd.DataFrame | None = None
    disagreement_counts: dict[str, int] | None = None
    most_disagreeing: pd.DataFrame | None = None
    n_bins: int = 10


def bias_report(
    teacher_probs: npt.ArrayLike,
    y: npt.ArrayLike,
    labeled: npt.ArrayLike,
    classes: Sequence[str] | None = None,
    *,
    student_probs: npt.ArrayLike | None = None,
    n_bins: int = 10,
    top: int = 24,
    disagreement_metric: DisagreementMetric = "tv",
) -> BiasReport:
    """Compute every Teacher-bias page metric in one call.

    Args:
        teacher_probs: ``(N, C)`` teacher probabilities over the pool.
        y: Human class index per labeled image.
        labeled: Pool row per labeled image.
        classes: Class names.
        student_probs: Optional ``(N, C)`` student probabilities (latest round).
        n_bins: Calibration bins.
        top: Rows in the galleries.
        disagreement_metric: ``"tv"`` or ``"js"``.

    Returns:
        A ``BiasReport``.
    """
    t = check_probs(teacher_probs, "teacher_probs")
    names = class_names(classes, t.shape[1])
    rep = BiasReport(
        teacher=classification_report(t, y, labeled, names),
        priors=priors(t, y, labeled, names),
        reliability=reliability_bins(t, y, labeled, n_bins),
        ece=expected_calibration_error(t, y, labeled, n_bins),
        entropy=entropy_histogram(t, y=y, labeled=labeled),
        mean_entropy=float(normalized_entropy(t).mean()) if t.shape[0] else float("nan"),
        mistakes=confident_mistakes(t, y, labeled, names, top=top),
        n_bins=n_bins,
    )
    if student_probs is not None:
        s = check_probs(student_probs, "student_probs")
        rep.student = classification_report(s, y, labeled, names)
        rep.student_ece = expected_calibration_error(s, y, labeled, n_bins)
        rep.disagreements = disagreement_table(t, s, y, labeled, names)
        rep.disagreement_counts = disagreement_summary(t, s, y, labeled)
        rep.most_disagreeing = top_disagreements(t, s, top=top, metric=disagreement_metric, classes=names)
    return rep


@dataclass
class TeacherComparison:
    """Before/after summary of a teacher change (prompt workshop).

    Attributes:
        summary: DataFrame ``metric, before, after, delta`` (``delta = after - before``).
        per_class: DataFrame ``class`` plus ``before``/``after`` columns for precision,
            recall, f1 and predicted_share, and ``human_share``.
        changed: Pool rows whose predicted class changed.
        before: Full report before.
        after: Full report after.
    """

    summary: pd.DataFrame
    per_class: pd.DataFrame
    changed: np.ndarray
    before: BiasReport
    after: BiasReport


def compare_teachers(
    before_probs: npt.ArrayLike,
    after_probs: npt.ArrayLike,
    y: npt.ArrayLike,
    labeled: npt.ArrayLike,
    classes: Sequence[str] | None = None,
    *,
    n_bins: int = 10,
) -> TeacherComparison:
    """Every teacher metric before vs after a change (prompt edit, template set, few-shot refit).

    Summary rows: ``accuracy, accuracy_low, accuracy_high, macro_f1, ece, mean_entropy,
    prior_tv`` (total variation between predicted-class shares and human label shares),
    ``changed_pool`` (share of pool rows whose prediction changed, same in both columns),
    ``changed_labeled`` (likewise on labeled rows), and per class ``recall[<class>]`` and
    ``predicted_share[<class>]``.

    Args:
        before_probs: ``(N, C)`` probabilities of the current teacher.
        after_probs: ``(N, C)`` probabilities of the candidate teacher.
        y: Human class index per labeled image.
        labeled: Pool row per labeled image.
        classes: Class names.
        n_bins: Calibration bins.

    Returns:
        A ``TeacherComparison``.
    """
    b = check_probs(before_probs, "before_probs")
    a = check_probs(after_probs, "after_probs")
    if a.shape != b.shape:
        raise ValueError(f"bias: before_probs {b.shape} and after_probs {a.shape} differ in shape")
    names = class_names(classes, b.shape[1])
    y_arr, lab = check_labels(y, labeled, b.shape[0], b.shape[1])
    rb = bias_report(b, y_arr, lab, names, n_bins=n_bins)
    ra = bias_report(a, y_arr, lab, names, n_bins=n_bins)
    changed = np.flatnonzero(b.argmax(axis=1) != a.argmax(axis=1)) if b.shape[0] else np.zeros(0, np.int64)
    n = b.shape[0]
    changed_lab = float(np.isin(lab, changed).mean()) if lab.size else float("nan")

    def scalars(r: BiasReport) -> dict[str, float]:
        lo, hi = r.teacher.accuracy_interval
        prior_tv = 0.5 * float(np.abs(r.priors["predicted_share"] - r.priors["human_share"]).sum())
        out = {
            "accuracy": r.teacher.accuracy,
            "accuracy_low": lo,
            "accuracy_high": hi,
            "macro_f1": r.teacher.macro_f1,
            "ece": r.ece,
            "mean_entropy": r.mean_entropy,
            "prior_tv": prior_tv if lab.size else float("nan"),
            "changed_pool": changed.size / n if n else float("nan"),
            "changed_labeled": changed_lab,
        }
        for name, rec, share in zip(names, r.teacher.per_class["recall"], r.priors["predicted_share"]):
            out[f"recall[{name}]"] = float(rec)
            out[f"predicted_share[{name}]"] = float(share)
        return out

    sb, sa = scalars(rb), scalars(ra)
    summary = pd.DataFrame(
        {"metric": list(sb), "before": list(sb.values()), "after": [sa[k] for k in sb]}
    )
    summary["delta"] = summary["after"] - summary["before"]
    per_class = pd.DataFrame({"class": names, "human_share": rb.priors["human_share"].to_numpy()})
    for col in ("precision", "recall", "f1"):
        per_class[f"{col}_before"] = rb.teacher.per_class[col].to_numpy()
        per_class[f"{col}_after"] = ra.teacher.per_class[col].to_numpy()
    per_class["predicted_share_before"] = rb.priors["predicted_share"].to_numpy()
    per_class["predicted_share_after"] = ra.priors["predicted_share"].to_numpy()
    return TeacherComparison(summary=summary, per_class=per_class, changed=changed.astype(np.int64), before=rb, after=ra)
