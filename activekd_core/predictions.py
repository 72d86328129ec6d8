"""Predictions for every pool image as one table: teacher, student, human state.

One row per image in pool order with the image id, its current human state (``label``,
``skip``, ``unsure`` or ``unlabeled``), whether it is in the audit set, the human label and
who gave it, and for the teacher and the active student (when they exist) the class
probabilities, the predicted class and the margin (top-1 minus top-2 probability).

The table is written as CSV (cells neutralised against spreadsheet formula injection),
JSON Lines or Parquet, each atomically (temporary name, then rename).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from activekd_core.atomic import atomic_write_bytes
from activekd_core.csv_safe import neutralize_cell

__all__ = ["PREDICTION_FORMATS", "prediction_table", "write_predictions"]

PredictionFormat = Literal["csv", "jsonl", "parquet"]
PREDICTION_FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")
def _margin(p: np.ndarray) -> np.ndarray:
    if p.shape[1] < 2:
        return np.ones(p.shape[0], dtype=np.float32)
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]).astype(np.float32)


def _model_columns(prefix: str, probs: npt.ArrayLike, classes: Sequence[str]) -> dict[str, object]:
    p = np.asarray(probs, dtype=np.float32)
    cols: dict[str, object] = {f"{prefix}_pred": [classes[i] for i in p.argmax(axis=1)], f"{prefix}_margin": _margin(p)}
    for j, name in enumerate(classes):
        cols[f"{prefix}_p[{name}]"] = p[:, j]
    return cols


def prediction_table(
    ids: Sequence[str],
    classes: Sequence[str],
    states: Mapping[str, tuple[str, str | None, str, int | None]],
    *,
    audit_ids: Sequence[str] = (),
    teacher_probs: npt.ArrayLike | None = None,
    student_probs: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """The per-image prediction table.

    Args:
        ids: Pool image ids, in pool row order.
        classes: Class names, in class-index order.
        states: Image id -> ``(state, class name or None, annotator, round)`` for images with
            a current human state (``label``, ``skip``, ``unsure``); others are ``unlabeled``.
        audit_ids: Images of the audit set.
        teacher_probs: ``(N, C)`` teacher probabilities in pool order, or None.
        student_probs: ``(N, C)`` probabilities of the active student, or None.

    Returns:
        A DataFrame with ``id, state, audit, label, annotator, round`` and, per model present,
        ``<model>_pred``, ``<model>_margin`` and ``<model>_p[<class>]`` columns.

    Raises:
        ValueError: If a probability array does not have one row per id and one column per class.
    """
    n, c = len(ids), len(classes)
    for name, probs in (("teacher", teacher_probs), ("student", student_probs)):
        if probs is not None and np.shape(probs) != (n, c):
            raise ValueError(f"{name} probabilities have shape {np.shape(probs)}, expected {(n, c)}")
    audit = set(audit_ids)
    rows = [states.get(i) for i in ids]
    data: dict[str, object] = {
        "id": list(ids),
        "state": [r[0] if r else "unlabeled" for r in rows],
        "audit": [i in audit for i in ids],
        "label": [(r[1] or "") if r else "" for r in rows],
        "annotator": [r[2] if r else "" for r in rows],
        "round": pd.array([r[3] if r else None for r in rows], dtype="Int64"),
    }
    if teacher_probs is not None:
        data.update(_model_columns("teacher", teacher_probs, classes))
    if student_probs is not None:
        data.update(_model_columns("student", student_probs, classes))
    return pd.DataFrame(data)


def write_predictions(table: pd.DataFrame, dest: Path | str, fmt: PredictionFormat) -> Path:
    """Write a prediction table as ``csv``, ``jsonl`` or ``parquet`` (atomically).

    Returns:
        The file written.

    Raises:
        ValueError: For an unknown format.
    """
    dest = Path(dest)
    if fmt == "csv":
        safe = table.copy()
        for col in safe.columns:
            if safe[col].dtype == object or pd.api.types.is_string_dtype(safe[col]):
                safe[col] = safe[col].map(neutralize_cell)
        buf = io.StringIO()
        safe.to_csv(buf, index=False, lineterminator="\n")
        data = buf.getvalue().encode("utf-8")
    elif fmt == "jsonl":
        records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        data = "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in records).encode("utf-8")
    elif fmt == "parquet":
        buf_b = io.BytesIO()
        table.to_parquet(buf_b, index=False)
        data = buf_b.getvalue()
    else:
        raise ValueError(f"unknown prediction format {fmt!r}: use one of {', '.join(PREDICTION_FORMATS)}")
    atomic_write_bytes(dest, data)
    return dest


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
