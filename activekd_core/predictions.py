"""Predictions for every pool image as one table: teacher, student, human state.

One row per image in pool order with the image id, its current human state (``label``,
``skip``, ``unsure`` or ``unlabeled``), whether it is in the audit set, the human label and
who gave it, and for the teacher and the active student (when they exist) the class
probabilities, the predicted class and the margin (top-1 minus top-2 probability).

The table is written as CSV (cells neutralised against spreadsheet formula injection),
JSON Lines or Parquet, each atomically (temporary name, then rename).

Geo-referenced items (GeoTIFFs and their chips, :mod:`activekd_core.geo_tags`) add two
columns, ``geo_crs`` (``"EPSG:<code>"`` or empty) and ``geo_transform`` (the item's GDAL-order
geotransform as JSON text, or empty); their full records (raw GeoTIFF tags, GeoKeys,
nodata) go into the Parquet schema metadata under ``activekd:geo`` and, for CSV and JSON
Lines, into the sidecar ``<file>.geo.json`` (``{"version": 1, "items": {id: record}}``).
A pool without geo-reference gets neither.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from activekd_core.atomic import atomic_write_bytes
from activekd_core.csv_safe import neutralize_cell

__all__ = ["GEO_METADATA_KEY", "PREDICTION_FORMATS", "geo_sidecar_path", "prediction_table", "write_predictions"]

PredictionFormat = Literal["csv", "jsonl", "parquet"]
PREDICTION_FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")
GEO_METADATA_KEY = b"activekd:geo"


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
    geo: Mapping[str, Mapping[str, Any]] | None = None,
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
        geo: Image id -> geo-reference record (:func:`activekd_core.geo_tags.items_geo`);
            when any id has one, the ``geo_crs`` and ``geo_transform`` columns are added.

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
    if geo and any(i in geo for i in ids):
        records = [geo.get(i) or {} for i in ids]
        data["geo_crs"] = [r.get("crs") or "" for r in records]
        data["geo_transform"] = [json.dumps(r["geotransform"]) if r.get("geotransform") else "" for r in records]
    return pd.DataFrame(data)


def geo_sidecar_path(dest: Path | str) -> Path:
    """Where :func:`write_predictions` puts the geo records of a CSV or JSON Lines file."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".geo.json")


def _geo_payload(geo: Mapping[str, Mapping[str, Any]]) -> bytes:
    return json.dumps({"version": 1, "items": dict(geo)}, ensure_ascii=False, allow_nan=False).encode("utf-8")


def write_predictions(
    table: pd.DataFrame, dest: Path | str, fmt: PredictionFormat, *, geo: Mapping[str, Mapping[str, Any]] | None = None
) -> Path:
    """Write a prediction table as ``csv``, ``jsonl`` or ``parquet`` (atomically).

    Args:
        table: The table (:func:`prediction_table`).
        dest: The file to write.
        fmt: ``csv``, ``jsonl`` or ``parquet``.
        geo: Image id -> geo-reference record, for the rows' geo-referenced items: kept in
            the Parquet schema metadata (``activekd:geo``) or in :func:`geo_sidecar_path`.
            None or empty: nothing is added (and a stale sidecar is not written).

    Returns:
        The table file written.

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
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrow = pa.Table.from_pandas(table, preserve_index=False)
        if geo:
            arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), GEO_METADATA_KEY: _geo_payload(geo)})
        buf_b = io.BytesIO()
        pq.write_table(arrow, buf_b)
        data = buf_b.getvalue()
    else:
        raise ValueError(f"unknown prediction format {fmt!r}: use one of {', '.join(PREDICTION_FORMATS)}")
    if geo and fmt != "parquet":
        atomic_write_bytes(geo_sidecar_path(dest), _geo_payload(geo))
    atomic_write_bytes(dest, data)
    return dest


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
