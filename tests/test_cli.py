"""``python -m activekd_core simulate`` end to end (in-process and as a subprocess)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from activekd_core.cli import main

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli_data")


def test_simulate_with_precomputed_teacher(tmp_path, data_dir, capsys):
    from activekd_core.demo_data import materialize_demo

    demo = materialize_demo("digits", data_dir)
    ids = sorted(demo.labels)
    probs = np.full((len(ids), len(demo.classes)), 0.02, np.float64)
    for row, image_id in enumerate(ids):
        probs[row, demo.classes.index(demo.labels[image_id])] = 1 - 0.02 * (len(demo.classes) - 1)
    teacher_file = tmp_path / "teacher.npz"
    np.savez(teacher_file, ids=np.array(ids), probs=probs, classes=np.array(demo.classes))
    out = tmp_path / "out"
    code = main([
        "simulate", "--dataset", "digits", "--strategies", "entropy", "--rounds", "2", "--seeds", "1",
        "--steps", "10", "--teacher", f"precomputed:{teacher_file}", "--out", str(out), "--preset", "cpu-fast",
        "--data-dir", str(data_dir), "--device", "cpu",
    ])
    assert code == 0
    printed = capsys.readouterr()
    assert "entropy" in printed.out and "±" in printed.out and "accuracy.html" in printed.out
    assert "test accuracy" in printed.err  # progress goes to stderr
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(float(r["teacher_accuracy"]) == 1.0 for r in rows)
    assert all(r["kd"] == "True" for r in rows)
    (out / "accuracy.html").unlink()
    assert main(["summarize", str(out)]) == 0
    assert "entropy" in capsys.readouterr().out and (out / "accuracy.html").is_file()
    assert main(["summarize", str(tmp_path / "none")]) == 2


def test_cli_errors_are_reported_with_exit_code_2(tmp_path, capsys):
    assert main(["simulate", "--dataset", "digits", "--strategies", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown strategies" in capsys.readouterr().err
    assert main(["simulate", "--dataset", "digits", "--teacher", "precomputed", "--out", str(tmp_path)]) == 2
    assert "needs a FILE" in capsys.readouterr().err
    assert main(["simulate", "--dataset", "digits", "--teacher", "clip", "--out", str(tmp_path),
                 "--strategies", "random", "--data-dir", str(tmp_path / "d")]) == 2
    assert "--clip-pretrained" in capsys.readouterr().err


def test_module_entry_point_runs_a_no_kd_simulation(tmp_path, data_dir):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    out = tmp_path / "x"
    proc = subprocess.run(
        [sys.executable, "-m", "activekd_core", "simulate", "--dataset", "digits", "--strategies", "random",
         "--rounds", "2", "--seeds", "1", "--steps", "8", "--no-kd", "--out", str(out), "--data-dir", str(data_dir),
         "--preset", "cpu-fast",
         "--threads", "1", "--device", "cpu"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no KD (CE-only student)" in proc.stdout
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["dataset", "strategy", "kd", "seed", "round", "n_labeled", "accuracy"]


def _small_project(base: Path) -> Path:
    from activekd_core.demo_data import truth_for_root
    from activekd_core.project import open_demo

    project = open_demo("digits", base, per_class=6, prepare=False)
    try:
        project.update_config(train={"steps": 6, "image_size": 16, "batch_labeled": 8, "batch_unlabeled": 8})
        ids = project.pool().ids
        truth = truth_for_root(project.pool().root)
        by_class: dict[str, str] = {}
        for image_id in ids:
            by_class.setdefault(truth[image_id], image_id)
        for cls, image_id in by_class.items():
            project.label(image_id, cls)
        return project.folder
    finally:
        project.close()


def test_train_and_extract_features_on_a_project(tmp_path, capsys):
    from activekd_core.project import Project

    folder = _small_project(tmp_path)
    assert main(["extract-features", "--project", str(folder)]) == 0
    assert "teacher probabilities for 60 images x 10 classes" in capsys.readouterr().out
    assert main(["train", "--project", str(folder), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "round 1: 10 labels, 6 steps" in out
    with Project.open(folder) as project:
        assert project.checkpoint_path() is not None and project.checkpoint_path().is_file()
    assert main(["train", "--project", str(tmp_path / "nothing")]) == 2


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_train_a_project_round(tmp_path):
    import shutil

    from activekd_core.project import Project
    from activekd_core.student import load_student

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    folder = _small_project(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "activekd_core", "train", "--project", str(folder)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "rank 0 of 2 (gloo)" in proc.stderr and "rank 1/2: trained its share" in proc.stderr
    with Project.open(folder) as project:
        record = project.active_round()
        assert record is not None and record.metrics["world_size"] == 2
        model, _ = load_student(project.checkpoint_path())
    assert model.num_classes == 10


def _png_with_broken_pixels(size: int = 12) -> bytes:
    """A PNG whose chunk CRCs are valid (it passes the quick scan) but whose pixel data is cut short."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_simulate_reports_every_skipped_file_on_stderr_and_in_skipped_csv(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True)
        for i in range(10):
            arr = rng.integers(0, 80, (12, 12, 3), dtype=np.uint8)
            arr[:, :, c] = 230
            Image.fromarray(arr).save(root / name / f"{i}.png")
    (root / "red" / "empty.png").write_bytes(b"")
    (root / "green" / "=notes.png").write_bytes(b"this is text, not an image")
    (root / "blue" / "cut.png").write_bytes(_png_with_broken_pixels())  # fails only at decode time
    out = tmp_path / "out"
    code = main(["simulate", "--dataset", str(root), "--strategies", "random", "--rounds", "1", "--seeds", "1",
                 "--steps", "3", "--image-size", "12", "--reference-frac", "0.2", "--out", str(out),
                 "--data-dir", str(tmp_path / "cache"), "--device", "cpu", "--preset", "cpu-fast"])
    assert code == 0
    err = capsys.readouterr().err
    for name, words in [("red/empty.png", "empty file"), ("green/=notes.png", "not a recognised image"),
                        ("blue/cut.png", "corrupt")]:
        line = next((ln for ln in err.splitlines() if name in ln), "")
        assert words in line, (name, err[-2000:])
    assert "3 file(s) skipped" in err
    with open(out / "skipped.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["id"] for r in rows) == ["blue/cut.png", "green/=notes.png", "red/empty.png"]
    assert all(r["reason"] for r in rows)
    config = json.loads((out / "config.json").read_text())
    assert sum(config["split_sizes"].values()) == 30  # the blank decode is neither trained nor tested on


def test_train_errors_are_one_line_with_a_nonzero_exit(tmp_path, capsys, monkeypatch):
    """A disk-full round or a damaged database: one line on stderr, no traceback, exit code != 0."""
    from activekd_core.project import Project

    folder = _small_project(tmp_path)

    def disk_full(self, *a, **k):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Project, "retrain", disk_full)
    assert main(["train", "--project", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "error: OSError: [Errno 28] No space left on device" in err and "Traceback" not in err
    monkeypatch.undo()
    with open(folder / "project.db", "r+b") as fh:  # damage the file's header page
        fh.seek(100)
        fh.write(b"\xa5" * 3000)
    code = main(["train", "--project", str(folder)])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1
