"""Tests for background jobs: progress, result, errors, cancel, exclusivity, worker processes."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from activekd_core.jobs import JobBusy, JobCancelled, JobKinds, JobRunner, worker_main
from activekd_core.store import Store, StoreError

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


# Job functions, registered below as kinds; the worker process is this module (``python -m test_jobs``).
def count_job(*, progress, cancel, n: int = 5, delay: float = 0.0, fail_at: int | None = None) -> dict:
    for i in range(n):
        if fail_at is not None and i == fail_at:
            raise ValueError(f"bad item {i}")
        time.sleep(delay)
        progress(i + 1, n, f"item {i + 1}/{n}")
    return {"counted": n}


def wait_for_cancel_job(*, progress, cancel, started_flag: str = "") -> str:
    if started_flag:
        Path(started_flag).write_text("started")
    for i in range(10_000):
        progress(i, 10_000, "waiting")
        time.sleep(0.01)
    return "never"


def crash_job(*, progress, cancel) -> None:
    progress(1, 2, "about to crash")
    os._exit(3)


TEST_KINDS = JobKinds(worker="test_jobs", entries={
    "count": count_job, "wait": wait_for_cancel_job, "crash": crash_job,
})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.create(tmp_path / "project.db")
    yield s
    s.close()


def worker_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}"}


def test_thread_job_progress_and_result(store: Store) -> None:
    runner = JobRunner(store)
    job = runner.start_thread("count", count_job, n=4, delay=0.02)
    st = runner.wait(job, timeout=10)
    assert st.state == "done" and st.result == {"counted": 4}
    assert (st.step, st.total, st.message) == (4, 4, "finished")
    assert st.fraction == 1.0 and st.eta is None and st.elapsed > 0
    assert runner.latest("count").id == job  # type: ignore[union-attr]


def test_eta_from_pace(store: Store) -> None:
    runner = JobRunner(store)
    job = runner.start_thread("slow", count_job, n=40, delay=0.05)
    time.sleep(0.6)
    st = runner.status(job)
    assert st.active and 0 < st.step < 40
    assert st.eta is not None and st.eta > 0
    runner.cancel(job)
    assert runner.wait(job, timeout=10).state == "cancelled"


def test_thread_job_error_recorded(store: Store) -> None:
    runner = JobRunner(store)
    st = runner.wait(runner.start_thread("count", count_job, n=5, fail_at=2), timeout=10)
    assert st.state == "failed"
    assert st.error is not None and st.error.startswith("ValueError: bad item 2")
    assert st.step == 2  # progress up to the failure is kept


def test_cancel_thread_job(store: Store) -> None:
    runner = JobRunner(store)
    job = runner.start_thread("wait", wait_for_cancel_job)
    time.sleep(0.2)
    runner.cancel(job)
    st = runner.wait(job, timeout=10)
    assert st.state == "cancelled" and "cancelled" in (st.error or "")


def test_same_kind_runs_once(store: Store) -> None:
    runner = JobRunner(store)
    job = runner.start_thread("train", wait_for_cancel_job)
    with pytest.raises(JobBusy, match=f"already running \\(job {job}\\)") as info:
        runner.start_thread("train", count_job)
    assert info.value.job_id == job
    other = runner.start_thread("select", count_job, n=1)  # other kinds are independent
    assert runner.wait(other, timeout=10).state == "done"
    runner.cancel(job)
    runner.wait(job, timeout=10)
    again = runner.start_thread("train", count_job, n=1)  # finished: may start again
    assert runner.wait(again, timeout=10).state == "done"


def test_racing_starts_from_two_connections(tmp_path: Path, store: Store) -> None:
    """Two sessions (separate connections) click 'retrain' at the same moment: one job runs."""
    other = Store.open(store.path)
    runners = [JobRunner(store), JobRunner(other)]
    barrier = threading.Barrier(8)
    started: list[int] = []
    busy: list[int] = []
    lock = threading.Lock()

    def click(k: int) -> None:
        barrier.wait()
        try:
            jid = runners[k % 2].start_thread("train", wait_for_cancel_job)
            with lock:
                started.append(jid)
        except JobBusy as exc:
            with lock:
                busy.append(exc.job_id)

    threads = [threading.Thread(target=click, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(started) == 1 and len(busy) == 7 and set(busy) == set(started)
    runners[0].cancel(started[0])
    runners[0].wait(started[0], timeout=10)
    other.close()


def test_stale_row_is_interrupted(store: Store) -> None:
    now = time.time()
    dead_pid = 2**22 + 12345  # above the default pid_max range
    store.execute(
        "INSERT INTO jobs(kind, state, started, updated, pid, owner) VALUES ('train', 'running', ?, ?, ?, ?)",
        (now, now, dead_pid, f"process:{dead_pid}"),
    )
    runner = JobRunner(store)
    assert runner.running("train") is None
    job = runner.start_thread("train", count_job, n=1)
    assert runner.wait(job, timeout=10).state == "done"
    old = runner.history("train")[-1]
    assert old.state == "interrupted" and "stopped" in (old.error or "")


def test_unknown_job(store: Store) -> None:
    with pytest.raises(StoreError, match="no job 99"):
        JobRunner(store).status(99)


def test_process_job_done(store: Store) -> None:
    runner = JobRunner(store, kinds=TEST_KINDS)
    job = runner.start_process("count", {"n": 3}, env=worker_env())
    st = runner.wait(job, timeout=60)
    assert st.state == "done", st.error
    assert st.result == {"counted": 3} and st.step == 3
    assert st.pid != os.getpid()


def test_process_job_cancel_and_kill(store: Store, tmp_path: Path) -> None:
    runner = JobRunner(store, kinds=TEST_KINDS)
    flag = tmp_path / "started"
    job = runner.start_process("wait", {"started_flag": str(flag)}, env=worker_env())
    deadline = time.monotonic() + 60
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(JobBusy):
        runner.start_process("wait", {}, env=worker_env())
    runner.cancel(job)
    assert runner.wait(job, timeout=30).state == "cancelled"

    job2 = runner.start_process("wait", {}, env=worker_env())
    time.sleep(0.5)
    runner.kill(job2)  # forced: the watcher records it
    st = runner.wait(job2, timeout=30)
    assert st.state == "cancelled"


def test_process_crash_and_sigkill_marked_failed(store: Store) -> None:
    runner = JobRunner(store, kinds=TEST_KINDS)
    job = runner.start_process("crash", {}, env=worker_env())
    st = runner.wait(job, timeout=60)
    assert st.state == "failed" and "exited with code 3" in (st.error or "")

    job2 = runner.start_process("wait", {}, env=worker_env())
    time.sleep(0.5)
    os.kill(runner.status(job2).pid, signal.SIGKILL)  # e.g. the OOM killer
    st2 = runner.wait(job2, timeout=30)
    assert st2.state == "failed" and "exited with code -9" in (st2.error or "")


def test_process_unknown_kind(store: Store) -> None:
    """A kind outside the registry never starts; one the worker's registry lacks fails with the reason."""
    with pytest.raises(ValueError, match="unknown job kind 'nope'"):
        JobRunner(store, kinds=TEST_KINDS).start_process("nope", {})
    with pytest.raises(ValueError, match="no job kinds"):
        JobRunner(store).start_process("count", {})
    assert JobRunner(store).history() == []  # nothing was claimed
    stale = JobRunner(store, kinds=JobKinds(worker="test_jobs", entries={"ghost": count_job}))
    st = stale.wait(stale.start_process("ghost", {}, env=worker_env()), timeout=60)
    assert st.state == "failed" and "unknown job kind 'ghost'" in (st.error or "")


def test_job_cancelled_exception_type() -> None:
    from activekd_core.progress import Cancelled

    assert issubclass(JobCancelled, RuntimeError) and issubclass(JobCancelled, Cancelled)


if __name__ == "__main__":  # the worker process of TEST_KINDS' process jobs
    sys.exit(worker_main(TEST_KINDS))
