"""Teacher that reads soft labels computed elsewhere, keyed by image id.

Accepted files:

- ``.csv``: a header ``id,<class 1>,<class 2>,...``; one row per image id (the image id
  is the POSIX path relative to the image root). Class columns may come in any order.
- ``.npz``: arrays ``ids`` (strings) and ``probs`` or ``logits`` ``(M, C)``, optionally
  ``classes``.
- ``.npy``: an ``(M, C)`` array plus an ids file (``ids_path``; default: a sibling
  ``<name>.ids.txt``) with one id per line, or a ``.json`` list.

Values are probabilities (``kind="probs"``: non-negative, rows must sum to 1 within
``tolerance`` and are then renormalised exactly) or logits (``kind="logits"``: row
softmax). Every problem raises :class:`TeacherDataError` naming the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from activekd_core.images import ImagePool
from activekd_core.teachers.base import ProgressFn, TeacherDataError, softmax_rows

KINDS = ("probs", "logits")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _some(items: Sequence[Any], k: int = 5) -> str:
    shown = ", ".join(repr(i) for i in list(items)[:k])
    return shown + (f" and {len(items) - k} more" if len(items) > k else "")


class PrecomputedTeacher:
    """Soft labels from a file.

    Args:
        path: ``.csv``, ``.npz`` or ``.npy`` file.
        classes: Class names in column order; required for ``.npy``, checked against the
            file's classes otherwise (CSV columns are reordered to match).
        kind: ``"probs"`` or ``"logits"``; for ``.npz`` the array name decides.
        ids_path: Ids file for ``.npy`` input.
        tolerance: Largest accepted ``|row sum - 1|`` for probabilities.
        temperature: Softmax temperature for logits.

    Raises:
        TeacherDataError: Unreadable file, wrong shape, NaN/inf, negative
            probabilities, rows not summing to 1, duplicate ids, class mismatch.
    """

    kind = "precomputed"

    def __init__(
        self,
        path: Path | str,
        classes: Sequence[str] | None = None,
        *,
        kind: str = "probs",
        ids_path: Path | str | None = None,
        tolerance: float = 1e-3,
        temperature: float = 1.0,
    ) -> None:
        self.path = Path(path)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not self.path.is_file():
            raise TeacherDataError(f"{self.path}: file not found")
        self.value_kind = kind
        self.tolerance = float(tolerance)
        self.temperature = float(temperature)
        self.ids_path = Path(ids_path) if ids_path is not None else None
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            ids, values, file_classes = self._read_csv(classes)
        elif suffix == ".npz":
            ids, values, file_classes = self._read_npz()
        elif suffix == ".npy":
            ids, values, file_classes = self._read_npy()
        else:
            raise TeacherDataError(f"{self.path}: unsupported file type {suffix!r}; use .csv, .npz or .npy")
        if classes is None:
            if file_classes is None:
                raise TeacherDataError(f"{self.path}: the file does not name its classes; pass classes=[...]")
            classes = file_classes
        elif file_classes is not None and list(file_classes) != list(classes):
            raise TeacherDataError(f"{self.path}: file classes {_some(file_classes)} differ from the project's {_some(list(classes))}")
        self.classes = [str(c) for c in classes]
        self.probs = self._validate(ids, values)
        self.ids = ids
        self._row = {i: r for r, i in enumerate(ids)}

    # ---- readers

    def _read_csv(self, classes: Sequence[str] | None) -> tuple[list[str], np.ndarray, list[str] | None]:
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.reader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise TeacherDataError(f"{self.path}: cannot read CSV: {exc}") from exc
        if not rows or len(rows[0]) < 3:
            raise TeacherDataError(f"{self.path}: expected a header 'id,<class>,<class>,...' with at least 2 classes")
        header = [h.strip() for h in rows[0]]
        if header[0].lower() not in ("id", "image", "image_id", "path"):
            raise TeacherDataError(f"{self.path}: first column must be 'id' (the image id), got {header[0]!r}")
        cols = header[1:]
        order = list(range(len(cols)))
        if classes is not None:
            missing = [c for c in classes if c not in cols]
            extra = [c for c in cols if c not in classes]
            if missing or extra:
                raise TeacherDataError(
                    f"{self.path}: class columns do not match the project's classes"
                    + (f"; missing columns {_some(missing)}" if missing else "")
                    + (f"; unknown columns {_some(extra)}" if extra else "")
                )
            order = [cols.index(c) for c in classes]
            cols = list(classes)
        ids, values = [], []
        for line_no, row in enumerate(rows[1:], start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise TeacherDataError(f"{self.path}: line {line_no} has {len(row)} fields, expected {len(header)}")
            try:
                vals = [float(row[1 + j]) for j in order]
            except ValueError as exc:
                raise TeacherDataError(f"{self.path}: line {line_no} (id {row[0]!r}): not a number: {exc}") from exc
            ids.append(row[0].strip())
            values.append(vals)
        if not ids:
            raise TeacherDataError(f"{self.path}: no data rows")
        return ids, np.asarray(values, dtype=np.float64), cols

    def _read_npz(self) -> tuple[list[str], np.ndarray, list[str] | None]:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                keys = set(data.files)
                if "ids" not in keys:
                    raise TeacherDataError(f"{self.path}: missing array 'ids' (found {sorted(keys)})")
                if "probs" in keys and "logits" in keys:
                    raise TeacherDataError(f"{self.path}: holds both 'probs' and 'logits'; keep one")
                if "probs" in keys:
                    name, self.value_kind = "probs", "probs"
                elif "logits" in keys:
                    name, self.value_kind = "logits", "logits"
                else:
                    raise TeacherDataError(f"{self.path}: missing array 'probs' or 'logits' (found {sorted(keys)})")
                values = np.asarray(data[name], dtype=np.float64)
                ids = [str(i) for i in data["ids"].tolist()]
                classes = [str(c) for c in data["classes"].tolist()] if "classes" in keys else None
        except TeacherDataError:
            raise
        except (OSError, ValueError) as exc:
            raise TeacherDataError(f"{self.path}: cannot read .npz: {exc}") from exc
        return ids, values, classes

    def _read_npy(self) -> tuple[list[str], np.ndarray, list[str] | None]:
        ids_path = self.ids_path or self.path.with_name(self.path.stem + ".ids.txt")
        if not ids_path.is_file():
            raise TeacherDataError(
                f"{self.path}: a .npy needs an ids file naming the image of each row; {ids_path} not found "
                "(give ids_path, or use .npz with an 'ids' array, or .csv)"
            )
        try:
            values = np.load(self.path, allow_pickle=False).astype(np.float64)
        except (OSError, ValueError) as exc:
            raise TeacherDataError(f"{self.path}: cannot read .npy: {exc}") from exc
        try:
            text = ids_path.read_text(encoding="utf-8")
            ids = [str(i) for i in json.loads(text)] if ids_path.suffix.lower() == ".json" else [
                line.strip() for line in text.splitlines() if line.strip()
            ]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
            raise TeacherDataError(f"{ids_path}: cannot read ids: {exc}") from exc
        self.ids_path = ids_path
        return ids, values, None

    # ---- validation

    def _validate(self, ids: list[str], values: np.ndarray) -> np.ndarray:
        c = len(self.classes)
        if values.ndim != 2 or values.shape[1] != c:
            raise TeacherDataError(f"{self.path}: wrong shape {values.shape}: expected (n_images, {c}) for classes {_some(self.classes)}")
        if values.shape[0] != len(ids):
            raise TeacherDataError(f"{self.path}: {values.shape[0]} rows but {len(ids)} ids")
        dup = sorted(i for i, n in Counter(ids).items() if n > 1)
        if dup:
            raise TeacherDataError(f"{self.path}: duplicate ids {_some(dup)}")
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if bad.size:
            raise TeacherDataError(f"{self.path}: NaN or infinite values in {bad.size} rows, e.g. ids {_some([ids[r] for r in bad])}")
        if self.value_kind == "logits":
            return softmax_rows(values, self.temperature)
        neg = np.flatnonzero((values < 0).any(axis=1))
        if neg.size:
            raise TeacherDataError(
                f"{self.path}: negative probabilities in {neg.size} rows, e.g. ids {_some([ids[r] for r in neg])} "
                "(if these are logits, declare kind='logits')"
            )
        sums = values.sum(axis=1)
        off = np.flatnonzero(np.abs(sums - 1.0) > self.tolerance)
        if off.size:
            r = off[0]
            raise TeacherDataError(
                f"{self.path}: {off.size} rows do not sum to 1 (tolerance {self.tolerance}), e.g. id {ids[r]!r} sums to "
                f"{sums[r]:.6g} (if these are logits, declare kind='logits')"
            )
        return (values / sums[:, None]).astype(np.float32)

    # ---- teacher interface

    def predict_proba(self, pool: ImagePool, progress: ProgressFn | None = None) -> np.ndarray:
        """Rows for the pool's ids, in pool order.

        Raises:
            TeacherDataError: Pool images missing from the file (some are named).
        """
        missing = [i for i in pool.ids if i not in self._row]
        if missing:
            raise TeacherDataError(
                f"{self.path}: {len(missing)} of {len(pool)} pool images have no row, e.g. {_some(missing)} "
                f"(ids are paths relative to the image root, like {pool.ids[0]!r})"
            )
        rows = np.fromiter((self._row[i] for i in pool.ids), dtype=np.int64, count=len(pool))
        if progress is not None:
            progress(len(pool), len(pool), f"Read {len(pool):,} rows from {self.path.name}")
        return self.probs[rows]

    def spec(self) -> dict[str, Any]:
        """JSON spec for ``make_teacher``."""
        return {
            "kind": self.kind,
            "path": str(self.path),
            "classes": self.classes,
            "value_kind": self.value_kind,
            "ids_path": str(self.ids_path) if self.ids_path else None,
            "tolerance": self.tolerance,
            "temperature": self.temperature,
        }

    def describe(self) -> dict[str, Any]:
        """Provenance: file, its SHA-256, value kind, row count."""
        return {
            "kind": self.kind,
            "display_name": f"Precomputed {self.value_kind} ({self.path.name})",
            "spec": self.spec(),
            "path": str(self.path.resolve()),
            "sha256": _sha256(self.path),
            "rows": len(self.ids),
            "value_kind": self.value_kind,
        }
