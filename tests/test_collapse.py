"""Collapse warnings: a model that predicts a class for (almost) nothing or (almost) everything."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activekd_core.collapse import collapse_warnings  # noqa: E402

CLASSES = ["nominal", "local defect", "global defect"]


def _onehot(pred: list[int], c: int = 3) -> np.ndarray:
    return np.eye(c)[pred] * 0.8 + 0.2 / c


def test_majority_collapse_gives_both_warnings():
    probs = _onehot([0] * 996 + [1] * 4)
    warns = collapse_warnings(probs, CLASSES, "the teacher", labeled_counts=[20, 3, 4])
    kinds = [(w.class_name, w.kind, w.count) for w in warns]
    # 4 of 1000 (0.4%) is "almost nothing"; 0 is "nothing".
    assert kinds == [("nominal", "everything", 996), ("local defect", "nothing", 4), ("global defect", "nothing", 0)]
    assert "almost nothing" in warns[1].text() and "for nothing" in warns[2].text()
    assert "99.6%" in warns[0].text() and warns[0].text().startswith("The teacher predicts 'nominal'")
    assert "4 labeled" in warns[2].text()


def test_a_sound_imbalanced_model_gives_no_warning():
    # 90% / 5% / 5%: the majority is large but not "everything"; rare classes are predicted.
    probs = _onehot([0] * 900 + [1] * 50 + [2] * 50)
    assert collapse_warnings(probs, CLASSES, "student") == []


def test_thresholds_are_arguments_and_uniform_rows_say_nothing():
    probs = _onehot([0] * 950 + [1] * 30 + [2] * 20)
    assert collapse_warnings(probs, CLASSES, "s") == []
    tight = collapse_warnings(probs, CLASSES, "s", everything_share=0.95, nothing_share=0.025)
    assert [(w.class_name, w.kind) for w in tight] == [("nominal", "everything"), ("global defect", "nothing")]
    assert collapse_warnings(np.full((50, 3), 1 / 3), CLASSES, "teacher") == []


def test_warning_text_shows_a_hostile_class_name_literally():
    from pages._rare import _literal

    name = "**bold** [x](http://evil.example) `code` :red[x] <b>"
    warns = collapse_warnings(np.eye(2)[[0] * 50], [name, "b"], "the student")
    shown = _literal(warns[0].text())
    for token in ("\\*\\*bold\\*\\*", "\\[x\\]", "\\`code\\`", "\\:red\\[x\\]", "\\<b\\>"):
        assert token in shown
