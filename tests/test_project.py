"""Tests for projects: validation, scan report, teacher cache, batches, rounds, audit, imports.

Local fakes (say so in the report): the teacher is a small deterministic fake (CLIP
weights are not available offline). Selection is the real ``activekd_core.selection``;
training is the real ``training.train_round`` with a handful of steps.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import activekd_core.project.batches as batches_mod
import activekd_core.project.rounds as rounds_mod
import activekd_core.project.teacher_probs as teacher_mod

REAL_MAKE_TEACHER = teacher_mod._make_teacher
from activekd_core.jobs import JobBusy
from activekd_core.project import Project, ProjectError
from activekd_core.store import SchemaVersionError

CLASSES = [("red", "a red square"), ("green", "a green square"), ("blue", "")]
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
TRAIN = {"steps": 4, "batch_labeled": 8, "batch_unlabeled": 8, "image_size": 16, "device": "cpu", "width": 8}


def make_images(root: Path, per_class: int = 8, bad: bool = True) -> dict[str, str]:
    """Coloured noisy squares in class sub-folders (plus a 0-byte file); returns id -> class."""
    rng = np.random.default_rng(0)
    truth = {}
    for name, color in COLORS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = np.clip(np.array(color) + rng.normal(0, 25, (20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
            truth[f"{name}/{i}.png"] = name
    if bad:
        (root / "broken.png").write_bytes(b"")
    return truth


class FakeTeacher:
    """Deterministic teacher: probabilities from each image's mean colour (plus a bias)."""

    calls = 0
    fits = 0

    def __init__(self, spec: dict[str, Any], cache_dir: Path | None = None) -> None:
        self.spec = spec
        self.classes = list(spec["classes"])

    def predict_proba(self, pool, progress=None) -> np.ndarray:
        type(self).calls += 1
        out = np.zeros((len(pool), len(self.classes)), dtype=np.float32)
        for r in range(len(pool)):
            mean = np.asarray(Image.open(pool.path(r)).convert("RGB"), dtype=np.float32).mean(axis=(0, 1))
            logits = mean / 40.0 + np.array([0.5, 0.0, 0.0])  # slight bias towards "red"
            e = np.exp(logits - logits.max())
            out[r] = e / e.sum()
            if progress:
                progress(r + 1, len(pool), "fake teacher")
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": "fake", "display_name": "Fake colour teacher", "spec": self.spec}


@pytest.fixture(autouse=True)
def siblings(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeTeacher.calls = 0
    monkeypatch.setattr(teacher_mod, "_make_teacher", FakeTeacher)


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "images"
    return root, make_images(root)


def new_project(tmp_path: Path, root: Path, **kw: Any) -> Project:
    args = dict(teacher_spec={"kind": "fake"}, student_arch="small_cnn", batch_size=4, strategy="pcoreset", train=TRAIN)
    args.update(kw)
    return Project.create(tmp_path / "proj", root, CLASSES, **args)


# ---- bad configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a, t: a.update(image_root=t / "missing"), "image folder not found"),
        (lambda a, t: (t / "empty").mkdir() or a.update(image_root=t / "empty"), "no usable images.*no image files"),
        (lambda a, t: a.update(classes=[]), "no classes"),
        (lambda a, t: a.update(classes=[("only", "")]), "only one class"),
        (lambda a, t: a.update(classes=[("a", ""), ("A", "")]), "duplicate class name"),
        (lambda a, t: a.update(classes=[("a", ""), ("  ", "")]), "blank class name"),
        (lambda a, t: a.update(batch_size=0), "batch size"),
        (lambda a, t: a.update(student_arch="vgg99"), "student backbone 'vgg99' unknown"),
        (lambda a, t: a.update(strategy="nope"), "strategy 'nope' unknown"),
        (lambda a, t: a.update(teacher_spec={}), "teacher: the spec must be a dict with a 'kind'"),
        (lambda a, t: a.update(train={"stepz": 3}), "unknown training settings"),
    ],
)
def test_bad_configuration_creates_nothing(tmp_path: Path, images, mutate, message: str) -> None:
    root, _ = images
    args: dict[str, Any] = dict(image_root=root, classes=CLASSES, teacher_spec={"kind": "fake"}, batch_size=4)
    mutate(args, tmp_path)
    with pytest.raises(ProjectError, match=message):
        Project.create(tmp_path / "proj", **args)
    assert not (tmp_path / "proj").exists()


def test_only_bad_files_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.png").write_bytes(b"")
    (root / "b.jpg").write_text("not an image")
    with pytest.raises(ProjectError, match=r"no usable images.*2 file\(s\) skipped.*a.png: empty file"):
        Project.create(tmp_path / "proj", root, CLASSES, {"kind": "fake"})
    assert not (tmp_path / "proj").exists()


def test_existing_project_and_folder_inside_images(tmp_path: Path, images) -> None:
    root, _ = images
    new_project(tmp_path, root).close()
    before = (tmp_path / "proj" / "project.db").read_bytes()
    with pytest.raises(ProjectError, match="already holds a project"):
        new_project(tmp_path, root)
    assert (tmp_path / "proj" / "project.db").read_bytes() == before
    with pytest.raises(ProjectError, match="must not lie inside the image folder"):
        Project.create(root / "proj", root, CLASSES, {"kind": "fake"})
    assert not (root / "proj").exists()


def test_open_missing_and_newer_schema(tmp_path: Path, images) -> None:
    with pytest.raises(ProjectError, match="no project here"):
        Project.open(tmp_path / "nothing")
    root, _ = images
    new_project(tmp_path, root).close()
    db = tmp_path / "proj" / "project.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version=42")
    conn.commit()
    conn.close()
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "proj").iterdir() if p.is_file()}
    with pytest.raises(SchemaVersionError, match="schema version 42"):
        Project.open(tmp_path / "proj")
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "proj").iterdir() if p.is_file()}
    assert after == digest


# ---- creation, scan report, teacher cache ------------------------------------------------------


def test_create_open_and_scan_report(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root)
    assert p.classes == ["red", "green", "blue"]
    assert [c.prompt for c in p.store.classes()] == ["a red square", "a green square", ""]
    report = p.scan_report()
    assert report.n_images == len(truth) and report.skipped == [("broken.png", "empty file (0 bytes)")]
    rec = p.store.images()[0]
    assert (rec.width, rec.height) == (24, 20) and rec.readable
    p.close()
    q = Project.open(tmp_path / "proj")
    assert q.pool().ids == sorted(truth) and q.batch_size == 4 and q.strategy == "pcoreset"
    assert q.teacher_spec()["classes"] == ["red", "green", "blue"]


def test_teacher_probs_cached_on_disk(tmp_path: Path, images) -> None:
    root, _ = images
    p = new_project(tmp_path, root)
    probs = p.teacher_probs()
    assert probs.shape == (24, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert FakeTeacher.calls == 1
    files = list((tmp_path / "proj" / "cache" / "teacher").glob("probs_*.npy"))
    assert len(files) == 1
    p.close()
    q = Project.open(tmp_path / "proj")
    assert np.array_equal(q.teacher_probs(), probs)
    assert FakeTeacher.calls == 1  # reopened project read the cache
    q.update_config(teacher_spec={"kind": "fake", "variant": 2})  # provenance changes -> new key
    q.teacher_probs()
    assert FakeTeacher.calls == 2


# ---- batches and labels ----------------------------------------------------------------------


def test_batches_labels_and_exclusions(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root)
    assert p.current_batch() is None
    view = p.ensure_batch()
    ids = [it.image_id for it in view.batch.items]
    assert len(ids) == 4 == len(set(ids)) and view.done == 0 and view.batch.space == "teacher"
    # nothing labeled yet: PCoreSet's first pick has infinite distance, stored as None
    assert all(it.score is not None and it.score > 0 for it in view.batch.items[1:])
    p.label(ids[0], truth[ids[0]], annotator="ann")
    p.skip(ids[1], annotator="ann")
    p.unsure(ids[2], annotator="ann")
    assert p.current_batch().done == 3  # type: ignore[union-attr]
    ev = p.store.events()[0]
    assert (ev.strategy, ev.round, ev.annotator) == ("pcoreset", 0, "ann")
    p.undo(annotator="ann")  # reverts the unsure
    assert p.current_batch().done == 2  # type: ignore[union-attr]
    assert p.ensure_batch().batch.id == view.batch.id  # not complete: same batch
    p.label(ids[2], truth[ids[2]], annotator="ann")
    p.label(ids[3], truth[ids[3]], annotator="ann")
    nxt = p.ensure_batch()
    assert nxt.batch.id != view.batch.id
    new_ids = {it.image_id for it in nxt.batch.items}
    assert not new_ids & set(ids)  # labeled and skipped images are not queried again
    counts = p.counts()
    assert counts["labeled"] == 3 and counts["skipped"] == 1 and counts["unlabeled"] == 20


def test_next_batch_until_pool_exhausted(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root, batch_size=10)
    seen: set[str] = set()
    while True:
        try:
            view = p.ensure_batch()
        except ProjectError as exc:
            assert "no image left to query" in str(exc)
            break
        for it in view.batch.items:
            assert it.image_id not in seen
            seen.add(it.image_id)
            p.label(it.image_id, truth[it.image_id])
    assert seen == set(truth)


# ---- audit ---------------------------------------------------------------------------------


def test_audit_set_held_out(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root, batch_size=3)
    view = p.ensure_batch()
    first = view.batch.items[0].image_id
    p.label(first, truth[first])
    audit = p.create_audit_set(6, seed=1)
    assert len(audit) == 6 and first not in audit
    assert not set(audit) & {it.image_id for it in view.batch.items}
    with pytest.raises(ProjectError, match="already exists"):
        p.create_audit_set(2)
    for i in audit[:4]:
        p.label(i, truth[i])
    assert p.store.events()[-1].strategy == "audit"
    assert p.audit_progress() == (4, 6)
    rows, _ = p.training_labels()
    assert set(np.asarray(p.pool().ids)[rows]) == {first}  # audit labels never train
    for _ in range(5):
        try:
            b = p.next_batch()
        except ProjectError:
            break
        assert not {it.image_id for it in b.batch.items} & set(audit)
        for it in b.batch.items:
            p.label(it.image_id, truth[it.image_id])
    report = p.audit_report()
    teacher = report[0]
    probs = p.teacher_probs(fit=False)
    row_of = p.row_of()
    names = p.classes
    correct = sum(int(names[int(np.argmax(probs[row_of[i]]))] == truth[i]) for i in audit[:4])
    assert (teacher.model, teacher.n, teacher.correct) == ("teacher", 4, correct)
    assert teacher.low <= teacher.accuracy <= teacher.high


# ---- imports -------------------------------------------------------------------------------


def test_import_labels(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root)
    n, unknown = p.import_labels_subfolders()
    assert n == len(truth) and unknown == {}
    assert p.store.current_labels() == truth
    q = Project.create(tmp_path / "proj2", root, [("red", ""), ("green", "")], {"kind": "fake"})
    n2, unknown2 = q.import_labels_subfolders()
    assert n2 == 16 and unknown2 == {"blue": 8}
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("id,label\nblue/0.png,green\nnope.png,red\n")
    q2 = Project.create(tmp_path / "proj3", root, CLASSES, {"kind": "fake"})
    result = q2.import_labels_csv(csv_path)
    assert q2.store.current_labels() == {"blue/0.png": "green"}
    assert any("nope.png" in str(pr) for pr in result.problems)


# ---- training rounds -------------------------------------------------------------------------


def label_some(p: Project, truth: dict[str, str], n: int = 9) -> None:
    for i, image_id in enumerate(sorted(truth)[::2][:n]):
        p.label(image_id, truth[image_id])


def test_retrain_round_becomes_active(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root)
    with pytest.raises(ProjectError, match="label at least one image"):
        p.retrain()
    first = p.ensure_batch()
    for it in first.batch.items:
        p.label(it.image_id, truth[it.image_id])
    label_some(p, truth)
    messages: list[str] = []
    rec = p.retrain(progress=lambda d, t, m: messages.append(m))
    assert rec.status == "done" and rec.id == 1 and rec.space == "teacher"
    assert rec.checkpoint == "checkpoints/round_0001.safetensors"
    assert (tmp_path / "proj" / rec.checkpoint).is_file()
    assert [pk[0] for pk in rec.picks] == [it.image_id for it in first.batch.items]
    assert rec.metrics["audit"]["student"]["n"] == 0
    assert any(m.startswith("train:") for m in messages)
    probs, feats = p.student_outputs(1)
    assert probs.shape == (24, 3) and feats.shape[0] == 24
    assert p.current_batch() is None  # batches closed: the next one uses the new student
    view = p.ensure_batch()
    assert view.batch.space == "student" and view.batch.round == 1
    p.label(view.batch.items[0].image_id, "red")
    assert p.store.events()[-1].round == 1


def test_failed_or_cancelled_round_changes_nothing(tmp_path: Path, images, monkeypatch) -> None:
    root, truth = images
    p = new_project(tmp_path, root)
    label_some(p, truth)
    good = p.retrain()
    ckpt = tmp_path / "proj" / good.checkpoint  # type: ignore[operator]
    ckpt_bytes = ckpt.read_bytes()
    labels_before = p.store.current_labels()
    events_before = len(p.store.events())

    import activekd_core.training as training

    def boom(*a, **k):
        raise RuntimeError("GPU on fire")

    monkeypatch.setattr(training, "train_round", boom)
    with pytest.raises(RuntimeError, match="GPU on fire"):
        p.retrain()
    monkeypatch.undo()
    monkeypatch.setattr(teacher_mod, "_make_teacher", FakeTeacher)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Exception):
        p.retrain(cancel=cancel)
    statuses = [r.status for r in p.store.rounds()]
    assert statuses == ["done", "failed", "cancelled"]
    assert "GPU on fire" in (p.store.round(2).error or "")  # type: ignore[union-attr]
    assert p.active_round().id == 1  # type: ignore[union-attr]
    assert ckpt.read_bytes() == ckpt_bytes
    assert not (tmp_path / "proj" / "checkpoints" / "round_0002.safetensors").exists()
    assert not (tmp_path / "proj" / "checkpoints" / "round_0003.safetensors").exists()
    assert p.store.current_labels() == labels_before and len(p.store.events()) == events_before


def test_retrain_started_twice_runs_once(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root, train={**TRAIN, "steps": 60})
    label_some(p, truth)
    job = p.start_retrain(process=False)
    with pytest.raises(JobBusy):
        p.start_retrain(process=False)
    st = p.jobs().wait(job, timeout=120)
    assert st.state == "done", st.error
    assert st.result["round"] == 1 and [r.status for r in p.store.rounds()] == ["done"]
    assert json.dumps(st.result)


# ---- audit intervals on hand-made counts ------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "n", "low", "high"),
    [
        # Wilson 95% intervals computed by hand: (p + z^2/2n +- z*sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
        (8, 10, 0.4901625, 0.9433178),
        (0, 10, 0.0, 0.2775328),
        (10, 10, 0.7224672, 1.0),
        (45, 60, 0.6276793, 0.8422348),
    ],
)
def test_wilson_interval_hand_counts(correct: int, n: int, low: float, high: float) -> None:
    from scipy.stats import binomtest

    from activekd_core.audit import score_counts

    s = score_counts("student", 2, correct, n)
    assert s.accuracy == pytest.approx(correct / n)
    assert (s.low, s.high) == pytest.approx((low, high), abs=1e-6)
    ci = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")  # independent check
    assert (s.low, s.high) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert s.text().endswith(f"n={n})")


def test_audit_accuracy_and_sampling() -> None:
    from activekd_core.audit import audit_accuracy, audit_rows, default_audit_size, sample_audit_set, score_counts

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    s = audit_accuracy(probs, [0, 1, 2], [0, 1, 1], model="teacher", round=0)
    assert (s.n, s.correct) == (3, 2)
    empty = score_counts("student", 1, 0, 0)
    assert empty.n == 0 and np.isnan(empty.accuracy) and (empty.low, empty.high) == (0.0, 1.0)
    assert empty.as_dict()["accuracy"] is None and "no labeled audit" in empty.text()
    with pytest.raises(ValueError, match="2 rows but 1 labels"):
        audit_accuracy(probs, [0, 1], [0], model="teacher", round=0)
    with pytest.raises(ValueError, match="out of range"):
        audit_accuracy(probs, [7], [0], model="teacher", round=0)
    ids = [f"i{k}" for k in range(50)]
    a = sample_audit_set(ids, 10, seed=3)
    assert len(set(a)) == 10 and a == sample_audit_set(ids, 10, seed=3) and a != sample_audit_set(ids, 10, seed=4)
    with pytest.raises(ValueError, match="between 1 and 50"):
        sample_audit_set(ids, 51)
    assert default_audit_size(2000, 3) == 30 and default_audit_size(100, 10) == 10 and default_audit_size(5, 3) == 1
    rows, y = audit_rows(["a", "b", "c"], {"a": "x", "c": "y"}, {"a": 4, "b": 5, "c": 6}, {"x": 0, "y": 1})
    assert rows.tolist() == [4, 6] and y.tolist() == [0, 1]


# ---- real teachers: precomputed file checks, stand-in, demo ------------------------------------


def test_precomputed_teacher_checked_at_creation(tmp_path: Path, images, monkeypatch) -> None:
    monkeypatch.setattr(teacher_mod, "_make_teacher", REAL_MAKE_TEACHER)
    root, truth = images
    ids = sorted(truth)
    bad_shape = tmp_path / "t.csv"
    bad_shape.write_text("id,red,green\n" + "".join(f"{i},0.5,0.5\n" for i in ids))
    with pytest.raises(ProjectError, match="teacher: .*t.csv"):
        Project.create(tmp_path / "p1", root, CLASSES, {"kind": "precomputed", "path": str(bad_shape)})
    missing = tmp_path / "m.csv"
    missing.write_text("id,red,green,blue\n" + "".join(f"{i},0.2,0.3,0.5\n" for i in ids[:-2]))
    with pytest.raises(ProjectError, match="teacher: .*m.csv"):
        Project.create(tmp_path / "p2", root, CLASSES, {"kind": "precomputed", "path": str(missing)})
    nan = tmp_path / "n.csv"
    nan.write_text("id,red,green,blue\n" + "".join(f"{i},nan,0.5,0.5\n" for i in ids))
    with pytest.raises(ProjectError, match="teacher: .*n.csv"):
        Project.create(tmp_path / "p3", root, CLASSES, {"kind": "precomputed", "path": str(nan)})
    with pytest.raises(ProjectError, match="teacher: .*unknown teacher kind"):
        Project.create(tmp_path / "p4", root, CLASSES, {"kind": "oracle"})
    assert not any((tmp_path / f"p{k}").exists() for k in range(1, 5))
    good = tmp_path / "g.csv"
    good.write_text("id,red,green,blue\n" + "".join(f"{i},0.2,0.3,0.5\n" for i in ids))
    p = Project.create(tmp_path / "p5", root, CLASSES, {"kind": "precomputed", "path": str(good)}, batch_size=3)
    assert np.allclose(p.teacher_probs(), [0.2, 0.3, 0.5], atol=1e-6)
    view = p.ensure_batch()  # identical rows: uninformative -> random start
    assert view.batch.strategy == "random" and "random start" in view.batch.space
    assert len(view.batch.items) == 3


def test_standin_teacher_project(tmp_path: Path, images, monkeypatch) -> None:
    monkeypatch.setattr(teacher_mod, "_make_teacher", REAL_MAKE_TEACHER)
    root, truth = images
    p = new_project(tmp_path, root, teacher_spec={"kind": "standin"})
    first = p.ensure_batch()
    assert first.batch.strategy == "random"  # stand-in is uniform before any label
    for k, i in enumerate(sorted(truth)[::3]):
        p.label(i, truth[i])
    probs = p.teacher_probs()  # refit on the labels: informative now
    assert float(np.ptp(probs, axis=0).max()) > 0.05
    acc = np.mean([p.classes[int(np.argmax(probs[r]))] == truth[i] for r, i in enumerate(p.pool().ids)])
    assert acc > 0.6
    p.store.close_batches()
    assert p.ensure_batch().batch.strategy == "pcoreset"


def test_open_demo_ready_to_label(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(teacher_mod, "_make_teacher", REAL_MAKE_TEACHER)
    from activekd_core.project import open_demo

    p = open_demo("textile", tmp_path / "demo", per_class=4)
    assert p.classes[:1] and len(p.classes) == 3 and len(p.pool()) == 12
    view = p.current_batch()
    assert view is not None and view.total == min(10, 12) and view.done == 0
    assert p.store.get_setting("demo")["name"] == "textile"
    p.close()
    again = open_demo("textile", tmp_path / "demo", per_class=4)
    assert again.current_batch().batch.id == view.batch.id  # type: ignore[union-attr]


def test_audit_scores_per_round(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root)
    audit = p.create_audit_set(6, seed=2)
    for i in audit[:5]:
        p.label(i, truth[i])
    label_some(p, {k: v for k, v in truth.items() if k not in audit})
    rec = p.retrain()
    assert rec.metrics["audit"]["student"]["n"] == 5 and rec.metrics["audit"]["teacher"]["n"] == 5
    p.label(audit[5], truth[audit[5]])  # one more audit label: reports use the labels as they are now
    report = p.audit_report()
    assert [(s.model, s.round) for s in report] == [("teacher", 0), ("student", 1), ("teacher", 1)]
    assert all(s.n == 6 for s in report)
    student_probs, _ = p.student_outputs(1)
    row_of = p.row_of()
    correct = sum(int(p.classes[int(np.argmax(student_probs[row_of[i]]))] == truth[i]) for i in audit)
    assert report[1].correct == correct and report[1].low <= report[1].accuracy <= report[1].high


def test_checkpoint_from_another_architecture(tmp_path: Path, images) -> None:
    from activekd_core.export import ExportError
    from activekd_core.student import CheckpointError, build_student, save_student

    root, truth = images
    p = new_project(tmp_path, root)
    with pytest.raises(ProjectError, match="no trained student yet"):
        p.load_student()
    label_some(p, truth)
    rec = p.retrain()
    model, header = p.load_student()
    assert header["arch"] == "small_cnn" and model.num_classes == 3
    ckpt = tmp_path / "proj" / rec.checkpoint  # type: ignore[operator]
    other, _ = build_student("mobilenet_v3_small", 3, use_local_cache=False)
    save_student(other, ckpt)  # someone swapped the file
    with pytest.raises(CheckpointError, match="round_0001.safetensors.*mobilenet_v3_small.*small_cnn"):
        p.load_student()
    four, _ = build_student("small_cnn", 4, use_local_cache=False)
    save_student(four, ckpt)
    with pytest.raises(CheckpointError, match="4 classes, but 3"):
        p.load_student()
    with pytest.raises(ExportError, match="4 classes"):
        p.export_student(tmp_path / "out")
    ckpt.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        p.load_student()


def test_interrupted_create_leaves_no_project(tmp_path: Path, images, monkeypatch) -> None:
    root, _ = images
    from activekd_core.store import Store as RealStore

    def broken_set_classes(self, classes):
        raise OSError("disk full")

    monkeypatch.setattr(RealStore, "set_classes", broken_set_classes)
    with pytest.raises(OSError, match="disk full"):
        new_project(tmp_path, root)
    assert not (tmp_path / "proj").exists()
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "notes.txt").write_text("keep me")
    with pytest.raises(OSError):
        new_project(tmp_path, root)
    assert sorted(f.name for f in (tmp_path / "proj").iterdir()) == ["notes.txt"]
    monkeypatch.undo()
    monkeypatch.setattr(teacher_mod, "_make_teacher", FakeTeacher)
    (tmp_path / "proj" / "project.db.creating").write_bytes(b"stale leftover of a killed create")
    p = new_project(tmp_path, root)
    assert p.classes == ["red", "green", "blue"]
    assert sorted(f.name for f in (tmp_path / "proj").iterdir() if f.name.startswith("project.db")) [0] == "project.db"
    assert not (tmp_path / "proj" / "project.db.creating").exists()


def test_class_aware_strategy_gets_labeled_classes(tmp_path: Path, images, monkeypatch) -> None:
    """class_balanced needs the human classes of the labeled rows, aligned with ``labeled``."""
    root, truth = images
    p = new_project(tmp_path, root, strategy="class_balanced")
    labeled_ids = ["blue/0.png", "red/1.png", "red/2.png", "green/3.png"]
    for image_id in labeled_ids:
        p.label(image_id, truth[image_id])
    seen: dict[str, Any] = {}
    real_select = batches_mod.select

    def spy(name: str, **kw: Any) -> Any:
        seen.update(kw)
        return real_select(name, **kw)

    monkeypatch.setattr(batches_mod, "select", spy)
    view = p.next_batch()
    names = [c for c, _ in CLASSES]
    subset_ids = [i for i in p.pool().ids if i in set(labeled_ids)]  # labeled rows in pool order
    assert [names[c] for c in seen["labeled_y"]] == [truth[i] for i in subset_ids]
    assert not {it.image_id for it in view.batch.items} & set(labeled_ids)


def test_teacher_probs_can_be_cancelled(tmp_path: Path, images, monkeypatch) -> None:
    """A long teacher pass (CLIP extraction) sees the cancel flag; nothing is cached when it stops."""
    import threading

    class Stopped(Exception):
        pass

    class CancellableTeacher(FakeTeacher):
        def predict_proba(self, pool, progress=None, cancel=None) -> np.ndarray:
            if cancel is not None and cancel.is_set():
                raise Stopped("cancelled")
            return super().predict_proba(pool, progress)

    root, _ = images
    p = new_project(tmp_path, root)
    monkeypatch.setattr(teacher_mod, "_make_teacher", CancellableTeacher)
    p = Project.open(p.folder)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        p.teacher_probs(cancel=stop)
    assert not list(p.path("cache", "teacher").glob("probs_*.npy"))
    assert p.teacher_probs(cancel=threading.Event()).shape == (len(p.pool()), 3)


def test_preview_batch_matches_next_batch_and_stores_nothing(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root, strategy="pcoreset")
    for image_id in ["red/0.png", "green/0.png"]:
        p.label(image_id, truth[image_id])
    n_batches = len(p.store.batches())
    rows, scores = p.preview_batch("pcoreset", 4)
    assert len(p.store.batches()) == n_batches  # a preview stores nothing
    assert rows.size == 4 == scores.size and np.all(np.diff(scores) <= 1e-9)  # farthest-first: non-increasing
    stored = [it.image_id for it in p.next_batch(k=4).batch.items]
    assert [p.pool().ids[int(r)] for r in rows] == stored  # same space and split as the real batch


def test_queue_images_replaces_open_batch_with_queryable_only(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root)
    p.ensure_batch()
    p.label("red/0.png", truth["red/0.png"])
    view = p.queue_images(["red/0.png", "blue/5.png", "green/6.png", "blue/5.png"], reason="explore selection")
    assert [it.image_id for it in view.batch.items] == ["blue/5.png", "green/6.png"]
    assert view.batch.strategy == "manual" and view.batch.space == "explore selection"
    assert p.current_batch().batch.id == view.batch.id  # type: ignore[union-attr]
    with pytest.raises(ProjectError, match="none of the chosen images"):
        p.queue_images(["red/0.png"])


def test_human_labels_split_by_audit_set(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root)
    audit = p.create_audit_set(3, seed=1)
    for image_id in audit + ["red/0.png", "blue/1.png"]:
        if image_id in truth:
            p.label(image_id, truth[image_id])
    row_of, names = p.row_of(), [c for c, _ in CLASSES]
    all_rows, all_y = p.human_labels("all")
    audit_rows, _ = p.human_labels("audit")
    train_rows, _ = p.human_labels("train")
    assert sorted(audit_rows.tolist()) == sorted(row_of[i] for i in audit if i in truth)
    assert set(train_rows.tolist()) == {row_of["red/0.png"], row_of["blue/1.png"]} - set(audit_rows.tolist())
    assert sorted(all_rows.tolist()) == sorted(set(audit_rows.tolist()) | set(train_rows.tolist()))
    assert all(names[c] == truth[p.pool().ids[r]] for r, c in zip(all_rows, all_y))
    with pytest.raises(ValueError, match="which must be"):
        p.human_labels("everything")


def test_prompt_candidates_refused_for_teachers_without_prompts(tmp_path: Path, images) -> None:
    root, _ = images
    p = new_project(tmp_path, root)
    with pytest.raises(ProjectError, match="does not use prompts"):
        p.candidate_teacher_probs({"red": ["a red thing"]}, "simple")
    assert p.teacher_history() == []


def test_cached_teacher_probs_never_compute(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root)
    assert p.cached_teacher_probs() is None and FakeTeacher.calls == 0
    probs = p.teacher_probs()
    calls = FakeTeacher.calls
    assert np.array_equal(p.cached_teacher_probs(), probs) and FakeTeacher.calls == calls


def test_select_batch_job_selects_once(tmp_path: Path, images) -> None:
    from activekd_core.project import select_batch_job

    root, _ = images
    p = new_project(tmp_path, root)
    seen: list[tuple[int, int]] = []
    first = select_batch_job(progress=lambda d, t, m: seen.append((d, t)), cancel=threading.Event(), folder=str(p.folder))
    again = select_batch_job(progress=lambda d, t, m: None, cancel=threading.Event(), folder=str(p.folder))
    assert first == again == p.current_batch().batch.id  # type: ignore[union-attr]
    assert seen and seen[-1][0] == seen[-1][1]  # the teacher pass reported its progress


def test_light_imports_for_precomputed_selection(tmp_path: Path, images, monkeypatch) -> None:
    """A worker process for a precomputed-teacher project loads the project and the teacher
    without torch, open_clip or the audit/bias stack (pandas, scipy.stats), and selecting a
    batch never imports open_clip or that stack: checked in a fresh interpreter. Without an
    NVIDIA driver, selection does not import torch either (``device="auto"`` has no GPU to find).
    """
    import subprocess
    import sys

    monkeypatch.setattr(teacher_mod, "_make_teacher", REAL_MAKE_TEACHER)
    root, truth = images
    ids = sorted(truth)
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=len(ids))
    table = tmp_path / "t.csv"
    table.write_text("id,red,green,blue\n" + "".join(f"{i},{a},{b},{c}\n" for i, (a, b, c) in zip(ids, probs)))
    p = Project.create(tmp_path / "p", root, CLASSES, {"kind": "precomputed", "path": str(table)}, batch_size=3)
    for i in ids[:4]:
        p.label(i, truth[i])
    p.close()
    script = (
        "import sys, threading\n"
        "import activekd_core.project as pm\n"
        "heavy = ('torch', 'open_clip', 'pandas', 'scipy.stats', 'activekd_core.audit')\n"
        "p = pm.Project.open(sys.argv[1]); p.teacher(); p.teacher_probs(); p.counts(); p.close()\n"
        "print('BEFORE', [m for m in heavy if m in sys.modules])\n"
        "bid = pm.select_batch_job(progress=lambda d, t, m: None, cancel=threading.Event(), folder=sys.argv[1])\n"
        "print('BATCH', bid)\n"
        "print('AFTER', [m for m in heavy[1:] if m in sys.modules])\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "p")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "BEFORE []" in out.stdout and "BATCH " in out.stdout and "AFTER []" in out.stdout, out.stdout
    if not Path("/proc/driver/nvidia/version").exists() and not os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        assert "TORCH False" in out.stdout, out.stdout


def test_teacher_package_imports_clip_lazily() -> None:
    """Importing ``activekd_core.teachers`` and building a precomputed teacher spec path stays
    light; the CLIP / stand-in names still resolve (imported on first use)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import activekd_core.teachers as t\n"
        "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules, 'eager heavy import'\n"
        "assert 'StandInTeacher' in dir(t)\n"
        "from activekd_core.teachers import StandInTeacher, ClipZeroShotTeacher, ClapConfig\n"
        "assert StandInTeacher.__module__.endswith('standin') and 'torch' in sys.modules\n"
        "try:\n"
        "    t.NoSuchTeacher\n"
        "except AttributeError:\n"
        "    print('OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr


def test_counts_cached_on_newest_event(tmp_path: Path, images, monkeypatch) -> None:
    """counts() stays equal to a recount and never passes over the whole current state again
    (it reads the counts kept with the store's cached state, updated by each event)."""
    from activekd_core.store.current_state import CurrentView

    root, truth = images
    p = new_project(tmp_path, root)
    ids = sorted(truth)
    real_current = p.store.current

    def recount() -> dict[str, Any]:
        states = [e.event for e in dict(real_current()).values()]
        labels = [e.class_name for e in dict(real_current()).values() if e.event == "label"]
        return {"per_class": {c: labels.count(c) for c, _ in CLASSES}, "labeled": states.count("label"),
                "skipped": states.count("skip"), "unsure": states.count("unsure"),
                "unlabeled": len(ids) - len(states), "audit": len(p.store.audit_ids()), "total": len(ids)}

    first = p.counts()
    assert first == recount() and p.counts() == first
    first["per_class"]["red"] = 99  # callers get their own dict
    assert p.counts()["per_class"]["red"] == 0
    passes = []
    real_iter = CurrentView.__iter__
    monkeypatch.setattr(CurrentView, "__iter__", lambda self: passes.append(1) or real_iter(self))
    p.label(ids[0], truth[ids[0]])
    p.skip(ids[1])
    counted = p.counts()
    assert passes == []
    assert counted == recount()
    p.store.undo("expert")
    passes.clear()
    counted = p.counts()
    assert passes == [] and counted == recount() and counted["skipped"] == 0


def test_create_opens_each_image_once(tmp_path: Path, images, monkeypatch) -> None:
    """Project.create stores every image's size from the scan, without reopening the files.

    Opens are counted where every image file is opened (confined): the scan reads a plain
    PNG itself, without Pillow, so counting ``Image.open`` would miss them."""
    from activekd_core import image_open

    root, truth = images
    opened: list[str] = []
    real_open = image_open._os_open

    def counting_open(path, flags):  # type: ignore[no-untyped-def]
        opened.append(str(path))
        return real_open(path, flags)

    monkeypatch.setattr(image_open, "_os_open", counting_open)
    p = new_project(tmp_path, root)
    recs = {r.id: r for r in p.store.images() if r.readable}
    assert set(recs) == set(truth) and all((r.width, r.height) == (24, 20) for r in recs.values())
    base = str(root.resolve()) + os.sep
    scanned = [n[len(base):] for n in opened if n.startswith(base) and n[len(base):] in truth]
    assert sorted(scanned) == sorted(truth), f"{len(scanned)} opens for {len(truth)} images"  # each exactly once


# ---- images that cannot be decoded at training time (issue 9 item 7) --------------------------


def _trained_project(tmp_path: Path, images) -> tuple[Project, dict[str, str]]:
    root, truth = images
    p = new_project(tmp_path, root, train=dict(TRAIN, kd=False))
    label_some(p, truth)
    assert p.retrain().status == "done"
    p.close()
    return Project.open(tmp_path / "proj"), truth  # a fresh process's view: pool fingerprint re-read


def test_round_with_every_image_gone_fails_naming_files_and_keeps_the_model(tmp_path: Path, images) -> None:
    root, _ = images
    p, _ = _trained_project(tmp_path, images)
    shutil.rmtree(root)
    root.mkdir()  # the folder is there, the images are not
    with pytest.raises(ProjectError, match=r"could not be decoded.*(red|green|blue)/\d\.png") as info:
        p.retrain()
    assert "previous model stays active" in str(info.value)
    assert [r.status for r in p.store.rounds()] == ["done", "failed"]
    assert "could not be decoded" in (p.store.round(2).error or "")  # type: ignore[union-attr]
    assert p.active_round().id == 1  # type: ignore[union-attr]
    assert not (tmp_path / "proj" / "checkpoints" / "round_0002.safetensors").exists()
    p.close()


def test_labeled_image_that_cannot_be_decoded_fails_the_round(tmp_path: Path, images) -> None:
    p, _ = _trained_project(tmp_path, images)
    labeled, _ = p.training_labels()
    victim = p.pool().ids[int(labeled[0])]
    (p.image_root / victim).write_bytes(b"not an image any more")
    with pytest.raises(ProjectError, match="1 labeled image") as info:
        p.retrain()
    assert victim in str(info.value) and p.active_round().id == 1  # type: ignore[union-attr]
    p.close()


def test_few_undecodable_unlabeled_images_are_left_out_and_reported(tmp_path: Path, images, monkeypatch) -> None:
    import activekd_core.training as training

    monkeypatch.setattr(rounds_mod, "MAX_UNDECODABLE_SHARE", 0.1)
    p, _ = _trained_project(tmp_path, images)
    labeled, candidates = p.candidate_rows()
    victim_row = int(candidates[0])
    victim = p.pool().ids[victim_row]
    (p.image_root / victim).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    seen: dict[str, Any] = {}
    real = training.train_round

    def spy(*a, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw)
        return real(*a, **kw)

    monkeypatch.setattr(training, "train_round", spy)
    rec = p.retrain()
    assert rec.status == "done" and p.active_round().id == rec.id  # type: ignore[union-attr]
    assert seen["exclude"].tolist() == [victim_row]  # never drawn as an unlabeled (blank) image
    assert rec.metrics["undecodable"]["count"] == 1
    assert p.undecodable_images()[0][0] == victim and p.undecodable_images()[0][1]
    assert victim_row not in p.candidate_rows()[1].tolist()  # never queried for labeling
    p.close()


def test_train_round_never_samples_excluded_rows(tmp_path: Path) -> None:
    from activekd_core.training import TrainConfig, train_round

    pixels = np.full((12, 8, 8, 3), 100, np.uint8)
    with pytest.raises(ValueError, match="labeled row is also excluded"):
        train_round(pixels, [0, 1], [0, 1], None, TrainConfig(**dict(TRAIN, kd=False, image_size=8)), exclude=[1])


# ---- rounds whose process died (issue 9 item 11) ---------------------------------------------


def test_round_of_a_live_process_stays_running_and_is_interrupted_once_it_dies(tmp_path: Path, images) -> None:
    import subprocess
    import sys

    root, truth = images
    p = new_project(tmp_path, root)
    p.close()
    repo = Path(__file__).resolve().parents[1]
    code = (
        "import sys, time\n"
        "from activekd_core.project.rounds import _this_process\n"
        "from activekd_core.store import Store\n"
        "s = Store.open(sys.argv[1])\n"
        "s.start_round('pcoreset', 'teacher', picks=[], teacher={}, n_labeled=1, owner=_this_process())\n"
        "print('started', flush=True)\n"
        "time.sleep(120)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "proj" / "project.db")],
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(repo)))
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "started"
        p = Project.open(tmp_path / "proj")  # e.g. the server opening while a CLI round trains
        assert [r.status for r in p.store.rounds()] == ["running"]  # a live round is left alone
        assert p.recover() == 0
    finally:
        worker.kill()
        worker.wait()
    assert p.recover() == 1  # its process was killed: no restart needed to see it
    rec = p.store.round(1)
    assert rec is not None and rec.status == "interrupted" and "stopped" in (rec.error or "")
    p.close()


def test_round_that_cannot_record_its_failure_is_marked_interrupted(tmp_path: Path, images, monkeypatch) -> None:
    """Disk full: training fails and so does writing 'failed'; the original error is raised and the
    round does not stay 'running' once its retrain call is over."""
    import activekd_core.training as training

    root, truth = images
    p = new_project(tmp_path, root, train=dict(TRAIN, kd=False))
    label_some(p, truth)

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    def cannot_write(*a, **k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(training, "train_round", disk_full)
    monkeypatch.setattr(p.store, "finish_round", cannot_write)
    with pytest.raises(OSError, match="No space left"):
        p.retrain()
    monkeypatch.undo()
    monkeypatch.setattr(teacher_mod, "_make_teacher", FakeTeacher)
    assert [r.status for r in p.store.rounds()] == ["running"]
    assert p.recover() == 1
    assert [r.status for r in p.store.rounds()] == ["interrupted"]
    p.close()


def test_corrupt_student_cache_is_validated_and_recomputed(tmp_path: Path, images) -> None:
    """Issue 9 item 10: a wrong-shape, wrong-dtype or garbage student cache is recomputed, not a traceback."""
    root, truth = images
    p = new_project(tmp_path, root)
    label_some(p, truth)
    rec = p.retrain()
    good_probs, good_feats = (np.array(a) for a in p.student_outputs(rec.id))
    base = tmp_path / "proj" / "cache" / "student" / f"round_{rec.id:04d}"
    damages = [
        ("probs", lambda f: np.save(f, np.zeros((3, 3), np.int64))),  # wrong shape and dtype
        ("probs", lambda f: np.save(f, good_probs.astype(np.int32))),  # right shape, wrong dtype
        ("probs", lambda f: np.save(f, np.full_like(good_probs, np.nan))),  # not probabilities
        ("features", lambda f: Path(f).write_bytes(b"\x93NUMPY garbage")),  # unreadable
        ("features", lambda f: Path(f).unlink()),  # missing
    ]
    for which, damage in damages:
        damage(f"{base}_{which}.npy")
        probs, feats = p.student_outputs(rec.id)
        assert probs.dtype == np.float32 and probs.shape == good_probs.shape and feats.shape == good_feats.shape
        np.testing.assert_allclose(probs, good_probs, atol=1e-5)
        np.testing.assert_allclose(feats, good_feats, atol=1e-4)
        assert np.load(f"{base}_{which}.npy").shape == (good_probs if which == "probs" else good_feats).shape
    (tmp_path / "proj" / rec.checkpoint).unlink()  # type: ignore[operator]
    np.save(f"{base}_probs.npy", np.zeros((2, 2)))
    with pytest.raises(ProjectError, match="cannot be recomputed"):
        p.student_outputs(rec.id)
    p.close()


def test_round_estimate_follows_labels_cap_and_recorded_rate(tmp_path: Path, images) -> None:
    root, truth = images
    train = {k: v for k, v in TRAIN.items() if k != "steps"}
    p = new_project(tmp_path, root, train={**train, "epochs": 2})
    label_some(p, truth, n=9)  # 9 labels, batch_labeled 8 -> 2 batches per pass, 2 passes
    est = p.round_estimate()
    assert (est.steps, est.steps_uncapped, est.rule, est.n_labeled) == (4, 4, "reference", 9)
    assert est.seconds is None and est.source == "unknown"
    rec = p.retrain()
    assert rec.metrics["steps"] == 4 and rec.metrics["step_rule"] == "reference"
    after = p.round_estimate()  # the finished round stored its seconds per step
    assert after.source == "previous rounds" and after.seconds == pytest.approx(after.seconds_per_step * 4)
    assert after.seconds_per_step == pytest.approx(rec.metrics["seconds"] / 4)
    p.update_config(train={**train, "epochs": 2, "max_steps": 3})  # the Train page's step cap
    capped = p.round_estimate()
    assert (capped.steps, capped.steps_uncapped) == (3, 4)
    assert p.retrain().metrics["steps"] == 3


def test_pretrained_student_without_weights_is_refused_at_creation(tmp_path: Path, images, monkeypatch) -> None:
    root, _ = images
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(ProjectError, match=r"student: .*hub/checkpoints/mobilenet_v3_small-047dcff4\.pth"):
        new_project(tmp_path, root, student_arch="mobilenet_v3_small", train={**TRAIN, "image_size": 32})
    assert not (tmp_path / "proj").exists()
    p = new_project(tmp_path, root, student_arch="mobilenet_v3_small", train={**TRAIN, "pretrained": False})
    assert p.config["train"]["pretrained"] is False


def test_labels_per_round_and_collapse_warnings_without_a_round(tmp_path: Path, images) -> None:
    """Labels found per class 'now' (no round yet), a class named like a fixed column, no model: no warning."""
    root, _ = images
    p = Project.create(tmp_path / "proj_r", root, [("round", ""), ("green", ""), ("blue", "")], {"kind": "fake"})
    p.label("blue/0.png", "round")
    p.label("blue/1.png", "round")
    p.label("green/0.png", "green")
    rows = p.labels_per_round()
    assert rows == [{"round": "now", "strategy": p.strategy, "labels": 3, "round (class)": 2, "green": 1, "blue": 0}]
    assert p.collapse_warnings() == []  # no cached teacher probabilities and no trained student yet


def test_row_of_follows_the_pool_and_cannot_be_changed_by_a_caller(tmp_path: Path, images) -> None:
    root, truth = images
    p = new_project(tmp_path, root)
    try:
        rows = p.row_of()
        assert dict(rows) == {image_id: r for r, image_id in enumerate(sorted(truth))}
        with pytest.raises(TypeError):
            rows["not-an-image.png"] = 0  # shared by every reader: a page must not corrupt it
        p._pool = None  # the pool is re-read (as after a recipe change): the mapping follows it
        p.pool().ids = sorted(truth)[1:]
        assert dict(p.row_of()) == {image_id: r for r, image_id in enumerate(sorted(truth)[1:])}
    finally:
        p.close()
