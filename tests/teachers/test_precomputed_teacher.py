"""Precomputed teacher: each accepted format and each bad-file case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from activekd_core.images import ImagePool
from activekd_core.teachers import PrecomputedTeacher, TeacherDataError, make_teacher

CLASSES = ["cat", "dog", "fox"]
IDS = ["a/1.png", "a/2.png", "b/3.png", "b/4.png"]


@pytest.fixture()
def pool(tmp_path: Path) -> ImagePool:
    return ImagePool(root=tmp_path, ids=list(IDS))


def _probs() -> np.ndarray:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=len(IDS))
    return p


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join(",".join(str(c) for c in r) for r in [header, *rows]) + "\n")
    return path


def test_csv_probs_any_column_order_and_pool_order(tmp_path: Path, pool: ImagePool) -> None:
    p = _probs()
    order = [2, 0, 3, 1]  # file rows in another order than the pool
    path = _write_csv(tmp_path / "t.csv", ["id", "fox", "cat", "dog"],
                      [[IDS[r], p[r, 2], p[r, 0], p[r, 1]] for r in order] + [["extra.png", 0.2, 0.3, 0.5]])
    t = PrecomputedTeacher(path, CLASSES)
    out = t.predict_proba(pool)
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_allclose(out, p, atol=1e-6)
    d = t.describe()
    json.dumps(d)
    assert d["kind"] == "precomputed" and len(d["sha256"]) == 64 and d["rows"] == 5
    np.testing.assert_allclose(make_teacher(d["spec"]).predict_proba(pool), out)


def test_csv_classes_from_header(tmp_path: Path, pool: ImagePool) -> None:
    p = _probs()
    path = _write_csv(tmp_path / "t.csv", ["id", *CLASSES], [[i, *row] for i, row in zip(IDS, p)])
    assert PrecomputedTeacher(path).classes == CLASSES


def test_npz_logits_are_softmaxed(tmp_path: Path, pool: ImagePool) -> None:
    logits = np.random.default_rng(1).standard_normal((4, 3)) * 5
    np.savez(tmp_path / "t.npz", ids=np.array(IDS), logits=logits, classes=np.array(CLASSES))
    out = PrecomputedTeacher(tmp_path / "t.npz").predict_proba(pool)
    ref = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(out, ref / ref.sum(1, keepdims=True), atol=1e-6)


def test_npy_with_ids_file_and_renormalisation(tmp_path: Path, pool: ImagePool) -> None:
    p = _probs() * (1 + 5e-4)  # within tolerance: renormalised exactly
    np.save(tmp_path / "t.npy", p)
    (tmp_path / "t.ids.txt").write_text("\n".join(IDS) + "\n")
    out = PrecomputedTeacher(tmp_path / "t.npy", CLASSES).predict_proba(pool)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-6)
    (tmp_path / "ids.json").write_text(json.dumps(IDS))
    out2 = PrecomputedTeacher(tmp_path / "t.npy", CLASSES, ids_path=tmp_path / "ids.json").predict_proba(pool)
    np.testing.assert_array_equal(out, out2)


def test_npy_declared_logits(tmp_path: Path, pool: ImagePool) -> None:
    np.save(tmp_path / "t.npy", np.zeros((4, 3)) - 3.0)
    (tmp_path / "t.ids.txt").write_text("\n".join(IDS))
    out = PrecomputedTeacher(tmp_path / "t.npy", CLASSES, kind="logits").predict_proba(pool)
    np.testing.assert_allclose(out, 1 / 3, atol=1e-6)


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("wrong_shape", r"wrong shape \(4, 2\)"),
        ("nan", r"NaN or infinite values in 1 rows, e.g. ids 'b/3.png'"),
        ("negative", r"negative probabilities .* 'a/2.png'.*kind='logits'"),
        ("bad_sum", r"do not sum to 1 .* id 'a/1.png' sums to 1.2"),
        ("rows_vs_ids", r"3 rows but 4 ids"),
        ("duplicate", r"duplicate ids 'a/1.png'"),
        ("no_ids_file", r"needs an ids file"),
    ],
)
def test_bad_npy_files(tmp_path: Path, case: str, pattern: str) -> None:
    p = _probs()
    ids = list(IDS)
    if case == "wrong_shape":
        p = p[:, :2]
    elif case == "nan":
        p[2, 1] = np.nan
    elif case == "negative":
        p[1] = [-0.1, 0.6, 0.5]
    elif case == "bad_sum":
        p[0] = [0.5, 0.5, 0.2]
    elif case == "rows_vs_ids":
        p = p[:3]
    elif case == "duplicate":
        ids[1] = ids[0]
    path = tmp_path / "teacher.npy"
    np.save(path, p)
    if case != "no_ids_file":
        (tmp_path / "teacher.ids.txt").write_text("\n".join(ids))
    with pytest.raises(TeacherDataError, match=pattern) as err:
        PrecomputedTeacher(path, CLASSES)
    assert str(path) in str(err.value) or "teacher" in str(err.value)


def test_missing_ids_are_named(tmp_path: Path, pool: ImagePool) -> None:
    p = _probs()
    path = _write_csv(tmp_path / "t.csv", ["id", *CLASSES], [[i, *row] for i, row in zip(IDS[:2], p[:2])])
    t = PrecomputedTeacher(path, CLASSES)
    with pytest.raises(TeacherDataError, match=r"t\.csv: 2 of 4 pool images have no row, e.g. 'b/3.png', 'b/4.png'"):
        t.predict_proba(pool)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("name,cat,dog,fox\nx,1,0,0\n", r"first column must be 'id'"),
        ("id,cat,dog\nx,1,0\n", r"missing columns 'fox'"),
        ("id,cat,dog,fox,cow\nx,1,0,0,0\n", r"unknown columns 'cow'"),
        ("id,cat,dog,fox\nx,1,zero,0\n", r"line 2 \(id 'x'\): not a number"),
        ("id,cat,dog,fox\nx,1,0\n", r"line 2 has 3 fields, expected 4"),
        ("id,cat,dog,fox\n", r"no data rows"),
    ],
)
def test_bad_csv_files(tmp_path: Path, content: str, pattern: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TeacherDataError, match=pattern) as err:
        PrecomputedTeacher(path, CLASSES)
    assert "bad.csv" in str(err.value)


def test_bad_npz_and_other_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", probs=_probs())
    with pytest.raises(TeacherDataError, match=r"a\.npz: missing array 'ids'"):
        PrecomputedTeacher(tmp_path / "a.npz", CLASSES)
    np.savez(tmp_path / "b.npz", ids=np.array(IDS), scores=_probs())
    with pytest.raises(TeacherDataError, match=r"missing array 'probs' or 'logits'"):
        PrecomputedTeacher(tmp_path / "b.npz", CLASSES)
    np.savez(tmp_path / "c.npz", ids=np.array(IDS), probs=_probs(), classes=np.array(["x", "y", "z"]))
    with pytest.raises(TeacherDataError, match=r"file classes 'x', 'y', 'z' differ"):
        PrecomputedTeacher(tmp_path / "c.npz", CLASSES)
    (tmp_path / "d.npy").write_bytes(b"garbage")
    (tmp_path / "d.ids.txt").write_text("a")
    with pytest.raises(TeacherDataError, match=r"d\.npy: cannot read \.npy"):
        PrecomputedTeacher(tmp_path / "d.npy", CLASSES)
    with pytest.raises(TeacherDataError, match="file not found"):
        PrecomputedTeacher(tmp_path / "none.csv", CLASSES)
    (tmp_path / "e.parquet").write_text("x")
    with pytest.raises(TeacherDataError, match="unsupported file type"):
        PrecomputedTeacher(tmp_path / "e.parquet", CLASSES)
