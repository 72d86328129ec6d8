"""Rendered thumbnails kept on disk inside a project folder, under keys that make a stale one unusable.

The worker that prepares the next query batch renders its thumbnails ahead
(:mod:`activekd_core.project.thumbnails`); the server process reads them back from here
instead of decoding and encoding ten images on the rerun that opens the batch.

An entry's name is a SHA-256 digest of everything its pixels depend on: the image id,
the identity of the file holding it (:func:`file_fingerprint`: device, inode, size,
modification and change times), the thumbnail size and the display recipe's key. A
changed file, another recipe or another size therefore looks up another name, and an
entry made for the old state is never found again (it is pruned as the oldest later).

Every path is confined to the cache folder inside the project folder: the folder itself is
resolved with :func:`activekd_core.paths.resolve_inside` (a cache folder that is a symbolic
link leading out of the project is refused), names are hex digests only, and entries are
opened without following a symbolic link. Writes are atomic
(:func:`activekd_core.atomic.atomic_write_bytes`): a reader sees a whole entry or none.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from activekd_core.atomic import atomic_write_bytes
from activekd_core.paths import PathOutsideRoot, resolve_inside

CACHE_DIR = "cache/thumbnails"  # inside the project folder
FORMAT_VERSION = 1  # part of every key: a change in how thumbnails are rendered starts afresh
MAX_ENTRY_BYTES = 16 << 20  # an entry larger than this is neither written nor read
DEFAULT_MAX_BYTES = 256 << 20  # what :meth:`ThumbnailCache.prune` keeps by default
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def file_fingerprint(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    """The identity of one file's content as far as ``stat`` tells it.

    ``(device, inode, size, modification time, change time)`` in nanoseconds: rewriting the
    file (even to the same size with its old modification time put back) changes the
    change time; replacing it by another file changes the inode.
    """
    return (int(stat.st_dev), int(stat.st_ino), int(stat.st_size), int(stat.st_mtime_ns), int(stat.st_ctime_ns))


def entry_key(image_id: str, fingerprint: tuple[int, ...], box: int, recipe_key: str) -> str:
    """The entry name of one thumbnail: a hex SHA-256 of what its pixels depend on."""
    payload = json.dumps([FORMAT_VERSION, str(image_id), [int(x) for x in fingerprint], int(box), str(recipe_key)],
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _check_key(key: str) -> str:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"a thumbnail cache key is a 64-character hex digest, got {key[:80]!r}")
    return key


class ThumbnailCache:
    """The thumbnail entries of one project folder (``<project>/cache/thumbnails``).

    Args:
        project_folder: The project folder (it must exist); the cache folder is made inside it.
    """

    def __init__(self, project_folder: Path | str) -> None:
        self.project_folder = Path(project_folder)

    def folder(self, *, create: bool = False) -> Path | None:
        """The cache folder, resolved inside the project folder; None when it does not exist
        (and ``create`` is False).

        Raises:
            PathOutsideRoot: If the cache folder (or a folder above it) is a symbolic link
                leading out of the project folder.
        """
        folder = resolve_inside(self.project_folder, CACHE_DIR)
        if create:
            folder.mkdir(parents=True, exist_ok=True)
            folder = resolve_inside(self.project_folder, CACHE_DIR)  # made by us or someone else meanwhile
        return folder if folder.is_dir() else None

    def get(self, key: str) -> bytes | None:
        """The PNG bytes stored under ``key``, or None (no entry, unreadable, not a PNG, or the
        cache folder is missing or leads out of the project folder)."""
        _check_key(key)
        try:
            folder = self.folder()
        except (PathOutsideRoot, OSError):
            return None
        if folder is None:
            return None
        nofollow = getattr(os, "O_NOFOLLOW", 0)
        try:  # neither the sub-folder nor the entry may be a symbolic link
            dir_fd = os.open(folder / key[:2], os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | nofollow)
        except OSError:
            return None
        try:
            fd = os.open(f"{key}.png", os.O_RDONLY | nofollow, dir_fd=dir_fd)
        except OSError:
            return None
        finally:
            os.close(dir_fd)
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_ENTRY_BYTES:
                return None
            data = fh.read(MAX_ENTRY_BYTES + 1)
        return data if data.startswith(_PNG_SIGNATURE) else None

    def put(self, key: str, data: bytes) -> Path | None:
        """Store ``data`` (PNG bytes) under ``key`` atomically; returns the entry's path
        (None when the entry is too large to keep).

        Raises:
            PathOutsideRoot: If the cache folder leads out of the project folder.
            ValueError: If ``data`` is not a PNG or ``key`` is not a hex digest.
        """
        _check_key(key)
        if not data.startswith(_PNG_SIGNATURE):
            raise ValueError("a thumbnail cache entry must be PNG bytes")
        if len(data) > MAX_ENTRY_BYTES:
            return None
        folder = self.folder(create=True)
        assert folder is not None
        sub = folder / key[:2]
        sub.mkdir(exist_ok=True)
        if sub.is_symlink() or not sub.resolve().is_relative_to(folder):
            raise PathOutsideRoot(folder, key[:2], "a symbolic link leads outside")
        return atomic_write_bytes(sub / f"{key}.png", data)

    def prune(self, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
        """Remove the least recently written entries until at most ``max_bytes`` remain;
        returns how many were removed (entries for files or recipes that changed age out here)."""
        try:
            folder = self.folder()
        except (PathOutsideRoot, OSError):
            return 0
        if folder is None:
            return 0
        entries: list[tuple[int, int, str]] = []
        for sub in os.scandir(folder):
            if not sub.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(sub.path):
                if entry.is_file(follow_symlinks=False) and entry.name.endswith(".png"):
                    st = entry.stat(follow_symlinks=False)
                    entries.append((st.st_mtime_ns, st.st_size, entry.path))
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in sorted(entries):
            if total <= max_bytes:
                break
            try:
                os.unlink(path)
            except OSError:
                continue
            total -= size
            removed += 1
        return removed
