"""What every part of a project shares: its folder, store, settings, image pool, and the label rules.

:class:`ProjectContext` is the state the other modules of :mod:`activekd_core.project`
work on. It also holds the one rule for which human labels train (and seed selection):
:meth:`ProjectContext.training_labels`, labeled images with the audit set excluded.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from activekd_core.display_recipe import DisplayRecipe, RecipeError
from activekd_core.images import ImagePool, is_plain_image, load_image
from activekd_core.label_keys import default_class_keys, parse_class_keys
from activekd_core.selection import STRATEGIES
from activekd_core.store import Store

DB_NAME = "project.db"
PROJECT_FORMAT = 1
DEFAULT_STRATEGY = "pcoreset"
AUTO_RETRAIN_KEY = "auto_retrain"  # settings key: retrain in the background after every batch
CLASS_KEYS_KEY = "class_keys"  # settings key of the project's own label keys
VIEW_PREFS_PREFIX = "view_prefs:"  # settings key prefix of one annotator's Label page setup
CHANGEABLE = ("batch_size", "strategy", "train", "teacher_spec", "name")


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


def check_strategy(name: Any, problems: list[str]) -> None:
    """Add a problem when ``name`` is not a registered selection strategy."""
    if name not in STRATEGIES:
        problems.append(f"strategy {name!r} unknown; choose one of {list(STRATEGIES)}")


def check_train_overrides(train: dict[str, Any], problems: list[str]) -> None:
    """Add a problem naming the keys of ``train`` that are not ``TrainConfig`` fields."""
    from activekd_core.training import TrainConfig  # torch: imported when settings are checked

    bad = sorted(set(train) - {f.name for f in fields(TrainConfig)})
    if bad:
        problems.append(f"unknown training settings {bad}")


class ProjectContext:
    """A project's folder, store, settings and image pool.

    Attributes:
        folder: The project folder.
        store: Its database.
        config: The project settings (image root, teacher spec, student, batch size,
            strategy, seed, training overrides).
        image_root: The image folder.
        lock: Serialises teacher, selection and cache work on this project object.
    """

    def __init__(self, folder: Path, store: Store) -> None:
        self.folder = folder
        self.store = store
        self.config: dict[str, Any] = store.get_setting("project") or {}
        if not self.config:
            raise ProjectError(f"{store.path}: the database has no project settings")
        self.image_root = Path(self.config["image_root"])
        self.lock = threading.RLock()
        self._pool: ImagePool | None = None

    # ---- settings ----------------------------------------------------------------------

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
    def seed(self) -> int:
        """Seed for selection, audit sampling and training."""
        return int(self.config.get("seed", 0))

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

    def path(self, *parts: str) -> Path:
        """A path inside the project folder."""
        return self.folder.joinpath(*parts)

    def update_config(self, **changes: Any) -> None:
        """Change project settings (batch_size, strategy, train, teacher_spec, name), validated.

        Raises:
            ProjectError: With every problem found; nothing is changed then.
        """
        bad = set(changes) - set(CHANGEABLE)
        if bad:
            raise ProjectError(f"cannot change {sorted(bad)}; changeable: {sorted(CHANGEABLE)}")
        problems: list[str] = []
        if "batch_size" in changes and (not isinstance(changes["batch_size"], int) or changes["batch_size"] < 1):
            problems.append(f"batch size must be a whole number >= 1, got {changes['batch_size']!r}")
        if "strategy" in changes:
            check_strategy(changes["strategy"], problems)
        if "train" in changes:
            check_train_overrides(dict(changes["train"]), problems)
        if "teacher_spec" in changes and not isinstance(changes["teacher_spec"], dict):
            problems.append("teacher spec must be a dict with a 'kind'")
        if problems:
            raise ProjectError("; ".join(problems))
        self.config.update(changes)
        self.store.set_setting("project", self.config)

    def class_keys(self) -> list[str]:
        """The key of each of the first ten classes (the project's own, else the defaults)."""
        keys = self.store.get_setting(CLASS_KEYS_KEY)
        if isinstance(keys, list) and len(keys) == min(len(self.classes), 10):
            return [str(k) for k in keys]
        return default_class_keys(self.classes)

    def set_class_keys(self, text: str) -> list[str]:
        """Set the keys from text like ``"a s d f"`` (empty: back to the defaults).

        Raises:
            ProjectError: If the keys are not usable (the message says why).
        """
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

    @property
    def auto_retrain(self) -> bool:
        """Whether a round starts in the background after every completed batch."""
        return bool(self.store.get_setting(AUTO_RETRAIN_KEY, False))

    @auto_retrain.setter
    def auto_retrain(self, on: bool) -> None:
        self.store.set_setting(AUTO_RETRAIN_KEY, bool(on))

    # ---- the image pool ----------------------------------------------------------------

    def pool(self) -> ImagePool:
        """The usable images in pool order (from the store; no rescan)."""
        if self._pool is None:
            self._pool = ImagePool(root=self.image_root, ids=self.store.image_ids(), recipe=self.recipe)
        return self._pool

    def scan_report(self) -> ScanReport:
        """Images found at creation and the files skipped, with reasons."""
        return ScanReport(self.image_root, len(self.pool()), [(r.id, r.reason or "") for r in self.store.skipped_images()])

    def row_of(self) -> Mapping[str, int]:
        """Image id -> pool row (read-only, built once per pool: :meth:`ImagePool.index_of`)."""
        return self.pool().index_of()

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
        pool = self.pool()
        return is_plain_image(pool.root, image_id, recipe=pool.recipe, ref=pool.item_ref(image_id))

    def image_file_id(self, image_id: str) -> str:
        """The id of the file that holds a pool image (item ids name a frame or chip of it)."""
        return self.pool().item_ref(image_id).file_id

    # ---- which human labels count where --------------------------------------------------

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

    def training_label_counts(self) -> np.ndarray:
        """Training labels per class, in class order: the class counts of :meth:`training_labels`.

        Read from the store's kept counts with the audit set's labels taken off, in
        O(classes + audit set) instead of a pass over every labeled image.
        """
        _, per_class = self.store.current_counts(exclude=self.store.audit_ids())
        return np.asarray([per_class[c] for c in self.classes], dtype=np.int64)

    def training_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """THE rule for which labels train and seed selection: labeled images, audit set excluded.

        Returns:
            ``(pool rows, class indices)`` sorted by row.
        """
        return self.human_labels("train")
