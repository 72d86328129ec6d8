"""Teacher (and student) bias metrics for the Teacher-bias page and the prompt workshop.

Every function works on plain arrays indexed by the pool's row order:

* ``probs``: float array ``(N, C)`` of class probabilities over the whole pool (rows sum to 1).
* ``labeled``: int64 pool row indices of the human-labeled images.
* ``y``: int64 class indices of the human labels, aligned with ``labeled`` (``y[i]`` is the
  label of pool row ``labeled[i]``).

Metrics on labels use scikit-learn (``confusion_matrix``,
``precision_recall_fscore_support``); pandas DataFrames are returned where a page shows a
table, dataclasses where it shows several related results.

Definitions used throughout (and shown on the page):

* Prediction = argmax of a probability row; confidence = its max probability.
* Accuracy interval = Wilson score interval (``wilson_interval``).
* Expected calibration error (ECE): confidences are put in ``n_bins`` equal-width bins
  ``(0, 1/B], (1/B, 2/B], ..., ((B-1)/B, 1]`` (a confidence of exactly 0 goes to the first
  bin); ``ECE = sum_b (n_b / n) * |accuracy_b - mean_confidence_b|`` over non-empty bins,
  i.e. bins are weighted by how many labeled images they hold.
* Normalised entropy = ``H(p) / log(C)`` in ``[0, 1]`` (natural logs; ``0 log 0 = 0``).
* Disagreement between two probability rows: total variation ``0.5 * ||p - q||_1`` or the
  Jensen-Shannon divergence in bits (both in ``[0, 1]``).

Modules, by concern (import the names from here):

* :mod:`~activekd_core.bias.inputs`: the input guards (``check_probs``, ``check_labels``,
  ``class_names``).
* :mod:`~activekd_core.bias.classification`: accuracy with intervals, per-class scores,
  priors, confident mistakes.
* :mod:`~activekd_core.bias.calibration`: entropy, reliability bins, ECE.
* :mod:`~activekd_core.bias.disagreement`: teacher vs student tables and scores.
* :mod:`~activekd_core.bias.reports`: the page-level :class:`BiasReport` and
  :class:`TeacherComparison`.
"""

from __future__ import annotations

from activekd_core.bias.calibration import (
    confidence_vs_correctness,
    entropy_histogram,
    expected_calibration_error,
    normalized_entropy,
    reliability_bins,
)
from activekd_core.bias.classification import (
    ClassificationReport,
    classification_report,
    confident_mistakes,
    priors,
    wilson_interval,
)
from activekd_core.bias.disagreement import (
    DisagreementMetric,
    disagreement_summary,
    disagreement_table,
    prob_disagreement,
    top_disagreements,
)
from activekd_core.bias.inputs import check_labels, check_probs, class_names
from activekd_core.bias.reports import BiasReport, TeacherComparison, bias_report, compare_teachers

__all__ = [
    "ClassificationReport",
    "BiasReport",
    "TeacherComparison",
    "DisagreementMetric",
    "check_probs",
    "check_labels",
    "class_names",
    "wilson_interval",
    "classification_report",
    "disagreement_table",
    "disagreement_summary",
    "priors",
    "normalized_entropy",
    "entropy_histogram",
    "reliability_bins",
    "expected_calibration_error",
    "confidence_vs_correctness",
    "confident_mistakes",
    "prob_disagreement",
    "top_disagreements",
    "bias_report",
    "compare_teachers",
]
