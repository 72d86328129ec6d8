"""Atomic file writes: a temporary file in the destination folder, fsync, rename.

A crash never leaves a half-written file under the destination name: readers see the old
content or the new one, never a mix.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "fsync_file"]


def fsync_file(path: Path | str) -> None:
    """Flush ``path``'s content to disk (no-op where the platform cannot)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_dir(folder: Path | str) -> None:
    """Flush a folder's entries (a rename inside it survives a power cut only after this)."""
    fsync_file(folder)


@contextmanager
def atomic_path(dest: Path | str, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on a clean exit it is synced and renamed to ``dest``.

    For writers that take a path (``np.save``, ``safetensors.save_file``, ``torch.save``).
    On an exception the temporary file is removed and ``dest`` keeps its old content.

    Args:
        dest: Final file name; its parent folders are created.
        suffix: Ending of the temporary name (some writers append an extension unless the
            name already ends with it, e.g. ``".npy"`` for ``np.save``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=str(dest.parent))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)


def atomic_write_bytes(dest: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically (parent folders are created); returns ``dest``."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return dest


def atomic_write_text(dest: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded with ``encoding``."""
    return atomic_write_bytes(dest, text.encode(encoding))
