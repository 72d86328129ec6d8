"""Import existing labels: from class sub-folders or from a CSV file.

Nothing here writes to a project; the caller shows the problems and decides. Every
problem names the CSV row (1-based line in the file, the header being row 1) and what is
wrong, so an expert can fix the file.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from activekd_core.csv_safe import restore_cell
from activekd_core.images import ImagePool, display_id

ID_COLUMNS = ("id", "path", "filename")
LABEL_COLUMNS = ("label", "class")
MAX_CSV_BYTES = 200 * 1024 * 1024


class LabelImportError(ValueError):
    """The label source cannot be read at all (missing file, no usable columns...)."""


@dataclass(frozen=True)
class LabelProblem:
    """One row (or image) that was not imported, or imported with a remark.

    Attributes:
        row: 1-based line of the CSV (header = 1), or None for folder labels.
        value: The id / path / file name as written in the source.
        reason: What is wrong.
    """

    row: int | None
    value: str
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else "folder"
        return f"{where}: {display_id(self.value)!s}: {self.reason}"


@dataclass
class LabelImport:
    """Labels read from a source, with everything that was skipped.

    Attributes:
        labels: Image id -> class name, for ids of the pool only.
        problems: Rows skipped or worth a look, in row order.
        classes: Class names seen among the imported labels, in first-seen order.
    """

    labels: dict[str, str] = field(default_factory=dict)
    problems: list[LabelProblem] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


def labels_from_subfolders(pool: ImagePool) -> dict[str, str]:
    """Labels from class sub-folders: the first path component of each id.

    ``cat/a.png`` and ``cat/sub/b.png`` are labelled ``cat``; images directly in the root
    have no folder and get no label.

    Args:
        pool: The image pool.

    Returns:
        Image id -> class (folder name), in pool order.
    """
    labels: dict[str, str] = {}
    for image_id in pool.ids:
        parts = PurePosixPath(image_id).parts
        if len(parts) >= 2:
            labels[image_id] = parts[0]
    return labels


def labels_from_csv(
    path: Path | str, pool: ImagePool, classes: list[str] | None = None
) -> LabelImport:
    """Read labels from a CSV file and match them to the pool.

    Columns (names case-insensitive, surrounding spaces ignored): one of ``id`` or
    ``path`` (the image path relative to the image root, ``/`` or ``\\`` separators,
    leading ``./`` allowed; an absolute path inside the root is accepted too) or
    ``filename`` (the bare file name, matched when it is unique in the pool), plus one of
    ``label`` or ``class``. Comma, semicolon and tab separators are recognised; UTF-8
    (with or without BOM) is expected.

    Reported, with row numbers: unknown ids, ambiguous file names, blank labels, labels
    not in ``classes`` (when given; a label differing only in letter case is mapped to
    the listed class), duplicate rows (same label: kept once) and conflicting rows (an
    image given different labels: not imported).

    Args:
        path: The CSV file.
        pool: The image pool whose ids the rows must match.
        classes: Allowed class names; None accepts any non-blank label.

    Returns:
        The imported labels and the problems.

    Raises:
        LabelImportError: The file is missing, unreadable, not UTF-8, empty, or has no
            id/label columns.
    """
    path = Path(path)
    text = _read_text(path)
    dialect = _sniff(text)
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise LabelImportError(f"{path}: the file is empty") from None
    except csv.Error as exc:
        raise LabelImportError(f"{path}: not a readable CSV file: {exc}") from exc
    columns = [h.strip().lower().lstrip("\ufeff") for h in header]
    id_col = next((c for c in ID_COLUMNS if c in columns), None)
    label_col = next((c for c in LABEL_COLUMNS if c in columns), None)
    if id_col is None or label_col is None:
        missing = []
        if id_col is None:
            missing.append("an image column (" + " / ".join(ID_COLUMNS) + ")")
        if label_col is None:
            missing.append("a label column (" + " / ".join(LABEL_COLUMNS) + ")")
        raise LabelImportError(f"{path}: needs {' and '.join(missing)}; found columns {header}")
    id_index, label_index = columns.index(id_col), columns.index(label_col)

    known = set(pool.ids)
    root = pool.root.resolve()
    by_name: dict[str, list[str]] = defaultdict(list)
    if id_col == "filename":
        for image_id in pool.ids:
            by_name[PurePosixPath(image_id).name].append(image_id)
    allowed = {c: c for c in classes} if classes is not None else None
    folded: dict[str, list[str]] = defaultdict(list)
    for c in classes or []:
        folded[c.casefold()].append(c)

    result = LabelImport()
    first_row: dict[str, tuple[int, str]] = {}
    conflicted: set[str] = set()
    try:
        for row_number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue  # blank line
            raw_id = row[id_index].strip() if id_index < len(row) else ""
            raw_label = row[label_index].strip() if label_index < len(row) else ""
            if not raw_id:
                result.problems.append(LabelProblem(row_number, raw_id, f"blank {id_col}"))
                continue
            image_id, reason = _match_id(raw_id, id_col, known, root, by_name)
            if image_id is None and restore_cell(raw_id) != raw_id:  # a cell our CSV export quoted
                image_id, _ = _match_id(restore_cell(raw_id), id_col, known, root, by_name)
            if image_id is None:
                result.problems.append(LabelProblem(row_number, raw_id, reason or "unknown image"))
                continue
            if not raw_label:
                result.problems.append(LabelProblem(row_number, raw_id, "blank label"))
                continue
            label = raw_label
            if allowed is not None and label not in allowed and restore_cell(label) in allowed:
                label = restore_cell(label)
            if allowed is not None and label not in allowed:
                matches = folded.get(label.casefold(), [])
                if len(matches) == 1:
                    label = matches[0]
                else:
                    result.problems.append(
                        LabelProblem(row_number, raw_id, f"unknown class {raw_label!r} (classes: {', '.join(classes or [])})")
                    )
                    continue
            if image_id in conflicted:
                result.problems.append(LabelProblem(row_number, raw_id, "conflicting labels for this image (see earlier rows); not imported"))
                continue
            if image_id in first_row:
                first, first_label = first_row[image_id]
                if first_label == label:
                    result.problems.append(LabelProblem(row_number, raw_id, f"duplicate of row {first} (same label, kept once)"))
                else:
                    result.problems.append(
                        LabelProblem(
                            row_number,
                            raw_id,
                            f"conflicts with row {first}: {label!r} vs {first_label!r}; image not imported",
                        )
                    )
                    conflicted.add(image_id)
                    result.labels.pop(image_id, None)
                continue
            first_row[image_id] = (row_number, label)
            result.labels[image_id] = label
    except csv.Error as exc:
        raise LabelImportError(f"{path}: malformed CSV near row {reader.line_num}: {exc}") from exc
    seen: dict[str, None] = {}
    for label in result.labels.values():
        seen.setdefault(label, None)
    result.classes = list(seen)
    return result


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_CSV_BYTES:
            raise LabelImportError(f"{path}: file too large for a label CSV ({size:,} bytes)")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LabelImportError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise LabelImportError(f"{path}: is a folder, not a CSV file") from None
    except PermissionError:
        raise LabelImportError(f"{path}: permission denied") from None
    except OSError as exc:
        raise LabelImportError(f"{path}: cannot read: {exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelImportError(f"{path}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from exc


def _sniff(text: str) -> type[csv.Dialect] | csv.Dialect:
    sample = text[:8192]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _match_id(
    raw: str, column: str, known: set[str], root: Path, by_name: dict[str, list[str]]
) -> tuple[str | None, str | None]:
    if column == "filename":
        name = raw.replace("\\", "/").rsplit("/", 1)[-1]
        hits = by_name.get(name, [])
        if len(hits) == 1:
            return hits[0], None
        if len(hits) > 1:
            return None, f"file name matches {len(hits)} images ({', '.join(hits[:3])}...); use an id/path column"
        return None, "no image with this file name in the pool"
    candidate = raw.replace("\\", "/")
    if candidate in known:
        return candidate, None
    if os.path.isabs(candidate):
        try:
            rel = Path(candidate).resolve().relative_to(root).as_posix()
        except (ValueError, OSError, RuntimeError):
            return None, "absolute path outside the image root"
        return (rel, None) if rel in known else (None, "not an image of the pool")
    while candidate.startswith("./"):
        candidate = candidate[2:]
    normal = PurePosixPath(candidate).as_posix()
    if normal in known:
        return normal, None
    return None, "not an image of the pool (ids are paths relative to the image root)"
