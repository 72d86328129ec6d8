"""What every page shares, without Streamlit: image files and pixels on screen, whether an open
project must be reopened, the projects this user opened, and the teacher's suggestion per image.

Images are always reached through the project's image root: :func:`image_path` confines an id
to it on every call, and pixels are decoded by the project (confined again at the moment of
opening, :func:`activekd_core.images.open_image_file`). PNG bytes are kept in a
:class:`~activekd_core.image_view.BytesCache` that the caller owns (the server's shared one).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from activekd_core import recent
from activekd_core.image_view import BytesCache, ZoomWindow, fit_image, png_bytes, render_zoom, zoom_window
from activekd_core.images import open_image_file
from activekd_core.paths import resolve_inside

if TYPE_CHECKING:
    from activekd_core.project import Project

__all__ = [
    "image_path",
    "thumbnail_png",
    "zoom_png",
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
    whole-number factor with nearest-neighbour sampling (no invented detail). The cache key
    is the root, the id, the file's modification time and size and the display recipe's
    key, so a changed file is re-read and an unchanged one never is.

    Raises:
        activekd_core.paths.PathOutsideRoot: If the file escapes the image root.
        FileNotFoundError: If the file is gone.
        activekd_core.images.ImageLoadError: If it cannot be decoded (or was swapped for a
            link out of the root between the check and the decode).
    """
    stat = image_path(project, image_id).stat()

    def make() -> bytes:
        # Opened confined to the root at this moment; decoded at the size the box needs,
        # DICOM and rasters with the project's display recipe.
        return png_bytes(fit_image(project.load_image(image_id, draft_size=box if box > 0 else None), box))

    key = ("thumb", str(project.image_root), image_id, stat.st_mtime_ns, stat.st_size, box, project.recipe.key())
    return cache.get_or_make(key, make)


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
