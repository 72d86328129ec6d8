"""Grid thumbnails of a project's images: rendered once, kept in memory and on disk.

:func:`thumbnail_png` is what the Label page shows: from the caller's in-memory
:class:`~activekd_core.image_view.BytesCache`, else from the project's on-disk
:class:`~activekd_core.thumbnail_cache.ThumbnailCache`, else decoded and encoded here.
:func:`prerender` is what the worker that prepares the next batch runs, so the server
process finds that batch's thumbnails on disk when the batch opens.

Both name an entry by the image's file identity, the size and the display recipe, so a
changed file or recipe is rendered afresh, never shown from an old entry. The file is
confined to the image root when its identity is read and again when it is decoded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from activekd_core.image_view import BytesCache, fit_image, png_bytes
from activekd_core.paths import resolve_inside
from activekd_core.thumbnail_cache import DEFAULT_MAX_BYTES, ThumbnailCache, entry_key, file_fingerprint

if TYPE_CHECKING:
    from activekd_core.project.context import ProjectContext


def file_stat(project: ProjectContext, image_id: str) -> os.stat_result:
    """``stat`` of the file holding ``image_id``, refused unless it lies inside the image root.

    Raises:
        activekd_core.paths.PathOutsideRoot: If the id escapes the image root.
        FileNotFoundError: If the file is gone.
    """
    return resolve_inside(project.image_root, project.image_file_id(image_id), must_exist=True).stat()


def render(project: ProjectContext, image_id: str, box: int) -> bytes:
    """PNG bytes of ``image_id`` fitted into ``box`` pixels (0 = full size), decoded now.

    Large images are shrunk to fit; images at most half of ``box`` are enlarged by a
    whole-number factor (nearest neighbour). Opened confined to the image root; DICOM and
    rasters with the project's display recipe.
    """
    return png_bytes(fit_image(project.load_image(image_id, draft_size=box if box > 0 else None), box))


def thumbnail_png(project: ProjectContext, image_id: str, box: int, memory: BytesCache | None = None,
                  *, recipe_key: str | None = None) -> bytes:
    """PNG bytes of ``image_id`` fitted into ``box`` pixels, from memory, disk or a fresh render.

    Args:
        project: The open project.
        image_id: A pool image.
        box: Thumbnail size in pixels (0 = full size).
        memory: The server's in-memory cache (checked first, filled on a miss).
        recipe_key: The display recipe's key when the caller has it (else read here).

    Raises:
        activekd_core.paths.PathOutsideRoot: If the file escapes the image root.
        FileNotFoundError: If the file is gone.
        activekd_core.images.ImageLoadError: If it cannot be decoded.
    """
    stat = file_stat(project, image_id)
    recipe_key = recipe_key if recipe_key is not None else project.recipe.key()
    disk = ThumbnailCache(project.folder)
    name = entry_key(image_id, file_fingerprint(stat), box, recipe_key)

    def make() -> bytes:
        found = disk.get(name)
        return found if found is not None else render(project, image_id, box)

    if memory is None:
        return make()
    key = ("thumb", str(project.image_root), image_id, stat.st_mtime_ns, stat.st_size, box, recipe_key)
    return memory.get_or_make(key, make)


def prerender(project: ProjectContext, image_ids: Sequence[str], box: int, *,
              max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """Render the thumbnails of ``image_ids`` into the project's on-disk cache; returns how many
    were written (those already there are skipped).

    An image that cannot be read is skipped (the page says why when it shows it). The
    cache is then pruned to ``max_bytes``, oldest entries first.

    Raises:
        activekd_core.paths.PathOutsideRoot: If the cache folder leads out of the project folder.
        OSError: If an entry cannot be written (e.g. the disk is full).
    """
    if box < 0:
        raise ValueError(f"box must be >= 0, got {box}")
    disk = ThumbnailCache(project.folder)
    disk.folder(create=True)  # a cache folder leading out of the project is refused here, before any work
    recipe_key = project.recipe.key()
    written = 0
    for image_id in image_ids:
        try:
            name = entry_key(image_id, file_fingerprint(file_stat(project, image_id)), box, recipe_key)
            if disk.get(name) is not None:
                continue
            data = render(project, image_id, box)
        except Exception:  # noqa: BLE001 - an image that cannot be read or decoded skips itself
            continue
        if disk.put(name, data) is not None:
            written += 1
    disk.prune(max_bytes)
    return written
