"""A first query batch while the CLIP teacher is still encoding the pool (issue 14, "first batch within a minute").

A tiny random-weight open_clip model encodes a small folder of scikit-learn digits. The
extraction runs in a thread whose progress callback holds it at a chosen row (a gate), so
"before extraction finishes" is a fact of the test, not a race: the batch is chosen from
the encoded rows only, is marked partial, and the rows scored then equal the final
probabilities; resume continues in the same permutation and ends where an uninterrupted
run does.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import activekd_core.project.batches as batches_mod
from activekd_core.demo_data import materialize_demo
from activekd_core.progress import Cancelled
from activekd_core.project import PARTIAL_SPACE, Project
from activekd_core.project.teacher_probs import FEATURES_JOB
from activekd_core.view_models.label import partial_batch_caption

TINY_CLIP = {"kind": "clip_zero_shot", "model_name": "akd-tiny-clip", "pretrained": None, "templates": "single",
             "device": "cpu", "batch_size": 8, "num_workers": 0}
PER_CLASS = 6  # 60 digits
GATE_AT = 24  # rows encoded when the gated extraction stops (a multiple of the encode batch)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):
    return materialize_demo("digits", tmp_path_factory.mktemp("digits"), per_class=PER_CLASS)


@pytest.fixture(autouse=True)
def small_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Choose from 16 encoded images (the app waits for max(256, 20 k): more than this pool)."""
    monkeypatch.setattr(batches_mod, "PARTIAL_MIN_ROWS", 16)
    monkeypatch.setattr(batches_mod, "PARTIAL_ROWS_PER_PICK", 1)


def _project(folder: Path, digits) -> Project:
    return Project.create(folder, digits.root, [(c, "") for c in digits.classes], dict(TINY_CLIP), batch_size=3)


class _Gated:
    """The teacher's pass of a second Project on the same folder (as a job process would run it), held at a row."""

    def __init__(self, folder: Path, at: int) -> None:
        self.project = Project.open(folder)
        self.at, self.gate, self.reached = at, threading.Event(), threading.Event()
        self.messages: list[str] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        assert self.reached.wait(120), "the extraction never reached the gate"

    def _progress(self, done: int, total: int, message: str) -> None:
        self.messages.append(message)
        if done >= self.at and not self.gate.is_set():
            self.reached.set()
            self.gate.wait()

    def _run(self) -> None:
        try:
            self.project.teacher_probs(self._progress)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
            self.reached.set()

    def finish(self) -> None:
        self.gate.set()
        self.thread.join(300)
        self.project.close()
        if self.error is not None:
            raise self.error


def _label(project: Project, digits, view) -> None:
    for item in view.batch.items:
        project.label(item.image_id, digits.labels[item.image_id])


def test_batch_chosen_from_encoded_rows_before_extraction_finishes(tmp_path: Path, digits) -> None:
    project = _project(tmp_path / "proj", digits)
    pool = project.pool()
    extraction = _Gated(project.folder, GATE_AT)
    try:
        clip = project.teacher()
        cache = clip.feature_cache(pool)
        encoded = cache.partial()
        assert not cache.complete and encoded.rows.size == GATE_AT
        view = project.next_batch()  # the extraction is held: this batch cannot wait for it
        picked_rows = [project.row_of()[it.image_id] for it in view.batch.items]
        assert view.total == 3 and set(picked_rows) <= set(encoded.rows.tolist())
        assert view.batch.space.endswith(PARTIAL_SPACE)
        note = project.batch_partial_note(view.batch.id)
        assert note["encoded"] == GATE_AT and note["total"] == len(pool)
        # the encoded rows are a random sample of the pool, not its first rows
        assert not np.array_equal(encoded.rows, np.arange(GATE_AT))
        _, scored = clip.partial_proba(pool)
        assert project.prefetch_next_batch()  # prepared from the encoded rows as well
        assert project.store.get_setting("prefetched_batch")["partial"]["encoded"] == GATE_AT
    finally:
        extraction.finish()

    final = np.asarray(project.teacher_probs())  # cached by the finished pass: nothing recomputed
    np.testing.assert_allclose(final[encoded.rows], scored, rtol=0, atol=1e-6)
    _label(project, digits, view)
    assert project.promote_prefetched() is None  # chosen from part of the pool, which is now whole: dropped
    later = project.next_batch()
    assert not later.batch.space.endswith(PARTIAL_SPACE) and project.batch_partial_note(later.batch.id) is None
    assert project.batch_partial_note(view.batch.id) == note  # the first batch keeps its note
    project.close()


def test_interrupted_extraction_resumes_in_the_same_permutation_and_ends_as_an_uninterrupted_run(
        tmp_path: Path, digits) -> None:
    reference = _project(tmp_path / "ref", digits)
    expected = np.array(reference.teacher_probs())
    ref_cache = reference.teacher().feature_cache(reference.pool())
    ref_features = np.array(ref_cache.load())
    reference.close()

    project = _project(tmp_path / "proj", digits)
    pool = project.pool()
    cancel = threading.Event()

    def stop_at_gate(done: int, total: int, message: str) -> None:
        if done >= GATE_AT:
            cancel.set()

    with pytest.raises(Cancelled):
        project.teacher_probs(stop_at_gate, cancel)
    cache = project.teacher().feature_cache(pool)
    state = cache.progress()
    assert state["done"] == GATE_AT and state["order"] == {"seed": 0}
    first = cache.partial().rows

    extraction = _Gated(project.folder, GATE_AT + 16)  # resumes, then is held again
    try:
        assert "resuming" in extraction.messages[0]
        later = cache.partial()
        assert later.status.seed == 0 and set(first.tolist()) < set(later.rows.tolist())
        order = np.load(cache.dir / "order.npy")
        assert np.array_equal(later.rows, np.sort(order[: GATE_AT + 16]))  # same permutation, continued
        np.testing.assert_array_equal(later.features, ref_features[later.rows])
    finally:
        extraction.finish()
    assert cache.complete and cache.meta()["resumed_from"] == GATE_AT
    np.testing.assert_array_equal(np.asarray(cache.load()), ref_features)
    np.testing.assert_allclose(np.asarray(project.teacher_probs()), expected, rtol=0, atol=1e-6)
    project.close()


def test_a_second_teacher_pass_waits_for_the_running_extraction(tmp_path: Path, digits) -> None:
    """Training (or any other teacher pass) waits for the running extraction and encodes nothing itself."""
    project = _project(tmp_path / "proj", digits)
    extraction = _Gated(project.folder, GATE_AT)
    waiting: list[str] = []
    result: list[np.ndarray] = []
    waiter = threading.Thread(target=lambda: result.append(np.array(project.teacher_probs(
        lambda d, n, m: (waiting.append(m), extraction.gate.set() if len(waiting) >= 2 else None)))))
    waiter.start()
    waiter.join(300)
    extraction.finish()
    assert waiting and all("Waiting for the image features another job is encoding" in m for m in waiting[:2])
    assert project.teacher().images_encoded == 0 and result[0].shape == (len(project.pool()), 10)
    project.close()


def test_label_page_caption_says_partial_and_whether_encoding_continues(tmp_path: Path, digits) -> None:
    project = _project(tmp_path / "proj", digits)
    project.store.open_batch(0, "pcoreset", f"teacher, {PARTIAL_SPACE}", [(project.pool().ids[0], 0.5)])
    batch = project.current_batch().batch
    assert partial_batch_caption(project, batch.id) is None  # a batch without a note is not partial
    project._batches._keep_partial_note(batch.id, {"encoded": 1000, "total": 10000, "rate": 9.14, "time": "t"})
    ended = partial_batch_caption(project, batch.id)
    assert ended.startswith("Chosen from the 1,000 of 10,000 images encoded so far") and "has ended" in ended

    release = threading.Event()
    runner = project.jobs()
    job = runner.start_thread(FEATURES_JOB, lambda progress, cancel: (progress(2345, 10000, "x"), release.wait(60)))
    try:
        for _ in range(200):
            status = project.teacher_features_job()
            if status is not None and status.step == 2345:
                break
            release.wait(0.05)
        text = partial_batch_caption(project, batch.id)
        assert "encoding continues (2,345 done, 9.1 images/s)" in text and "Training waits" in text
    finally:
        release.set()
        runner.wait(job, timeout=60)
    project.close()


def test_next_batch_starts_the_teacher_pass_in_its_own_job(tmp_path: Path, digits) -> None:
    project = _project(tmp_path / "proj", digits)
    select = project.start_next_batch()
    assert select is not None
    features = project.jobs().latest(FEATURES_JOB)
    assert features is not None  # started before the selection, which waits for its first rows only
    runner = project.jobs()
    assert runner.wait(select, timeout=600).state == "done"
    assert runner.wait(features.id, timeout=600).state == "done"
    assert project.current_batch() is not None and project.teacher().feature_cache(project.pool()).complete
    assert project.start_teacher_features() is None  # the probabilities are cached: nothing to do
    project.close()


def test_after_the_longest_wait_a_smaller_sample_is_enough(tmp_path: Path, digits) -> None:
    project = _project(tmp_path / "proj", digits)
    extraction = _Gated(project.folder, GATE_AT)
    try:
        teacher = project._teacher
        part = teacher.partial(40, lambda: True, floor_rows=16, max_wait_s=0.0)  # 24 encoded: above the floor
        assert part is not None and part.encoded == GATE_AT and part.total == len(project.pool())
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(Cancelled):  # 24 is below the floor: it would wait (for the held extraction)
            teacher.partial(40, lambda: True, cancel=cancel, floor_rows=32, max_wait_s=0.0)
    finally:
        extraction.finish()
    assert project._teacher.partial(40, lambda: True) is None  # the extraction ended: use all rows
    project.close()
