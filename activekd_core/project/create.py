"""Creating and opening project folders, and the ready-to-label demo projects.

Layout of a project folder::

    project.db                      the store (see activekd_core.store)
    cache/teacher/probs_<key>.npy   teacher probabilities (see teacher_probs)
    cache/pixels/                   decoded pool pixels (activekd_core.pixel_cache)
    cache/features/                 CLIP image features (teachers' feature cache)
    cache/student/round_NNNN_*.npy  each round's student probabilities and features
    checkpoints/round_NNNN.safetensors
    exports/, logs/
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from activekd_core.atomic import fsync_dir
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.images import ImagePool, open_image_file, scan_images
from activekd_core.pool_stretch import uses_band_ranges, with_pool_band_ranges
from activekd_core.progress import ProgressFn
from activekd_core.project.context import (
    DB_NAME,
    DEFAULT_STRATEGY,
    PROJECT_FORMAT,
    ProjectError,
    check_strategy,
    check_train_overrides,
)
from activekd_core.project.teacher_probs import check_teacher
from activekd_core.store import Store, StoreError, utc_now, validate_class_names
from activekd_core.store.catalog import ImageRow

if TYPE_CHECKING:
    from activekd_core.project.facade import Project

DEMO_BATCH_SIZE = {"textile": 10, "digits": 20}
_DB_FILES = ("", "-wal", "-shm", "-journal")  # a SQLite database and its side files


def create_store(
    folder: Path | str,
    image_root: Path | str,
    classes: Sequence[tuple[str, str]],
    teacher_spec: dict[str, Any],
    student_arch: str,
    batch_size: int,
    strategy: str,
    *,
    seed: int,
    train: dict[str, Any] | None,
    name: str | None,
    recipe: DisplayRecipe | None,
) -> tuple[Path, Store, ImagePool]:
    """Validate everything, then create the project folder and database (see ``Project.create``).

    Nothing is written when a check fails; a crash mid-creation leaves no half-made project.

    Returns:
        ``(folder, open store, scanned pool)``.

    Raises:
        ProjectError: With every configuration problem found.
    """
    from activekd_core.student import ARCHES  # torch: imported when a project is created

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
    if student_arch not in ARCHES:
        problems.append(f"student backbone {student_arch!r} unknown; choose one of {list(ARCHES)}")
    check_strategy(strategy, problems)
    train = dict(train or {})
    check_train_overrides(train, problems)
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
        problem = check_teacher(teacher_spec, names, prompts, pool)
        if problem:
            problems.append(f"teacher: {problem}")
    if problems:
        raise ProjectError("cannot create project: " + "; ".join(problems))
    assert pool is not None
    # The pool-wide stretch, computed once; a pool in which the scan sniffed no TIFF has no
    # raster to survey (the survey would open thousands of files to find none).
    if uses_band_ranges(recipe) and not recipe.band_ranges and pool._tiff_files != 0:
        recipe = with_pool_band_ranges(recipe, pool, seed=int(seed))
        pool.recipe = recipe
        pool._fingerprint = None  # the recipe is part of it
    settings = {
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
    }
    return folder, _write_store(folder, pool, list(zip(names, prompts)), settings), pool


def _write_store(folder: Path, pool: ImagePool, classes: list[tuple[str, str]], settings: dict[str, Any]) -> Store:
    """Build ``project.db`` under a temporary name and rename it when complete; returns it open.

    The rename happens after closing (so the WAL is checkpointed): a crash mid-creation
    never leaves a half-made project.db. On any failure everything made here is removed.
    """
    created_folder = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / (DB_NAME + ".creating")
    for suffix in _DB_FILES:
        Path(str(db) + suffix).unlink(missing_ok=True)  # leftovers of an interrupted create
    store = None
    try:
        store = Store.create(db)
        store.add_image_rows(_image_rows(pool))
        store.set_classes(classes)
        store.set_setting("project", settings)
        store.set_setting("scan", {"root": str(pool.root), "n_images": len(pool), "n_skipped": len(pool.problems),
                                   "fingerprint": pool.fingerprint(), "time": utc_now()})
        store.close()
        store = None
        os.replace(db, folder / DB_NAME)
        fsync_dir(folder)
        return Store.open(folder / DB_NAME)
    except BaseException:
        if store is not None:
            store.close()
        for suffix in _DB_FILES:
            Path(str(db) + suffix).unlink(missing_ok=True)
        if created_folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def open_store(folder: Path | str) -> tuple[Path, Store]:
    """The store of an existing project folder (its schema version is checked on opening).

    Raises:
        ProjectError: If the folder holds no project.
        activekd_core.store.SchemaVersionError: If it was written by a newer version.
    """
    folder = Path(folder).expanduser()
    db = folder / DB_NAME
    if not db.is_file():
        raise ProjectError(f"{folder}: no project here ({DB_NAME} not found)")
    return folder, Store.open(db)


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

    A new demo's images are written by :func:`activekd_core.demo_data.materialize_demo`
    under ``base_dir/data/<name>-v2/images`` with neutral names; the ground truth stays
    in the sidecar beside that folder and never enters the project (import it on the
    Project page to compare). The project lives in ``base_dir/projects/<name>``.

    A project that already exists there is opened as it is, with the image root and ids
    its configuration holds: one created before the neutral layout keeps its
    ``data/<name>/<class>/`` images, ids and labels, and nothing is materialised.

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
    from activekd_core.project.facade import Project  # the demo hands out the facade, which imports this module

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


def _check_student_weights(arch: str, train: dict[str, Any], problems: list[str]) -> None:
    """A pretrained torchvision student needs its ImageNet file now, not at the first round."""
    if arch == "small_cnn" or not train.get("pretrained", True):
        return
    from activekd_core.student import PretrainedWeightsMissing, resolve_pretrained_file

    weights = train.get("weights")
    try:
        resolve_pretrained_file(arch, Path(weights) if weights else None,
                                use_local_cache=train.get("use_local_cache", True), download=False)
    except PretrainedWeightsMissing as exc:
        if not train.get("download_weights"):
            problems.append(f"student: {exc}")
    except (FileNotFoundError, ValueError) as exc:
        problems.append(f"student: {exc}")


def _image_rows(pool: ImagePool) -> Iterator[ImageRow]:
    """The ``images`` table's rows of a scanned pool: usable images in pool order, then skipped files.

    Plain tuples made one at a time (no record object per image: at 1M images those cost
    seconds); a plain id is its own file id, so its path is the root's text joined to it.
    """
    root = pool.root
    prefix = str(root).rstrip(os.sep) + os.sep
    for row, image_id in enumerate(pool.ids):
        if "#" in image_id or "@" in image_id:  # maybe a frame or a chip: its file is part of the id
            file_id = pool.item_ref(image_id).file_id
            path = str(root / file_id)
        else:
            file_id = image_id
            path = prefix + image_id
        size = pool.image_size(image_id)  # read by the verifying scan: no second open
        if size is not None:
            width, height = size
        elif file_id != image_id:
            width = height = None
        else:
            try:
                with open_image_file(root, image_id) as fh, Image.open(fh) as img:
                    width, height = img.size
            except Exception:  # scanned as readable a moment ago; size is informative only
                width = height = None
        yield (image_id, row, path, width, height, 1, None)
    for p in pool.problems:
        yield (p.id, None, str(p.path), None, None, 0, p.reason)


def _inside(parent: Path, child: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False
