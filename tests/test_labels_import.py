"""Label import from class sub-folders and CSV files, with row-numbered problems."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from activekd_core.images import ImagePool, scan_images
from activekd_core.labels_import import LabelImportError, labels_from_csv, labels_from_subfolders


@pytest.fixture()
def pool(tmp_path: Path) -> ImagePool:
    root = tmp_path / "imgs"
    for rel in ("cat/a.png", "cat/deep/b.png", "dog/c.png", "dog/a.png", "loose.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (2, 2)).save(root / rel)
    return scan_images(root)


def write(tmp_path: Path, text: str, name: str = "labels.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_subfolders(pool: ImagePool) -> None:
    assert labels_from_subfolders(pool) == {
        "cat/a.png": "cat",
        "cat/deep/b.png": "cat",
        "dog/a.png": "dog",
        "dog/c.png": "dog",
    }


def test_csv_by_id_with_every_problem_kind(pool: ImagePool, tmp_path: Path) -> None:
    text = (
        "ID , Label\n"  # row 1 header (case and spaces ignored)
        "cat/a.png,cat\n"  # 2 ok
        "./dog/c.png,dog\n"  # 3 ok, ./ stripped
        "cat\\deep\\b.png,cat\n"  # 4 ok, backslashes
        "missing.png,cat\n"  # 5 unknown id
        "loose.png,\n"  # 6 blank label
        "dog/a.png,bird\n"  # 7 unknown class
        "cat/a.png,cat\n"  # 8 duplicate, same label
        "dog/c.png,cat\n"  # 9 conflict -> dog/c.png dropped
        "\n"  # 10 blank line ignored
        "dog/c.png,dog\n"  # 11 still conflicted
        "loose.png,DOG\n"  # 12 case-folded to "dog"
        ",cat\n"  # 13 blank id
    )
    result = labels_from_csv(write(tmp_path, text), pool, classes=["cat", "dog"])
    assert result.labels == {"cat/a.png": "cat", "cat/deep/b.png": "cat", "loose.png": "dog"}
    by_row = {p.row: p.reason for p in result.problems}
    assert sorted(by_row) == [5, 6, 7, 8, 9, 11, 13]
    assert "not an image of the pool" in by_row[5]
    assert "blank label" in by_row[6]
    assert "unknown class 'bird'" in by_row[7]
    assert "duplicate of row 2" in by_row[8]
    assert "conflicts with row 3" in by_row[9]
    assert "conflicting" in by_row[11]
    assert "blank id" in by_row[13]
    assert result.classes == ["cat", "dog"]
    assert str(result.problems[0]).startswith("row 5: missing.png")


def test_csv_path_column_absolute_and_semicolons(pool: ImagePool, tmp_path: Path) -> None:
    inside = pool.root / "dog" / "a.png"
    text = f"path;class\n{inside};dog\n/etc/passwd;cat\n"
    result = labels_from_csv(write(tmp_path, text), pool)
    assert result.labels == {"dog/a.png": "dog"}
    assert [p.row for p in result.problems] == [3]
    assert "outside the image root" in result.problems[0].reason


def test_csv_filename_column_unique_and_ambiguous(pool: ImagePool, tmp_path: Path) -> None:
    text = "filename\tlabel\nb.png\tcat\na.png\tcat\nzzz.png\tdog\n"
    result = labels_from_csv(write(tmp_path, text), pool)
    assert result.labels == {"cat/deep/b.png": "cat"}
    reasons = {p.row: p.reason for p in result.problems}
    assert "matches 2 images" in reasons[3]
    assert "no image with this file name" in reasons[4]


def test_csv_with_bom_and_extra_columns(pool: ImagePool, tmp_path: Path) -> None:
    text = "\ufeffnote,id,label\nhello,cat/a.png,cat\n"
    result = labels_from_csv(write(tmp_path, text), pool)
    assert result.labels == {"cat/a.png": "cat"} and result.problems == []


def test_without_classes_any_nonblank_label_is_accepted(pool: ImagePool, tmp_path: Path) -> None:
    result = labels_from_csv(write(tmp_path, "id,label\ncat/a.png,anything at all\n"), pool)
    assert result.labels == {"cat/a.png": "anything at all"}


@pytest.mark.parametrize(
    "content,words",
    [
        (b"", "empty"),
        (b"name,value\nx,y\n", "needs an image column"),
        (b"id,value\nx,y\n", "a label column"),
        ("id,label\ncat/a.png,ch\xe4t\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_unusable_files_raise_clear_errors(pool: ImagePool, tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(LabelImportError, match=words):
        labels_from_csv(path, pool)


def test_missing_file_and_folder(pool: ImagePool, tmp_path: Path) -> None:
    with pytest.raises(LabelImportError, match="not found"):
        labels_from_csv(tmp_path / "nope.csv", pool)
    with pytest.raises(LabelImportError, match="folder"):
        labels_from_csv(tmp_path, pool)
    assert issubclass(LabelImportError, ValueError)
