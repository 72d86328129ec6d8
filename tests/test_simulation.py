"""Oracle simulation on the real digits demo (CPU, few steps)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from activekd_core.simulation import (
    RESULT_COLUMNS,
    SimulationConfig,
    SimulationError,
    initial_labels,
    make_splits,
    parse_seeds,
    read_results,
    run_simulation,
    summary_table,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("digits_cache")


def test_short_digits_simulation_writes_results(tmp_path, digits_dir):
    out = tmp_path / "sim"
    cfg = SimulationConfig(
        dataset="digits", out=out, strategies=["random", "pcoreset"], rounds=2, seeds=[0],
        kd_modes=[True, False], steps=25, data_dir=digits_dir, device="cpu", preset="cpu-fast",
    )
    messages: list[str] = []
    rows = run_simulation(cfg, log=messages.append)
    with open(out / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0].keys()) == RESULT_COLUMNS
    assert len(table) == len(rows) == 2 * 1 * 2 * 2  # kd modes x seeds x strategies x rounds
    assert {r["strategy"] for r in table} == {"random", "pcoreset"}
    assert {r["kd"] for r in table} == {"True", "False"}
    assert sorted({int(r["n_labeled"]) for r in table}) == [10, 20]
    for r in table:
        assert 0.0 <= float(r["accuracy"]) <= 1.0
        assert r["teacher"] == "Offline stand-in (not CLIP)"  # the name every page shows
        assert int(r["steps"]) == 25 and r["image_size"] == "16"
    # Round 0 uses the same start and training seed for every strategy of a (kd, seed).
    for kd in ("True", "False"):
        r0 = {r["accuracy"] for r in table if r["kd"] == kd and r["round"] == "0"}
        assert len(r0) == 1
    # Each strategy picked C new, unique, previously unlabeled images after round 0.
    picks = [json.loads(line) for line in (out / "picks.jsonl").read_text().splitlines()]
    assert len(picks) == 4
    for p in picks:
        assert len(p["picked_ids"]) == 10 == len(set(p["picked_ids"]))
    config = json.loads((out / "config.json").read_text())
    assert config["teacher"]["kind"] == "standin" and config["teacher"]["is_clip"] is False
    assert (out / "accuracy.html").stat().st_size > 10_000
    summary = (out / "summary.txt").read_text()
    assert "not CLIP" in summary and "no KD" in summary and "pcoreset" in summary
    assert any("test accuracy" in m for m in messages)
    back = read_results(out / "results.csv")
    assert summary_table(back) == summary_table(rows)
    assert {r["kd"] for r in back} == {True, False} and all(isinstance(r["accuracy"], float) for r in back)


def test_splits_are_disjoint_stratified_and_cover_everything():
    y = np.repeat(np.arange(4), 50)
    sp = make_splits(y, 0.2, 0.1, seed=0)
    allrows = np.concatenate([sp.pool, sp.test, sp.reference])
    assert len(allrows) == 200 == len(np.unique(allrows))
    assert np.bincount(y[sp.test]).tolist() == [10] * 4
    assert np.bincount(y[sp.reference]).tolist() == [5] * 4
    with pytest.raises(SimulationError, match="at least 3"):
        make_splits(np.array([0, 0, 0, 1, 1]), 0.2, 0.0, 0)


def test_initial_labels_one_per_class_and_seeded():
    y = np.repeat(np.arange(5), 7)
    a = initial_labels(y, 5, seed=1)
    assert sorted(y[a].tolist()) == [0, 1, 2, 3, 4]
    assert np.array_equal(a, initial_labels(y, 5, seed=1))
    assert not all(np.array_equal(a, initial_labels(y, 5, seed=s)) for s in range(2, 6))


def test_summary_table_mean_and_std():
    rows = [
        {"strategy": "random", "kd": True, "seed": s, "round": 0, "n_labeled": 3, "accuracy": acc}
        for s, acc in enumerate([0.5, 0.7])
    ]
    text = summary_table(rows)
    assert "60.0 ± 14.1" in text and "2 seed(s)" in text


def test_parse_seeds_and_bad_settings(tmp_path):
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,9") == [4, 9]
    with pytest.raises(SimulationError, match="seeds"):
        parse_seeds("0")
    with pytest.raises(SimulationError, match="unknown strategies"):
        run_simulation(SimulationConfig(dataset="digits", out=tmp_path, strategies=["nope"]))
    with pytest.raises(SimulationError, match="not 'digits'"):
        run_simulation(SimulationConfig(dataset=str(tmp_path / "missing"), out=tmp_path, strategies=["random"]))


def test_folder_dataset_with_a_local_clip_checkpoint(tmp_path):
    """FOLDER datasets and the CLIP teacher path, on a tiny random open_clip model saved locally."""
    import open_clip
    from PIL import Image

    import activekd_core.teachers.clip_zero_shot  # noqa: F401  (registers the tiny test config)

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True)
        for i in range(8):
            arr = rng.integers(0, 80, (20, 20, 3), dtype=np.uint8)
            arr[:, :, c] = 230
            Image.fromarray(arr).save(root / name / f"{i}.png")
    (root / "stray.png").write_bytes((root / "red" / "0.png").read_bytes())  # no class folder: ignored
    ckpt = tmp_path / "tiny_clip.pt"
    torch.save(open_clip.create_model("akd-tiny-clip", pretrained=None).state_dict(), ckpt)
    out = tmp_path / "out"
    rows = run_simulation(SimulationConfig(
        dataset=str(root), out=out, strategies=["entropy"], rounds=2, seeds=[0], teacher="clip",
        clip_model="akd-tiny-clip", clip_pretrained=str(ckpt), steps=4, image_size=16,
        batch_labeled=8, batch_unlabeled=8, data_dir=tmp_path / "cache", device="cpu", preset="cpu-fast",
    ))
    assert [r["n_labeled"] for r in rows] == [3, 6]
    assert rows[0]["dataset"] == "images" and "not CLIP" not in rows[0]["teacher"]
    config = json.loads((out / "config.json").read_text())
    assert config["teacher"]["kind"] == "clip_zero_shot"
    assert config["classes"] == ["blue", "green", "red"]
    assert sum(config["split_sizes"].values()) == 24 and config["split_sizes"]["reference"] == 0


def test_one_round_simulation_finishes(tmp_path, digits_dir):
    """``--rounds 1`` trains and measures round 0 only (it used to crash with UnboundLocalError: probs)."""
    out = tmp_path / "one"
    rows = run_simulation(SimulationConfig(
        dataset="digits", out=out, strategies=["random", "pcoreset"], rounds=1, seeds=[0], steps=5,
        data_dir=digits_dir, device="cpu", preset="cpu-fast",
    ))
    assert [(r["strategy"], r["round"], r["n_labeled"]) for r in rows] == [("random", 0, 10), ("pcoreset", 0, 10)]
    assert (out / "summary.txt").is_file() and (out / "picks.jsonl").read_text() == ""


def test_reference_preset_is_the_papers_student_and_fails_fast_without_weights(tmp_path, digits_dir, monkeypatch):
    from activekd_core.simulation import resolve_student
    from activekd_core.student import PretrainedWeightsMissing

    ref = SimulationConfig(dataset="digits", out=tmp_path)
    assert resolve_student(ref) == ("resnet18", 224, True)
    assert resolve_student(SimulationConfig(dataset="digits", out=tmp_path, preset="cpu-fast")) == ("small_cnn", 16, False)
    assert resolve_student(SimulationConfig(dataset="textile", out=tmp_path, preset="cpu-fast", image_size=32)) == ("small_cnn", 32, False)
    with pytest.raises(SimulationError, match="preset"):
        resolve_student(SimulationConfig(dataset="digits", out=tmp_path, preset="nope"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(PretrainedWeightsMissing, match="resnet18-f37072fd.pth"):
        run_simulation(SimulationConfig(dataset="digits", out=tmp_path / "o", strategies=["random"], rounds=2,
                                        seeds=[0], data_dir=digits_dir, device="cpu"))
    assert not (tmp_path / "o" / "results.csv").exists()  # stopped before any round


def test_view_bank_with_the_standin_teacher_and_refused_for_precomputed(tmp_path, digits_dir):
    rows = run_simulation(SimulationConfig(
        dataset="digits", out=tmp_path / "v", strategies=["random"], rounds=2, seeds=[0], steps=5, views=3,
        data_dir=digits_dir, device="cpu", preset="cpu-fast",
    ))
    assert [r["views"] for r in rows] == [3, 3]
    assert json.loads((tmp_path / "v" / "config.json").read_text())["views"] == 3
    entries = list((digits_dir / "view_cache").iterdir())  # the teacher's view outputs are cached
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()
    from activekd_core.demo_data import materialize_demo

    ids = sorted(materialize_demo("digits", digits_dir).labels)
    np.savez(tmp_path / "t.npz", ids=np.array(ids), probs=np.full((len(ids), 10), 0.1))
    with pytest.raises(SimulationError, match="--views 2"):
        run_simulation(SimulationConfig(dataset="digits", out=tmp_path / "p", strategies=["random"], rounds=2,
                                        seeds=[0], teacher="precomputed", precomputed=tmp_path / "t.npz", views=2,
                                        data_dir=digits_dir, device="cpu", preset="cpu-fast"))


def test_few_shot_clap_teacher_is_refit_as_labels_grow(tmp_path):
    import open_clip
    from PIL import Image

    import activekd_core.teachers.clip_zero_shot  # noqa: F401  (registers the tiny test config)

    root = tmp_path / "images"
    rng = np.random.default_rng(1)
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True)
        for i in range(10):
            arr = rng.integers(0, 80, (20, 20, 3), dtype=np.uint8)
            arr[:, :, c] = 230
            Image.fromarray(arr).save(root / name / f"{i}.png")
    ckpt = tmp_path / "tiny_clip.pt"
    torch.save(open_clip.create_model("akd-tiny-clip", pretrained=None).state_dict(), ckpt)
    runs = {}
    for refit in ("after", "before"):
        messages: list[str] = []
        rows = run_simulation(SimulationConfig(
            dataset=str(root), out=tmp_path / refit, strategies=["random"], rounds=3, seeds=[0],
            teacher="clip_few_shot", clap_refit=refit, clip_model="akd-tiny-clip", clip_pretrained=str(ckpt),
            steps=3, image_size=16, batch_labeled=8, batch_unlabeled=8, data_dir=tmp_path / "cache", device="cpu",
            preset="cpu-fast",
        ), log=messages.append)
        config = json.loads((tmp_path / refit / "config.json").read_text())
        assert config["teacher"]["kind"] == "clip_few_shot"
        runs[refit] = ([r["teacher_accuracy"] for r in rows], config["teacher_test_accuracy"], messages)
    after, zero_shot, msgs = runs["after"]
    assert after[0] == pytest.approx(zero_shot)  # round 0 distils from the zero-shot teacher
    assert sum("CLAP teacher refit on 3 labels" in m for m in msgs) == 1  # round 1: round 0's 3 labels
    assert sum("CLAP teacher refit on 6 labels" in m for m in msgs) == 1
    before, _, msgs = runs["before"]
    assert any("CLAP teacher refit on 3 labels" in m for m in msgs) and any("on 9 labels" in m for m in msgs)
    assert before[1] == pytest.approx(after[2])  # both fitted on the same 6 labels (same picks: random, same seed)


def test_imbalance_pool_shares_and_random_start():
    from activekd_core.simulation import imbalance_pool, random_start

    y = np.repeat(np.arange(3), [500, 300, 200])
    pool = np.arange(len(y))
    kept = imbalance_pool(pool, y, 0.9, majority=0, seed=0)
    counts = np.bincount(y[kept], minlength=3)
    # 500 majority; each other class round(500 * 0.1 / 0.9 / 2) = 28
    assert counts.tolist() == [500, 28, 28]
    assert np.array_equal(kept, imbalance_pool(pool, y, 0.9, majority=0, seed=0))
    with pytest.raises(SimulationError, match="imbalance"):
        imbalance_pool(pool, y, 0.2, majority=0, seed=0)
    start = random_start(556, 3, seed=4)
    assert len(set(start.tolist())) == 3 and np.array_equal(start, random_start(556, 3, seed=4))


def test_imbalanced_simulation_writes_rare_class_columns_and_ranks_by_balanced_accuracy(tmp_path, digits_dir, capsys):
    out = tmp_path / "imb"
    cfg = SimulationConfig(
        dataset="digits", out=out, strategies=["random", "class_balanced"], rounds=2, seeds=[0],
        steps=10, data_dir=digits_dir, device="cpu", preset="cpu-fast", imbalance=0.5, majority="3",
    )
    rows = run_simulation(cfg)
    info = json.loads((out / "config.json").read_text())
    counts = np.array(info["pool_class_counts"])
    assert counts.argmax() == info["classes"].index("3") and abs(counts.max() / counts.sum() - 0.5) < 0.02
    assert info["start"] == "random"
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    for r in table:
        assert 0.0 <= float(r["balanced_accuracy"]) <= 1.0 and 0.0 <= float(r["macro_f1"]) <= 1.0
        per_class = [int(v) for v in r["labels_per_class"].split(";")]
        assert sum(per_class) == int(r["n_labeled"])
        assert int(r["rare_labels"]) == sum(per_class) - per_class[info["classes"].index("3")]
        assert len(r["recall_per_class"].split(";")) == 10
        assert "imbalance=0.5" in r["options"]
    summary = (out / "summary.txt").read_text()
    assert "ranked by balanced accuracy (classes are imbalanced)" in summary and "rare-class labels" in summary
    assert summary_table(read_results(out / "results.csv")) == summary_table(rows, imbalanced=True)
    assert "balanced accuracy" in (out / "accuracy.html").read_text()  # the plot shows the ranking metric
    from activekd_core.cli import main

    capsys.readouterr()
    assert main(["summarize", str(out)]) == 0
    assert "ranked by balanced accuracy (classes are imbalanced)" in capsys.readouterr().out
