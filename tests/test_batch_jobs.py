"""Starting the next batch in the background through the project facade: once, under its lock, by kind."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from activekd_core.project import JOB_KINDS, Project

CLASSES = [("red", ""), ("green", ""), ("blue", "")]


def _project(tmp_path: Path) -> Project:
    """Twelve images and a precomputed teacher (the worker process needs no torch or weights)."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    rows = []
    for k, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
            p = rng.dirichlet(np.ones(3))
            rows.append(f"{name}/{i}.png,{p[0]},{p[1]},{p[2]}\n")
    table = tmp_path / "teacher.csv"
    table.write_text("id,red,green,blue\n" + "".join(rows))
    return Project.create(tmp_path / "proj", root, CLASSES, {"kind": "precomputed", "path": str(table)}, batch_size=3)


def test_the_job_kinds_are_the_projects_entry_points() -> None:
    assert set(JOB_KINDS.entries) == {"train", "select", "prefetch", "features"}
    assert JOB_KINDS.worker == "activekd_core.project.worker"


def test_sessions_finishing_together_start_one_selection(tmp_path: Path) -> None:
    project = _project(tmp_path)
    sessions = [Project.open(project.folder) for _ in range(4)]
    barrier = threading.Barrier(len(sessions))
    started: list[int | None] = []

    def click(session: Project) -> None:
        barrier.wait()
        started.append(session.start_next_batch())

    threads = [threading.Thread(target=click, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs = [j for j in started if j is not None]
    assert len(jobs) == 1  # one selection job for four sessions
    status = project.jobs().wait(jobs[0], timeout=120)
    assert status.state == "done", status.error
    view = project.current_batch()
    assert view is not None and status.result == view.batch.id and view.total == 3
    assert project.batch_job() is None
    assert project.start_next_batch() is None  # the open batch has undecided images: nothing starts
    assert len(project.store.batches()) == 1
    for s in sessions:
        s.close()
    project.close()


def test_prefetch_starts_once_per_open_batch(tmp_path: Path) -> None:
    project = _project(tmp_path)
    view = project.ensure_batch()
    job = project.start_prefetch(view)
    assert job is not None
    status = project.jobs().wait(job, timeout=120)
    assert status.state == "done" and status.result is True, status.error
    assert project.start_prefetch() is None  # prepared already for this batch
    for item in view.batch.items:
        project.label(item.image_id, "red")
    promoted = project.promote_prefetched()
    assert promoted is not None and not {it.image_id for it in promoted.batch.items} & {
        it.image_id for it in view.batch.items}
    project.close()


def test_prefetch_renders_the_next_grid_and_promote_opens_it_after_the_last_label(tmp_path: Path, monkeypatch) -> None:
    from activekd_core.image_view import BytesCache
    from activekd_core.project import thumbnails

    project = _project(tmp_path)
    view = project.ensure_batch()
    job = project.start_prefetch(view, thumb_box=64)
    status = project.jobs().wait(job, timeout=120)
    assert status.state == "done" and status.result is True, status.error
    ready = project._batches.prefetched_ids()
    assert len(ready) == 3 and not set(ready) & {it.image_id for it in view.batch.items}
    assert project.promote_prefetched() is None  # not while the open batch has undecided images
    for item in view.batch.items[:-1]:
        project.label(item.image_id, "red")
    assert project.promote_prefetched() is None
    project.skip(view.batch.items[-1].image_id)  # the last decision completes the batch
    promoted = project.promote_prefetched()
    assert promoted is not None and [it.image_id for it in promoted.batch.items] == ready
    assert project._batches.prefetched_ids() == []  # used once
    assert project.current_batch().batch.id == promoted.batch.id and not promoted.complete

    def refuse(*_a, **_k):
        raise AssertionError("the opened batch's thumbnail was decoded on the server")

    monkeypatch.setattr(thumbnails, "render", refuse)
    memory = BytesCache(1 << 20)
    for image_id in ready:  # the worker rendered them: the server only reads files
        with Image.open(io.BytesIO(thumbnails.thumbnail_png(project, image_id, 64, memory))) as img:
            assert img.size == (64, 64)  # 8x8 images enlarged 8x into the 64-pixel box
    project.close()
