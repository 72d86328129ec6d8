"""Opening image files: the confined reader for pool images, and the limits and reasons shared by scans and decodes.

Confined opening: every reader of a pool image (thumbnails, training pixels, teachers,
exports) opens it with :func:`open_image_file` (directly or through
:func:`activekd_core.image_decode.load_image`), which checks *at the moment of opening*
that the file actually opened lies inside the image root: the id is resolved and checked
(:func:`activekd_core.paths.resolve_inside`), the file is opened with ``O_NOFOLLOW`` (a
last component swapped for a symbolic link since the check is refused), and the opened
descriptor itself is checked (its path through ``/proc/self/fd`` on Linux, else its
device and inode against the checked path). A file replaced by a link to somewhere
outside the root after it was first shown or scanned is therefore never read. Files that
are not pool images are opened by plain path with :func:`open_plain_file`.

Formats: only the Pillow decoders for the listed suffixes are enabled
(:data:`ALLOWED_FORMATS`, passed as ``Image.open(formats=...)``), so a file named
``.png`` that is really some exotic format is refused rather than handed to a rarely
used decoder.
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
from pathlib import Path
from typing import BinaryIO

from activekd_core.paths import PathOutsideRoot, resolve_inside

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
DEFAULT_MAX_PIXELS = 64_000_000
# Pillow decoders allowed for our suffixes (the JPEG one also opens MPO files from phones).
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "TIFF", "WEBP", "GIF")
JPEG_FORMATS = frozenset({"JPEG", "MPO"})


class ImageLoadError(Exception):
    """An image file could not be turned into RGB pixels.

    Attributes:
        path: The file that failed.
        reason: A short human-readable reason.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def open_plain_file(path: Path) -> BinaryIO:
    """Open a file by its plain path for reading, not confined (files that are not pool images;
    a scan opens the files it finds with :func:`open_scanned`).

    The one place such files are opened: a seam where tests inject I/O failures. Callers
    look it up on this module at call time (``image_open.open_plain_file``) so that an
    injected failure reaches every one of them.
    """
    return open(path, "rb")  # noqa: SIM115 - closed by the caller's context manager


def open_scanned(root: str, path: str, *, follow_links: bool = False) -> tuple[int, os.stat_result]:
    """Open a file a scan found under ``root``, confined to ``root`` at the moment of opening.

    The lean form of :func:`open_image_file` for a path that came from listing ``root``
    (no ``..``, no id to resolve): the file is opened without following a final symbolic
    link (unless ``follow_links``: a link the scan checked), must be a regular file, and the
    descriptor actually opened must lie inside ``root`` (its path through ``/proc/self/fd``
    on Linux, else its device and inode against the path). A folder swapped for a link
    after the listing is therefore never read through. Scans call it as
    ``image_open.open_scanned`` at call time (a seam where tests inject I/O failures).

    Args:
        root: The image root, resolved (no symbolic link in it).
        path: The file's path under ``root``.
        follow_links: Follow a final symbolic link (then the file it leads to is checked).

    Returns:
        ``(descriptor, its fstat)``; the caller closes the descriptor.

    Raises:
        activekd_core.paths.PathOutsideRoot: The file opened lies outside ``root``.
        OSError: It cannot be opened or is not a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = _os_open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_links:
            raise PathOutsideRoot(root, path, "replaced by a symbolic link while being opened") from exc
        raise
    try:
        st = os.fstat(fd)
        if stat_module.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        if not stat_module.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (device, pipe or socket)", path)
        opened = _descriptor_path(fd)
        if opened is not None:
            if not opened.startswith(root.rstrip(os.sep) + os.sep):
                raise PathOutsideRoot(root, path, f"the file opened lies outside (at {opened})")
        else:  # no /proc: the file opened must be the one at the path
            now = os.stat(path, follow_symlinks=follow_links)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise PathOutsideRoot(root, path, "the file changed while being opened")
        return fd, st  # a regular file: O_NONBLOCK has no effect on its reads
    except BaseException:
        os.close(fd)
        raise


def os_error_reason(exc: OSError) -> str:
    """A short reason, for people, for an ``OSError`` raised while reading an image file."""
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (cannot read the file)"
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return "file not found (deleted, or a dangling symbolic link)"
    if isinstance(exc, IsADirectoryError) or exc.errno == errno.EISDIR:
        return "is a directory, not an image file"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return f"cannot read the file: {exc.strerror or exc}"


def too_large_reason(width: int, height: int, max_pixels: int) -> str:
    """The reason given for an image with more than ``max_pixels`` pixels."""
    return f"too large: {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,}"


def open_image_file(root: Path | str, image_id: str) -> BinaryIO:
    """Open the pool image ``image_id`` for reading, confined to ``root`` when it is opened.

    See the module docstring: the id is resolved and checked, the
    file is opened without following a final symbolic link, and the descriptor actually
    opened must be a regular file inside ``root``.

    Args:
        root: The image root.
        image_id: The image's id (POSIX path relative to ``root``).

    Returns:
        A binary file object (the caller closes it).

    Raises:
        activekd_core.paths.PathOutsideRoot: The id, or the file it leads to at the moment
            of opening, lies outside ``root`` (a ``ValueError``).
        OSError: The file cannot be opened (missing, permission, not a regular file).
    """
    root_resolved = Path(root).resolve(strict=True)
    path = resolve_inside(root_resolved, image_id)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = _os_open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component became a symbolic link after the check
            raise PathOutsideRoot(root_resolved, image_id, "replaced by a symbolic link while being opened") from exc
        raise
    try:
        st = os.fstat(fd)
        if stat_module.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat_module.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (device, pipe or socket)", str(path))
        opened = _descriptor_path(fd)
        if opened is not None:
            if not Path(opened).is_relative_to(root_resolved):
                raise PathOutsideRoot(root_resolved, image_id, f"the file opened lies outside (at {opened})")
        else:  # no /proc: the file opened must be the one that was checked
            now = os.stat(path, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise PathOutsideRoot(root_resolved, image_id, "the file changed while being opened")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _os_open(path: Path | str, flags: int) -> int:
    """``os.open`` (a seam so tests can swap a file between the check and the open)."""
    return os.open(path, flags)


def _descriptor_path(fd: int) -> str | None:
    """The path the kernel holds for an open descriptor (Linux ``/proc``), or None."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
