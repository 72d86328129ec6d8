"""The image pool (ordered image ids under one root), image ids as text and bytes, and duplicate files.

An image is named by a stable id: its POSIX path relative to the image root, or an item
id (``path#frame``, ``path@x,y,w,h``) for a DICOM frame or a raster chip.

File names that are not valid UTF-8: on POSIX, names are bytes. Python decodes them with
``surrogateescape``, so such an id contains lone surrogates (``\\udcXX``) and cannot be
encoded as UTF-8: SQLite and UTF-8 text files refuse it. :func:`id_to_bytes` /
:func:`id_from_bytes` store such an id losslessly, :func:`display_id` shows it
(undecodable bytes as ``\\xNN``) and :func:`is_portable_id` tells the two kinds apart
(see ``non_utf8_names`` of :func:`activekd_core.image_scan.scan_images`).
``ImageProblem.id`` and ``.path`` are always in the printable :func:`display_id` form: a
problem is a report to store and show, not a key to open the file with.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from activekd_core import image_open
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_items import ItemRef, split_item_id
from activekd_core.image_open import open_image_file
from activekd_core.progress import ProgressFn


@dataclass(frozen=True)
class ImageProblem:
    """A file that looked like an image but could not be used.

    Attributes:
        id: The file's id (POSIX path relative to the root), in its printable
            :func:`display_id` form so that it can be stored and shown anywhere.
        path: The file's absolute path (printable form, like ``id``).
        reason: A short human-readable reason.
    """

    id: str
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{display_id(self.id)}: {self.reason}"


@dataclass
class ImagePool:
    """An ordered set of images under one root; row i of every array is ``ids[i]``.

    Attributes:
        root: The image root folder.
        ids: Image ids (POSIX paths relative to ``root``, or item ids ``path#frame`` /
            ``path@x,y,w,h`` for DICOM frames and raster chips), in pool order.
        problems: Files skipped while scanning, with reasons.
        recipe: The display recipe for DICOM and scientific TIFF items (None: default).

    A pool is treated as immutable once built (by :func:`~activekd_core.image_scan.scan_images` or by hand):
    :meth:`fingerprint` is computed once and cached on the object. Replacing or resizing
    ``ids`` invalidates that cache; editing ``ids`` in place at the same length does not,
    so build a new pool instead (``fingerprint(recheck=True)`` always recomputes).
    """

    root: Path
    ids: list[str]
    problems: list[ImageProblem] = field(default_factory=list)
    # How DICOM/raster items become RGB (None: the default recipe); part of the fingerprint.
    recipe: DisplayRecipe | None = None
    # ItemRef per item id made by a scan (frames, chips); other ids are parsed on demand.
    _items: dict[str, ItemRef] = field(default_factory=dict, repr=False, compare=False)
    # (size, mtime_ns) per id, recorded at scan time so fingerprint() needs no disk access.
    _stats: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False, compare=False)
    # (width, height) per id, read from the header by a verifying scan (so nobody reopens files for it).
    _sizes: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False, compare=False)
    # Files a scan sniffed as TIFF (None: not known, e.g. a pool built by hand). With 0 a
    # project's pool-wide stretch has no raster to survey (activekd_core.pool_stretch).
    _tiff_files: int | None = field(default=None, repr=False, compare=False)
    # (the ids list object, its length, fingerprint) of the last fingerprint() call; holding
    # the list itself (not its id()) so a replaced list can never be mistaken for it.
    _fingerprint: tuple[list[str], int, str] | None = field(default=None, repr=False, compare=False)
    # (the ids list object, its length, id -> row) of the last index_of() call, same rule.
    _index: tuple[list[str], int, Mapping[str, int]] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, index: int) -> Path:
        """Absolute path of the image at pool row ``index``."""
        return self.root / self.ids[index]

    def item_ref(self, image_id: str) -> ItemRef:
        """The file and frame/window an id names (see :func:`item_ref`)."""
        ref = self._items.get(image_id)
        return ref if ref is not None else item_ref(self.root, image_id)

    def index_of(self) -> Mapping[str, int]:
        """A read-only mapping from image id to pool row, built once per ``ids`` list (like
        :meth:`fingerprint`): at 1M images a fresh dict costs 0.4 s, and pages ask often."""
        cached = self._index
        if cached is None or cached[0] is not self.ids or cached[1] != len(self.ids):
            cached = (self.ids, len(self.ids), MappingProxyType({image_id: i for i, image_id in enumerate(self.ids)}))
            self._index = cached
        return cached[2]

    def image_size(self, image_id: str) -> tuple[int, int] | None:
        """``(width, height)`` of an image as read by a verifying scan, or None when unknown
        (a pool built by hand or scanned with ``verify=False``); no file is opened."""
        return self._sizes.get(image_id)

    def fingerprint(self, *, recheck: bool = False) -> str:
        """A hash of the pool's content: ids, file sizes and modification times, in order,
        and the display recipe's key when the pool has a recipe other than the default.

        Cheap: sizes and times recorded by :func:`~activekd_core.image_scan.scan_images` are
        reused, so no file is touched, and the result is cached on the pool (see the
        class docstring), so later calls cost nothing. Files not seen by a scan (a pool
        built by hand) are stat-ed once and remembered.

        Args:
            recheck: Stat every file again (picks up files changed since the scan).

        Returns:
            16 hex characters.
        """
        cached = self._fingerprint
        if not recheck and cached is not None and cached[0] is self.ids and cached[1] == len(self.ids):
            return cached[2]
        digest = hashlib.sha256()
        stats = self._stats
        root = os.fspath(self.root) + os.sep
        for image_id in self.ids:
            entry = None if recheck else stats.get(image_id)
            if entry is None:  # a plain id is its file's path: a string join, no Path or ItemRef per file
                plain = "#" not in image_id and "@" not in image_id
                entry = _os_stat_entry(root + image_id) if plain else _stat_entry(self.root / self.item_ref(image_id).file_id)
                stats[image_id] = entry
            digest.update(id_to_bytes(image_id) + f"\0{entry[0]}\0{entry[1]}\n".encode())
        if self.recipe is not None and self.recipe != DisplayRecipe():
            digest.update(b"recipe\0" + self.recipe.key().encode())
        value = digest.hexdigest()[:16]
        self._fingerprint = (self.ids, len(self.ids), value)
        return value


def item_ref(root: Path | str, image_id: str) -> ItemRef:
    """The file and frame/window an id names.

    An id without ``#`` or ``@`` is a plain file (no disk access). Otherwise the whole id
    is a file when such a file exists; else a well-formed ``#frame`` / ``@x,y,w,h`` suffix
    is split off when the rest names a file (:func:`activekd_core.image_items.split_item_id`).
    Only ``stat`` calls here; every read still opens the file with :func:`open_image_file`.
    """
    if "#" not in image_id and "@" not in image_id:
        return ItemRef(image_id)
    base = Path(root)

    def is_file(candidate: str) -> bool:
        try:
            return (base / candidate).is_file()
        except (OSError, ValueError):
            return False

    return split_item_id(image_id, is_file)


def _stat_entry(path: Path) -> tuple[int, int]:
    return _os_stat_entry(os.fspath(path))


def _os_stat_entry(path: str) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a file (links followed), ``(-1, -1)`` when it cannot be stat-ed."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def id_to_bytes(image_id: str) -> bytes:
    """Encode an id losslessly to bytes (UTF-8; undecodable name bytes restored)."""
    return image_id.encode("utf-8", "surrogateescape")


def id_from_bytes(raw: bytes) -> str:
    """Inverse of :func:`id_to_bytes`."""
    return raw.decode("utf-8", "surrogateescape")


def is_portable_id(image_id: str) -> bool:
    """Whether the id is plain UTF-8 text (no bytes that failed to decode)."""
    try:
        image_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_id(image_id: str) -> str:
    """A printable form of an id: undecodable name bytes shown as ``\\xNN``."""
    return id_to_bytes(image_id).decode("utf-8", "backslashreplace")


def file_digest(path: Path | str, *, chunk_size: int = 1 << 20, root: Path | str | None = None) -> str:
    """BLAKE2b-128 hex digest of a file's bytes.

    Args:
        path: The file; with ``root``, an image id opened confined to ``root``
            (:func:`open_image_file`).
        chunk_size: Bytes read at a time.
        root: The image root, for pool images.
    """
    digest = hashlib.blake2b(digest_size=16)
    handle = open_image_file(root, os.fspath(path)) if root is not None else image_open.open_plain_file(Path(path))
    with handle as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def find_duplicates(pool: ImagePool, *, progress: ProgressFn | None = None) -> list[list[str]]:
    """Groups of images whose files hold exactly the same bytes.

    Files are first grouped by size (no reading); only files sharing a size are hashed
    (BLAKE2b), so a pool without same-size files costs one stat per file at most.
    Unreadable files are left out.

    Args:
        pool: The image pool.
        progress: ``progress(done, total, message)`` while hashing.

    Returns:
        Groups (each of two or more ids, in pool order), ordered by their first id's row.
    """
    by_size: dict[int, list[int]] = {}
    for i, image_id in enumerate(pool.ids):
        entry = pool._stats.get(image_id)
        if entry is None:
            entry = pool._stats[image_id] = _stat_entry(pool.path(i))
        size = entry[0]
        if size >= 0:
            by_size.setdefault(size, []).append(i)
    candidates = [rows for rows in by_size.values() if len(rows) > 1]
    total = sum(len(rows) for rows in candidates)
    done = 0
    groups: list[list[int]] = []
    for rows in candidates:
        by_hash: dict[str, list[int]] = {}
        for i in rows:
            try:
                by_hash.setdefault(file_digest(pool.ids[i], root=pool.root), []).append(i)
            except (OSError, ValueError):  # unreadable, or refused as outside the root
                pass
            done += 1
            if progress is not None:
                progress(done, total, f"hashed {done}/{total} same-size files")
        groups.extend(sorted(g) for g in by_hash.values() if len(g) > 1)
    groups.sort(key=lambda g: g[0])
    return [[pool.ids[i] for i in g] for g in groups]
