"""A labeling project: a folder holding the store, caches, checkpoints and exports.

Layout of a project folder::

    project.db                      the store (see activekd_core.store)
    cache/teacher/probs_<key>.npy   teacher probabilities, key = teacher provenance + pool
                                    fingerprint (+ the labels it was fitted on, for
                                    teachers that learn from labels)
    cache/pixels/                   decoded pool pixels (activekd_core.pixel_cache)
    cache/features/                 CLIP image features (teachers' feature cache)
    cache/student/round_NNNN_*.npy  each round's student probabilities and features
    checkpoints/round_NNNN.safetensors
    exports/, logs/

Rounds. Round ``k`` trains a fresh student on every label present when it starts
(audit images excluded) and, when it succeeds, becomes the active model; batches are
then queried with it. Labels made while round ``k``'s model was active carry
``round = k`` (0 = teacher only). A round that fails, is cancelled or whose process is
killed never becomes active: its status says so, its files are removed (or were
never renamed into place), the labels and the previous model stay as they were.

Selection space. A strategy that needs probabilities gets the active student's
combined probabilities (PCoreSet's space), or the teacher's before any student exists;
one that needs features gets the student's pooled features, or — before any student —
the teacher's probabilities as a stand-in feature space (recorded as the batch's
``space``). Images that are labeled seed the selection; skipped/unsure images and the
audit set are removed from the candidate pool (they are never queried again unless
their state is undone).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from activekd_core import export as export_mod
from activekd_core.atomic import atomic_write_text
from activekd_core.display_recipe import DisplayRecipe, RecipeError
from activekd_core.images import ImagePool, load_image, open_image_file, scan_images
from activekd_core.store import (
    ImageRecord,
    LabelEvent,
    QueryBatch,
    RoundRecord,
    Store,
    StoreError,
    utc_now,
    validate_class_names,
)

if TYPE_CHECKING:  # audit imports bias (pandas, scipy.stats): imported where used, not with the project
    from activekd_core.audit import AuditScore

DB_NAME = "project.db"
PROJECT_FORMAT = 1
DEFAULT_STRATEGY = "pcoreset"
TEACHER_HISTORY_SETTING = "teacher_history"
DEMO_BATCH_SIZE = {"textile": 10, "digits": 20}
# A round refuses to train when more than this share of the pool cannot be decoded (or any
# labeled image cannot): a moved or emptied image folder must not train on blank pixels.
MAX_UNDECODABLE_SHARE = 0.02
UNDECODABLE_LISTED = 50  # images named in a round record or an error message
ProgressFn = Callable[[int, int, str], None]


class ProjectError(Exception):
    """A project operation was refused; the message says what is wrong and how to fix it."""


@dataclass
class ScanReport:
    """What scanning the image folder found.

    Attributes:
        root: The image root.
        n_images: Usable images.
        skipped: ``(id, reason)`` for files that look like images but cannot be used.
    """

    root: Path
    n_images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


REVISIT = "revisit"  # strategy name of a batch of skipped/unsure images sent back for another look
MANUAL = "manual"  # strategy name of a queue of images chosen by hand (Explore, Review)
QUEUE_STRATEGIES = (MANUAL, REVISIT)  # batches a retrain keeps open
PREFETCH_KEY = "prefetched_batch"
AUTO_RETRAIN_KEY = "auto_retrain"  # settings key: retrain in the background after every batch
CLASS_KEYS_KEY = "class_keys"  # settings key of the project's own label keys
VIEW_PREFS_PREFIX = "view_prefs:"  # settings key prefix of one annotator's Label page setup  # settings key of the batch prepared while the open one is labeled


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


# ---- hooks to sibling modules (imported lazily: torch/open_clip only when needed) ----------


def _make_teacher(spec: dict[str, Any], cache_dir: Path | None = None) -> Any:
    from activekd_core.teachers import make_teacher

    return make_teacher(spec, cache_dir=cache_dir)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (optional teacher capabilities)."""
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _strategy_needs(name: str) -> set[str]:
    from activekd_core.selection import STRATEGIES

    return set(STRATEGIES[name].needs)


def _strategy_names() -> list[str] | None:
    try:
        from activekd_core.selection import STRATEGIES
    except ImportError:
        return None
    return list(STRATEGIES)


def _select(name: str, **kw: Any) -> Any:
    from activekd_core.selection import select

    return select(name, **kw)


def _arches() -> tuple[str, ...]:
    from activekd_core.student import ARCHES

    return tuple(ARCHES)


# ---- the project ---------------------------------------------------------------------------


class Project:
    """One labeling project. Use :meth:`create`, :meth:`open` or :func:`open_demo`.

    Attributes:
        folder: The project folder.
        store: Its database.
        config: The project settings (image root, teacher spec, student, batch size,
            strategy, seed, training overrides).
    """

    def __init__(self, folder: Path, store: Store) -> None:
        self.folder = folder
        self.store = store
        self.config: dict[str, Any] = store.get_setting("project") or {}
        if not self.config:
            raise ProjectError(f"{store.path}: the database has no project settings")
        self.image_root = Path(self.config["image_root"])
        self._teacher: Any = None
        self._candidate_teacher: tuple[str, Any] | None = None
        self._teacher_base: dict[str, Any] | None = None
        self._lock = threading.RLock()
        self._pool: ImagePool | None = None
        self.last_teacher_file: Path | None = None
        self._counts_cache: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self._valid_outputs: dict[int, tuple[Any, ...]] = {}  # round id -> file identity of checked outputs
        self._pred_counts_cache: tuple[tuple[Any, ...], list[tuple[str, np.ndarray]]] | None = None

    # ---- creating and opening ----------------------------------------------------------

    @classmethod
    def create(
        cls,
        folder: Path | str,
        image_root: Path | str,
        classes: Sequence[tuple[str, str]],
        teacher_spec: dict[str, Any],
        student_arch: str = "small_cnn",
        batch_size: int = 10,
        strategy: str = DEFAULT_STRATEGY,
        *,
        seed: int = 0,
        train: dict[str, Any] | None = None,
        name: str | None = None,
        recipe: DisplayRecipe | None = None,
    ) -> Project:
        """Validate everything, then create the project folder and database.

        Nothing is written when a check fails.

        Args:
            folder: Project folder (new, or existing without a ``project.db``).
            image_root: Folder of images (scanned recursively).
            classes: ``(name, prompt)`` pairs in display order; at least two, no blank or
                duplicate (case-insensitive) names.
            teacher_spec: Teacher settings for ``teachers.make_teacher`` (needs ``kind``);
                the project's ``classes`` and prompts are added when missing.
            student_arch: Student backbone (``small_cnn``, ``resnet18``, ``mobilenet_v3_small``).
            batch_size: Images per query batch.
            strategy: Selection strategy name (``pcoreset`` by default).
            seed: Seed for selection, audit sampling and training.
            train: Overrides of :class:`activekd_core.training.TrainConfig` fields.
            name: Display name (default: the folder name).
            recipe: How DICOM and scientific TIFF images become 8-bit RGB (window, frames,
                bands, stretch, chips); stored in the project settings and used by the
                scan, the pages, the teacher and the student alike. Default:
                ``DisplayRecipe()``.

        Returns:
            The open project.

        Raises:
            ProjectError: With every configuration problem found.
        """
        folder = Path(folder).expanduser()
        problems: list[str] = []
        if (folder / DB_NAME).exists():
            problems.append(f"{folder}: already holds a project ({DB_NAME}); open it instead")
        elif folder.exists() and not folder.is_dir():
            problems.append(f"{folder}: exists and is not a folder")
        try:
            names = validate_class_names([c[0] if isinstance(c, (tuple, list)) else c for c in classes])
        except StoreError as exc:
            problems.append(f"classes: {exc}")
            names = []
        if not isinstance(teacher_spec, dict) or not isinstance(teacher_spec.get("kind"), str):
            problems.append(f"teacher: the spec must be a dict with a 'kind', got {teacher_spec!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            problems.append(f"batch size must be a whole number >= 1, got {batch_size!r}")
        try:
            arches = _arches()
            if student_arch not in arches:
                problems.append(f"student backbone {student_arch!r} unknown; choose one of {list(arches)}")
        except ImportError:
            pass
        known = _strategy_names()
        if known is not None and strategy not in known:
            problems.append(f"strategy {strategy!r} unknown; choose one of {known}")
        train = dict(train or {})
        _check_train_overrides(train, problems)
        _check_student_weights(student_arch, train, problems)
        if recipe is None:
            recipe = DisplayRecipe()
        elif not isinstance(recipe, DisplayRecipe):
            problems.append(f"display recipe must be a DisplayRecipe, got {type(recipe).__name__}")
            recipe = DisplayRecipe()
        root = Path(image_root).expanduser()
        pool = None
        if not root.exists():
            problems.append(f"image folder not found: {root}")
        elif not root.is_dir():
            problems.append(f"image folder is not a folder: {root}")
        else:
            pool = scan_images(root, recipe=recipe)
            if len(pool) == 0:
                found = f"{len(pool.problems)} file(s) skipped, e.g. " + "; ".join(
                    f"{p.id}: {p.reason}" for p in pool.problems[:3]) if pool.problems else "no image files at all"
                problems.append(f"image folder has no usable images: {root} ({found})")
            elif _inside(root.resolve(), folder.resolve()):
                problems.append(f"the project folder {folder} must not lie inside the image folder {root} "
                                "(its caches and exports would be scanned as images)")
        prompts = [str(c[1]) if isinstance(c, (tuple, list)) and len(c) > 1 and c[1] else "" for c in classes]
        if not problems and pool is not None:
            problem = _check_teacher(teacher_spec, names, prompts, pool)
            if problem:
                problems.append(f"teacher: {problem}")
        if problems:
            raise ProjectError("cannot create project: " + "; ".join(problems))
        assert pool is not None

        created_folder = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        # Built under a temporary name and renamed when complete (after closing, so the WAL
        # is checkpointed): a crash mid-creation never leaves a half-made project.db.
        db = folder / (DB_NAME + ".creating")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(db) + suffix).unlink(missing_ok=True)  # leftovers of an interrupted create
        store = None
        try:
            store = Store.create(db)
            store.add_images(_image_records(pool))
            store.set_classes(list(zip(names, prompts)))
            store.set_setting(
                "project",
                {
                    "format": PROJECT_FORMAT,
                    "name": name or folder.name,
                    "image_root": str(pool.root),
                    "teacher_spec": teacher_spec,
                    "student_arch": student_arch,
                    "batch_size": batch_size,
                    "strategy": strategy,
                    "seed": int(seed),
                    "train": train,
                    "display_recipe": recipe.to_dict(),
                    "created": utc_now(),
                },
            )
            store.set_setting("scan", {"root": str(pool.root), "n_images": len(pool), "n_skipped": len(pool.problems),
                                       "fingerprint": pool.fingerprint(), "time": utc_now()})
            store.close()
            store = None
            os.replace(db, folder / DB_NAME)
            _fsync_dir(folder)
            store = Store.open(folder / DB_NAME)
        except BaseException:
            if store is not None:
                store.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(db) + suffix).unlink(missing_ok=True)
            if created_folder:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        project = cls(folder, store)
        project._pool = pool
        return project

    @classmethod
    def open(cls, folder: Path | str) -> Project:
        """Open an existing project (checking its schema version first).

        Rounds left 'running' by a process that no longer runs are marked interrupted.

        Raises:
            ProjectError: If the folder holds no project.
            activekd_core.store.SchemaVersionError: If it was written by a newer version.
        """
        folder = Path(folder).expanduser()
        db = folder / DB_NAME
        if not db.is_file():
            raise ProjectError(f"{folder}: no project here ({DB_NAME} not found)")
        store = Store.open(db)
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
        """Clean up after a training process that died: returns the rounds marked interrupted.

        Runs on open and whenever a page asks (cheap when nothing is running). A round left
        'running' is marked interrupted when the process that started it is gone (killed,
        out of memory, or a failure that could not even record itself, e.g. a full disk),
        or, for a round of this process, when its ``retrain`` call has ended; rounds from
        before owners were recorded are marked when no training job is alive. When no round
        and no training job is live any more, temporary files of unfinished atomic writes
        (``*.tmp`` in ``checkpoints/`` and ``cache/student/``) are removed. Finished files
        are never touched.
        """
        from activekd_core.jobs import JobRunner

        job_alive = JobRunner(self.store).running("train") is not None
        n = self.store.mark_stale_rounds(alive=lambda rec: _round_alive(self.store, rec, job_alive))
        if job_alive or any(r.status == "running" for r in self.store.rounds()):
            return n
        for sub in (("checkpoints",), ("cache", "student")):
            folder = self.path(*sub)
            if folder.is_dir():
                for tmp in folder.glob("*.tmp"):
                    tmp.unlink(missing_ok=True)
        return n

    # ---- basic facts -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Display name."""
        return str(self.config.get("name") or self.folder.name)

    @property
    def classes(self) -> list[str]:
        """Class names in display order (column order of every probability matrix)."""
        return self.store.class_names()

    @property
    def strategy(self) -> str:
        """The selection strategy's name."""
        return str(self.config["strategy"])

    @property
    def batch_size(self) -> int:
        """Images per query batch."""
        return int(self.config["batch_size"])

    @property
    def recipe(self) -> DisplayRecipe:
        """The display recipe (projects made before recipes existed get the default).

        Raises:
            ProjectError: If the stored recipe is not valid (a damaged settings row).
        """
        data = self.config.get("display_recipe")
        if data is None:
            return DisplayRecipe()
        try:
            return DisplayRecipe.from_dict(data)
        except RecipeError as exc:
            raise ProjectError(f"the project's display recipe is invalid: {exc}") from exc

    def load_image(self, image_id: str, *, draft_size: int | None = None) -> Image.Image:
        """One pool image (a file, a DICOM frame or a raster chip) as the RGB everyone sees.

        Opened confined to the image root and decoded with the project's recipe.

        Raises:
            ImageLoadError: With the path and the reason.
        """
        pool = self.pool()
        return load_image(pool.root, image_id, draft_size=draft_size, recipe=pool.recipe, ref=pool.item_ref(image_id))

    def is_plain_image(self, image_id: str) -> bool:
        """Whether a pool image is a whole file shown as it is (not DICOM, a frame, a chip or a
        scientific TIFF); see :func:`activekd_core.images.is_plain_image`.

        Raises:
            ImageLoadError: When the file cannot be opened or its header is refused.
        """
        from activekd_core.images import is_plain_image

        pool = self.pool()
        return is_plain_image(pool.root, image_id, recipe=pool.recipe, ref=pool.item_ref(image_id))

    def image_file_id(self, image_id: str) -> str:
        """The id of the file that holds a pool image (item ids name a frame or chip of it)."""
        return self.pool().item_ref(image_id).file_id

    def path(self, *parts: str) -> Path:
        """A path inside the project folder."""
        return self.folder.joinpath(*parts)

    def update_config(self, **changes: Any) -> None:
        """Change project settings (batch_size, strategy, train, teacher_spec, name), validated."""
        allowed = {"batch_size", "strategy", "train", "teacher_spec", "name"}
        bad = set(changes) - allowed
        if bad:
            raise ProjectError(f"cannot change {sorted(bad)}; changeable: {sorted(allowed)}")
        problems: list[str] = []
        if "batch_size" in changes and (not isinstance(changes["batch_size"], int) or changes["batch_size"] < 1):
            problems.append(f"batch size must be a whole number >= 1, got {changes['batch_size']!r}")
        known = _strategy_names()
        if "strategy" in changes and known is not None and changes["strategy"] not in known:
            problems.append(f"strategy {changes['strategy']!r} unknown; choose one of {known}")
        if "train" in changes:
            _check_train_overrides(dict(changes["train"]), problems)
        if "teacher_spec" in changes and not isinstance(changes["teacher_spec"], dict):
            problems.append("teacher spec must be a dict with a 'kind'")
        if problems:
            raise ProjectError("; ".join(problems))
        self.config.update(changes)
        self.store.set_setting("project", self.config)
        if "teacher_spec" in changes:
            with self._lock:
                self._teacher = None
                self._teacher_base = None

    # ---- per-project keys and per-user view settings --------------------------------------

    def class_keys(self) -> list[str]:
        """The key of each of the first ten classes (the project's own, else the defaults)."""
        from activekd_core.label_keys import default_class_keys

        keys = self.store.get_setting(CLASS_KEYS_KEY)
        if isinstance(keys, list) and len(keys) == min(len(self.classes), 10):
            return [str(k) for k in keys]
        return default_class_keys(self.classes)

    def set_class_keys(self, text: str) -> list[str]:
        """Set the keys from text like ``"a s d f"`` (empty: back to the defaults).

        Raises:
            ProjectError: If the keys are not usable (the message says why).
        """
        from activekd_core.label_keys import parse_class_keys

        try:
            keys = parse_class_keys(text, self.classes)
        except ValueError as exc:
            raise ProjectError(f"keys not changed: {exc}") from exc
        self.store.set_setting(CLASS_KEYS_KEY, keys if text.strip() else None)
        return keys

    def view_prefs(self, annotator: str) -> dict[str, Any]:
        """How ``annotator`` last set up the Label page in this project (per row, teacher hint, zoom...)."""
        prefs = self.store.get_setting(VIEW_PREFS_PREFIX + annotator[:200])
        return dict(prefs) if isinstance(prefs, dict) else {}

    def set_view_pref(self, annotator: str, name: str, value: Any) -> None:
        """Remember one Label page setting for ``annotator`` in this project (JSON value)."""
        prefs = self.view_prefs(annotator)
        if prefs.get(name) == value:
            return
        prefs[name] = value
        self.store.set_setting(VIEW_PREFS_PREFIX + annotator[:200], prefs)

    def pool(self) -> ImagePool:
        """The usable images in pool order (from the store; no rescan)."""
        if self._pool is None:
            self._pool = ImagePool(root=self.image_root, ids=self.store.image_ids(), recipe=self.recipe)
        return self._pool

    def scan_report(self) -> ScanReport:
        """Images found at creation and the files skipped, with reasons."""
        return ScanReport(self.image_root, len(self.pool()), [(r.id, r.reason or "") for r in self.store.skipped_images()])

    def row_of(self) -> dict[str, int]:
        """Image id -> pool row."""
        return {i: r for r, i in enumerate(self.pool().ids)}

    # ---- labels ------------------------------------------------------------------------

    def _label_kw(self, image_id: str, annotator: str, session: str | None) -> dict[str, Any]:
        kw: dict[str, Any] = {"annotator": annotator, "session": session}
        if image_id in set(self.store.audit_ids()):
            kw["strategy"] = "audit"
        return kw

    def label(self, image_id: str, class_name: str, *, annotator: str = "expert", session: str | None = None) -> int:
        """Label an image (committed before returning); returns the event id."""
        return self.store.label(image_id, class_name, **self._label_kw(image_id, annotator, session))

    def skip(self, image_id: str, *, annotator: str = "expert", session: str | None = None) -> int:
        """Skip an image (it leaves the candidate pool until undone)."""
        return self.store.skip(image_id, **self._label_kw(image_id, annotator, session))

    def unsure(self, image_id: str, *, annotator: str = "expert", session: str | None = None) -> int:
        """Mark an image as unsure (kept out of training and selection until changed)."""
        return self.store.unsure(image_id, **self._label_kw(image_id, annotator, session))

    def undo(self, *, annotator: str = "expert", image_id: str | None = None, session: str | None = None,
             image_ids: Sequence[str] | None = None) -> LabelEvent | None:
        """Undo the annotator's latest event (see :mod:`activekd_core.store` for the exact rule);
        ``image_ids`` limits it to those images (the ones on screen)."""
        return self.store.undo(annotator, image_id, session=session, image_ids=image_ids)

    def training_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Pool rows and class indices of labeled images, audit set excluded (sorted by row)."""
        return self.human_labels("train")

    def counts(self) -> dict[str, Any]:
        """Overall progress: per-class label counts, skipped, unsure, unlabeled, audit.

        Cached on the newest label event id (with the classes, audit set size and pool
        size), so a page rerun that asks several times counts once; returns a fresh dict.
        """
        key = (self.store.newest_event_id(), tuple(self.store.class_names()), len(self.store.audit_ids()),
               len(self.pool()))
        cached = self._counts_cache
        if cached is None or cached[0] != key:
            current = self.store.current()
            per_class = dict.fromkeys(key[1], 0)
            states = {"label": 0, "skip": 0, "unsure": 0}
            for e in current.values():
                states[e.event] = states.get(e.event, 0) + 1
                if e.event == "label" and e.class_name in per_class:
                    per_class[e.class_name] += 1
            cached = (key, {
                "per_class": per_class,
                "labeled": states["label"],
                "skipped": states["skip"],
                "unsure": states["unsure"],
                "unlabeled": key[3] - len(current),
                "audit": key[2],
                "total": key[3],
            })
            self._counts_cache = cached
        out = dict(cached[1])
        out["per_class"] = dict(out["per_class"])
        return out

    def import_labels_csv(self, path: Path | str, *, annotator: str = "import") -> Any:
        """Import labels from a CSV (``id``/``path``/``filename`` + ``label``/``class`` columns).

        Returns:
            The :class:`activekd_core.labels_import.LabelImport` (labels written and
            problems found). Rows with problems are skipped; the rest is written in one
            transaction.
        """
        from activekd_core.labels_import import labels_from_csv

        result = labels_from_csv(path, self.pool(), self.classes)
        self.store.add_labels(list(result.labels.items()), annotator=annotator, strategy="import")
        return result

    def import_labels_subfolders(self, *, annotator: str = "import") -> tuple[int, dict[str, int]]:
        """Label images by their first folder name when it matches a class (case-insensitive).

        Returns:
            ``(number imported, {folder name not matching a class: image count})``.
        """
        from activekd_core.labels_import import labels_from_subfolders

        names = {c.casefold(): c for c in self.classes}
        found = labels_from_subfolders(self.pool())
        good = [(i, names[f.casefold()]) for i, f in found.items() if f.casefold() in names]
        unknown: dict[str, int] = {}
        for f in found.values():
            if f.casefold() not in names:
                unknown[f] = unknown.get(f, 0) + 1
        self.store.add_labels(good, annotator=annotator, strategy="import")
        return len(good), unknown

    # ---- teacher -----------------------------------------------------------------------

    def teacher_spec(self) -> dict[str, Any]:
        """The teacher spec with the project's classes (and prompts for CLIP teachers) filled in."""
        spec = dict(self.config["teacher_spec"])
        classes = self.store.classes()
        spec.setdefault("classes", [c.name for c in classes])
        if str(spec.get("kind", "")).startswith("clip"):
            spec.setdefault("class_prompts", {c.name: c.prompt for c in classes if c.prompt})
        return spec

    def teacher(self) -> Any:
        """The teacher object (built once per Project)."""
        with self._lock:
            if self._teacher is None:
                teacher = _make_teacher(self.teacher_spec(), self.path("cache", "features"))
                if list(teacher.classes) != self.classes:
                    raise ProjectError(f"teacher classes {list(teacher.classes)} differ from the project's {self.classes}")
                self._teacher_base = json.loads(json.dumps(teacher.describe(), default=str))
                self._teacher = teacher
            return self._teacher

    # ---- prompt workshop ----------------------------------------------------------------

    def human_labels(self, which: str = "all") -> tuple[np.ndarray, np.ndarray]:
        """Current human labels as ``(pool rows, class indices)``, sorted by row.

        Args:
            which: ``"all"``, ``"audit"`` (the audit set only: an unbiased sample) or
                ``"train"`` (audit images excluded: what training and selection see).
        """
        if which not in ("all", "audit", "train"):
            raise ValueError(f"which must be 'all', 'audit' or 'train', not {which!r}")
        row_of = self.row_of()
        cls_index = {c: i for i, c in enumerate(self.classes)}
        audit = set(self.store.audit_ids())
        pairs = sorted(
            (row_of[image_id], cls_index[name])
            for image_id, name in self.store.current_labels().items()
            if image_id in row_of and name in cls_index
            and not (which == "audit" and image_id not in audit) and not (which == "train" and image_id in audit)
        )
        return (np.asarray([p[0] for p in pairs], dtype=np.int64), np.asarray([p[1] for p in pairs], dtype=np.int64))

    def candidate_teacher_probs(self, class_prompts: dict[str, list[str]], templates: str | list[str], *,
                                fit: bool = True) -> np.ndarray:
        """Teacher probabilities with other prompts, from the cached image features (a text pass only).

        The project's teacher is left as it is: a second teacher object (kept for later
        candidates, sharing the feature cache) takes the new prompts. A few-shot teacher is
        refit on the training labels when ``fit``.

        Raises:
            ProjectError: If the teacher is not a CLIP teacher (prompts change nothing).
        """
        from activekd_core.teachers import make_teacher

        spec = self.teacher_spec()
        if not str(spec.get("kind", "")).startswith("clip"):
            raise ProjectError(f"the {spec.get('kind')} teacher does not use prompts; only CLIP teachers do")
        ident = json.dumps({k: v for k, v in spec.items() if k not in ("class_prompts", "templates")},
                           sort_keys=True, default=str)
        with self._lock:
            if self._candidate_teacher is None or self._candidate_teacher[0] != ident:
                self._candidate_teacher = (ident, make_teacher(spec, cache_dir=self.path("cache", "features")))
            candidate = self._candidate_teacher[1]
            clip = candidate if getattr(candidate, "kind", "") == "clip_zero_shot" else candidate.zero_shot
            clip.set_prompts(class_prompts, templates)
            pool = self.pool()
            if fit and hasattr(candidate, "fit"):
                rows, y = self.training_labels()
                candidate.fit(pool, rows, y)
            return np.asarray(candidate.predict_proba(pool), dtype=np.float32)

    def adopt_teacher_prompts(self, class_prompts: dict[str, list[str]], templates: str | list[str], *,
                              note: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make new prompts the project's teacher (new provenance) and log the change.

        Args:
            class_prompts: Prompts per class.
            templates: Template set name or templates.
            note: Extra facts for the log (e.g. the labels it was judged on, a metric summary).

        Returns:
            The new teacher spec.
        """
        old = dict(self.config["teacher_spec"])
        new = {**old, "class_prompts": class_prompts, "templates": templates}
        self.update_config(teacher_spec=new)
        history = self.teacher_history()
        history.append({"time": utc_now(), "source": "prompt workshop", "before": old, "after": new, **(note or {})})
        self.store.set_setting(TEACHER_HISTORY_SETTING, history)
        return new

    def change_teacher(self, spec: dict[str, Any], *, note: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make ``spec`` the project's teacher (checked first) and keep the change in the history.

        Labels, rounds and students stay; the teacher's probabilities are recomputed when next
        needed (their cache is keyed by the teacher's provenance).

        Raises:
            ProjectError: If the spec is not a usable teacher (the message says why).
        """
        if not isinstance(spec, dict) or not spec.get("kind"):
            raise ProjectError("teacher spec must be a dict with a 'kind'")
        classes = self.store.classes()
        problem = _check_teacher(dict(spec), [c.name for c in classes], [c.prompt for c in classes], self.pool())
        if problem:
            raise ProjectError(f"teacher refused: {problem}")
        old = dict(self.config["teacher_spec"])
        self.update_config(teacher_spec=dict(spec))
        history = self.teacher_history()
        history.append({"time": utc_now(), "source": "change", "before": old, "after": dict(spec), **(note or {})})
        self.store.set_setting(TEACHER_HISTORY_SETTING, history)
        return dict(spec)

    def teacher_history(self) -> list[dict[str, Any]]:
        """Every kept teacher change, oldest first."""
        return list(self.store.get_setting(TEACHER_HISTORY_SETTING) or [])

    def teacher_cache_key(self, labeled: np.ndarray | None = None, y: np.ndarray | None = None) -> str:
        """Cache key of the teacher's probabilities: provenance + pool (+ labels for fittable teachers)."""
        teacher = self.teacher()
        digest = hashlib.sha256()
        digest.update(json.dumps(self._teacher_base, sort_keys=True, default=str).encode())
        digest.update(self.pool().fingerprint().encode())
        if hasattr(teacher, "fit") and labeled is not None and y is not None and labeled.size:
            digest.update(np.asarray(labeled, dtype=np.int64).tobytes() + b"|" + np.asarray(y, dtype=np.int64).tobytes())
        return digest.hexdigest()[:20]

    def teacher_probs(self, progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                      *, fit: bool = True) -> np.ndarray:
        """Teacher probabilities ``(N, C)`` for the pool, from the disk cache when possible.

        A teacher that learns from labels (few-shot, stand-in) is refit on the current
        training labels first (audit images excluded); its cache key includes them.
        The result is a read-only memory map of the cache file (100k+ pools are not copied
        into every page); copy it before changing it.
        """
        with self._lock:
            teacher = self.teacher()
            labeled, y = self.training_labels() if fit else (None, None)
            fittable = hasattr(teacher, "fit") and labeled is not None and labeled.size > 0
            key = self.teacher_cache_key(labeled, y) if fittable else self.teacher_cache_key()
            path = self.path("cache", "teacher", f"probs_{key}.npy")
            self.last_teacher_file = path
            if path.is_file():
                probs = np.load(path, mmap_mode="r")  # memory-mapped: pages share the OS page cache
                if probs.shape == (len(self.pool()), len(self.classes)):
                    return probs
            if fittable:
                teacher.fit(self.pool(), labeled, y)
            extra = {"cancel": cancel} if cancel is not None and _accepts(teacher.predict_proba, "cancel") else {}
            probs = np.asarray(teacher.predict_proba(self.pool(), progress, **extra), dtype=np.float32)
            n, c = len(self.pool()), len(self.classes)
            if probs.shape != (n, c) or not np.isfinite(probs).all():
                raise ProjectError(f"teacher returned probabilities of shape {probs.shape} (need {(n, c)}) "
                                   "or non-finite values")
            _atomic_save_npy(path, probs)
            _atomic_write_json(path.with_suffix(".json"), {"describe": self._teacher_base, "fitted_on": int(labeled.size) if fittable else 0,
                                                          "pool": self.pool().fingerprint(), "time": utc_now()})
            return np.load(path, mmap_mode="r")  # same read-only form as a cache hit

    def cached_teacher_probs(self) -> np.ndarray | None:
        """The teacher's most recent cached probabilities for this pool, or None; never computes.

        For a teacher that learns from labels this may predate the newest labels (it is the
        teacher as of its last fit): good enough for showing suggestions without stalling a page.
        """
        with self._lock:
            self.teacher()
            n, c = len(self.pool()), len(self.classes)
            fingerprint = self.pool().fingerprint()
            candidates = sorted(self.path("cache", "teacher").glob("probs_*.npy"), key=lambda f: f.stat().st_mtime,
                                reverse=True)
            for path in candidates:
                try:
                    meta = json.loads(path.with_suffix(".json").read_text())
                    if meta.get("describe") != self._teacher_base or meta.get("pool") != fingerprint:
                        continue
                    probs = np.load(path, mmap_mode="r")
                except (OSError, ValueError):
                    continue
                if probs.shape == (n, c):
                    return probs
            return None

    # ---- rounds and the active student -------------------------------------------------

    def active_round(self) -> RoundRecord | None:
        """The newest successful round (its student is the active model)."""
        return self.store.latest_done_round()

    def student_outputs(self, round_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The stored ``(probs, features)`` of a round's student for the whole pool (read-only memory maps).

        The files are validated the first time each version of them is read: probabilities
        ``(N, C)`` and features ``(N, D)`` of a floating dtype, all finite, rows of ``probs``
        summing to 1. Missing, unreadable or invalid files (a damaged or hand-edited cache)
        are recomputed from the round's checkpoint and rewritten atomically.

        Raises:
            ProjectError: If they are invalid and cannot be recomputed (e.g. the checkpoint
                is gone or damaged); the message says why.
        """
        base = self.path("cache", "student", f"round_{round_id:04d}")
        paths = (Path(f"{base}_probs.npy"), Path(f"{base}_features.npy"))
        try:
            identity = tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in (p.stat() for p in paths))
            probs, feats = (np.load(p, mmap_mode="r") for p in paths)
            if self._valid_outputs.get(round_id) == identity:
                return probs, feats
            problem = _student_output_problem(probs, feats, len(self.pool()), len(self.classes))
        except FileNotFoundError as exc:
            problem = f"missing ({Path(exc.filename or '').name})"
        except (OSError, ValueError, EOFError) as exc:
            problem = f"unreadable ({exc})"
        if problem is None:
            self._valid_outputs[round_id] = identity
            return probs, feats
        with self._lock:
            return self._recompute_student_outputs(round_id, paths, problem)

    def _recompute_student_outputs(self, round_id: int, paths: tuple[Path, Path], problem: str
                                   ) -> tuple[np.ndarray, np.ndarray]:
        from activekd_core.pixel_cache import decode_pool_with_report
        from activekd_core.student import CheckpointError
        from activekd_core.training import predict_student

        try:
            model, header = self.load_student(round_id)
        except (ProjectError, CheckpointError) as exc:
            raise ProjectError(f"round {round_id}: the stored predictions are {problem} and cannot be recomputed: "
                               f"{exc}. Retrain to make a new round.") from exc
        size = int(header.get("image_size") or self.train_config().image_size)
        decoded = decode_pool_with_report(self.pool(), size, cache_dir=self.path("cache", "pixels"))
        probs, feats = predict_student(model, decoded.pixels)
        for path, arr in zip(paths, (probs, feats)):
            _atomic_save_npy(path, arr)
        self._valid_outputs.pop(round_id, None)
        return np.load(paths[0], mmap_mode="r"), np.load(paths[1], mmap_mode="r")

    def checkpoint_path(self, round_id: int | None = None) -> Path | None:
        """Absolute checkpoint of a round (default: the active one), or None."""
        rec = self.active_round() if round_id is None else self.store.round(round_id)
        if rec is None or not rec.checkpoint or rec.status != "done":
            return None
        return self.path(rec.checkpoint)

    def load_student(self, round_id: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Load the active (or a given round's) student, checking architecture and class count.

        Raises:
            ProjectError: If there is no finished round.
            activekd_core.student.CheckpointError: If the file is missing, corrupt, or from
                another architecture or class count (the message names the file).
        """
        from activekd_core.student import load_student

        ckpt = self.checkpoint_path(round_id)
        if ckpt is None:
            raise ProjectError("no trained student yet: retrain first" if round_id is None
                               else f"round {round_id} has no finished checkpoint")
        arch = (self.config.get("train") or {}).get("arch", self.config["student_arch"])
        return load_student(ckpt, arch=arch, num_classes=len(self.classes))

    def train_config(self) -> Any:
        """The :class:`activekd_core.training.TrainConfig` of the next round."""
        from activekd_core.training import TrainConfig

        overrides = dict(self.config.get("train") or {})
        overrides.setdefault("arch", self.config["student_arch"])
        overrides.setdefault("seed", int(self.config.get("seed", 0)))
        if "weights" in overrides and overrides["weights"]:
            overrides["weights"] = Path(overrides["weights"])
        return TrainConfig(**overrides)

    def round_estimate(self, measure: bool = False) -> Any:
        """Steps and expected duration of the next round (:mod:`activekd_core.round_estimate`).

        The seconds per step come from earlier rounds with the same backbone, input size,
        device and loss; with ``measure=True`` and no stored rate, a few steps on
        synthetic data are timed now (seconds to a minute) and the rate is stored.
        """
        from activekd_core.devices import pick_device
        from activekd_core.round_estimate import estimate_round, record_rate

        config = self.train_config()
        labeled, _ = self.training_labels()
        device = pick_device(config.device).type
        rates = self.store.get_setting("step_rates") or {}
        est = estimate_round(config, int(labeled.size), len(self.pool()), device, rates)
        if est.seconds_per_step is None and measure:
            from activekd_core.training import measure_step_seconds

            sps = measure_step_seconds(config, len(self.classes))
            rates = record_rate(rates, est.key, sps * 100, 100, "measured")
            self.store.set_setting("step_rates", rates)
            est = estimate_round(config, int(labeled.size), len(self.pool()), device, rates)
        return est

    def _record_step_rate(self, config: Any, metrics: dict[str, Any]) -> None:
        """Store a finished round's seconds per step for the next round's estimate."""
        from activekd_core.round_estimate import rate_key, record_rate

        try:
            device = str(metrics.get("device", "cpu")).split(":")[0]
            rates = record_rate(self.store.get_setting("step_rates") or {}, rate_key(config, device),
                                float(metrics["seconds"]), int(metrics["steps"]), "previous rounds")
            self.store.set_setting("step_rates", rates)
        except (KeyError, TypeError, ValueError):
            pass  # an estimate is a convenience: never fail a finished round over it

    def retrain(self, progress: ProgressFn | None = None, cancel: threading.Event | None = None, *,
                keep_batch_in_progress: bool = False) -> RoundRecord:
        """Train one round on all current labels; on success it becomes the active model.

        On success the open strategy batch is closed so that the next one comes from the new
        student; a queue made by hand always stays, and with ``keep_batch_in_progress`` (an
        automatic retrain in the background) so does a batch the expert has started.

        Steps: teacher probabilities (cached), decoded pixels (cached), a check that the
        images decoded (see below), ``train_round``, checkpoint written atomically, predictions for the whole pool stored, audit
        scores, round marked done and open batches closed (the next batch uses the new
        student). On any failure or cancel, the round is marked failed/cancelled with
        the error, its files are removed, and the exception is re-raised; labels and the
        previous model are untouched.

        Images that cannot be decoded (deleted, moved, corrupt, swapped for a link out of
        the image root) are never trained on as blank pixels: when only a few unlabeled
        ones fail (at most :data:`MAX_UNDECODABLE_SHARE` of the pool) they are left out of
        training and selection and listed in the round's ``metrics["undecodable"]``
        (:meth:`undecodable_images`); when any labeled image or more than that share
        fails, the round fails with a message naming the files.

        Raises:
            ProjectError: If nothing is labeled yet, or the images cannot be decoded (the
                round is recorded as failed; the previous model stays active).
        """
        from activekd_core.pixel_cache import decode_pool_with_report
        from activekd_core.student import save_student
        from activekd_core.training import predict_student, train_round

        labeled, y = self.training_labels()
        if labeled.size == 0:
            raise ProjectError("label at least one image (outside the audit set) before training")
        config = self.train_config()
        active = self.active_round()
        prev = active.id if active else 0
        picks = [[it.image_id, it.score, b.id] for b in self.store.batches(round=prev) for it in b.items]
        space = "student" if active else "teacher"
        tprobs = self.teacher_probs(_phase(progress, "teacher"), cancel) if config.kd else None
        teacher_info = self._teacher_base or {"kind": self.config["teacher_spec"].get("kind")}
        round_id = self.store.start_round(self.strategy, space, picks=picks, teacher=teacher_info,
                                          n_labeled=int(labeled.size), owner=_this_process())
        live_key = (str(self.store.path), round_id)
        with _LIVE_LOCK:
            _LIVE_ROUNDS.add(live_key)
        ckpt_rel = f"checkpoints/round_{round_id:04d}.safetensors"
        out_base = self.path("cache", "student", f"round_{round_id:04d}")
        written: list[Path] = []
        try:
            decoded = decode_pool_with_report(self.pool(), config.image_size, cache_dir=self.path("cache", "pixels"),
                                              progress=_phase(progress, "decode"), cancel=cancel)
            pixels = decoded.pixels
            failed = _check_decoded(decoded.failures, labeled, len(self.pool()))
            result = train_round(pixels, labeled, y, tprobs, config, progress=_phase(progress, "train"), cancel=cancel,
                                 exclude=np.asarray(sorted(failed), dtype=np.int64))
            if cancel is not None and cancel.is_set():
                raise InterruptedError("training cancelled")
            metrics = dict(result.metrics)
            metrics["device"] = result.device
            metrics["undecodable"] = {"count": len(failed), "images": [
                {"id": self.pool().ids[r], "reason": failed[r]} for r in sorted(failed)[:UNDECODABLE_LISTED]]}
            ckpt = self.path(ckpt_rel)
            written.append(ckpt)
            save_student(result.model, ckpt, extra={"round": round_id, "classes": self.classes})
            probs, feats = predict_student(result.model, pixels)
            for suffix, arr in (("probs", probs), ("features", feats)):
                target = Path(f"{out_base}_{suffix}.npy")
                written.append(target)
                _atomic_save_npy(target, arr)
            metrics["audit"] = self._audit_metrics(round_id, probs, tprobs)
            metrics["labels_per_class"] = np.bincount(y, minlength=len(self.classes)).tolist()
            if tprobs is not None and self.last_teacher_file is not None:
                metrics["teacher_probs_file"] = self.last_teacher_file.relative_to(self.folder).as_posix()
            metrics = json.loads(json.dumps(metrics, default=str))
            self.store.finish_round(round_id, "done", metrics=metrics, checkpoint=ckpt_rel)
            self._record_step_rate(config, metrics)
        except BaseException as exc:
            cancelled = (cancel is not None and cancel.is_set()) or type(exc).__name__ in (
                "TrainingCancelled", "Cancelled", "JobCancelled", "InterruptedError")
            for f in written:
                f.unlink(missing_ok=True)
            try:
                self.store.finish_round(round_id, "cancelled" if cancelled else "failed", error=f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - e.g. a full disk; recover() marks the round interrupted
                pass
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE_ROUNDS.discard(live_key)
        view = self.current_batch()
        started = view is not None and 0 < view.done < view.total
        if view is None or (view.batch.strategy not in QUEUE_STRATEGIES and not (keep_batch_in_progress and started)):
            # The next batch comes from the new student. A queue made by hand stays until done or
            # dismissed; an automatic retrain does not pull a started batch from under the expert.
            # A batch prepared ahead by the old student is dropped by promote_prefetched.
            self.store.close_batches()
        rec = self.store.round(round_id)
        assert rec is not None
        return rec

    def start_retrain(self, *, process: bool = True, env: dict[str, str] | None = None,
                      keep_batch_in_progress: bool = False) -> int:
        """Start :meth:`retrain` as a background job; a second call while it runs raises JobBusy.

        Args:
            process: Run in a worker process (default; see :mod:`activekd_core.jobs`) or a thread.
            env: Environment of the worker process.
            keep_batch_in_progress: See :meth:`retrain` (automatic retrains after a batch).

        Returns:
            The job id (poll it with ``self.jobs().status(id)``).
        """
        runner = self.jobs()
        if process:
            return runner.start_process("train", "activekd_core.project:retrain_job", {"folder": str(self.folder),
                                       "keep_batch_in_progress": keep_batch_in_progress}, env=env)
        return runner.start_thread("train", lambda progress, cancel: _round_summary(
            self.retrain(progress, cancel, keep_batch_in_progress=keep_batch_in_progress)))

    def jobs(self) -> Any:
        """A :class:`activekd_core.jobs.JobRunner` for this project."""
        from activekd_core.jobs import JobRunner

        return JobRunner(self.store, log_dir=self.path("logs"))

    # ---- query batches -----------------------------------------------------------------

    def current_batch(self) -> BatchView | None:
        """The open batch with each image's current state, or None if there is none."""
        batch = self.store.open_batch_current()
        if batch is None:
            return None
        current = self.store.current()
        states = {it.image_id: current.get(it.image_id) for it in batch.items}
        if batch.strategy == REVISIT:
            # skipped/unsure images sent back for another look: only a decision made after
            # the batch was opened completes them
            states = {i: (ev if ev is not None and ev.time >= batch.created else None) for i, ev in states.items()}
        return BatchView(batch, states)

    def ensure_batch(self, progress: ProgressFn | None = None) -> BatchView:
        """The open batch, selecting a new one when none is open or the open one is complete."""
        view = self.current_batch()
        if view is None or view.complete:
            if self.promote_prefetched() is None:
                self.next_batch(progress)
            view = self.current_batch()
        assert view is not None
        return view

    def undecodable_images(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of the images the active round left out because they could not be
        decoded (at most :data:`UNDECODABLE_LISTED`; see :meth:`retrain`); never queried."""
        rec = self.active_round()
        listed = ((rec.metrics or {}).get("undecodable") or {}).get("images") if rec is not None else None
        return [(str(d.get("id")), str(d.get("reason"))) for d in listed or [] if isinstance(d, dict)]

    def candidate_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(labeled rows, candidate rows)``: labeled images seed selection; candidates have no
        state and were not left out of the active round as undecodable."""
        row_of = self.row_of()
        current = self.store.current()
        audit = set(self.store.audit_ids())
        labeled = sorted(row_of[i] for i, e in current.items() if e.event == "label" and i not in audit)
        blocked = set(current) | audit | {image_id for image_id, _ in self.undecodable_images()}
        candidates = [r for r, i in enumerate(self.pool().ids) if i not in blocked]
        return np.asarray(labeled, dtype=np.int64), np.asarray(candidates, dtype=np.int64)

    def _labeled_classes(self, labeled: np.ndarray) -> np.ndarray:
        """Class index of each labeled row (aligned with ``labeled``), for class-aware strategies."""
        ids = self.pool().ids
        current = self.store.current_labels()
        index = {name: i for i, name in enumerate(self.classes)}
        return np.asarray([index[current[ids[int(r)]]] for r in labeled], dtype=np.int64)

    def selection_space(self, needs: set[str], progress: ProgressFn | None = None
                        ) -> tuple[str, np.ndarray | None, np.ndarray | None, int]:
        """The arrays a strategy runs on: ``(space name, probs, features, model round)``.

        ``progress`` reports the teacher pass when the teacher's probabilities must be computed.
        """
        active = self.active_round()
        if active is not None:
            probs, feats = self.student_outputs(active.id)
            return "student", probs, feats, active.id
        probs = self.teacher_probs(progress)  # always passed: it also tells "random" the pool size
        if "features" in needs:
            return "teacher-probs", probs, probs, 0
        return "teacher", probs, None, 0

    def _run_strategy(self, strategy: str, k: int, rng: np.random.Generator, progress: ProgressFn | None = None,
                      *, reserved: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray, str, str, int]:
        """Run ``strategy`` over the candidates (labeled rows seed it), storing nothing.

        Args:
            reserved: Images about to be labeled (the open batch while the next one is
                prepared): they seed the selection as labeled images do and are never picked.
                Class-aware strategies count them under the predicted class.

        Returns:
            ``(pool rows in pick order, per-pick scores, strategy actually used, space, model round)``.
            The strategy falls back to ``random`` when its space is uninformative.

        Raises:
            ProjectError: If no unlabeled image is left to query.
        """
        labeled, candidates = self.candidate_rows()
        reserved_rows = np.asarray(sorted({self.row_of()[i] for i in reserved if i in self.row_of()}), dtype=np.int64)
        reserved_rows = reserved_rows[np.isin(reserved_rows, candidates)]
        candidates = candidates[~np.isin(candidates, reserved_rows)]
        if candidates.size == 0:
            raise ProjectError("no image left to query: every image is labeled, skipped, unsure or in the audit set")
        k = min(int(k), int(candidates.size))
        needs = _strategy_needs(strategy)
        space, probs, feats, model_round = self.selection_space(needs, progress)
        if _uninformative(probs if "probs" in needs else feats):
            # e.g. a stand-in teacher before any label gives uniform rows: every distance
            # is 0, so farthest-first would just take pool order. Start at random instead.
            strategy, space, feats = "random", f"{space} (uninformative: random start)", None
        labeled_y = self._labeled_classes(labeled)
        if reserved_rows.size:
            guess = (np.asarray(probs[reserved_rows]).argmax(axis=1) if probs is not None
                     else np.zeros(reserved_rows.size, dtype=np.int64))
            order = np.argsort(np.concatenate([labeled, reserved_rows]), kind="stable")
            labeled = np.concatenate([labeled, reserved_rows])[order]
            labeled_y = np.concatenate([labeled_y, guess.astype(np.int64)])[order]
        subset = np.sort(np.concatenate([labeled, candidates]))
        pos = np.searchsorted(subset, labeled)
        sel = _select(
            strategy,
            probs=None if probs is None else probs[subset],
            features=None if feats is None else feats[subset],
            labeled=pos,
            labeled_y=labeled_y,
            k=k,
            rng=rng,
        )
        picked = subset[np.asarray(sel.indices, dtype=np.int64)]
        if np.isin(picked, labeled).any():
            raise ProjectError(f"strategy {strategy!r} picked an already-labeled image")
        scores = np.asarray(sel.scores, dtype=np.float64) if sel.scores is not None else np.full(len(picked), np.nan)
        return picked, scores, strategy, space, model_round

    def next_batch(self, progress: ProgressFn | None = None, *, k: int | None = None) -> BatchView:
        """Select the next batch with the project's strategy and store it (closing the open one).

        Raises:
            ProjectError: If no unlabeled image is left to query.
        """
        n_batches = len(self.store.batches())
        rng = np.random.default_rng([int(self.config.get("seed", 0)), n_batches])
        picked, scores, strategy, space, model_round = self._run_strategy(self.strategy, int(k or self.batch_size), rng, progress)
        ids = self.pool().ids
        picks = [(ids[int(r)], None if not np.isfinite(s) else float(s)) for r, s in zip(picked, scores)]
        self.store.open_batch(model_round, strategy, space, picks)
        view = self.current_batch()
        assert view is not None
        return view

    # ---- the next batch, prepared while the current one is labeled -------------------------

    def prefetch_wanted(self, view: BatchView | None = None) -> bool:
        """Whether the open batch still has open images and no next batch is prepared for it.

        Args:
            view: The open batch when the caller has just read it (None: read it here).
        """
        view = view if view is not None else self.current_batch()
        if view is None or view.complete or view.batch.strategy == REVISIT:
            return False
        ready = self.store.get_setting(PREFETCH_KEY)
        return not (isinstance(ready, dict) and ready.get("after_batch") == view.batch.id)

    def prefetch_next_batch(self, progress: ProgressFn | None = None) -> bool:
        """Select the batch that follows the open one, before the open one is finished; store it aside.

        The open batch's images seed the selection as if labeled (they will be), with the
        same random stream as :meth:`next_batch`: in the student's space (any round after
        the first) and with a teacher that does not learn from labels, the prepared batch
        is the one :meth:`next_batch` would pick once the open batch is labeled. A teacher
        that refits on labels (stand-in, CLAP) is used as fitted now; class-balanced
        selection counts the open images under their predicted class; an image that ends
        up skipped still counted as a seed.
        :meth:`promote_prefetched` opens it the moment the open batch is complete.

        Returns:
            True when a batch was prepared (False: nothing open, or nothing left to pick).
        """
        view = self.current_batch()
        if view is None or view.complete:
            return False
        n_batches = len(self.store.batches())
        rng = np.random.default_rng([int(self.config.get("seed", 0)), n_batches])
        try:
            picked, scores, strategy, space, model_round = self._run_strategy(
                self.strategy, self.batch_size, rng, progress, reserved=[it.image_id for it in view.batch.items])
        except ProjectError:
            return False
        ids = self.pool().ids
        self.store.set_setting(PREFETCH_KEY, {
            "after_batch": view.batch.id,
            "model_round": model_round,
            "strategy": strategy,
            "space": space,
            "picks": [[ids[int(r)], None if not np.isfinite(sc) else float(sc)] for r, sc in zip(picked, scores)],
        })
        return True

    def promote_prefetched(self) -> BatchView | None:
        """Open the prepared batch when the open one is complete; None when there is none usable.

        A prepared batch is dropped when it belongs to another batch or was chosen by a student
        that is no longer the active one; images that got a state meanwhile are left out.
        """
        with self._lock:
            ready = self.store.get_setting(PREFETCH_KEY)
            if not isinstance(ready, dict):
                return None
            view = self.current_batch()
            latest = self.store.batches()[-1].id if view is None and self.store.batches() else None
            after = view.batch.id if view is not None else latest
            if view is not None and not view.complete:
                return None
            active = self.active_round()
            if ready.get("after_batch") != after or ready.get("model_round") != (active.id if active else 0):
                self.store.set_setting(PREFETCH_KEY, None)
                return None
            _, candidates = self.candidate_rows()
            ids = self.pool().ids
            open_ids = {ids[int(r)] for r in candidates}
            picks = [(i, sc) for i, sc in ready.get("picks", []) if i in open_ids]
            self.store.set_setting(PREFETCH_KEY, None)
            if not picks:
                return None
            self.store.open_batch(int(ready["model_round"]), str(ready["strategy"]), str(ready["space"]), picks)
            return self.current_batch()

    def preview_batch(self, strategy: str, k: int | None = None, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The batch ``strategy`` would pick next, in the same space as :meth:`next_batch`; nothing is stored.

        Returns:
            ``(pool rows in pick order, per-pick scores)``.
        """
        picked, scores, *_ = self._run_strategy(strategy, int(k or self.batch_size), np.random.default_rng(seed))
        return picked, scores

    def queue_images(self, image_ids: Sequence[str], *, reason: str = "chosen by hand") -> BatchView:
        """Make ``image_ids`` the open query batch (replacing the open one), e.g. from an Explore selection.

        Only images that can be queried (no current state, not in the audit set) are queued.

        Raises:
            ProjectError: If none of ``image_ids`` can be queried.
        """
        _, candidates = self.candidate_rows()
        ids = self.pool().ids
        allowed = {ids[int(r)] for r in candidates}
        queued = [i for i in dict.fromkeys(image_ids) if i in allowed]
        if not queued:
            raise ProjectError("none of the chosen images can be queued: they are labeled, skipped, unsure or audit images")
        active = self.active_round()
        self.store.open_batch(active.id if active else 0, MANUAL, reason, [(i, None) for i in queued])
        view = self.current_batch()
        assert view is not None
        return view

    @property
    def auto_retrain(self) -> bool:
        """Whether a round starts in the background after every completed batch."""
        return bool(self.store.get_setting(AUTO_RETRAIN_KEY, False))

    @auto_retrain.setter
    def auto_retrain(self, on: bool) -> None:
        self.store.set_setting(AUTO_RETRAIN_KEY, bool(on))

    def new_labels_since_model(self) -> int:
        """Training labels added since the active student was trained (all of them before any round)."""
        rows, _ = self.training_labels()
        active = self.active_round()
        return int(rows.size) - (active.n_labeled if active is not None else 0)

    def dismiss_queue(self) -> bool:
        """Close the open batch when it is a queue made by hand or a revisit; returns whether one was closed."""
        batch = self.store.open_batch_current()
        if batch is None or batch.strategy not in QUEUE_STRATEGIES:
            return False
        self.store.close_batches()
        return True

    def revisit_ids(self) -> list[str]:
        """Images currently skipped or marked unsure (audit images excluded), in pool order."""
        current = self.store.current()
        audit = set(self.store.audit_ids())
        return [i for i in self.pool().ids
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
        active = self.active_round()
        self.store.open_batch(active.id if active else 0, REVISIT, "skipped and unsure images", [(i, None) for i in wanted])
        view = self.current_batch()
        assert view is not None
        return view

    # ---- audit set ---------------------------------------------------------------------

    def create_audit_set(self, size: int | None = None, *, seed: int | None = None) -> list[str]:
        """Sample the audit set uniformly from images that have no state and are not in the open batch.

        Raises:
            ProjectError: If an audit set exists or ``size`` is out of range.
        """
        if self.store.audit_ids():
            raise ProjectError("an audit set already exists")
        current = self.store.current()
        open_b = self.store.open_batch_current()
        in_batch = {it.image_id for it in open_b.items} if open_b else set()
        candidates = [i for i in self.pool().ids if i not in current and i not in in_batch]
        if not candidates:
            raise ProjectError("no unlabeled images left to sample an audit set from")
        from activekd_core import audit as audit_mod

        size = size or audit_mod.default_audit_size(len(self.pool()), len(self.classes))
        try:
            ids = audit_mod.sample_audit_set(candidates, min(size, len(candidates)), self.config.get("seed", 0) if seed is None else seed)
        except ValueError as exc:
            raise ProjectError(str(exc)) from exc
        self.store.set_audit_set(ids)
        return ids

    def audit_chunk(self) -> tuple[int, list[str]]:
        """The audit images to label now: ``(chunk number, ids)``, or ``(-1, [])`` when all are labeled.

        The audit set is cut into chunks of one batch size in its sampled order; the chunk
        shown is the first one with an unlabeled image. It stays the same while it is
        labeled (labeled images keep their place), so the grid does not shift under the
        expert's keys.
        """
        ids = self.store.audit_ids()
        labels = self.store.current_labels()
        size = max(1, self.batch_size)
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            if any(i not in labels for i in chunk):
                return start // size, chunk
        return -1, []

    def audit_progress(self) -> tuple[int, int]:
        """``(labeled audit images, audit set size)``."""
        ids = self.store.audit_ids()
        labels = self.store.current_labels()
        return sum(1 for i in ids if i in labels), len(ids)

    def _audit_metrics(self, round_id: int, student_probs: np.ndarray, teacher_probs: np.ndarray | None) -> dict:
        from activekd_core import audit as audit_mod

        rows, y = audit_mod.audit_rows(self.store.audit_ids(), self.store.current_labels(), self.row_of(),
                                       {c: i for i, c in enumerate(self.classes)})
        out = {"student": audit_mod.audit_accuracy(student_probs, rows, y, model="student", round=round_id).as_dict()}
        if teacher_probs is not None:
            out["teacher"] = audit_mod.audit_accuracy(teacher_probs, rows, y, model="teacher", round=round_id).as_dict()
        return out

    def audit_report(self, *, include_teacher: bool = True) -> list[AuditScore]:
        """Accuracy ± Wilson interval on the currently labeled audit images.

        Entries: the teacher as configured (round 0: zero-shot/unfitted predictions; left
        out when they are uniform, e.g. an unfitted stand-in), then per successful round
        its student and the teacher probabilities that round trained with (a teacher that
        learns from labels differs per round). Scores use the audit labels as they are
        now, so labeling more audit images tightens every round's interval.
        """
        from activekd_core import audit as audit_mod

        rows, y = audit_mod.audit_rows(self.store.audit_ids(), self.store.current_labels(), self.row_of(),
                                       {c: i for i, c in enumerate(self.classes)})
        scores = []
        if include_teacher:
            base = self.teacher_probs(fit=False)
            if not _uninformative(base):  # an unfitted stand-in is uniform: no score to give
                scores.append(audit_mod.audit_accuracy(base, rows, y, model="teacher", round=0))
        for rec in self.store.rounds():
            if rec.status != "done":
                continue
            probs, _ = self.student_outputs(rec.id)
            scores.append(audit_mod.audit_accuracy(probs, rows, y, model="student", round=rec.id))
            tfile = rec.metrics.get("teacher_probs_file")
            if include_teacher and tfile and self.path(tfile).is_file():
                tprobs = np.load(self.path(tfile), mmap_mode="r")
                scores.append(audit_mod.audit_accuracy(tprobs, rows, y, model="teacher", round=rec.id))
        return scores

    # ---- rare classes ------------------------------------------------------------------

    def collapse_warnings(self) -> list[Any]:
        """Classes the teacher or the active student predicts for (almost) nothing or everything.

        Uses the cached teacher probabilities (never computes them) and the active round's
        stored student predictions over the whole pool; see :mod:`activekd_core.collapse`
        for the thresholds. Returns :class:`activekd_core.collapse.CollapseWarning` items.
        """
        from activekd_core.collapse import collapse_from_counts

        per_class = self.counts()["per_class"]
        labeled = [per_class.get(c, 0) for c in self.classes]
        out = []
        for model, counts in self._predicted_counts():
            out += collapse_from_counts(counts, self.classes, model, labeled_counts=labeled)
        return out

    def _predicted_counts(self) -> list[tuple[str, np.ndarray]]:
        """Images predicted per class by the cached teacher and the active student.

        Cached on the newest teacher cache file (name, mtime) and the active round, so the
        Label page's reruns do not re-read the pool's probabilities.
        """
        teacher_files = sorted(self.path("cache", "teacher").glob("probs_*.npy"))
        active = self.active_round()
        key = (tuple((f.name, f.stat().st_mtime_ns) for f in teacher_files), active.id if active else None,
               tuple(self.classes))
        cached = self._pred_counts_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        c = len(self.classes)
        found: list[tuple[str, np.ndarray]] = []
        teacher = self.cached_teacher_probs()
        if teacher is not None and not _uniform(teacher):  # an unfitted stand-in's argmax means nothing
            found.append(("the teacher", np.bincount(np.asarray(teacher).argmax(axis=1), minlength=c)))
        if active is not None:
            try:
                probs, _ = self.student_outputs(active.id)
            except ProjectError:
                probs = None
            if probs is not None and probs.shape == (len(self.pool()), c) and not _uniform(probs):
                found.append((f"the student (round {active.id})", np.bincount(np.asarray(probs).argmax(axis=1), minlength=c)))
        self._pred_counts_cache = (key, found)
        return found

    def labels_per_round(self) -> list[dict[str, Any]]:
        """Training labels per class at each successful round, then now (how fast each class was found).

        Returns:
            One dict per round (``{"round": id, "strategy": ..., "labels": n, <class>: count, ...}``;
            rounds trained before this was recorded have None per class), and a last row
            ``round = "now"`` with the current training labels (audit set excluded). A class
            named like a fixed column (``round``, ``strategy``, ``labels``) gets `` (class)``
            appended to its column name.
        """
        fixed = ("round", "strategy", "labels")
        columns = [f"{c} (class)" if c in fixed else c for c in self.classes]  # a class may be named "round"
        rows: list[dict[str, Any]] = []
        for rec in self.store.rounds():
            if rec.status != "done":
                continue
            counts = (rec.metrics or {}).get("labels_per_class")
            ok = isinstance(counts, list) and len(counts) == len(self.classes)
            row: dict[str, Any] = {"round": str(rec.id), "strategy": rec.strategy, "labels": rec.n_labeled}
            row.update({col: (int(counts[i]) if ok else None) for i, col in enumerate(columns)})
            rows.append(row)
        _, y = self.training_labels()
        now = np.bincount(y, minlength=len(self.classes))
        rows.append({"round": "now", "strategy": self.strategy, "labels": int(y.size),
                     **{col: int(now[i]) for i, col in enumerate(columns)}})
        return rows

    # ---- export ------------------------------------------------------------------------

    def export_labels(self, fmt: str = "csv", dest: Path | str | None = None, **kw: Any) -> export_mod.ExportReport:
        """Export current labels as ``csv``, ``json``, ``jsonl`` or ``parquet`` (default: ``exports/labels.<fmt>``)."""
        if fmt not in ("csv", "json", "jsonl", "parquet"):
            raise ProjectError(f"unknown label export format {fmt!r}: use 'csv', 'json', 'jsonl' or 'parquet'")
        dest = Path(dest) if dest else self.path("exports", f"labels.{fmt}")
        if fmt in ("jsonl", "parquet"):
            import pandas as pd

            from activekd_core.predictions import write_predictions

            rows = export_mod.label_rows(self.store, self.image_root, **kw)
            table = pd.DataFrame(rows, columns=list(export_mod.LABEL_FIELDS))
            written = write_predictions(table, dest, fmt)  # type: ignore[arg-type]
            return export_mod.ExportReport(written, len(rows), [written])
        fn = export_mod.export_labels_csv if fmt == "csv" else export_mod.export_labels_json
        return fn(self.store, self.image_root, dest, **kw)

    def export_imagefolder(self, dest: Path | str | None = None, *, mode: str = "copy",
                           include_audit: bool = True) -> export_mod.ExportReport:
        """Export labeled images as an ImageFolder tree (default: ``exports/imagefolder``)."""
        dest = Path(dest) if dest else self.path("exports", "imagefolder")
        exclude = () if include_audit else tuple(self.store.audit_ids())
        return export_mod.export_imagefolder(self.store, self.image_root, dest, mode=mode, exclude=exclude,
                                             render=self.display_png)

    def display_png(self, image_id: str) -> bytes | None:
        """PNG of the display pixels of a DICOM file, frame, scientific TIFF or chip; None for a plain image.

        What exports write instead of the file: a DICOM file carries patient data, and a
        16-bit or multi-band raster is not what the expert labeled.

        Raises:
            activekd_core.images.ImageLoadError: When the image cannot be read.
        """
        if self.is_plain_image(image_id):
            return None
        buf = io.BytesIO()
        self.load_image(image_id).save(buf, format="PNG")
        return buf.getvalue()

    def export_student(self, dest: Path | str | None = None, *, round_id: int | None = None) -> export_mod.ExportReport:
        """Export the active (or a given round's) student: safetensors + TorchScript (+ ONNX)."""
        ckpt = self.checkpoint_path(round_id)
        if ckpt is None:
            raise ProjectError("no trained student yet: retrain first" if round_id is None
                               else f"round {round_id} has no finished checkpoint")
        rid = round_id or self.active_round().id  # type: ignore[union-attr]
        dest = Path(dest) if dest else self.path("exports", f"student_round_{rid:04d}")
        return export_mod.export_student(ckpt, dest, self.classes)


    # ---- predictions and interchange ------------------------------------------------------

    def image_bytes(self, image_id: str) -> bytes:
        """The bytes of one pool image as an image file, opened inside the image root.

        A plain image's file bytes; for DICOM files, frames, scientific TIFFs and chips a
        PNG of the display pixels (:meth:`display_png`), never the DICOM file itself.

        Raises:
            ValueError: If the id is not in the pool or leaves the image root.
            OSError: If the file cannot be read (or a DICOM/raster item decoded).
        """
        from activekd_core.images import ImageLoadError

        if image_id not in self.row_of():
            raise ValueError(f"{image_id[:200]!r} is not an image of this project")
        try:
            png = self.display_png(image_id)
        except ImageLoadError as exc:
            raise OSError(str(exc)) from exc
        if png is not None:
            return png
        with open_image_file(self.image_root, image_id) as fh:
            return fh.read()

    def active_student_probs(self) -> np.ndarray | None:
        """The active student's probabilities for the pool (a read-only memory map), or None."""
        rec = self.active_round()
        if rec is None:
            return None
        try:
            probs, _ = self.student_outputs(rec.id)
        except ProjectError:
            return None
        return probs if probs.shape == (len(self.pool()), len(self.classes)) else None

    def prediction_table(self) -> Any:
        """Teacher and student predictions and the human state of every image (a DataFrame).

        Uses the cached teacher probabilities and the active student's stored outputs; never
        computes either (columns of a model that has none are left out).
        """
        from activekd_core.predictions import prediction_table

        states = {
            image_id: (ev.event, ev.class_name, ev.annotator, ev.round) for image_id, ev in self.store.current().items()
        }
        return prediction_table(
            self.pool().ids,
            self.classes,
            states,
            audit_ids=self.store.audit_ids(),
            teacher_probs=self.cached_teacher_probs(),
            student_probs=self.active_student_probs(),
        )

    def export_predictions(self, fmt: str = "csv", dest: Path | str | None = None) -> export_mod.ExportReport:
        """Write :meth:`prediction_table` as ``csv``, ``jsonl`` or ``parquet`` (default: ``exports/predictions.<fmt>``)."""
        from activekd_core.predictions import PREDICTION_FORMATS, write_predictions

        if fmt not in PREDICTION_FORMATS:
            raise ProjectError(f"unknown prediction format {fmt!r}: use one of {', '.join(PREDICTION_FORMATS)}")
        table = self.prediction_table()
        dest = Path(dest) if dest else self.path("exports", f"predictions.{fmt}")
        written = write_predictions(table, dest, fmt)  # type: ignore[arg-type]
        return export_mod.ExportReport(written, len(table), [written])

    def export_label_studio(self, dest: Path | str | None = None, *, image_url: str | None = None
                            ) -> export_mod.ExportReport:
        """Label Studio tasks for every image with pre-annotations, plus the labeling config.

        The student's prediction is the pre-annotation when a round exists, else the
        teacher's cached one. Writes ``<dest>`` (JSON) and ``<dest stem>.config.xml``.
        """
        from activekd_core.label_studio import DEFAULT_IMAGE_URL, label_studio_tasks, labeling_config

        probs, version = self.active_student_probs(), None
        if probs is not None:
            version = f"activekd-student-round-{self.active_round().id}"  # type: ignore[union-attr]
        else:
            probs = self.cached_teacher_probs()
            version = "activekd-teacher" if probs is not None else None
        labels = {
            i: (ev.class_name, ev.annotator)
            for i, ev in self.store.current().items()
            if ev.event == "label" and ev.class_name
        }
        tasks = label_studio_tasks(self.pool().ids, self.classes, labels, probs=probs,
                                   model_version=version or "activekd", image_url=image_url or DEFAULT_IMAGE_URL)
        dest = Path(dest) if dest else self.path("exports", "label_studio_tasks.json")
        config = dest.with_name(dest.stem + ".config.xml")
        atomic_write_text(dest, json.dumps(tasks, ensure_ascii=False, indent=1))
        atomic_write_text(config, labeling_config(self.classes))
        return export_mod.ExportReport(dest, len(tasks), [dest, config])

    def import_label_studio(self, path: Path | str, *, annotator: str = "label-studio") -> Any:
        """Import labels from a Label Studio JSON export (tasks that cannot be used are reported).

        Returns:
            The :class:`activekd_core.labels_import.LabelImport`; its labels are written in
            one transaction.
        """
        from activekd_core.label_studio import labels_from_label_studio

        result = labels_from_label_studio(path, self.pool().ids, self.classes)
        self.store.add_labels(list(result.labels.items()), annotator=annotator, strategy="import")
        return result

    def export_hf_dataset(self, dest: Path | str | None = None, *, include_audit: bool = True
                          ) -> export_mod.ExportReport:
        """The labeled images as a Hugging Face ``datasets`` dataset (``save_to_disk``, ``ClassLabel`` column)."""
        from activekd_core.hf_dataset import export_hf_dataset

        dest = Path(dest) if dest else self.path("exports", "hf_dataset")
        audit = set() if include_audit else set(self.store.audit_ids())
        labels = {i: c for i, c in self.store.current_labels().items() if i not in audit}
        try:
            count, skipped = export_hf_dataset(labels, self.classes, dest, self.image_bytes)
        except FileExistsError as exc:
            raise export_mod.ExportError(str(exc)) from exc
        return export_mod.ExportReport(dest, count, skipped=skipped)


    # ---- review and correction -----------------------------------------------------------

    def review(self, flt: Any = None, *, page: int = 0, per_page: int = 24) -> Any:
        """One page of the pool, filtered and sorted (:func:`activekd_core.review_state.review_page`).

        Uses the cached teacher probabilities and the active student's stored outputs; never
        computes either.
        """
        from activekd_core.review_state import ReviewFilter, review_page

        return review_page(
            self.pool().ids, self.classes, self.store.current(), flt or ReviewFilter(),
            audit_ids=self.store.audit_ids(), teacher_probs=self.cached_teacher_probs(),
            student_probs=self.active_student_probs(), page=page, per_page=per_page,
        )

    def review_choices(self) -> tuple[list[str], list[int]]:
        """The annotators and rounds that current decisions carry (the Review page's filter choices)."""
        current = self.store.current()
        return (sorted({ev.annotator for ev in current.values() if ev.annotator}),
                sorted({ev.round for ev in current.values() if ev.round is not None}))

    def image_history(self, image_id: str) -> list[LabelEvent]:
        """Every event of one image, oldest first (undo rows point at the event they revert)."""
        return self.store.events(image_id)

    def bulk_label(self, image_ids: Sequence[str], class_name: str, *, annotator: str = "expert",
                   session: str | None = None) -> int:
        """Label many images as one class in one transaction (one event per image); returns the count."""
        ids = list(dict.fromkeys(image_ids))
        return self.store.add_labels([(i, class_name) for i in ids], annotator=annotator, strategy="review",
                                     session=session)

    def bulk_clear(self, image_ids: Sequence[str], *, annotator: str = "expert", session: str | None = None) -> int:
        """Return images to unlabeled (every current decision undone; history kept); returns the count changed."""
        return self.store.clear(image_ids, annotator=annotator, session=session)


# ---- module functions ----------------------------------------------------------------------


def open_demo(
    name: str = "textile",
    base_dir: Path | str = ".activekd",
    *,
    teacher_spec: dict[str, Any] | None = None,
    per_class: int | None = None,
    limit: int | None = None,
    prepare: bool = True,
    progress: ProgressFn | None = None,
) -> Project:
    """Open (creating on first use) a ready-to-label demo project.

    The images are written by :func:`activekd_core.demo_data.materialize_demo` under
    ``base_dir/data/<name>``; the project lives in ``base_dir/projects/<name>``.

    Args:
        name: ``"textile"`` (3 classes, the default) or ``"digits"`` (10 classes).
        base_dir: Folder for demo data and projects.
        teacher_spec: Teacher (default: the offline stand-in, which needs no weights).
        per_class: Keep only this many images per class (smaller demos, tests).
        limit: Keep at most this many images.
        prepare: Also select the first query batch, so the project opens ready to label.
        progress: ``progress(done, total, message)``.
    """
    from activekd_core.demo_data import materialize_demo

    base = Path(base_dir).expanduser()
    folder = base / "projects" / name
    if (folder / DB_NAME).is_file():
        project = Project.open(folder)
    else:
        ds = materialize_demo(name, base / "data", per_class=per_class, limit=limit, progress=progress)
        project = Project.create(
            folder,
            ds.root,
            [(c, ds.prompts.get(c, "")) for c in ds.classes],
            teacher_spec or {"kind": "standin"},
            "small_cnn",
            DEMO_BATCH_SIZE.get(name, 10),
            DEFAULT_STRATEGY,
            name=f"Demo: {name}",
        )
        project.store.set_setting("demo", {"name": name, "root": str(ds.root), "description": ds.description})
    if prepare:
        try:
            project.ensure_batch(progress)
        except ProjectError:
            pass  # nothing left to query: the project is still usable
    return project


def retrain_job(*, progress: ProgressFn, cancel: threading.Event, folder: str,
                keep_batch_in_progress: bool = False) -> dict[str, Any]:
    """Job entry point (worker process): open the project and run one training round."""
    project = Project.open(folder)
    try:
        return _round_summary(project.retrain(progress, cancel, keep_batch_in_progress=keep_batch_in_progress))
    finally:
        project.close()


def select_batch_job(*, progress: ProgressFn, cancel: threading.Event, folder: str) -> int:
    """Job entry point (worker process): select and store the next query batch; returns its id.

    When another process has opened a batch that still has open images meanwhile, that
    batch is kept (nothing is selected twice). Selection runs in a worker process so that
    its Python-heavy work does not hold the app server's interpreter.
    """
    project = Project.open(folder)
    try:
        view = project.current_batch()
        if view is not None and not view.complete:
            return view.batch.id
        promoted = project.promote_prefetched()
        if promoted is not None:
            return promoted.batch.id
        return project.next_batch(progress).batch.id
    finally:
        project.close()


def prefetch_batch_job(*, progress: ProgressFn, cancel: threading.Event, folder: str) -> bool:
    """Job entry point (worker process): prepare the batch after the open one (see ``prefetch_next_batch``).

    The worker lowers its own CPU priority first: it runs while the expert labels, and the
    server's reruns after each click must not wait for it on a small machine.
    """
    try:
        os.nice(10)
    except (AttributeError, OSError):  # no nice() on this platform, or not allowed
        pass
    project = Project.open(folder)
    try:
        return project.prefetch_wanted() and project.prefetch_next_batch(progress)
    finally:
        project.close()


def _round_summary(rec: RoundRecord) -> dict[str, Any]:
    return {"round": rec.id, "status": rec.status, "checkpoint": rec.checkpoint, "n_labeled": rec.n_labeled,
            "metrics": rec.metrics}


def _phase(progress: ProgressFn | None, phase: str) -> ProgressFn | None:
    if progress is None:
        return None

    def report(done: int, total: int, message: str = "") -> None:
        progress(done, total, f"{phase}: {message}" if message else phase)

    return report


def _student_output_problem(probs: np.ndarray, feats: np.ndarray, n: int, n_classes: int) -> str | None:
    """Why stored student outputs cannot be used (wrong shape, dtype, non-finite values), or None."""
    if probs.ndim != 2 or probs.shape != (n, n_classes):
        return f"of the wrong shape (probabilities {probs.shape}, expected {(n, n_classes)})"
    if feats.ndim != 2 or feats.shape[0] != n or feats.shape[1] < 1:
        return f"of the wrong shape (features {feats.shape}, expected ({n}, D))"
    if probs.dtype.kind != "f" or feats.dtype.kind != "f":
        return f"of the wrong type (probabilities {probs.dtype}, features {feats.dtype})"
    for start in range(0, n, 65536):  # in blocks: a memory map is never copied whole
        p = np.asarray(probs[start:start + 65536], dtype=np.float64)
        if not np.isfinite(p).all() or (p < -1e-6).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
            return "not probabilities (non-finite, negative, or rows not summing to 1)"
    # Features (N x 512 for a ResNet) are checked on their first and last rows only: reading
    # every round's whole file on an Explore visit would cost more than it protects.
    ends = np.concatenate([np.asarray(feats[:256]), np.asarray(feats[-256:])]) if n else np.zeros((0, 1))
    if not np.isfinite(ends).all():
        return "not finite (features)"
    return None


_LIVE_ROUNDS: set[tuple[str, int]] = set()  # (db path, round id) of retrain calls running in this process
_LIVE_LOCK = threading.Lock()


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux ``/proc``; tells a reused pid apart), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b") ", 1)[-1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _this_process() -> dict[str, Any]:
    """Who runs a round: host, pid and the pid's start time."""
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _round_alive(store: Store, rec: RoundRecord, job_alive: bool) -> bool:
    """Whether the process running a 'running' round is still at it (see :meth:`Project.recover`)."""
    import socket

    from activekd_core.jobs import _pid_alive

    owner = (rec.metrics or {}).get("owner")
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return job_alive  # recorded before owners were: the old rule
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process (torchrun on a shared folder): cannot tell, leave it
    pid = int(owner["pid"])
    if pid == os.getpid() and owner.get("start") == _process_start(pid):
        with _LIVE_LOCK:
            return (str(store.path), rec.id) in _LIVE_ROUNDS
    return _pid_alive(pid) and (owner.get("start") is None or owner.get("start") == _process_start(pid))


def _check_decoded(failures: dict[int, str], labeled: np.ndarray, n_pool: int) -> dict[int, str]:
    """The pool rows that failed to decode, when a round may train without them.

    Raises:
        ProjectError: If a labeled image failed, or more than :data:`MAX_UNDECODABLE_SHARE`
            of the pool did; the message names the files (and how many more).
    """
    if not failures:
        return {}
    bad_labeled = [int(r) for r in labeled if int(r) in failures]
    if bad_labeled:
        raise ProjectError(
            f"cannot train: {len(bad_labeled)} labeled image(s) could not be decoded and would be trained as blank "
            f"images: {_name_failures(failures, bad_labeled)}. Restore the files (or undo their labels) and retrain; "
            "the previous model stays active.")
    if len(failures) > MAX_UNDECODABLE_SHARE * n_pool:
        raise ProjectError(
            f"cannot train: {len(failures)} of {n_pool} images ({100 * len(failures) / max(1, n_pool):.1f}%) could not "
            f"be decoded, more than the {100 * MAX_UNDECODABLE_SHARE:g}% allowed: {_name_failures(failures, sorted(failures))}. "
            "Was the image folder moved or emptied? The previous model stays active.")
    return dict(failures)


def _name_failures(failures: dict[int, str], rows: list[int], limit: int = 10) -> str:
    """``"<id>: <reason>; ..."`` for the first ``limit`` rows, and how many more."""
    shown = "; ".join(failures[r] for r in rows[:limit])
    return shown + (f"; and {len(rows) - limit} more" if len(rows) > limit else "")


def _check_teacher(spec: dict[str, Any], names: list[str], prompts: list[str], pool: ImagePool) -> str | None:
    """Build the teacher once to check its spec (CLIP weights load lazily, so this is cheap).

    A precomputed teacher is also read against the pool, so a file with the wrong shape,
    missing ids, NaN or negative values is refused before anything is created.
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
    except ImportError:
        return None
    except Exception as exc:  # ValueError / TeacherDataError with the file and the problem
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_train_overrides(train: dict[str, Any], problems: list[str]) -> None:
    try:
        from activekd_core.training import TrainConfig
    except ImportError:
        return
    names = {f.name for f in fields(TrainConfig)}
    bad = sorted(set(train) - names)
    if bad:
        problems.append(f"unknown training settings {bad}")


def _check_student_weights(arch: str, train: dict[str, Any], problems: list[str]) -> None:
    """A pretrained torchvision student needs its ImageNet file now, not at the first round."""
    if arch == "small_cnn" or not train.get("pretrained", True):
        return
    try:
        from activekd_core.student import PretrainedWeightsMissing, resolve_pretrained_file
    except ImportError:
        return
    weights = train.get("weights")
    try:
        resolve_pretrained_file(arch, Path(weights) if weights else None,
                                use_local_cache=train.get("use_local_cache", True), download=False)
    except PretrainedWeightsMissing as exc:
        if not train.get("download_weights"):
            problems.append(f"student: {exc}")
    except (FileNotFoundError, ValueError) as exc:
        problems.append(f"student: {exc}")


def _uniform(x: np.ndarray) -> bool:
    """True when every probability is ``1 / C`` (a teacher with no information, not a collapsed one)."""
    return bool(np.allclose(np.asarray(x), 1.0 / x.shape[1], atol=1e-6))


def _uninformative(x: np.ndarray | None) -> bool:
    """True when every row is the same (no information to select on)."""
    return x is not None and x.shape[0] > 1 and float(np.ptp(x, axis=0).max()) < 1e-6


def _image_records(pool: ImagePool) -> list[ImageRecord]:
    records = []
    for row, image_id in enumerate(pool.ids):
        ref = pool.item_ref(image_id)
        path = pool.root / ref.file_id
        size = pool.image_size(image_id)  # read by the verifying scan: no second open
        if size is not None:
            width, height = size
        elif ref.file_id != image_id:
            width = height = None
        else:
            try:
                with open_image_file(pool.root, image_id) as fh, Image.open(fh) as img:
                    width, height = img.size
            except Exception:  # scanned as readable a moment ago; size is informative only
                width = height = None
        records.append(ImageRecord(image_id, row, str(path), width, height, True, None))
    for p in pool.problems:
        records.append(ImageRecord(p.id, None, str(p.path), None, None, False, p.reason))
    return records


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _inside(parent: Path, child: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
