"""The :class:`Project` facade, which only delegates (each method is documented in full where it
delegates to), and the registry of the project's job kinds (:data:`JOB_KINDS`) with their entries."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from activekd_core import export as export_mod
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.jobs import JobKinds, JobRunner, JobStatus
from activekd_core.progress import ProgressFn
from activekd_core.project import audit_set
from activekd_core.project import recipe as recipe_mod
from activekd_core.project import thumbnails
from activekd_core.project.batches import Batches, BatchView
from activekd_core.project.context import DEFAULT_STRATEGY, ProjectContext
from activekd_core.project.create import create_store, open_store
from activekd_core.project.exports import Exports
from activekd_core.project.labels import Labels
from activekd_core.project.rare_classes import RareClasses
from activekd_core.project.rounds import Rounds, round_summary
from activekd_core.project.teacher_probs import FEATURES_JOB, TeacherProbs
from activekd_core.store import LabelEvent, RoundRecord, Store


class Project(ProjectContext):
    """One labeling project; see :meth:`create`, :meth:`open` and :func:`activekd_core.project.open_demo`.

    Folder, store, settings (``config``), image pool and the label rules come from
    :class:`ProjectContext`, which a project is; everything else is delegated to one part
    per concern (teacher_probs, rounds, batches, labels, exports, rare_classes, audit_set).
    """

    def __init__(self, folder: Path, store: Store) -> None:
        super().__init__(folder, store)
        self._teacher = TeacherProbs(self)
        self._rounds = Rounds(self, self._teacher)
        self._batches = Batches(self, self._teacher, self._rounds)
        self._labels = Labels(self)
        self._exports = Exports(self, self._teacher, self._rounds)
        self._rare = RareClasses(self, self._teacher, self._rounds, self._labels)

    @classmethod
    def create(cls, folder: Path | str, image_root: Path | str, classes: Sequence[tuple[str, str]],
               teacher_spec: dict[str, Any], student_arch: str = "small_cnn", batch_size: int = 10,
               strategy: str = DEFAULT_STRATEGY, *, seed: int = 0, train: dict[str, Any] | None = None,
               name: str | None = None, recipe: DisplayRecipe | None = None) -> Project:
        """Validate everything, then create the folder and database (see :func:`create.create_store`)."""
        folder, store, pool = create_store(folder, image_root, classes, teacher_spec, student_arch, batch_size,
                                           strategy, seed=seed, train=train, name=name, recipe=recipe)
        project = cls(folder, store)
        project._pool = pool  # scanned a moment ago: no second listing
        return project

    @classmethod
    def open(cls, folder: Path | str) -> Project:
        """Open an existing project; rounds left 'running' by a process that is gone are marked interrupted."""
        folder, store = open_store(folder)
        try:
            project = cls(folder, store)
        except BaseException:
            store.close()
            raise
        project.recover()
        return project

    def close(self) -> None:
        """Close the database connection."""
        self.store.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recover(self) -> int:
        """Clean up after a training process that died; returns the rounds marked interrupted."""
        return self._rounds.recover()

    def update_config(self, **changes: Any) -> None:
        """Change project settings (batch_size, strategy, train, teacher_spec, name), validated."""
        super().update_config(**changes)
        if "teacher_spec" in changes:
            self._teacher.reset()

    def set_display_recipe(self, recipe: DisplayRecipe | dict[str, Any], *,
                           note: dict[str, Any] | None = None) -> DisplayRecipe:
        """Make ``recipe`` the project's display recipe (validated, logged, caches re-keyed); returns it as stored."""
        return recipe_mod.set_display_recipe(self, self._teacher, recipe, note=note)

    def display_recipe_history(self) -> list[dict[str, Any]]:
        """Every display recipe change, oldest first (``time``, ``before``, ``after`` and the note's fields)."""
        return recipe_mod.recipe_history(self)

    def label(self, image_id: str, class_name: str, *, annotator: str = "expert", session: str | None = None) -> int:
        """Label an image (committed before returning); returns the event id."""
        return self._labels.label(image_id, class_name, annotator=annotator, session=session)

    def skip(self, image_id: str, *, annotator: str = "expert", session: str | None = None) -> int:
        """Skip an image (it leaves the candidate pool until undone)."""
        return self._labels.skip(image_id, annotator=annotator, session=session)

    def unsure(self, image_id: str, *, annotator: str = "expert", session: str | None = None) -> int:
        """Mark an image as unsure (kept out of training and selection until changed)."""
        return self._labels.unsure(image_id, annotator=annotator, session=session)

    def undo(self, *, annotator: str = "expert", image_id: str | None = None, session: str | None = None,
             image_ids: Sequence[str] | None = None) -> LabelEvent | None:
        """Undo the annotator's latest event (see :mod:`activekd_core.store`); ``image_ids`` limits it to those."""
        return self.store.undo(annotator, image_id, session=session, image_ids=image_ids)

    def bulk_label(self, image_ids: Sequence[str], class_name: str, *, annotator: str = "expert",
                   session: str | None = None) -> int:
        """Label many images as one class in one transaction; returns the count."""
        return self._labels.bulk_label(image_ids, class_name, annotator=annotator, session=session)

    def bulk_clear(self, image_ids: Sequence[str], *, annotator: str = "expert", session: str | None = None) -> int:
        """Return images to unlabeled (every current decision undone; history kept); returns the count changed."""
        return self.store.clear(image_ids, annotator=annotator, session=session)

    def counts(self) -> dict[str, Any]:
        """Overall progress: per-class label counts, skipped, unsure, unlabeled, audit (cached per event)."""
        return self._labels.counts()

    def import_labels_csv(self, path: Path | str, *, annotator: str = "import") -> Any:
        """Import labels from a CSV; returns the :class:`activekd_core.labels_import.LabelImport`."""
        return self._labels.import_csv(path, annotator=annotator)

    def import_labels_subfolders(self, *, annotator: str = "import") -> tuple[int, dict[str, int]]:
        """Label images by their first folder name; returns ``(imported, {unknown folder: count})``."""
        return self._labels.import_subfolders(annotator=annotator)

    def import_label_studio(self, path: Path | str, *, annotator: str = "label-studio") -> Any:
        """Import labels from a Label Studio JSON export; returns the ``LabelImport``."""
        return self._labels.import_label_studio(path, annotator=annotator)

    def review_choices(self) -> tuple[list[str], list[int]]:
        """The annotators and rounds that current decisions carry (the Review page's filter choices)."""
        return self._labels.review_choices()

    def image_history(self, image_id: str) -> list[LabelEvent]:
        """Every event of one image, oldest first."""
        return self._labels.image_history(image_id)

    def teacher_spec(self) -> dict[str, Any]:
        """The teacher spec with the project's classes (and prompts for CLIP teachers) filled in."""
        return self._teacher.spec()

    def teacher(self) -> Any:
        """The teacher object (built once per Project)."""
        return self._teacher.teacher()

    @property
    def last_teacher_file(self) -> Path | None:
        """The cache file of the latest :meth:`teacher_probs` call."""
        return self._teacher.last_file

    def teacher_cache_key(self, labeled: np.ndarray | None = None, y: np.ndarray | None = None) -> str:
        """Cache key of the teacher's probabilities: provenance + pool (+ labels for fittable teachers)."""
        return self._teacher.cache_key(labeled, y)

    def teacher_probs(self, progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                      *, fit: bool = True) -> np.ndarray:
        """Teacher probabilities ``(N, C)`` for the pool (a read-only memory map of the disk cache)."""
        return self._teacher.probs(progress, cancel, fit=fit)

    def cached_teacher_probs(self) -> np.ndarray | None:
        """The teacher's most recent cached probabilities for this pool, or None; never computes."""
        return self._teacher.cached()

    def candidate_teacher_probs(self, class_prompts: dict[str, list[str]], templates: str | list[str], *,
                                fit: bool = True) -> np.ndarray:
        """Teacher probabilities with other prompts (a text pass only); the project's teacher is unchanged."""
        return self._teacher.candidate_probs(class_prompts, templates, fit=fit)

    def adopt_teacher_prompts(self, class_prompts: dict[str, list[str]], templates: str | list[str], *,
                              note: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make new prompts the project's teacher and log the change; returns the new spec."""
        return self._teacher.adopt_prompts(class_prompts, templates, note=note)

    def change_teacher(self, spec: dict[str, Any], *, note: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make ``spec`` the project's teacher (checked first) and keep the change in the history."""
        return self._teacher.change_teacher(spec, note=note)

    def teacher_history(self) -> list[dict[str, Any]]:
        """Every kept teacher change, oldest first."""
        return self._teacher.history()

    def active_round(self) -> RoundRecord | None:
        """The newest successful round (its student is the active model)."""
        return self._rounds.active()

    def student_outputs(self, round_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The validated stored ``(probs, features)`` of a round's student (recomputed when damaged)."""
        return self._rounds.student_outputs(round_id)

    def active_student_probs(self) -> np.ndarray | None:
        """The active student's probabilities for the pool (a read-only memory map), or None."""
        return self._rounds.active_student_probs()

    def checkpoint_path(self, round_id: int | None = None) -> Path | None:
        """Absolute checkpoint of a round (default: the active one), or None."""
        return self._rounds.checkpoint_path(round_id)

    def load_student(self, round_id: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Load the active (or a given round's) student, checking architecture and class count."""
        return self._rounds.load_student(round_id)

    def train_config(self) -> Any:
        """The :class:`activekd_core.training.TrainConfig` of the next round."""
        return self._rounds.train_config()

    def round_estimate(self, measure: bool = False) -> Any:
        """Steps and expected duration of the next round (:mod:`activekd_core.round_estimate`)."""
        return self._rounds.round_estimate(measure)

    def undecodable_images(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of the images the active round left out as undecodable; never queried."""
        return self._rounds.undecodable_images()

    def new_labels_since_model(self) -> int:
        """Training labels added since the active student was trained (all of them before any round)."""
        return self._rounds.new_labels_since_model()

    def retrain(self, progress: ProgressFn | None = None, cancel: threading.Event | None = None, *,
                keep_batch_in_progress: bool = False) -> RoundRecord:
        """Train one round (:meth:`Rounds.retrain`), then close the batch it outdates (:meth:`Batches.close_after_round`)."""
        round_id = self._rounds.retrain(progress, cancel)
        self._batches.close_after_round(keep_batch_in_progress)
        rec = self.store.round(round_id)
        assert rec is not None
        return rec

    def start_retrain(self, *, process: bool = True, env: dict[str, str] | None = None,
                      keep_batch_in_progress: bool = False) -> int:
        """Start :meth:`retrain` as a job (worker process or thread); returns its id; JobBusy if one runs."""
        runner = self.jobs()
        if process:
            return runner.start_process("train", {"folder": str(self.folder),
                                                  "keep_batch_in_progress": keep_batch_in_progress}, env=env)
        return runner.start_thread("train", lambda progress, cancel: round_summary(
            self.retrain(progress, cancel, keep_batch_in_progress=keep_batch_in_progress)))

    def jobs(self) -> JobRunner:
        """A :class:`activekd_core.jobs.JobRunner` for this project's job kinds (:data:`JOB_KINDS`)."""
        return JobRunner(self.store, log_dir=self.path("logs"), kinds=JOB_KINDS)

    def current_batch(self) -> BatchView | None:
        """The open batch with each image's current state, or None if there is none."""
        return self._batches.current()

    def batch_view(self, batch_id: int) -> BatchView | None:
        """A stored batch (open or closed) with each image's current state, or None if unknown."""
        return self._batches.view(batch_id)

    def ensure_batch(self, progress: ProgressFn | None = None) -> BatchView:
        """The open batch, selecting a new one when none is open or the open one is complete."""
        return self._batches.ensure(progress)

    def candidate_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(labeled rows, candidate rows)``: training labels seed selection; candidates can be queried."""
        return self._batches.candidate_rows()

    def selection_space(self, needs: set[str], progress: ProgressFn | None = None
                        ) -> tuple[str, np.ndarray | None, np.ndarray | None, int]:
        """The arrays a strategy runs on: ``(space name, probs, features, model round)``."""
        return self._batches.selection_space(needs, progress)

    def next_batch(self, progress: ProgressFn | None = None, *, k: int | None = None) -> BatchView:
        """Select the next batch with the project's strategy and store it (closing the open one)."""
        return self._batches.next(progress, k=k)

    def preview_batch(self, strategy: str, k: int | None = None, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The ``(pool rows, scores)`` ``strategy`` would pick next, in the same space; nothing is stored."""
        return self._batches.preview(strategy, k, seed=seed)

    def prefetch_wanted(self, view: BatchView | None = None) -> bool:
        """Whether the open batch still has open images and no next batch is prepared for it."""
        return self._batches.prefetch_wanted(view)

    def prefetch_next_batch(self, progress: ProgressFn | None = None) -> bool:
        """Select the batch that follows the open one and store it aside; True when one was prepared."""
        return self._batches.prefetch_next(progress)

    def promote_prefetched(self) -> BatchView | None:
        """Open the prepared batch when the open one is complete; None when there is none usable."""
        return self._batches.promote_prefetched()

    def queue_images(self, image_ids: Sequence[str], *, reason: str = "chosen by hand") -> BatchView:
        """Make the queryable ones of ``image_ids`` the open query batch (replacing the open one)."""
        return self._batches.queue_images(image_ids, reason=reason)

    def dismiss_queue(self) -> bool:
        """Close the open batch when it is a queue made by hand or a revisit; returns whether one was closed."""
        return self._batches.dismiss_queue()

    def revisit_ids(self) -> list[str]:
        """Images currently skipped or marked unsure (audit images excluded), in pool order."""
        return self._batches.revisit_ids()

    def queue_revisit(self, image_ids: Sequence[str] | None = None) -> BatchView:
        """Open a batch of skipped/unsure images for another look (default: all of them)."""
        return self._batches.queue_revisit(image_ids)

    def batch_job(self) -> JobStatus | None:
        """The running job that is choosing the next batch (select or prefetch), or None."""
        return self._batches.selection_job(self.jobs())

    def start_next_batch(self) -> int | None:
        """Start selecting the next batch in a worker process, unless a batch is open or a selection runs."""
        return self._batches.start_next(self.jobs())

    def start_teacher_features(self) -> int | None:
        """Start the teacher's pass over the images in a worker process (before any student, if needed)."""
        return self._batches.start_features(self.jobs())

    def teacher_features_job(self) -> JobStatus | None:
        """The running job of the teacher's pass over the images (``features``), or None."""
        return self.jobs().running(FEATURES_JOB)

    def batch_partial_note(self, batch_id: int) -> dict[str, Any] | None:
        """How a batch was chosen from partly encoded images (``encoded``, ``total``, ``rate``), or None."""
        return self._batches.partial_note(batch_id)

    def start_prefetch(self, view: BatchView | None = None, *, thumb_box: int = 0) -> int | None:
        """Prepare the batch after the open one (and its ``thumb_box`` thumbnails) in a worker process
        (once per batch); returns the job id."""
        return self._batches.start_prefetch(self.jobs(), view, thumb_box=thumb_box)

    def create_audit_set(self, size: int | None = None, *, seed: int | None = None) -> list[str]:
        """Sample the audit set uniformly from images that have no state and are not in the open batch."""
        return audit_set.create_audit_set(self, size, seed=seed)

    def audit_chunk(self) -> tuple[int, list[str]]:
        """The audit images to label now: ``(chunk number, ids)``, or ``(-1, [])`` when all are labeled."""
        return audit_set.audit_chunk(self)

    def audit_progress(self) -> tuple[int, int]:
        """``(labeled audit images, audit set size)``."""
        return audit_set.audit_progress(self)

    def audit_report(self, *, include_teacher: bool = True) -> list[Any]:
        """Accuracy ± Wilson interval of the teacher and every round's student on the labeled audit images."""
        return audit_set.audit_report(self, self._teacher, self._rounds, include_teacher=include_teacher)

    def collapse_warnings(self) -> list[Any]:
        """Classes the teacher or the active student predicts for (almost) nothing or everything."""
        return self._rare.collapse_warnings()

    def labels_per_round(self) -> list[dict[str, Any]]:
        """Training labels per class at each successful round, then now."""
        return self._rare.labels_per_round()

    def export_labels(self, fmt: str = "csv", dest: Path | str | None = None, **kw: Any) -> export_mod.ExportReport:
        """Export current labels as ``csv``, ``json``, ``jsonl`` or ``parquet`` (default: ``exports/labels.<fmt>``)."""
        return self._exports.export_labels(fmt, dest, **kw)

    def export_imagefolder(self, dest: Path | str | None = None, *, mode: str = "copy",
                           include_audit: bool = True) -> export_mod.ExportReport:
        """Export labeled images as an ImageFolder tree (default: ``exports/imagefolder``)."""
        return self._exports.export_imagefolder(dest, mode=mode, include_audit=include_audit)

    def display_png(self, image_id: str) -> bytes | None:
        """PNG of the display pixels of a DICOM file, frame, scientific TIFF or chip; None for a plain image."""
        return self._exports.display_png(image_id)

    def image_bytes(self, image_id: str) -> bytes:
        """The bytes of one pool image as an image file, opened inside the image root."""
        return self._exports.image_bytes(image_id)

    def export_student(self, dest: Path | str | None = None, *, round_id: int | None = None) -> export_mod.ExportReport:
        """Export the active (or a given round's) student: safetensors + TorchScript (+ ONNX)."""
        return self._exports.export_student(dest, round_id=round_id)

    def export_hf_dataset(self, dest: Path | str | None = None, *, include_audit: bool = True
                          ) -> export_mod.ExportReport:
        """The labeled images as a Hugging Face ``datasets`` dataset."""
        return self._exports.export_hf_dataset(dest, include_audit=include_audit)

    def prediction_table(self) -> Any:
        """Teacher and student predictions and the human state of every image (a DataFrame); never computes."""
        return self._exports.prediction_table()

    def export_predictions(self, fmt: str = "csv", dest: Path | str | None = None) -> export_mod.ExportReport:
        """Write :meth:`prediction_table` as ``csv``, ``jsonl`` or ``parquet``."""
        return self._exports.export_predictions(fmt, dest)

    def export_label_studio(self, dest: Path | str | None = None, *, image_url: str | None = None,
                            document_root: Path | str | None = None) -> export_mod.ExportReport:
        """Label Studio tasks for every image with pre-annotations, plus the labeling config."""
        return self._exports.export_label_studio(dest, image_url=image_url, document_root=document_root)

    def review(self, flt: Any = None, *, page: int = 0, per_page: int = 24) -> Any:
        """One page of the pool, filtered and sorted (:func:`activekd_core.review_state.review_page`)."""
        return self._exports.review(flt, page=page, per_page=per_page)


# ---- the project's background jobs -----------------------------------------------------------------


def retrain_job(*, progress: ProgressFn, cancel: threading.Event, folder: str,
                keep_batch_in_progress: bool = False) -> dict[str, Any]:
    """Job ``train``: open the project and run one training round."""
    with Project.open(folder) as project:
        return round_summary(project.retrain(progress, cancel, keep_batch_in_progress=keep_batch_in_progress))


def teacher_features_job(*, progress: ProgressFn, cancel: threading.Event, folder: str) -> dict[str, Any]:
    """Job ``features``: the teacher's pass over the pool (image features, resumable), then its probabilities.

    Batches chosen meanwhile use the images encoded so far (``Batches.partial_note``).
    """
    with Project.open(folder) as project:
        probs = project.teacher_probs(progress, cancel)
        return {"rows": int(probs.shape[0])}


def select_batch_job(*, progress: ProgressFn, cancel: threading.Event, folder: str) -> int:
    """Job ``select`` (a worker process: the server's interpreter stays free); see ``Batches.select_for_job``."""
    with Project.open(folder) as project:
        return project._batches.select_for_job(progress)


def prefetch_batch_job(*, progress: ProgressFn, cancel: threading.Event, folder: str, thumb_box: int = 0) -> bool:
    """Job ``prefetch``: prepare the next batch (``Batches.prefetch_next``), then render its thumbnails.

    Runs at the server's own CPU priority (not lowered): it has the time it takes to label
    one batch to finish, and the grid waits for it when it is late. With ``thumb_box`` > 0
    the prepared batch's thumbnails go into the project's on-disk cache
    (:func:`activekd_core.project.thumbnails.prerender`), so the rerun that opens the batch
    reads ten files instead of decoding and encoding ten images; a failure there only
    leaves the page to render them itself.
    """
    with Project.open(folder) as project:
        prepared = project.prefetch_wanted() and project.prefetch_next_batch(progress)
        if prepared and thumb_box > 0:
            progress(0, 1, "rendering the next batch's thumbnails")
            try:
                thumbnails.prerender(project, project._batches.prefetched_ids(), int(thumb_box))
            except Exception as exc:  # noqa: BLE001 - the batch is prepared; the page renders what is missing
                progress(1, 1, f"thumbnails not rendered ahead: {exc}")
        return prepared


JOB_KINDS = JobKinds(worker=f"{__package__}.worker", entries={
    "train": retrain_job,
    "select": select_batch_job,
    "prefetch": prefetch_batch_job,
    FEATURES_JOB: teacher_features_job,
})
"""The one registry of the project's job kinds (the worker process resolves ``--kind`` through it)."""
