"""Query batches: candidates, the selection space, the next batch, previews, queues, prefetching.

Selection space. A strategy that needs probabilities gets the active student's combined
probabilities (PCoreSet's space), or the teacher's before any student exists; one that
needs features gets the student's pooled features, or — before any student — the
teacher's probabilities as a stand-in feature space (recorded as the batch's ``space``).
Training labels seed the selection; skipped/unsure images and the audit set are removed
from the candidate pool (never queried again unless their state is undone).

Partial batches. Before any student, while the teacher's image features are still being
extracted in their own job (:data:`~activekd_core.project.teacher_probs.FEATURES_JOB`,
started by :meth:`Batches.start_next`), a batch is chosen from the images encoded so far
(a uniform sample of the pool: the cache encodes it in a seeded random order) once
enough of them are encoded (:func:`partial_rows`): only those rows are candidates and seeds,
and the batch keeps a note of it (:meth:`Batches.partial_note`). Once the extraction has
finished, batches use every row again (a batch prepared ahead from partial rows is then
dropped).

Starting the next batch in the background (:meth:`Batches.start_next`,
:meth:`Batches.start_prefetch`) happens here, under a per-project lock shared by every
session of this process, so two sessions finishing the same batch select one new batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from activekd_core.jobs import JobBusy, JobRunner, JobStatus
from activekd_core.progress import ProgressFn
from activekd_core.project.context import ProjectContext, ProjectError
from activekd_core.project.rounds import Rounds
from activekd_core.project.teacher_probs import FEATURES_JOB, PartialTeacherProbs, TeacherProbs, uninformative
from activekd_core.selection import STRATEGIES, select
from activekd_core.store import LabelEvent, QueryBatch

REVISIT = "revisit"  # strategy name of a batch of skipped/unsure images sent back for another look
MANUAL = "manual"  # strategy name of a queue of images chosen by hand (Explore, Review)
QUEUE_STRATEGIES = (MANUAL, REVISIT)  # batches a retrain keeps open
PREFETCH_KEY = "prefetched_batch"  # settings key of the batch prepared while the open one is labeled
PARTIAL_KEY = "partial_batches"  # settings key: batch id -> note of a batch chosen from partly encoded images
PARTIAL_SPACE = "images encoded so far"  # how the space name of such a batch ends
PARTIAL_MIN_ROWS = 256  # encoded images a batch chosen during extraction waits for, at least ...
PARTIAL_ROWS_PER_PICK = 20  # ... and this many per image picked;
PARTIAL_MAX_WAIT_S = 30.0  # after this long waiting, fewer are enough:
PARTIAL_FLOOR_ROWS = 64  # at least this many ...
PARTIAL_FLOOR_PER_PICK = 5  # ... and this many per image picked


def partial_rows(k: int) -> tuple[int, int]:
    """``(wanted, floor)``: encoded images to choose ``k`` images from while the teacher's features are extracted.

    The selection waits for a uniform sample of ``wanted = max(256, 20 k)`` images (enough
    for k-center to spread ``k`` picks over the sample's probability space; ~15-30 s of
    ViT-B-32 on an idle 2-core CPU), but after :data:`PARTIAL_MAX_WAIT_S` seconds of
    waiting ``floor = max(64, 5 k)`` are enough: on a busy machine the first batch comes
    from a smaller sample rather than minutes later.
    """
    return (max(PARTIAL_MIN_ROWS, PARTIAL_ROWS_PER_PICK * int(k)),
            max(PARTIAL_FLOOR_ROWS, PARTIAL_FLOOR_PER_PICK * int(k)))

_BATCH_LOCKS: dict[str, threading.Lock] = {}  # project folder -> lock held while the next batch is started
_BATCH_LOCKS_GUARD = threading.Lock()


def _batch_lock(folder: str) -> threading.Lock:
    with _BATCH_LOCKS_GUARD:
        return _BATCH_LOCKS.setdefault(folder, threading.Lock())


@dataclass
class BatchView:
    """The open query batch joined with each image's current state.

    Attributes:
        batch: The stored batch (ids in pick order, scores).
        states: Image id -> current event (label/skip/unsure) or None if not done yet.
    """

    batch: QueryBatch
    states: dict[str, LabelEvent | None]

    @property
    def done(self) -> int:
        """Images of the batch that have a state (labeled, skipped or unsure)."""
        return sum(1 for s in self.states.values() if s is not None)

    @property
    def total(self) -> int:
        """Images in the batch."""
        return len(self.batch.items)

    @property
    def complete(self) -> bool:
        """True when every image of the batch has a state."""
        return self.done == self.total


class Batches:
    """Choosing, storing and opening the query batches of one project."""

    def __init__(self, ctx: ProjectContext, teacher: TeacherProbs, rounds: Rounds) -> None:
        self.ctx = ctx
        self.teacher = teacher
        self.rounds = rounds

    # ---- the open batch --------------------------------------------------------------------

    def current(self) -> BatchView | None:
        """The open batch with each image's current state, or None if there is none."""
        batch = self.ctx.store.open_batch_current()
        return None if batch is None else self._view(batch)

    def view(self, batch_id: int) -> BatchView | None:
        """Any stored batch (open or closed) with each image's current state, or None."""
        batch = self.ctx.store.batch(int(batch_id))
        return None if batch is None else self._view(batch)

    def _view(self, batch: QueryBatch) -> BatchView:
        current = self.ctx.store.current()
        states = {it.image_id: current.get(it.image_id) for it in batch.items}
        if batch.strategy == REVISIT:
            # skipped/unsure images sent back for another look: only a decision made after
            # the batch was opened completes them
            states = {i: (ev if ev is not None and ev.time >= batch.created else None) for i, ev in states.items()}
        return BatchView(batch, states)

    def open_view(self) -> BatchView | None:
        """The open batch when it still has images without a decision, else None."""
        view = self.current()
        return view if view is not None and not view.complete else None

    def ensure(self, progress: ProgressFn | None = None) -> BatchView:
        """The open batch, selecting a new one when none is open or the open one is complete."""
        view = self.current()
        if view is None or view.complete:
            if self.promote_prefetched() is None:
                self.next(progress)
            view = self.current()
        assert view is not None
        return view

    def close_after_round(self, keep_batch_in_progress: bool) -> None:
        """After a successful round: close the open strategy batch so the next comes from the new student.

        A queue made by hand stays until done or dismissed; with ``keep_batch_in_progress``
        (an automatic retrain) a batch the expert has started stays too. A batch prepared
        ahead by the old student is dropped by :meth:`promote_prefetched`.
        """
        view = self.current()
        started = view is not None and 0 < view.done < view.total
        if view is None or (view.batch.strategy not in QUEUE_STRATEGIES and not (keep_batch_in_progress and started)):
            self.ctx.store.close_batches()

    # ---- candidates and the selection space ------------------------------------------------

    def _seed_and_candidates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(training rows, their classes, candidate rows)``."""
        labeled, labeled_y = self.ctx.training_labels()
        current = self.ctx.store.current()
        blocked = set(current) | set(self.ctx.store.audit_ids()) | {i for i, _ in self.rounds.undecodable_images()}
        candidates = [r for r, i in enumerate(self.ctx.pool().ids) if i not in blocked]
        return labeled, labeled_y, np.asarray(candidates, dtype=np.int64)

    def _queryable(self, image_ids: Iterable[str]) -> set[str]:
        """Those of ``image_ids`` that are candidates (see :meth:`candidate_rows`), checked one by
        one: the few images of a prepared batch, without a pass over the whole pool."""
        current = self.ctx.store.current()
        blocked = set(self.ctx.store.audit_ids()) | {i for i, _ in self.rounds.undecodable_images()}
        row_of = self.ctx.row_of()
        return {i for i in image_ids if i in row_of and i not in current and i not in blocked}

    def candidate_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(labeled rows, candidate rows)``: training labels seed selection; candidates have no
        state, are not audit images and were not left out of the active round as undecodable."""
        labeled, _, candidates = self._seed_and_candidates()
        return labeled, candidates

    def selection_space(self, needs: set[str], progress: ProgressFn | None = None
                        ) -> tuple[str, np.ndarray | None, np.ndarray | None, int]:
        """The arrays a strategy runs on: ``(space name, probs, features, model round)``.

        ``progress`` reports the teacher pass when the teacher's probabilities must be computed.
        """
        active = self.rounds.active()
        if active is not None:
            probs, feats = self.rounds.student_outputs(active.id)
            return "student", probs, feats, active.id
        probs = self.teacher.probs(progress)  # always passed: it also tells "random" the pool size
        if "features" in needs:
            return "teacher-probs", probs, probs, 0
        return "teacher", probs, None, 0

    def _extracting(self) -> bool:
        """Whether the teacher's feature extraction job is running (its owner alive)."""
        return JobRunner(self.ctx.store).running(FEATURES_JOB) is not None

    def _space(self, needs: set[str], k: int, progress: ProgressFn | None
               ) -> tuple[str, np.ndarray | None, np.ndarray | None, int, PartialTeacherProbs | None]:
        """:meth:`selection_space`, or before any student and while the teacher's features are
        extracted, the teacher's probabilities of the images encoded so far (their rows in the
        last field; the arrays then hold those rows only)."""
        if self.rounds.active() is None:
            wanted, floor = partial_rows(k)
            part = self.teacher.partial(wanted, self._extracting, progress, floor_rows=floor,
                                        max_wait_s=PARTIAL_MAX_WAIT_S)
            if part is not None:
                name = "teacher-probs" if "features" in needs else "teacher"
                feats = part.probs if "features" in needs else None
                return f"{name}, {PARTIAL_SPACE}", part.probs, feats, 0, part
        return (*self.selection_space(needs, progress), None)

    def _run_strategy(self, strategy: str, k: int, rng: np.random.Generator, progress: ProgressFn | None = None,
                      *, reserved: Sequence[str] = ()
                      ) -> tuple[np.ndarray, np.ndarray, str, str, int, PartialTeacherProbs | None]:
        """Run ``strategy`` over the candidates (training labels seed it), storing nothing.

        Args:
            reserved: Images about to be labeled (the open batch while the next one is
                prepared): they seed the selection as labeled images do and are never picked.
                Class-aware strategies count them under the predicted class.

        Returns:
            ``(pool rows in pick order, per-pick scores, strategy actually used, space, model round,
            the partial teacher probabilities it chose from or None)``. The strategy falls back to
            ``random`` when its space is uninformative. While the teacher's features are being
            extracted (no student yet), only the images encoded so far are candidates and seeds.

        Raises:
            ProjectError: If no unlabeled image is left to query.
        """
        labeled, labeled_y, candidates = self._seed_and_candidates()
        row_of = self.ctx.row_of()
        reserved_rows = np.asarray(sorted({row_of[i] for i in reserved if i in row_of}), dtype=np.int64)
        reserved_rows = reserved_rows[np.isin(reserved_rows, candidates)]
        candidates = candidates[~np.isin(candidates, reserved_rows)]
        if candidates.size == 0:
            raise ProjectError("no image left to query: every image is labeled, skipped, unsure or in the audit set")
        needs = set(STRATEGIES[strategy].needs)
        space, probs, feats, model_round, part = self._space(needs, int(k), progress)
        if part is not None and np.isin(candidates, part.rows).any():
            labeled_y = labeled_y[np.isin(labeled, part.rows)]
            labeled = labeled[np.isin(labeled, part.rows)]
            candidates = candidates[np.isin(candidates, part.rows)]
            reserved_rows = reserved_rows[np.isin(reserved_rows, part.rows)]
        elif part is not None:  # every encoded image has a state already: wait for them all
            space, probs, feats, model_round = self.selection_space(needs, progress)
            part = None
        k = min(int(k), int(candidates.size))
        at = (lambda r: r) if part is None else (lambda r: np.searchsorted(part.rows, r))  # pool row -> array row
        if uninformative(probs if "probs" in needs else feats):
            # e.g. a stand-in teacher before any label gives uniform rows: every distance
            # is 0, so farthest-first would just take pool order. Start at random instead.
            strategy, space, feats = "random", f"{space} (uninformative: random start)", None
        if reserved_rows.size:
            guess = (np.asarray(probs[at(reserved_rows)]).argmax(axis=1) if probs is not None
                     else np.zeros(reserved_rows.size, dtype=np.int64))
            order = np.argsort(np.concatenate([labeled, reserved_rows]), kind="stable")
            labeled = np.concatenate([labeled, reserved_rows])[order]
            labeled_y = np.concatenate([labeled_y, guess.astype(np.int64)])[order]
        subset = np.sort(np.concatenate([labeled, candidates]))
        pos = np.searchsorted(subset, labeled)
        sel = select(
            strategy,
            probs=None if probs is None else probs[at(subset)],
            features=None if feats is None else feats[at(subset)],
            labeled=pos,
            labeled_y=labeled_y,
            k=k,
            rng=rng,
        )
        picked = subset[np.asarray(sel.indices, dtype=np.int64)]
        if np.isin(picked, labeled).any():
            raise ProjectError(f"strategy {strategy!r} picked an already-labeled image")
        scores = np.asarray(sel.scores, dtype=np.float64) if sel.scores is not None else np.full(len(picked), np.nan)
        return picked, scores, strategy, space, model_round, part

    def _rng(self) -> np.random.Generator:
        """The random stream of the next stored batch (seed, number of batches so far)."""
        return np.random.default_rng([self.ctx.seed, len(self.ctx.store.batches())])

    def _keep_partial_note(self, batch_id: int, note: dict | None) -> None:
        """Remember that batch ``batch_id`` was chosen from partly encoded images (``note``)."""
        if note:
            notes = dict(self.ctx.store.get_setting(PARTIAL_KEY) or {})
            notes[str(batch_id)] = dict(note)
            self.ctx.store.set_setting(PARTIAL_KEY, notes)

    def partial_note(self, batch_id: int) -> dict | None:
        """How batch ``batch_id`` was chosen while the teacher's features were extracted, or None.

        Returns:
            ``{"encoded", "total", "rate", "time"}``: images encoded when it was chosen
            (its only candidates), pool size, images encoded per second then, when.
        """
        note = (self.ctx.store.get_setting(PARTIAL_KEY) or {}).get(str(int(batch_id)))
        return dict(note) if isinstance(note, dict) else None

    def _picks(self, picked: np.ndarray, scores: np.ndarray) -> list[tuple[str, float | None]]:
        ids = self.ctx.pool().ids
        return [(ids[int(r)], None if not np.isfinite(s) else float(s)) for r, s in zip(picked, scores)]

    # ---- choosing batches ------------------------------------------------------------------

    def next(self, progress: ProgressFn | None = None, *, k: int | None = None) -> BatchView:
        """Select the next batch with the project's strategy and store it (closing the open one).

        Raises:
            ProjectError: If no unlabeled image is left to query.
        """
        picked, scores, strategy, space, model_round, part = self._run_strategy(
            self.ctx.strategy, int(k or self.ctx.batch_size), self._rng(), progress)
        batch = self.ctx.store.open_batch(model_round, strategy, space, self._picks(picked, scores))
        self._keep_partial_note(batch.id, part.note() if part is not None else None)
        view = self.current()
        assert view is not None
        return view

    def preview(self, strategy: str, k: int | None = None, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The batch ``strategy`` would pick next, in the same space as :meth:`next`; nothing is stored.

        Returns:
            ``(pool rows in pick order, per-pick scores)``.
        """
        picked, scores, *_ = self._run_strategy(strategy, int(k or self.ctx.batch_size), np.random.default_rng(seed))
        return picked, scores

    def prefetch_wanted(self, view: BatchView | None = None) -> bool:
        """Whether the open batch still has open images and no next batch is prepared for it.

        Args:
            view: The open batch when the caller has just read it (None: read it here).
        """
        view = view if view is not None else self.current()
        if view is None or view.complete or view.batch.strategy == REVISIT:
            return False
        ready = self.ctx.store.get_setting(PREFETCH_KEY)
        return not (isinstance(ready, dict) and ready.get("after_batch") == view.batch.id)

    def prefetch_next(self, progress: ProgressFn | None = None) -> bool:
        """Select the batch that follows the open one, before the open one is finished; store it aside.

        The open batch's images seed the selection as if labeled (they will be), with the
        same random stream as :meth:`next`: in the student's space (any round after the
        first) and with a teacher that does not learn from labels, the prepared batch is
        the one :meth:`next` would pick once the open batch is labeled. A teacher that
        refits on labels (stand-in, CLAP) is used as fitted now; class-balanced selection
        counts the open images under their predicted class; an image that ends up skipped
        still counted as a seed. :meth:`promote_prefetched` opens it the moment the open
        batch is complete.

        Returns:
            True when a batch was prepared (False: nothing open, or nothing left to pick).
        """
        view = self.open_view()
        if view is None:
            return False
        try:
            picked, scores, strategy, space, model_round, part = self._run_strategy(
                self.ctx.strategy, self.ctx.batch_size, self._rng(), progress,
                reserved=[it.image_id for it in view.batch.items])
        except ProjectError:
            return False
        self.ctx.store.set_setting(PREFETCH_KEY, {
            "after_batch": view.batch.id,
            "model_round": model_round,
            "strategy": strategy,
            "space": space,
            "picks": [list(p) for p in self._picks(picked, scores)],
            "partial": part.note() if part is not None else None,
        })
        return True

    def promote_prefetched(self) -> BatchView | None:
        """Open the prepared batch when the open one is complete; None when there is none usable.

        A prepared batch is dropped when it belongs to another batch or was chosen by a student
        that is no longer the active one; images that got a state meanwhile are left out.
        """
        store = self.ctx.store
        with self.ctx.lock:
            ready = store.get_setting(PREFETCH_KEY)
            if not isinstance(ready, dict):
                return None
            view = self.current()
            latest = store.batches()[-1].id if view is None and store.batches() else None
            after = view.batch.id if view is not None else latest
            if view is not None and not view.complete:
                return None
            active = self.rounds.active()
            if ready.get("after_batch") != after or ready.get("model_round") != (active.id if active else 0) or (
                    ready.get("partial") and not self._still_partial()):
                store.set_setting(PREFETCH_KEY, None)
                return None
            stored = [(str(i), sc) for i, sc in ready.get("picks", [])]
            open_ids = self._queryable(i for i, _ in stored)
            picks = [(i, sc) for i, sc in stored if i in open_ids]
            store.set_setting(PREFETCH_KEY, None)
            if not picks:
                return None
            batch = store.open_batch(int(ready["model_round"]), str(ready["strategy"]), str(ready["space"]), picks)
            self._keep_partial_note(batch.id, ready.get("partial"))
            return self.current()

    # ---- queues chosen by hand and revisits ------------------------------------------------

    def _open_queue(self, strategy: str, space: str, image_ids: list[str]) -> BatchView:
        active = self.rounds.active()
        self.ctx.store.open_batch(active.id if active else 0, strategy, space, [(i, None) for i in image_ids])
        view = self.current()
        assert view is not None
        return view

    def queue_images(self, image_ids: Sequence[str], *, reason: str = "chosen by hand") -> BatchView:
        """Make ``image_ids`` the open query batch (replacing the open one), e.g. from an Explore selection.

        Only images that can be queried (no current state, not in the audit set) are queued.

        Raises:
            ProjectError: If none of ``image_ids`` can be queried.
        """
        _, candidates = self.candidate_rows()
        ids = self.ctx.pool().ids
        allowed = {ids[int(r)] for r in candidates}
        queued = [i for i in dict.fromkeys(image_ids) if i in allowed]
        if not queued:
            raise ProjectError("none of the chosen images can be queued: they are labeled, skipped, unsure or audit images")
        return self._open_queue(MANUAL, reason, queued)

    def dismiss_queue(self) -> bool:
        """Close the open batch when it is a queue made by hand or a revisit; returns whether one was closed."""
        batch = self.ctx.store.open_batch_current()
        if batch is None or batch.strategy not in QUEUE_STRATEGIES:
            return False
        self.ctx.store.close_batches()
        return True

    def revisit_ids(self) -> list[str]:
        """Images currently skipped or marked unsure (audit images excluded), in pool order."""
        current = self.ctx.store.current()
        audit = set(self.ctx.store.audit_ids())
        return [i for i in self.ctx.pool().ids
                if i not in audit and (ev := current.get(i)) is not None and ev.event in ("skip", "unsure")]

    def queue_revisit(self, image_ids: Sequence[str] | None = None) -> BatchView:
        """Open a batch of skipped/unsure images for another look (default: all of them).

        The batch counts an image as done only when it gets a new decision after the batch
        was opened (a label, or skipped/unsure again).

        Raises:
            ProjectError: If there is no skipped or unsure image among ``image_ids``.
        """
        allowed = self.revisit_ids()
        allowed_set = set(allowed)
        wanted = allowed if image_ids is None else [i for i in dict.fromkeys(image_ids) if i in allowed_set]
        if not wanted:
            raise ProjectError("no skipped or unsure image to revisit")
        return self._open_queue(REVISIT, "skipped and unsure images", wanted)

    # ---- the next batch in the background ----------------------------------------------------

    @staticmethod
    def selection_job(runner: JobRunner) -> JobStatus | None:
        """The running job that is choosing the next batch (``select`` or ``prefetch``), or None."""
        return runner.running("select") or runner.running("prefetch")

    def _still_partial(self) -> bool:
        """Whether the teacher's probabilities still await its pass over the images (errors: assume so)."""
        try:
            return self.teacher.needs_pass()
        except Exception:  # noqa: BLE001 - a teacher that cannot be built is reported by the selection job
            return True

    def start_features(self, runner: JobRunner) -> int | None:
        """Start the teacher's pass over the pool's images in a worker process (``features`` job).

        Only before any student, for a CLIP teacher whose probabilities are not cached
        (:meth:`TeacherProbs.needs_pass`), and when no such job runs; returns its id or None.
        While it runs, batches are chosen from the images it has encoded so far.
        """
        if self.rounds.active() is not None or runner.running(FEATURES_JOB) is not None:
            return None
        try:
            if not self.teacher.needs_pass():
                return None
        except Exception:  # noqa: BLE001 - the selection job runs the teacher and reports what is wrong
            return None
        try:
            return runner.start_process(FEATURES_JOB, {"folder": str(self.ctx.folder)})
        except JobBusy:
            return None

    def start_next(self, runner: JobRunner) -> int | None:
        """Start selecting the next batch in a worker process (``select`` job); returns its id.

        Nothing starts (None) while the open batch has undecided images or a selection job
        runs (a running prefetch stores the next batch: it is waited for, not repeated).
        The per-project lock and the jobs table (one running job per kind) make two
        sessions finishing the same batch select one new batch, not two. The running job
        is checked before the open batch is read: a job that finished in between has
        already stored its batch.
        """
        with _batch_lock(str(self.ctx.folder)):
            if self.selection_job(runner) is not None or self.open_view() is not None:
                return None
            self.start_features(runner)  # the selection then waits for the first encoded images only
            try:
                return runner.start_process("select", {"folder": str(self.ctx.folder)})
            except JobBusy:
                return None

    def start_prefetch(self, runner: JobRunner, view: BatchView | None = None, *, thumb_box: int = 0) -> int | None:
        """Prepare the next batch in a worker process (``prefetch`` job) while ``view`` is labeled.

        Once per open batch: None when :meth:`prefetch_wanted` says no or a selection job runs.
        With ``thumb_box`` > 0 the worker also renders the prepared batch's thumbnails at that
        size into the project's on-disk cache (:func:`activekd_core.project.thumbnails.prerender`).
        """
        if not self.prefetch_wanted(view) or self.selection_job(runner) is not None:
            return None
        try:
            return runner.start_process("prefetch", {"folder": str(self.ctx.folder), "thumb_box": int(thumb_box)})
        except JobBusy:
            return None

    def prefetched_ids(self) -> list[str]:
        """The images of the batch prepared ahead (pick order), or [] when none is stored."""
        ready = self.ctx.store.get_setting(PREFETCH_KEY)
        if not isinstance(ready, dict):
            return []
        return [str(p[0]) for p in ready.get("picks", []) if isinstance(p, (list, tuple)) and p]

    def select_for_job(self, progress: ProgressFn | None = None) -> int:
        """The work of a ``select`` job: the id of the batch to label next, selecting one if needed.

        When another process has opened a batch that still has open images meanwhile, that
        batch is kept (nothing is selected twice); a prepared batch is promoted before a
        new one is selected.
        """
        view = self.open_view()
        if view is not None:
            return view.batch.id
        promoted = self.promote_prefetched()
        if promoted is not None:
            return promoted.batch.id
        return self.next(progress).batch.id
