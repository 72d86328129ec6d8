"""``python -m activekd_core simulate`` end to end (in-process and as a subprocess)."""

from __future__ import annotations

import csv
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
        "--steps", "10", "--teacher", "precomputed", str(teacher_file), "--out", str(out),
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
         "--threads", "1", "--device", "cpu"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no KD (CE-only student)" in proc.stdout
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["dataset", "strategy", "kd", "seed", "round", "n_labeled", "accuracy"]
