"""The long-lived UMAP worker process behind the Explore page (``LayoutJob``).

The layout maths and the disk cache live in :mod:`activekd_core.projection`; this module
holds the process that runs them off the Streamlit script run:

* **Process**: one ``spawn`` child per :class:`LayoutJob`, warmed up once (numba compiles
  umap/pynndescent on the first fit in every new process), reused for every request and
  restarted if it dies. ``request`` never blocks: it returns the cached UMAP layout if it
  exists, otherwise the PCA layout flagged ``pending=True`` while the worker computes.
* **Protocol**: requests are small tuples ``(kind, key, probs_file, params, base_key,
  cache_dir, group)`` on a ``multiprocessing`` queue; the probabilities travel in a ``.npy``
  file the worker deletes after reading (never through the pipe, so a process can always
  exit, see :meth:`LayoutJob._ensure_worker`). ``None`` stops the worker. Replies are
  ``(kind, key, seconds, error)`` with kind ``warm``, ``started``, ``done``, ``failed`` or
  ``superseded``; a listener thread turns them into :class:`LayoutStatus` entries.
* **Groups**: queued requests of one group (e.g. ``"teacher"``) are superseded by the
  newest one before they start (a user moving a slider).
* **Memory**: a fit whose estimated memory exceeds half of what is free fails at once with
  both figures (:func:`activekd_core.projection_sample.check_umap_memory`); large pools are
  fitted on a seeded sample (:mod:`activekd_core.projection_sample`).
* **Transforms**: the worker keeps the last few fitted reducers in memory (never pickled
  to disk: loading a pickle runs code from the project folder) and can place new points on
  an existing map (:meth:`LayoutJob.request_transform`), with a trustworthiness score next
  to the original fit's. UMAP's ``transform`` is only faithful while the new points lie
  where the old ones did, and it is not faster than a refit (bench/README.md), so the
  default after retraining is a background refit; ``transform`` keeps the previous map's
  positions (animating rounds).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
import traceback
import types
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from activekd_core.atomic import atomic_path
from activekd_core.projection import (
    MIN_UMAP_POINTS,
    Layout,
    LayoutCache,
    LayoutParams,
    Metric,
    array_hash,
    as_probs,
    compute_layout,
    layout_key,
    pca_layout,
    transform_faithfulness,
    umap_layout,
)
from activekd_core.projection_sample import check_umap_memory

__all__ = ["LayoutJob", "LayoutStatus"]

log = logging.getLogger(__name__)


@dataclass
class LayoutStatus:
    """State of a background layout.

    Attributes:
        key: Layout key.
        state: ``"queued"``, ``"running"``, ``"done"``, ``"failed"`` or ``"superseded"``
            (dropped because a newer request of the same group came in first).
        submitted: ``time.time()`` at submission.
        started: When the worker began, or None.
        seconds: Compute time once done.
        error: Error text when failed.
    """

    key: str
    state: str
    submitted: float
    started: float | None = None
    seconds: float | None = None
    error: str = ""

    def elapsed(self) -> float:
        """Seconds since the worker started it (or since submission while queued)."""
        return time.time() - (self.started or self.submitted)


def _warm_up(metrics: Sequence[str]) -> None:
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(3), 200).astype(np.float32)
    for metric in metrics:
        coords, reducer = umap_layout(x, LayoutParams(metric=metric))  # type: ignore[arg-type]
        reducer.transform(x[:20])


def _worker_main(requests: Any, results: Any, threads: int | None, warm_metrics: Sequence[str]) -> None:
    """Worker process loop: fit/transform UMAP layouts and write them to the cache."""
    if threads:
        for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    # Only small tuples travel on ``results``; never let its feeder thread hold this process
    # at exit if the parent is gone.
    results.cancel_join_thread()
    reducers: OrderedDict[str, Any] = OrderedDict()
    try:
        t0 = time.perf_counter()
        if warm_metrics:
            _warm_up(warm_metrics)
        results.put(("warm", "", time.perf_counter() - t0, ""))
    except Exception:  # noqa: BLE001 - reported to the parent, the loop still serves requests
        results.put(("warm", "", -1.0, traceback.format_exc(limit=3)))
    pending: list[tuple] = []
    while True:
        if not pending:
            pending.append(requests.get())
        while True:  # drain so that superseded requests are skipped
            try:
                pending.append(requests.get_nowait())
            except queue.Empty:
                break
        if any(m is None for m in pending):
            return
        latest: dict[str, str] = {}
        for msg in pending:
            if msg[6] is not None:
                latest[msg[6]] = msg[1]
        msg = pending.pop(0)
        kind, key, probs_file, params_dict, base_key, cache_dir, group = msg
        if group is not None and latest.get(group) != key:
            Path(probs_file).unlink(missing_ok=True)
            results.put(("superseded", key, 0.0, ""))
            continue
        results.put(("started", key, 0.0, ""))
        try:
            t0 = time.perf_counter()
            params = LayoutParams(**params_dict)
            try:
                p = as_probs(np.load(probs_file, allow_pickle=False))
            finally:
                Path(probs_file).unlink(missing_ok=True)
            meta: dict[str, Any] = {"input_hash": array_hash(p), "n": int(p.shape[0]), "num_classes": int(p.shape[1])}
            note = ""
            if kind == "fit":
                if p.shape[0] >= MIN_UMAP_POINTS:
                    check_umap_memory(p.shape[0], p.shape[1], params.n_neighbors)  # refuse before starting
                    coords, reducer = umap_layout(p, params)
                    reducers[key] = (reducer, p)
                    while len(reducers) > 4:
                        reducers.popitem(last=False)
                    used = "umap"
                else:
                    coords, used = pca_layout(p, params.metric), "pca"
                    note = f"only {p.shape[0]} points: PCA shown instead of UMAP"
            else:
                if base_key not in reducers:
                    raise KeyError(f"no fitted reducer for base layout {base_key} in the worker (refit instead)")
                reducer, base_p = reducers[base_key]
                coords = np.asarray(reducer.transform(p), dtype=np.float32)
                used = "umap-transform"
                base_coords = np.asarray(reducer.embedding_, dtype=np.float32)
                meta["base_key"] = base_key
                meta["trust_transform"] = transform_faithfulness(p, coords, params.metric)
                meta["trust_base"] = transform_faithfulness(base_p, base_coords, params.metric)
                note = (
                    f"placed on an existing UMAP map: trustworthiness {meta['trust_transform']:.3f} "
                    f"vs {meta['trust_base']:.3f} for the original fit"
                )
            layout = Layout(coords, params, key, used, seconds=time.perf_counter() - t0, note=note, meta=meta)
            LayoutCache(cache_dir).save(layout)
            results.put(("done", key, layout.seconds, ""))
        except Exception as exc:  # noqa: BLE001 - any failure is reported, the worker stays up
            results.put(("failed", key, 0.0, f"{type(exc).__name__}: {exc}"))


_MAIN_LOCK = threading.Lock()


@contextlib.contextmanager
def _bare_main() -> Iterator[None]:
    """Hide the caller's ``__main__`` from ``multiprocessing`` while a spawn child starts.

    A ``spawn`` child re-imports ``sys.modules["__main__"]`` by path or name. Under
    ``streamlit run`` that is the running page script, so the worker would execute the whole app
    (and might start another worker). A bare module has neither file nor spec, so the child
    imports only ``activekd_core.layout_worker`` (and what it imports).
    """
    with _MAIN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


class LayoutJob:
    """Computes UMAP layouts in one long-lived background process; never blocks the caller.

    Create one per app (e.g. with ``st.cache_resource``) and call ``request`` on every rerun:
    it returns at once with the cached UMAP layout, or with the PCA layout flagged
    ``pending=True`` while the worker computes. The worker process starts on first use and is
    warmed up (one tiny UMAP fit per metric in ``warm_metrics``) so that numba's compilation
    happens before the first real request; it is reused for all later requests and restarted
    if it dies.

    Args:
        cache_dir: Layout cache folder (inside the project folder).
        warm_metrics: Metrics to pre-compile on start (empty: none).
        threads: Thread cap for numba/BLAS in the worker (None: library defaults).
        start: Start the worker now rather than on the first request.
    """

    def __init__(
        self,
        cache_dir: Path | str,
        *,
        warm_metrics: Sequence[Metric] = ("euclidean",),
        threads: int | None = 1,
        start: bool = False,
    ) -> None:
        self.cache = LayoutCache(cache_dir)
        self.warm_metrics = tuple(warm_metrics)
        self.threads = threads
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._status: dict[str, LayoutStatus] = {}
        self._pca_memo: OrderedDict[str, np.ndarray] = OrderedDict()  # stand-ins, reused across reruns
        self._proc: Any = None
        self._requests: Any = None
        self._results: Any = None
        self._listener: threading.Thread | None = None
        self._request_files: set[Path] = set()
        self._closed = False
        self.warm_seconds: float | None = None
        self.started_at: float | None = None
        if start:
            self._ensure_worker()

    # -- worker management -------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._closed:
            raise RuntimeError("projection: LayoutJob is closed")
        if self._proc is not None and self._proc.is_alive():
            return
        self._close_queues()
        self._requests = self._ctx.Queue()
        self._results = self._ctx.Queue()
        # Requests carry a file path and small values only, and their feeder thread is never
        # joined at exit: a worker that died or is still warming up can no longer hold this
        # process open (a queued array larger than the pipe buffer used to block exit forever).
        self._requests.cancel_join_thread()
        self.warm_seconds = None
        self._proc = self._ctx.Process(
            target=_worker_main,
            args=(self._requests, self._results, self.threads, self.warm_metrics),
            name="activekd-layout-worker",
            daemon=True,
        )
        with _bare_main():
            self._proc.start()
        self.started_at = time.time()
        self._listener = threading.Thread(
            target=self._listen, args=(self._proc, self._results), name="activekd-layout-listener", daemon=True
        )
        self._listener.start()

    def _listen(self, proc: Any, results: Any) -> None:
        while True:
            try:
                kind, key, seconds, error = results.get(timeout=0.5)
            except queue.Empty:
                if not proc.is_alive():
                    self._fail_all(f"layout worker exited (code {proc.exitcode})")
                    return
                continue
            except (EOFError, OSError, ValueError):  # ValueError: the queue was closed
                self._fail_all("layout worker connection lost")
                return
            with self._lock:
                if kind == "warm":
                    self.warm_seconds = seconds
                    if error:
                        log.warning("projection: UMAP warm-up failed: %s", error)
                    continue
                st = self._status.get(key)
                if st is None:
                    continue
                if kind == "started":
                    st.state, st.started = "running", time.time()
                elif kind == "done":
                    st.state, st.seconds = "done", seconds
                elif kind == "failed":
                    st.state, st.error = "failed", error
                elif kind == "superseded":
                    st.state = "superseded"

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            for st in self._status.values():
                if st.state in ("queued", "running"):
                    st.state, st.error = "failed", reason

    @property
    def worker_alive(self) -> bool:
        """Whether the worker process is running."""
        return self._proc is not None and self._proc.is_alive()

    @property
    def is_warm(self) -> bool:
        """Whether the worker finished its warm-up (numba compiled)."""
        return self.worker_alive and self.warm_seconds is not None

    # -- requests ----------------------------------------------------------------------------

    def _submit(
        self, kind: str, key: str, p: np.ndarray, params: LayoutParams, base_key: str | None, group: str | None
    ) -> None:
        with self._lock:
            st = self._status.get(key)
            if st is not None and st.state in ("queued", "running"):
                return
            self._status[key] = LayoutStatus(key=key, state="queued", submitted=time.time())
        self._ensure_worker()
        probs_file = self._write_request(key, p)
        self._requests.put((kind, key, str(probs_file), asdict(params), base_key, str(self.cache.root), group))

    def _write_request(self, key: str, p: np.ndarray) -> Path:
        """Write a request's probabilities where the worker reads them (it deletes the file)."""
        folder = self.cache.root / "requests"
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{key}-{os.getpid()}-{uuid.uuid4().hex[:12]}.npy"
        with atomic_path(dest, suffix=".npy") as tmp:
            np.save(tmp, np.ascontiguousarray(p, dtype=np.float32), allow_pickle=False)
        with self._lock:
            if len(self._request_files) > 64:  # the worker deletes what it read
                self._request_files = {f for f in self._request_files if f.exists()}
            self._request_files.add(dest)
        return dest

    def _close_queues(self) -> None:
        """Release the queues of a previous (dead or closed) worker without waiting on them."""
        for q in (self._requests, self._results):
            if q is None:
                continue
            with contextlib.suppress(Exception):
                q.cancel_join_thread()
            with contextlib.suppress(Exception):
                q.close()
        self._requests = self._results = None

    def _stand_in(self, p: np.ndarray, params: LayoutParams, key: str, note: str) -> Layout:
        t0 = time.perf_counter()
        with self._lock:
            coords = self._pca_memo.get(key)
        if coords is None:
            coords = pca_layout(p, params.metric)
            with self._lock:
                self._pca_memo[key] = coords
                while len(self._pca_memo) > 8:
                    self._pca_memo.popitem(last=False)
        return Layout(coords, params, key, "pca", pending=True, seconds=time.perf_counter() - t0, note=note)

    def request(
        self, probs: npt.ArrayLike, params: LayoutParams | None = None, *, group: str | None = None, retry: bool = False
    ) -> Layout:
        """Return the requested layout if cached, else the PCA stand-in and start it in the background.

        Args:
            probs: ``(N, C)`` probabilities.
            params: Layout parameters; ``method="pca"`` is computed here at once.
            group: Requests of the same group (e.g. ``"teacher"``) supersede older queued ones
                that have not started yet (a user moving a slider).
            retry: Resubmit a layout that failed before.

        Returns:
            A ``Layout``; ``pending=True`` means PCA coordinates while UMAP is computing
            (check ``status(layout.key)`` or call again later).
        """
        params = params or LayoutParams()
        p = as_probs(probs)
        if params.method == "pca":
            return compute_layout(p, params)
        key = layout_key(p, params)
        hit = self.cache.load(key)
        if hit is not None:
            return hit
        st = self.status(key)
        if st is not None and st.state == "failed" and not retry:
            return self._stand_in(p, params, key, f"UMAP failed: {st.error}")
        self._submit("fit", key, p, params, None, group)
        return self._stand_in(p, params, key, self._pending_note(key))

    def request_transform(
        self, probs: npt.ArrayLike, base: Layout, *, group: str | None = None
    ) -> Layout:
        """Place new probabilities on an existing UMAP map with the worker's fitted reducer.

        Works only while the worker still holds the reducer of ``base`` (it keeps the last 4
        fits of this session); otherwise the status turns ``failed`` and the caller should rely
        on ``request`` (a refit). See the module notes on faithfulness.

        Args:
            probs: ``(N, C)`` new probabilities (same C as the base fit).
            base: A finished UMAP layout (``method_used == "umap"``).
            group: As in ``request``.

        Returns:
            The cached transform if present, else the PCA stand-in with ``pending=True``.
        """
        if base.method_used != "umap" or base.pending:
            raise ValueError("projection: request_transform needs a finished UMAP layout as base")
        p = as_probs(probs)
        key = layout_key(p, base.params, base_key=base.key)
        hit = self.cache.load(key)
        if hit is not None:
            return hit
        st = self.status(key)
        if st is not None and st.state == "failed":
            return self._stand_in(p, base.params, key, f"transform unavailable: {st.error}")
        self._submit("transform", key, p, base.params, base.key, group)
        return self._stand_in(p, base.params, key, self._pending_note(key))

    def _pending_note(self, key: str) -> str:
        if not self.is_warm:
            return "UMAP worker is starting (numba compiles once per process); showing PCA meanwhile"
        st = self.status(key)
        if st is not None and st.state == "running":
            return f"computing UMAP ({st.elapsed():.0f} s so far); showing PCA meanwhile"
        return "UMAP queued; showing PCA meanwhile"

    def status(self, key: str) -> LayoutStatus | None:
        """Status of a background layout (a copy), or None if never requested in this session."""
        with self._lock:
            st = self._status.get(key)
            return None if st is None else LayoutStatus(**asdict(st))

    def wait(self, key: str, timeout: float | None = None, poll: float = 0.1) -> Layout | None:
        """Block until a requested layout is done (for scripts, tests and benchmarks).

        Returns:
            The layout, or None on timeout, failure or supersession.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            hit = self.cache.load(key)
            if hit is not None:
                return hit
            st = self.status(key)
            if st is not None and st.state in ("failed", "superseded"):
                return None
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(poll)

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Start the worker if needed and block until its warm-up finished."""
        self._ensure_worker()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.warm_seconds is None:
            if not self.worker_alive or (deadline is not None and time.monotonic() > deadline):
                return False
            time.sleep(0.1)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker process (queued work is dropped)."""
        self._closed = True
        proc = self._proc
        if proc is not None:
            try:
                self._requests.put(None)
            except (OSError, ValueError, AttributeError):
                pass
            proc.join(timeout)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout)
        self._close_queues()
        if self._listener is not None:
            self._listener.join(timeout)
        with self._lock:
            leftovers, self._request_files = self._request_files, set()
        for f in leftovers:
            f.unlink(missing_ok=True)
        self._fail_all("layout worker closed")

    def __enter__(self) -> LayoutJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
