"""Concurrency: several sessions/processes labeling one project; retraining started twice runs once.

The retraining tests use a precomputed teacher file (real teacher module, no fake) and a
few steps of real training in a worker process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activekd_core.jobs import JobBusy
from activekd_core.project import Project
from activekd_core.store import Store
from test_crash_safety import LABELER, REPO, acknowledged, check_db, make_db, replay, wait_ready

COLORS = {"nominal": (200, 200, 200), "local": (200, 60, 60), "global": (40, 40, 40)}


def make_project(tmp_path: Path, steps: int = 3) -> Project:
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    lines = ["id," + ",".join(COLORS)]
    for k, (name, color) in enumerate(COLORS.items()):
        (root / name).mkdir(parents=True)
        for i in range(8):
            arr = np.clip(np.array(color) + rng.normal(0, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")
            probs = [0.15] * 3
            probs[k] = 0.7
            lines.append(f"{name}/{i}.png," + ",".join(map(str, probs)))
    (tmp_path / "teacher.csv").write_text("\n".join(lines) + "\n")
    train = {"steps": steps, "batch_labeled": 8, "batch_unlabeled": 8, "image_size": 16, "device": "cpu", "width": 8}
    return Project.create(tmp_path / "proj", root, [(c, "") for c in COLORS],
                          {"kind": "precomputed", "path": str(tmp_path / "teacher.csv")}, "small_cnn", 4, "pcoreset",
                          train=train)


def test_two_sessions_label_same_images(tmp_path: Path) -> None:
    """Two sessions (two Project objects, two connections) hammer the same images at once."""
    make_project(tmp_path).close()
    sessions = [Project.open(tmp_path / "proj"), Project.open(tmp_path / "proj")]
    ids = sessions[0].pool().ids
    acked: list[list[tuple[int, str, str]]] = [[], []]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        p = sessions[k]
        rng = np.random.default_rng(k)
        barrier.wait()
        try:
            for step in range(150):
                image_id = ids[int(rng.integers(0, 6))]  # few images: many collisions
                name = list(COLORS)[int(rng.integers(0, 3))]
                if step % 10 == 9:
                    p.undo(annotator=f"user{k}")
                else:
                    acked[k].append((p.label(image_id, name, annotator=f"user{k}", session=f"s{k}"), image_id, name))
        except BaseException as exc:  # pragma: no cover - reported by the assert
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    store = sessions[0].store
    events = store.events()
    stored = {e.id: e for e in events}
    for k in range(2):
        for eid, image_id, name in acked[k]:
            assert stored[eid].image_id == image_id and stored[eid].class_name == name
            assert stored[eid].annotator == f"user{k}"
    assert len([e for e in events if e.event == "label"]) == len(acked[0]) + len(acked[1])
    both = [i for i in ids[:6] if {e.annotator for e in store.events(i)} == {"user0", "user1"}]
    assert len(both) == 6  # every contested image keeps both users' events
    current = {i: (e.event, e.class_name) for i, e in store.current().items()}
    assert current == replay(events)  # last (non-undone) write wins
    # both sessions see the same current labels
    assert sessions[1].store.current_labels() == sessions[0].store.current_labels()
    for s in sessions:
        s.close()


def test_two_processes_label_same_images(tmp_path: Path) -> None:
    """Two processes: no label lost, both histories kept, current = replay of history."""
    db = make_db(tmp_path / "project.db")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    procs = []
    for k, out in enumerate(outs):
        fh = out.open("w")
        procs.append((subprocess.Popen([sys.executable, "-c", LABELER, str(db), str(100 + k), f"user{k}"],
                                       stdout=fh, stderr=subprocess.PIPE, env=env), fh))
    for (proc, _), out in zip(procs, outs):
        wait_ready(out, proc)
    deadline = time.monotonic() + 120  # both must have labeled a while (slow under load)
    while not all(len(acknowledged(o)[0]) >= 30 for o in outs):
        assert time.monotonic() < deadline, "labelers made no progress"
        time.sleep(0.1)
    for proc, fh in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fh.close()
    acked_a, undone_a, _ = acknowledged(outs[0])
    acked_b, undone_b, _ = acknowledged(outs[1])
    assert acked_a and acked_b
    check_db(db, acked_a | acked_b, undone_a | undone_b)
    store = Store.open(db)
    assert {e.annotator for e in store.events()} == {"user0", "user1"}
    assert any(len({e.annotator for e in store.events(i)}) == 2 for i in store.image_ids())
    store.close()


def test_second_open_keeps_first_connections_locks(tmp_path: Path) -> None:
    """Regression: opening the store again in one process must not drop the POSIX locks of
    connections already open (closing any descriptor of the file would). Otherwise another
    process closing its connection believes it is the last one, checkpoints and deletes the
    WAL, and later commits of this process vanish."""
    db = tmp_path / "project.db"
    Store.create(db).close()
    first = Store.open(db)
    first.get_setting("x")
    second = Store.open(db)  # the open under test
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def other(code: str) -> str:
        script = f"from activekd_core.store import Store; s = Store.open({str(db)!r}); {code}; s.close()"
        return subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    other("s.set_setting('from_other', 1)")
    assert Path(str(db) + "-wal").exists()  # our connections still count: the WAL was kept
    first.set_setting("from_first", 2)
    assert other("print(s.get_setting('from_first'))") == "2"
    assert first.get_setting("from_other") == 1 and second.get_setting("from_first") == 2
    first.close()
    second.close()


def _kill_workers(p: Project) -> None:
    for st in p.jobs().history("train"):
        if st.active and st.owner.startswith("process:"):
            try:
                os.kill(st.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
def test_retrain_twice_runs_once_and_killed_worker(tmp_path: Path) -> None:
    """Process-mode retraining: a second start (other session) is refused; a killed worker changes nothing."""
    p1 = make_project(tmp_path)
    for image_id in p1.pool().ids[::2]:
        p1.label(image_id, image_id.split("/")[0])
    p2 = Project.open(tmp_path / "proj")
    try:
        _retrain_scenario(p1, p2)
    finally:
        _kill_workers(p2)  # never leave a worker behind when an assert fails
        p1.close()
        p2.close()


def _retrain_scenario(p1: Project, p2: Project) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    job = p1.start_retrain(env=env)
    with pytest.raises(JobBusy) as info:
        p2.start_retrain(env=env)
    assert info.value.job_id == job
    st = p1.jobs().wait(job, timeout=300)
    assert st.state == "done", st.error
    assert [r.status for r in p1.store.rounds()] == ["done"] and st.result["round"] == 1
    ckpt_bytes = p1.checkpoint_path().read_bytes()  # type: ignore[union-attr]
    labels = p1.store.current_labels()

    p1.update_config(train={**p1.config["train"], "steps": 50_000, "log_every": 5})
    job2 = p2.start_retrain(env=env)
    deadline = time.monotonic() + 300
    while "train" not in p2.jobs().status(job2).message:
        assert time.monotonic() < deadline and p2.jobs().status(job2).active, p2.jobs().status(job2)
        time.sleep(0.1)
    os.kill(p2.jobs().status(job2).pid, signal.SIGKILL)
    st2 = p2.jobs().wait(job2, timeout=60)
    assert st2.state == "failed" and "code -9" in (st2.error or "")
    assert p2.recover() == 1
    assert [r.status for r in p2.store.rounds()] == ["done", "interrupted"]
    assert p2.active_round().id == 1  # type: ignore[union-attr]
    assert p2.checkpoint_path().read_bytes() == ckpt_bytes  # type: ignore[union-attr]
    assert p2.store.current_labels() == labels
