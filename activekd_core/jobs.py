"""Background jobs with progress, cancel and a result, polled through the project database.

A job's status lives in the ``jobs`` table of the project store, so any page (any
browser session, any server process) can poll it, and it survives a page reload.

Two ways to run a job:

* :meth:`JobRunner.start_thread` runs a function in a daemon thread of this process:
  cheap to start, for short work (next-batch selection, teacher probabilities).
* :meth:`JobRunner.start_process` runs a registered job kind in a fresh Python process
  (``python -m <the registry's worker module> ...``). Training uses this: a crash of native code
  (CUDA, an out-of-memory kill, a segfault in a backend) then ends the worker, not the
  Streamlit server, the worker holds no GIL the UI needs, and a cancel that the code
  does not honour can still be forced (:meth:`JobRunner.kill`). The cost is the
  worker's start-up (importing torch, a couple of seconds), small next to a round of
  training. A fresh process (not ``fork``) also avoids forking a multi-threaded server.

Job kinds. A process job names its kind, never code: a :class:`JobKinds` registry maps
each kind to its entry function, and the worker process resolves the kind through the
same registry (:func:`worker_main`). This module imports nothing above it: the registry
of the project's kinds lives in :mod:`activekd_core.project.facade` (next to the
functions it names), and its worker module (``activekd_core.project.worker``) calls
:func:`worker_main` with it, so neither side ever loads code from a string.

Exclusivity: at most one job of a kind runs per project. A partial unique index on
``jobs(kind) WHERE state='running'`` enforces it inside SQLite, across threads and
processes, so "retrain" clicked twice (in one session or two) starts one job; the second
call gets :class:`JobBusy` naming the running job. A row left 'running' by a dead owner
(process gone) is marked ``interrupted`` when the next job of its kind is claimed.

Jobs never call Streamlit.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activekd_core.progress import Cancelled
from activekd_core.store import Store, StoreError

JOB_STATES = ("running", "done", "failed", "cancelled", "interrupted")
_TOKEN = f"{os.getpid()}-{time.time_ns()}"  # identifies this process's thread jobs
_LIVE_THREAD_JOBS: set[tuple[str, int]] = set()  # (db path, job id) of threads alive in this process
_LIVE_LOCK = threading.Lock()


class JobBusy(RuntimeError):
    """A job of the same kind is already running; ``job_id`` names it."""

    def __init__(self, kind: str, job_id: int) -> None:
        super().__init__(f"a {kind!r} job is already running (job {job_id}); wait for it or cancel it")
        self.kind = kind
        self.job_id = job_id


class JobCancelled(Cancelled):
    """Raised inside a job (by its progress callback) when a cancel was requested."""


JobFn = Callable[..., Any]
"""A job's entry function: ``fn(progress=..., cancel=..., **kwargs)``, returning a JSON-serialisable result."""


@dataclass(frozen=True)
class JobKinds:
    """A registry of job kinds: kind name -> entry function.

    Attributes:
        worker: The module a process job runs as ``python -m <worker>``; it must call
            :func:`worker_main` with this same registry, so the worker resolves a kind the
            way the starting process does.
        entries: Kind name -> entry function.
    """

    worker: str
    entries: Mapping[str, JobFn] = field(default_factory=dict)

    def entry(self, kind: str) -> JobFn:
        """The entry function of ``kind``.

        Raises:
            ValueError: If ``kind`` is not registered.
        """
        fn = self.entries.get(kind)
        if fn is None:
            raise ValueError(f"unknown job kind {kind!r}; registered: {sorted(self.entries)}")
        return fn


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job's row.

    Attributes:
        eta: Estimated seconds left from the average time per step so far (None if unknown).
    """

    id: int
    kind: str
    state: str
    step: int
    total: int
    message: str
    started: float
    updated: float
    finished: float | None
    pid: int
    owner: str
    cancel_requested: bool
    result: Any
    error: str | None

    @property
    def active(self) -> bool:
        """True while the job is running."""
        return self.state == "running"

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        return min(1.0, self.step / self.total) if self.total > 0 else 0.0

    @property
    def elapsed(self) -> float:
        """Seconds from start to finish (or to the last update while running)."""
        return (self.finished or self.updated) - self.started

    @property
    def eta(self) -> float | None:
        """Estimated seconds left, from the average pace so far."""
        if not self.active or self.step <= 0 or self.total <= 0:
            return None
        rate = (self.updated - self.started) / self.step
        return max(0.0, rate * (self.total - self.step))


class JobProgress:
    """The ``progress(done, total, message)`` callback handed to a job.

    It writes progress to the job's row (at most every ``min_interval`` seconds, and
    always on the last step), and checks the row's cancel flag. When a cancel was
    requested it sets :attr:`cancel` (a ``threading.Event`` the job may also poll) and
    raises :class:`JobCancelled`.
    """

    def __init__(self, store: Store, job_id: int, min_interval: float = 0.25) -> None:
        self.store = store
        self.job_id = job_id
        self.cancel = threading.Event()
        self.min_interval = min_interval
        self._last = 0.0
        self._pending: tuple[int, int, str] | None = None
        self._watcher = threading.Thread(target=self._watch_cancel, daemon=True)
        self._stop = threading.Event()
        self._watcher.start()

    def __call__(self, done: int, total: int, message: str = "") -> None:
        now = time.time()
        self._pending = (int(done), int(total), str(message)[:500])
        if now - self._last >= self.min_interval or (total > 0 and done >= total):
            self.flush()
        if self.cancel.is_set():
            raise JobCancelled(f"job {self.job_id} cancelled")

    def flush(self) -> None:
        """Write the latest progress report to the job row now."""
        if self._pending is None:
            return
        now = time.time()
        self._last = now
        done, total, message = self._pending
        self._pending = None
        self.store.execute(
            "UPDATE jobs SET step = ?, total = ?, message = ?, updated = ? WHERE id = ?",
            (done, total, message, now, self.job_id),
        )

    def _watch_cancel(self) -> None:
        while not self._stop.wait(0.2):
            try:
                rows = self.store.query("SELECT cancel_requested FROM jobs WHERE id = ?", (self.job_id,))
            except Exception:  # store closed at shutdown
                return
            if rows and rows[0][0]:
                self.cancel.set()
                return

    def close(self) -> None:
        """Stop the cancel watcher."""
        self._stop.set()


class JobRunner:
    """Starts, polls and cancels jobs of one project store.

    Args:
        store: The project store (its ``jobs`` table holds the status).
        log_dir: Where process jobs write their stderr (``job_<id>.log``).
        kinds: The job kinds :meth:`start_process` can run (None: thread jobs and polling only).
    """

    def __init__(self, store: Store, log_dir: Path | None = None, kinds: JobKinds | None = None) -> None:
        self.store = store
        self.log_dir = Path(log_dir) if log_dir else store.path.parent / "logs"
        self.kinds = kinds
        self._procs: dict[int, subprocess.Popen] = {}

    # ---- claiming ------------------------------------------------------------------

    def _claim(self, kind: str, pid: int, owner: str) -> int:
        now = time.time()
        with self.store.transaction() as c:
            row = c.execute("SELECT id, pid, owner FROM jobs WHERE kind = ? AND state = 'running'", (kind,)).fetchone()
            if row is not None:
                if _owner_alive(self.store, int(row["id"]), int(row["pid"]), str(row["owner"])):
                    raise JobBusy(kind, int(row["id"]))
                c.execute(
                    "UPDATE jobs SET state = 'interrupted', finished = ?, error = ? WHERE id = ?",
                    (now, "interrupted: the process running it stopped", row["id"]),
                )
            cur = c.execute(
                "INSERT INTO jobs(kind, state, started, updated, pid, owner, message) "
                "VALUES (?, 'running', ?, ?, ?, ?, 'starting')",
                (kind, now, now, pid, owner),
            )
            return int(cur.lastrowid)

    def _finish(self, job_id: int, state: str, result: Any = None, error: str | None = None) -> None:
        finish_job(self.store, job_id, state, result, error)

    # ---- starting ------------------------------------------------------------------

    def start_thread(self, kind: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> int:
        """Run ``fn(*args, progress=..., cancel=..., **kwargs)`` in a daemon thread.

        ``fn``'s return value must be JSON-serialisable (it becomes the job's result).

        Returns:
            The job id.

        Raises:
            JobBusy: If a job of this kind is already running.
        """
        job_id = self._claim(kind, os.getpid(), _TOKEN)
        key = (str(self.store.path), job_id)
        with _LIVE_LOCK:
            _LIVE_THREAD_JOBS.add(key)

        def body() -> None:
            try:
                run_job(self.store, job_id, fn, args, kwargs)
            finally:
                with _LIVE_LOCK:
                    _LIVE_THREAD_JOBS.discard(key)

        threading.Thread(target=body, name=f"activekd-job-{job_id}", daemon=True).start()
        return job_id

    def start_process(self, kind: str, kwargs: dict[str, Any] | None = None, *,
                      env: dict[str, str] | None = None) -> int:
        """Run the entry function registered for ``kind`` in a new Python process.

        The function is called as ``fn(progress=..., cancel=..., **kwargs)``; ``kwargs``
        must be JSON-serialisable. A watcher thread marks the job failed if the worker
        dies without finishing (crash, SIGKILL), with the tail of its log.

        Raises:
            ValueError: If this runner has no registry or ``kind`` is not in it.
            JobBusy: If a job of this kind is already running.
        """
        if self.kinds is None:
            raise ValueError("this JobRunner has no job kinds to start processes from")
        self.kinds.entry(kind)  # an unknown kind is refused here, before a job row exists
        job_id = self._claim(kind, os.getpid(), _TOKEN)
        key = (str(self.store.path), job_id)
        with _LIVE_LOCK:
            _LIVE_THREAD_JOBS.add(key)  # counts as alive until the worker's pid is recorded
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"job_{job_id}.log"
        try:
            log = log_path.open("wb")
            cmd = [sys.executable, "-m", self.kinds.worker, "--db", str(self.store.path), "--job", str(job_id),
                   "--kind", kind, "--kwargs", json.dumps(kwargs or {})]
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=env if env is not None else _worker_env(), start_new_session=True)
            log.close()
            self.store.execute("UPDATE jobs SET pid = ?, owner = ? WHERE id = ?", (proc.pid, f"process:{proc.pid}", job_id))
        except BaseException as exc:
            self._finish(job_id, "failed", error=f"could not start worker: {exc}")
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE_THREAD_JOBS.discard(key)
        self._procs[job_id] = proc

        def watch() -> None:
            code = proc.wait()
            try:
                st = self.status(job_id)
                if st.active:
                    tail = _tail(log_path)
                    self._finish(job_id, "cancelled" if st.cancel_requested else "failed",
                                 error=f"worker process exited with code {code} before finishing. {tail}".strip())
            except sqlite3.ProgrammingError:  # the store was closed meanwhile; the next claim cleans up
                return

        threading.Thread(target=watch, name=f"activekd-watch-{job_id}", daemon=True).start()
        return job_id

    # ---- polling and control -------------------------------------------------------

    def status(self, job_id: int) -> JobStatus:
        """The job's current status.

        Raises:
            StoreError: If there is no such job.
        """
        rows = self.store.query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise StoreError(f"{self.store.path}: no job {job_id}")
        return _status(rows[0])

    def latest(self, kind: str) -> JobStatus | None:
        """The most recent job of ``kind`` (running or finished), or None."""
        rows = self.store.query("SELECT * FROM jobs WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,))
        return _status(rows[0]) if rows else None

    def running(self, kind: str) -> JobStatus | None:
        """The running job of ``kind`` whose owner is alive, or None."""
        rows = self.store.query("SELECT * FROM jobs WHERE kind = ? AND state = 'running'", (kind,))
        if not rows:
            return None
        st = _status(rows[0])
        return st if _owner_alive(self.store, st.id, st.pid, st.owner) else None

    def history(self, kind: str | None = None, limit: int = 20) -> list[JobStatus]:
        """Recent jobs, newest first."""
        if kind is None:
            rows = self.store.query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self.store.query("SELECT * FROM jobs WHERE kind = ? ORDER BY id DESC LIMIT ?", (kind, limit))
        return [_status(r) for r in rows]

    def cancel(self, job_id: int) -> None:
        """Ask a running job to stop at its next progress call (cooperative)."""
        self.store.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'", (job_id,))

    def kill(self, job_id: int) -> None:
        """Force-stop a process job (SIGKILL) after asking it to cancel; the watcher records it."""
        self.cancel(job_id)
        proc = self._procs.get(job_id)
        if proc is not None and proc.poll() is None:
            proc.kill()

    def wait(self, job_id: int, timeout: float = 60.0, poll: float = 0.05) -> JobStatus:
        """Block until the job leaves 'running' or ``timeout`` seconds pass; returns its status."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(job_id)
            if not st.active or time.monotonic() >= deadline:
                return st
            time.sleep(poll)


def run_job(store: Store, job_id: int, fn: Callable[..., Any], args: tuple = (), kwargs: dict | None = None) -> None:
    """Run ``fn`` as job ``job_id`` and record done/failed/cancelled with its result or error."""
    progress = JobProgress(store, job_id)
    try:
        result = fn(*args, progress=progress, cancel=progress.cancel, **(kwargs or {}))
        json.dumps(result)
    except BaseException as exc:  # noqa: BLE001 - every failure must end up in the job row
        progress.flush()
        cancelled = progress.cancel.is_set() or isinstance(exc, Cancelled)
        if cancelled:
            finish_job(store, job_id, "cancelled", error=f"cancelled: {exc}")
        else:
            finish_job(store, job_id, "failed", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
        if not isinstance(exc, Exception):
            raise
    else:
        progress.flush()
        finish_job(store, job_id, "done", result=result)
    finally:
        progress.close()


def finish_job(store: Store, job_id: int, state: str, result: Any = None, error: str | None = None,
               trace: str | None = None) -> None:
    """Set a running job's final state (no-op if it already finished)."""
    if state not in JOB_STATES or state == "running":
        raise ValueError(f"invalid final job state {state!r}")
    now = time.time()
    store.execute(
        "UPDATE jobs SET state = ?, result = ?, error = ?, finished = ?, updated = ?, "
        "message = CASE WHEN ? = 'done' THEN 'finished' ELSE ? END WHERE id = ? AND state = 'running'",
        (state, json.dumps(result), error if trace is None else f"{error}\n{trace}", now, now, state,
         state, job_id),
    )


def _status(r: Any) -> JobStatus:
    return JobStatus(
        r["id"], r["kind"], r["state"], r["step"], r["total"], r["message"], r["started"], r["updated"],
        r["finished"], r["pid"], r["owner"], bool(r["cancel_requested"]),
        json.loads(r["result"]) if r["result"] else None, r["error"],
    )


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not; another user's process does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().split(b") ")[-1][:1] != b"Z"
    except OSError:
        return True


def _owner_alive(store: Store, job_id: int, pid: int, owner: str) -> bool:
    if owner == _TOKEN:
        with _LIVE_LOCK:
            return (str(store.path), job_id) in _LIVE_THREAD_JOBS
    if owner.startswith("process:"):
        return pid_alive(pid)
    return pid != os.getpid() and pid_alive(pid)  # a thread job of another live process


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _tail(path: Path, n: int = 1500) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return ("log tail: " + text[-n:]) if text.strip() else ""


def worker_main(kinds: JobKinds, argv: list[str] | None = None) -> int:
    """The body of a job worker process (started by :meth:`JobRunner.start_process`).

    Args:
        kinds: The registry the starting process used; ``--kind`` is resolved through it.
        argv: ``--db PATH --job ID --kind KIND --kwargs JSON`` (default: ``sys.argv[1:]``).

    Returns:
        The process exit code (0 when the job ran, 1 when it could not be started).
    """
    parser = argparse.ArgumentParser(description="ActiveKD Studio background job worker (started by JobRunner)")
    parser.add_argument("--db", required=True)
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument("--kind", required=True)
    parser.add_argument("--kwargs", default="{}")
    ns = parser.parse_args(argv)
    store = Store.open(ns.db)
    try:
        fn = kinds.entry(ns.kind)
        run_job(store, ns.job, fn, (), json.loads(ns.kwargs))
    except Exception as exc:  # an unknown kind, bad arguments
        finish_job(store, ns.job, "failed", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
        return 1
    finally:
        store.close()
    return 0
