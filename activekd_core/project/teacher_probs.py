"""The project's teacher: building it, its probabilities for the pool (cached on disk), prompt changes.

Teacher probabilities are cached in ``cache/teacher/probs_<key>.npy`` (with a ``.json``
note beside), keyed by the teacher's provenance and the pool's fingerprint, plus the
labels it was fitted on for a teacher that learns from labels
(:class:`~activekd_core.teachers.base.FittableTeacher`).

While a CLIP teacher's image features are extracted in their own background job
(:data:`FEATURES_JOB`), :meth:`TeacherProbs.partial` gives the probabilities of the
images encoded so far (a uniform sample: the cache encodes the pool in a seeded random
order), so a first query batch need not wait for the whole pool.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from activekd_core.atomic import atomic_path, atomic_write_text
from activekd_core.images import ImagePool
from activekd_core.progress import Cancelled, ProgressFn
from activekd_core.project.context import ProjectContext, ProjectError
from activekd_core.store import utc_now
from activekd_core.teachers.base import FittableTeacher, Teacher, zero_shot_of

TEACHER_HISTORY_SETTING = "teacher_history"
FEATURES_JOB = "features"  # job kind: the teacher's pass over the pool (image features, then probabilities)
PARTIAL_POLL_S = 0.5  # how often a selection waiting for the first encoded images looks again


@dataclass(frozen=True)
class PartialTeacherProbs:
    """The teacher's probabilities for the images encoded so far (extraction still running).

    Attributes:
        rows: Pool rows of the encoded images, ascending.
        probs: Their probabilities ``(len(rows), C)``, in the order of ``rows``.
        total: Images in the pool.
        rate: Images encoded per second by the running extraction (None if not known yet).
    """

    rows: np.ndarray
    probs: np.ndarray
    total: int
    rate: float | None

    @property
    def encoded(self) -> int:
        """Images encoded (and scored) so far."""
        return int(self.rows.size)

    def note(self) -> dict[str, Any]:
        """The JSON note a batch chosen from these rows keeps (see :meth:`Batches.partial_note`)."""
        return {"encoded": self.encoded, "total": self.total, "rate": self.rate, "time": utc_now()}


def _make_teacher(spec: dict[str, Any], cache_dir: Path | None = None) -> Teacher:
    """Build a teacher from its spec (the one place the project does; tests replace it)."""
    from activekd_core.teachers import make_teacher  # CLIP kinds import torch/open_clip in there

    return make_teacher(spec, cache_dir=cache_dir)


def check_teacher(spec: dict[str, Any], names: list[str], prompts: list[str], pool: ImagePool) -> str | None:
    """Build the teacher once to check its spec (CLIP weights load lazily, so this is cheap).

    A precomputed teacher is also read against the pool, so a file with the wrong shape,
    missing ids, NaN or negative values is refused before anything is created.

    Returns:
        What is wrong, or None.
    """
    full = dict(spec)
    full.setdefault("classes", names)
    if str(full.get("kind", "")).startswith("clip"):
        full.setdefault("class_prompts", {n: p for n, p in zip(names, prompts) if p})
    try:
        teacher = _make_teacher(full, None)
        if list(teacher.classes) != names:
            return f"teacher classes {list(teacher.classes)} differ from the project's {names}"
        if full.get("kind") == "precomputed":
            teacher.predict_proba(pool)
    except ImportError:  # a teacher's third-party stack (open_clip) missing here: checked when it runs
        return None
    except Exception as exc:  # ValueError / TeacherDataError with the file and the problem
        return f"{type(exc).__name__}: {exc}"
    return None


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` atomically (the temporary file ends in ``.tmp``)."""
    with atomic_path(path) as tmp, tmp.open("wb") as fh:  # a file object: np.save adds no ".npy"
        np.save(fh, np.ascontiguousarray(array))


def uniform(x: np.ndarray) -> bool:
    """True when every probability is ``1 / C`` (a teacher with no information, not a collapsed one)."""
    return bool(np.allclose(np.asarray(x), 1.0 / x.shape[1], atol=1e-6))


def uninformative(x: np.ndarray | None) -> bool:
    """True when every row is the same (no information to select on)."""
    return x is not None and x.shape[0] > 1 and float(np.ptp(x, axis=0).max()) < 1e-6


def _takes_cancel(teacher: Teacher) -> bool:
    """Whether ``predict_proba`` takes the optional ``cancel`` event (the CLIP teachers' long pass).

    The Teacher Protocols say what a teacher is (:class:`Teacher`, :class:`FittableTeacher`);
    an optional keyword of one method is not something a runtime Protocol can check, so
    this one capability is read from the signature.
    """
    try:
        return "cancel" in inspect.signature(teacher.predict_proba).parameters
    except (TypeError, ValueError):
        return False


class TeacherProbs:
    """The project's teacher object and its cached probabilities.

    Attributes:
        last_file: The cache file of the latest :meth:`probs` call (recorded by rounds).
    """

    def __init__(self, ctx: ProjectContext) -> None:
        self.ctx = ctx
        self._teacher: Teacher | None = None
        self._base: dict[str, Any] | None = None
        self._candidate: tuple[str, Teacher] | None = None
        self.last_file: Path | None = None

    def spec(self) -> dict[str, Any]:
        """The teacher spec with the project's classes (and prompts for CLIP teachers) filled in."""
        spec = dict(self.ctx.config["teacher_spec"])
        classes = self.ctx.store.classes()
        spec.setdefault("classes", [c.name for c in classes])
        if str(spec.get("kind", "")).startswith("clip"):
            spec.setdefault("class_prompts", {c.name: c.prompt for c in classes if c.prompt})
        return spec

    def teacher(self) -> Teacher:
        """The teacher object (built once, until the teacher spec changes)."""
        with self.ctx.lock:
            if self._teacher is None:
                teacher = _make_teacher(self.spec(), self.ctx.path("cache", "features"))
                if list(teacher.classes) != self.ctx.classes:
                    raise ProjectError(f"teacher classes {list(teacher.classes)} differ from the project's "
                                       f"{self.ctx.classes}")
                self._base = json.loads(json.dumps(teacher.describe(), default=str))
                self._teacher = teacher
            return self._teacher

    def describe(self) -> dict[str, Any] | None:
        """The built teacher's provenance (JSON form), or None before it is built."""
        return self._base

    def reset(self) -> None:
        """Forget the built teacher (its spec changed)."""
        with self.ctx.lock:
            self._teacher = None
            self._base = None

    def cache_key(self, labeled: np.ndarray | None = None, y: np.ndarray | None = None) -> str:
        """Cache key of the teacher's probabilities: provenance + pool (+ labels for fittable teachers)."""
        teacher = self.teacher()
        digest = hashlib.sha256()
        digest.update(json.dumps(self._base, sort_keys=True, default=str).encode())
        digest.update(self.ctx.pool().fingerprint().encode())
        if isinstance(teacher, FittableTeacher) and labeled is not None and y is not None and labeled.size:
            digest.update(np.asarray(labeled, dtype=np.int64).tobytes() + b"|" + np.asarray(y, dtype=np.int64).tobytes())
        return digest.hexdigest()[:20]

    def probs(self, progress: ProgressFn | None = None, cancel: threading.Event | None = None,
              *, fit: bool = True) -> np.ndarray:
        """Teacher probabilities ``(N, C)`` for the pool, from the disk cache when possible.

        A teacher that learns from labels (few-shot, stand-in) is refit on the current
        training labels first (audit images excluded); its cache key includes them.
        The result is a read-only memory map of the cache file (100k+ pools are not copied
        into every page); copy it before changing it.
        """
        ctx = self.ctx
        with ctx.lock:
            teacher = self.teacher()
            labeled, y = ctx.training_labels() if fit else (None, None)
            fittable = isinstance(teacher, FittableTeacher) and labeled is not None and labeled.size > 0
            key = self.cache_key(labeled, y) if fittable else self.cache_key()
            path = ctx.path("cache", "teacher", f"probs_{key}.npy")
            self.last_file = path
            if path.is_file():
                probs = np.load(path, mmap_mode="r")  # memory-mapped: pages share the OS page cache
                if probs.shape == (len(ctx.pool()), len(ctx.classes)):
                    return probs
            if fittable:
                assert isinstance(teacher, FittableTeacher) and labeled is not None and y is not None
                teacher.fit(ctx.pool(), labeled, y)
            extra = {"cancel": cancel} if cancel is not None and _takes_cancel(teacher) else {}
            probs = np.asarray(teacher.predict_proba(ctx.pool(), progress, **extra), dtype=np.float32)
            n, c = len(ctx.pool()), len(ctx.classes)
            if probs.shape != (n, c) or not np.isfinite(probs).all():
                raise ProjectError(f"teacher returned probabilities of shape {probs.shape} (need {(n, c)}) "
                                   "or non-finite values")
            save_npy(path, probs)
            atomic_write_text(path.with_suffix(".json"), json.dumps(
                {"describe": self._base, "fitted_on": int(labeled.size) if fittable and labeled is not None else 0,
                 "pool": ctx.pool().fingerprint(), "time": utc_now()}, default=str))
            return np.load(path, mmap_mode="r")  # same read-only form as a cache hit

    def cached(self) -> np.ndarray | None:
        """The teacher's most recent cached probabilities for this pool, or None; never computes.

        For a teacher that learns from labels this may predate the newest labels (it is the
        teacher as of its last fit): good enough for showing suggestions without stalling a page.
        """
        ctx = self.ctx
        with ctx.lock:
            self.teacher()
            n, c = len(ctx.pool()), len(ctx.classes)
            fingerprint = ctx.pool().fingerprint()
            candidates = sorted(ctx.path("cache", "teacher").glob("probs_*.npy"), key=lambda f: f.stat().st_mtime,
                                reverse=True)
            for path in candidates:
                try:
                    meta = json.loads(path.with_suffix(".json").read_text())
                    if meta.get("describe") != self._base or meta.get("pool") != fingerprint:
                        continue
                    probs = np.load(path, mmap_mode="r")
                except (OSError, ValueError):
                    continue
                if probs.shape == (n, c):
                    return probs
            return None

    # ---- while the image features are extracted --------------------------------------------

    def _partial_source(self) -> Any | None:
        """The zero-shot CLIP teacher whose partial features give this teacher's probabilities, or None.

        That is a zero-shot CLIP teacher, or a few-shot one not fitted on any label yet
        (its probabilities are then the zero-shot ones); None when the probabilities are
        cached already or the teacher is of another kind.
        """
        teacher = self.teacher()
        clip = zero_shot_of(teacher)
        if clip is None or not callable(getattr(clip, "partial_proba", None)):
            return None
        if isinstance(teacher, FittableTeacher) and self.ctx.training_labels()[0].size:
            return None
        if self.ctx.path("cache", "teacher", f"probs_{self.cache_key()}.npy").is_file():
            return None
        return clip

    def needs_pass(self) -> bool:
        """Whether the teacher's probabilities must still be computed by a pass over the pool's images.

        True for a CLIP teacher (zero-shot, or few-shot before any label) whose
        probabilities are not cached: what a :data:`FEATURES_JOB` is started for.
        """
        return self._partial_source() is not None

    def partial(self, min_rows: int, extracting: Callable[[], bool], progress: ProgressFn | None = None,
                cancel: threading.Event | None = None, *, floor_rows: int | None = None,
                max_wait_s: float | None = None) -> PartialTeacherProbs | None:
        """Probabilities of the images encoded so far, while another job extracts the rest.

        Waits (reporting progress) until ``min_rows`` images are encoded, or, after
        ``max_wait_s`` seconds, ``floor_rows`` (a slow machine then gets a batch from a
        smaller sample instead of a longer wait), as long as ``extracting()`` says an
        extraction runs. Each returned row equals that image's row of the final
        probabilities (same features, prototypes and scale).

        Args:
            min_rows: Encoded images to wait for (capped at the pool size).
            floor_rows: Encoded images that are enough once ``max_wait_s`` has passed.
            max_wait_s: Seconds after which ``floor_rows`` are enough (None: never).
            extracting: Whether an extraction of this teacher's features is under way
                (e.g. its job is running); checked while waiting.
            progress: Reports the wait.
            cancel: Stops the wait (raises :class:`~activekd_core.progress.Cancelled`).

        Returns:
            The partial probabilities, or None when the caller should use
            :meth:`probs` instead: the features are complete, the probabilities are
            cached, no extraction runs, or the teacher is not a CLIP teacher whose
            features can be read partially.
        """
        with self.ctx.lock:
            clip = self._partial_source()
            if clip is None:
                return None
            pool = self.ctx.pool()
            cache = clip.feature_cache(pool)
            if not cache.complete:
                clip.text_prototypes(progress)  # the text pass overlaps the image encoding (cached on disk)
        need = max(1, min(int(min_rows), len(pool)))
        floor = need if floor_rows is None else max(1, min(int(floor_rows), need))
        deadline = None if max_wait_s is None else time.monotonic() + float(max_wait_s)
        while True:
            if cache.complete:
                return None
            status = cache.status()
            done = status.done if status is not None else 0
            if done >= need or (deadline is not None and time.monotonic() >= deadline and done >= floor):
                break
            if not extracting() and not cache.extracting():
                return None
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled while waiting for the teacher's first encoded images")
            if progress is not None:
                progress(done, need, f"Waiting for the teacher to encode {need:,} of {len(pool):,} images "
                                     f"to choose from: {done:,} so far")
            time.sleep(PARTIAL_POLL_S)
        with self.ctx.lock:
            got = clip.partial_proba(pool)
        if got is None or got[0].rows.size == 0:
            return None
        part, probs = got
        return PartialTeacherProbs(rows=part.rows, probs=np.asarray(probs, dtype=np.float32),
                                   total=part.status.total, rate=part.status.rate)

    # ---- prompts and teacher changes -----------------------------------------------------

    def candidate_probs(self, class_prompts: dict[str, list[str]], templates: str | list[str], *,
                        fit: bool = True) -> np.ndarray:
        """Teacher probabilities with other prompts, from the cached image features (a text pass only).

        The project's teacher is left as it is: a second teacher object (kept for later
        candidates, sharing the feature cache) takes the new prompts. A few-shot teacher is
        refit on the training labels when ``fit``.

        Raises:
            ProjectError: If the teacher is not a CLIP teacher (prompts change nothing).
        """
        spec = self.spec()
        if not str(spec.get("kind", "")).startswith("clip"):
            raise ProjectError(f"the {spec.get('kind')} teacher does not use prompts; only CLIP teachers do")
        ident = json.dumps({k: v for k, v in spec.items() if k not in ("class_prompts", "templates")},
                           sort_keys=True, default=str)
        with self.ctx.lock:
            if self._candidate is None or self._candidate[0] != ident:
                self._candidate = (ident, _make_teacher(spec, self.ctx.path("cache", "features")))
            candidate = self._candidate[1]
            clip = zero_shot_of(candidate)
            if clip is None:
                raise ProjectError(f"the {spec.get('kind')} teacher does not use prompts; only CLIP teachers do")
            clip.set_prompts(class_prompts, templates)
            pool = self.ctx.pool()
            if fit and isinstance(candidate, FittableTeacher):
                rows, y = self.ctx.training_labels()
                candidate.fit(pool, rows, y)
            return np.asarray(candidate.predict_proba(pool), dtype=np.float32)

    def history(self) -> list[dict[str, Any]]:
        """Every kept teacher change, oldest first."""
        return list(self.ctx.store.get_setting(TEACHER_HISTORY_SETTING) or [])

    def change(self, spec: dict[str, Any], source: str, note: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make ``spec`` the project's teacher (new provenance) and log the change; returns it."""
        old = dict(self.ctx.config["teacher_spec"])
        self.ctx.update_config(teacher_spec=spec)
        self.reset()
        history = self.history()
        history.append({"time": utc_now(), "source": source, "before": old, "after": spec, **(note or {})})
        self.ctx.store.set_setting(TEACHER_HISTORY_SETTING, history)
        return spec

    def adopt_prompts(self, class_prompts: dict[str, list[str]], templates: str | list[str], *,
                      note: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make new prompts the project's teacher and log the change (source "prompt workshop")."""
        new = {**self.ctx.config["teacher_spec"], "class_prompts": class_prompts, "templates": templates}
        return self.change(new, "prompt workshop", note)

    def change_teacher(self, spec: dict[str, Any], *, note: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make ``spec`` the project's teacher (checked first) and keep the change in the history.

        Labels, rounds and students stay; the teacher's probabilities are recomputed when next
        needed (their cache is keyed by the teacher's provenance).

        Raises:
            ProjectError: If the spec is not a usable teacher (the message says why).
        """
        if not isinstance(spec, dict) or not spec.get("kind"):
            raise ProjectError("teacher spec must be a dict with a 'kind'")
        classes = self.ctx.store.classes()
        problem = check_teacher(dict(spec), [c.name for c in classes], [c.prompt for c in classes], self.ctx.pool())
        if problem:
            raise ProjectError(f"teacher refused: {problem}")
        return dict(self.change(dict(spec), "change", note))
