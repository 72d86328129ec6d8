"""What every page shares, without Streamlit: image files and pixels on screen, whether an open
project must be reopened, the projects this user opened, and the teacher's suggestion per image.

Images are always reached through the project's image root: :func:`image_path` confines an id
to it on every call, and pixels are decoded by the project (confined again at the moment of
opening, :func:`activekd_core.images.open_image_file`). PNG bytes are kept in a
:class:`~activekd_core.image_view.BytesCache` that the caller owns (the server's shared one).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cachetools import LRUCache
from PIL import Image

from activekd_core import recent
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_view import VIEWPORT, BytesCache, ZoomWindow, png_bytes, render_zoom, zoom_window
from activekd_core.images import open_image_file
from activekd_core.paths import resolve_inside
from activekd_core.viewer import BANDS, FIXED, GREY, ViewerSettings, ViewInfo, describe, render_view
from activekd_core.project import ProjectError, thumbnails

if TYPE_CHECKING:
    from activekd_core.project import Project

__all__ = [
    "image_path",
    "thumbnail_png",
    "zoom_png",
    "BANDS",
    "FIXED",
    "GREY",
    "ViewInfo",
    "ViewerSettings",
    "viewer_info",
    "viewer_png",
    "viewer_group",
    "viewer_settings",
    "save_viewer_settings",
    "save_project_recipe",
    "needs_reopen",
    "is_known_project",
    "remember_project",
    "strategy_score_label",
    "teacher_top",
]

_TURNED = (5, 6, 7, 8)  # EXIF orientations that turn an image by 90 degrees


def image_path(project: Project, image_id: str) -> Path:
    """The file of ``image_id`` (the file holding it, for a DICOM frame or raster chip),
    refused unless it lies inside the project's image root.

    Checked afresh on every call (never cached: a file may be replaced by a symbolic link
    at any time); the decode checks again at the moment of opening.

    Raises:
        activekd_core.paths.PathOutsideRoot: If the id escapes the image root.
        FileNotFoundError: If the file is gone.
    """
    return resolve_inside(project.image_root, project.image_file_id(image_id), must_exist=True)


def thumbnail_png(project: Project, image_id: str, box: int, cache: BytesCache) -> bytes:
    """PNG bytes of ``image_id`` fitted into ``box`` pixels (0 = full resolution), kept in ``cache``.

    Large images are shrunk to fit; images at most half of ``box`` are enlarged by a
    whole-number factor with nearest-neighbour sampling (no invented detail). On a miss the
    thumbnail comes from the project's on-disk cache when the worker that prepared the
    batch rendered it ahead, else it is decoded now (see
    :func:`activekd_core.project.thumbnails.thumbnail_png`). Keys hold the file's identity
    and the display recipe's key, so a changed file is re-read and an unchanged one never is.

    Raises:
        activekd_core.paths.PathOutsideRoot: If the file escapes the image root.
        FileNotFoundError: If the file is gone.
        activekd_core.images.ImageLoadError: If it cannot be decoded (or was swapped for a
            link out of the root between the check and the decode).
    """
    return thumbnails.thumbnail_png(project, image_id, box, cache)


def zoom_png(project: Project, image_id: str, zoom: float, center: tuple[float, float],
             cache: BytesCache) -> tuple[bytes, ZoomWindow, tuple[int, int]]:
    """PNG bytes of the part of ``image_id`` a ``zoom`` x view shows around ``center``, that
    window, and the image's upright ``(width, height)``.

    Only the visible window is resampled, at most :data:`activekd_core.image_view.VIEWPORT`,
    whatever the zoom (see :func:`activekd_core.image_view.zoom_window`). Uses of ``project``:
    ``image_root``, ``recipe``, ``is_plain_image``, ``load_image`` (and ``image_file_id`` for
    a DICOM frame, raster or chip).
    """
    root = str(project.image_root)
    recipe_key = project.recipe.key()
    if not project.is_plain_image(image_id):
        # DICOM frame, scientific raster or chip: its display size comes from the reader.
        stat = image_path(project, image_id).stat()
        full = project.load_image(image_id)
        width, height = full.size
        window = zoom_window(width, height, zoom, center)
        key = ("zoom", root, image_id, stat.st_mtime_ns, stat.st_size, window, recipe_key)
        return cache.get_or_make(key, lambda: png_bytes(render_zoom(full, window))), window, (width, height)
    with open_image_file(root, image_id) as fh:  # confined at the moment of opening
        stat = os.fstat(fh.fileno())
        with Image.open(fh) as probe:  # the header only: no pixels decoded
            width, height = probe.size
            if probe.getexif().get(0x0112) in _TURNED:
                width, height = height, width
    window = zoom_window(width, height, zoom, center)
    key = ("zoom", root, image_id, stat.st_mtime_ns, stat.st_size, window, recipe_key)
    data = cache.get_or_make(key, lambda: png_bytes(render_zoom(project.load_image(image_id), window)))
    return data, window, (width, height)


VIEWER_PREF = "viewer"  # name of the focus-mode view in an annotator's view preferences
_INFO_CACHE: LRUCache = LRUCache(maxsize=256)  # (root, id, mtime, size, recipe key) -> ViewInfo
_INFO_LOCK = threading.Lock()


def viewer_info(project: Project, image_id: str) -> ViewInfo | None:
    """Which focus-mode controls ``image_id`` gets (see :func:`activekd_core.viewer.describe`),
    or None for a plain image (PNG, JPEG, 8-bit TIFF...), which only zooms.

    Kept per file identity and recipe (a header read, or a 1024 x 1024 read for a float raster).

    Raises:
        activekd_core.images.ImageLoadError: When the file cannot be read.
        activekd_core.paths.PathOutsideRoot: If the id escapes the image root.
        FileNotFoundError: If the file is gone.
    """
    if project.is_plain_image(image_id):
        return None
    stat = image_path(project, image_id).stat()
    recipe = project.recipe
    key = (str(project.image_root), image_id, stat.st_mtime_ns, stat.st_size, recipe.key())
    with _INFO_LOCK:
        info = _INFO_CACHE.get(key)
    if info is None:
        info = describe(project.image_root, project.pool().item_ref(image_id), recipe)
        with _INFO_LOCK:
            _INFO_CACHE[key] = info
    return info


def viewer_png(project: Project, image_id: str, settings: ViewerSettings, zoom: float,
               center: tuple[float, float], cache: BytesCache,
               viewport: tuple[int, int] = VIEWPORT) -> tuple[bytes, ZoomWindow, tuple[int, int]]:
    """PNG bytes of the visible window of a DICOM/raster item drawn with the user's ``settings``
    (:func:`activekd_core.viewer.render_view`), that window and the item's ``(width, height)``.

    Only the visible window is read and drawn, at most ``viewport``. The cache key holds the
    file's identity, the project's recipe key and the settings, so a saved recipe or a
    changed file is drawn afresh.
    """
    stat = image_path(project, image_id).stat()
    recipe = project.recipe
    ref = project.pool().item_ref(image_id)
    window_key = (round(float(zoom), 4), round(float(center[0]), 4), round(float(center[1]), 4), tuple(viewport))
    key = ("view", str(project.image_root), image_id, stat.st_mtime_ns, stat.st_size, window_key, recipe.key(), settings)
    found: dict = {}

    def make() -> bytes:
        result = render_view(project.image_root, ref, recipe, settings, viewport=viewport, zoom=zoom, center=center)
        found["result"] = result
        return png_bytes(Image.fromarray(result.rgb, "RGB"))

    data = cache.get_or_make(key, make)
    if "result" in found:
        result = found["result"]
        return data, result.window, result.size
    info = viewer_info(project, image_id)  # bytes from the cache: the window follows from the item's size
    if info is None:
        raise ValueError(f"{image_id[:200]!r} is a plain image: use zoom_png")
    return data, zoom_window(info.width, info.height, zoom, center, viewport), (info.width, info.height)


def viewer_group(info: ViewInfo) -> str:
    """Which kept view an item uses: DICOM, single-band rasters and multi-band rasters each have their own
    (a CT window in HU means nothing to a 16-bit raster)."""
    return f"{'dicom' if info.is_dicom else 'raster'}-{info.kind}"


def viewer_settings(project: Project, annotator: str, group: str) -> ViewerSettings | None:
    """``annotator``'s focus-mode view of ``group`` (:func:`viewer_group`) in this project, or None
    when they keep the project's view."""
    data = project.view_prefs(annotator).get(f"{VIEWER_PREF}:{group}")
    return ViewerSettings.from_dict(data) if isinstance(data, dict) else None


def save_viewer_settings(project: Project, annotator: str, group: str, settings: ViewerSettings | None) -> None:
    """Keep (None: forget) ``annotator``'s focus-mode view of ``group`` in this project; the
    project's recipe is not touched."""
    project.set_view_pref(annotator, f"{VIEWER_PREF}:{group}", settings.to_dict() if settings is not None else None)


def save_project_recipe(project: Project, recipe: DisplayRecipe) -> None:
    """Make ``recipe`` the project's display recipe (the user's "Save as project recipe").

    Goes through :meth:`Project.set_display_recipe` (validated, kept in the recipe history
    with ``source: focus mode``, every cache re-keyed). Only how pixels look may change
    here: frames and chips decide which items exist.

    Raises:
        ValueError: When the project refuses the recipe (the message says why).
    """
    if not isinstance(recipe, DisplayRecipe):
        raise ValueError(f"a display recipe is needed, got {type(recipe).__name__}")
    try:
        project.set_display_recipe(recipe, note={"source": "focus mode"})
    except ProjectError as exc:
        raise ValueError(str(exc)) from exc


def needs_reopen(project: Project) -> bool:
    """Whether an open project must be opened again: its ``project.db`` was removed or replaced
    since it was opened, or SQLite reported damage through it."""
    return bool(project.store.replaced() or project.store.damage)


def is_known_project(home: Path | str, folder: Path | str) -> bool:
    """Whether ``folder`` is a project this server's user opened or created before (or a demo
    under ``home``): only such a folder may be opened from a link (:func:`activekd_core.recent.is_known`)."""
    return recent.is_known(home, folder)


def remember_project(home: Path | str, folder: Path | str) -> None:
    """Record ``folder`` as opened by this user (newest first, see :mod:`activekd_core.recent`)."""
    recent.remember(home, folder)


def strategy_score_label(name: str) -> str:
    """What a strategy's per-pick score means (e.g. "distance to nearest labeled"), or "score"."""
    from activekd_core.selection import STRATEGIES  # the strategies load scikit-learn: only when asked

    strategy = STRATEGIES.get(name)
    return str(getattr(strategy, "score_label", "") or "score") if strategy is not None else "score"


def teacher_top(project: Project, ids: Sequence[str]) -> dict[str, tuple[str, float]]:
    """Image id -> (teacher's top class, its probability) from the teacher's cached probabilities.

    Empty when the teacher has not been run on this pool yet: nothing is computed here (the
    teacher as of its last pass, never refitted on the server).
    """
    probs = project.cached_teacher_probs()
    if probs is None:
        return {}
    row_of = project.row_of()
    classes = project.classes
    out = {}
    for image_id in ids:
        row = probs[row_of[image_id]]
        k = int(row.argmax())
        out[image_id] = (classes[k], float(row[k]))
    return out
