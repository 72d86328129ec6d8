"""Finding the images under a root: walking the folder, checking each candidate, listing problems.

Scanning never stops on a bad file; each unusable file is reported with its path and a
reason (:class:`~activekd_core.image_pool.ImageProblem`) and skipped.

What a scan checks: ``scan_images(verify=True)`` opens every candidate's header (format,
size, pixel-count limit, which runs *before* any pixel is decoded), then runs a cheap
per-format integrity check: PNG chunk CRCs up to ``IEND`` (``Image.verify``; a plainly laid
out PNG file up to 1 MiB is read whole in one system call and checked in memory by
:mod:`activekd_core.png_check`, which accepts only what ``verify`` accepts, so the results
are the same at a fraction of the cost); JPEG files
must end with an end-of-image marker (``FF D9``) in their last 4 KiB -- if it is missing
the file is decoded once at 1/8 scale (``draft``) to tell a truncated file from one with
trailing bytes; GIF, BMP, TIFF and WebP (no cheap check exists) are decoded fully, so a
scan of JPEG/PNG images runs at header-read speed. Corruption that only a full decode
finds (e.g. a bad zlib stream with valid CRCs) is caught later by the decoders
(:mod:`activekd_core.image_decode`), and callers such as ``pixel_cache.decode_pool``
record it per row. ``scan_images(full_decode=True)`` decodes every file at scan time
instead.

Names: by default (``non_utf8_names="skip"``) a file whose path is not valid UTF-8 is
reported as a problem asking for a rename; with ``"keep"`` it is used under a
surrogate-escaped id (see :mod:`activekd_core.image_pool`).

Links: symlinked folders are not followed (no loops). A file symlink is used only when it
resolves to a regular file inside the root; loops, dangling links and links leading out
of the root are reported. Every candidate is opened confined to the root at the moment of
opening (:func:`activekd_core.image_open.open_scanned`), so a file or folder swapped for a
link after the listing is never read through.

DICOM and scientific TIFF (:mod:`activekd_core.image_formats`): candidates are the image
suffixes, DICOM suffixes and names without a suffix (or a digits-only one, as PACS
exports name files by UID); every candidate is sniffed by content. DICOM files and TIFFs
that Pillow cannot show properly are checked from their header and contribute one or
more items (frames ``path#frame``, chips ``path@x,y,w,h``), as the pool's display recipe
decides. A name without a suffix whose content is not DICOM (README, LICENSE) is
ignored silently; every other refusal (DICOMDIR, unsupported transfer syntax, too many
frames or bands, truncated pixel data) is a problem with its reason. No patient data
reaches a reason: the DICOM reader never decodes patient elements.
"""

from __future__ import annotations

import errno
import io
import os
import stat as stat_module
import struct
import threading
from collections import Counter
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from activekd_core import image_open
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_items import ItemRef
from activekd_core.image_open import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    JPEG_FORMATS,
    ImageLoadError,
    os_error_reason,
    too_large_reason,
)
from activekd_core.image_pool import ImagePool, ImageProblem, display_id, is_portable_id
from activekd_core.paths import PathOutsideRoot
from activekd_core.png_check import sound_png_size
from activekd_core.progress import ProgressFn

_JPEG_TAIL_BYTES = 4096
_SNIFF_BYTES = 132  # DICOM: 128-byte preamble + "DICM"; TIFF: the first 4 bytes
_QUICK_READ_BYTES = 1 << 20  # PNG files up to this size are read whole and checked without Pillow
_QUICK_CHUNK = 256  # paths per read-ahead task
_READ_AHEAD_THREADS = 4  # threads asking the kernel to read ahead (they mostly wait on the disk)
_READ_AHEAD_CHUNKS = 16  # chunks asked for ahead of the one being checked


def scan_images(
    root: Path | str,
    *,
    verify: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    full_decode: bool = False,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    non_utf8_names: str = "skip",
    recipe: DisplayRecipe | None = None,
) -> ImagePool:
    """Find every image under ``root`` recursively, in sorted id order.

    Args:
        root: Folder to scan. Symlinked folders are not followed (no loops).
        verify: Open each file's header and run the cheap integrity checks described in
            the module docstring (non-images, oversize, truncated JPEG/PNG). Every
            candidate's first bytes are read to tell DICOM and TIFF apart; DICOM files are
            always checked from their header (their items come from it), TIFFs only with
            ``verify`` (without it a TIFF is one item, never chips).
        max_pixels: Largest width * height accepted.
        full_decode: Decode every image completely at scan time (slow, exhaustive).
        progress: ``progress(done, total, message)`` called while files are checked.
        cancel: When set, the scan stops early and raises ``InterruptedError``.
        non_utf8_names: ``"skip"`` (report files whose path is not valid UTF-8) or
            ``"keep"`` (use them, with surrogate-escaped ids; see :mod:`activekd_core.image_pool`).
        recipe: The display recipe (frames, chips, bands); kept on the pool. None: the
            default recipe.

    Returns:
        The pool of usable images, with skipped files listed in ``problems``.

    Raises:
        FileNotFoundError: If ``root`` does not exist or is not a folder.
        InterruptedError: If ``cancel`` was set.
    """
    if non_utf8_names not in ("skip", "keep"):
        raise ValueError(f"non_utf8_names must be 'skip' or 'keep', got {non_utf8_names!r}")
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found or not a folder: {root}")
    candidates = list(_walk_candidates(root))
    root_text = str(root)
    prefix = len(root_text.rstrip(os.sep)) + 1  # a candidate's id is its path after "<root>/"
    quick = verify and not full_decode  # plain PNG files: read once, checked without Pillow (_quick_png)
    pixel_limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)  # above it Pillow warns: full check
    kinds: Counter[str] = Counter()  # files per sniffed kind (the quick PNG path sniffs none)
    ids: list[str] = []
    problems: list[ImageProblem] = []
    stats: dict[str, tuple[int, int]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    items: dict[str, ItemRef] = {}
    order: dict[str, tuple[str, int]] = {}  # (file id, position in the file): frames in frame order
    effective = recipe if recipe is not None else DisplayRecipe()
    total = len(candidates)
    quick_paths = [path_text if quick and plain and os.path.splitext(path_text)[1].lower() == ".png"
                   and (non_utf8_names == "keep" or is_portable_id(path_text[prefix:])) else None
                   for path_text, plain in candidates]
    quick_results = _quick_pngs(root_text, quick_paths, pixel_limit)
    try:
        for done, ((path_text, _), sound) in enumerate(zip(candidates, quick_results), start=1):
            if cancel is not None and cancel.is_set():
                raise InterruptedError(f"scan of {root} cancelled")
            image_id = path_text[prefix:]
            if sound is not None:
                reason, found, entry = None, [(image_id, sound[0], None)], sound[1]
            else:  # every other file, and a PNG the quick check did not accept (the full check says why)
                reason, found, entry = _scan_one(root, Path(path_text), image_id, effective, max_pixels, full_decode,
                                                 verify=verify, non_utf8_names=non_utf8_names, kinds=kinds)
            # An item id that is also a file's name ("s#2" next to the frames of "s") would read
            # that file when the id is looked up (split_item_id tries the whole id first).
            clash = next((item_id for item_id, _, _ in found
                          if item_id in order or (item_id != image_id and os.path.lexists(root / item_id))), None)
            if reason is None and clash is not None:
                reason = (f"the image id {display_id(clash)!r} of one of its frames or chips is another file's name; "
                          "rename that file")
            if reason is None:
                for k, (item_id, size, ref) in enumerate(found):
                    ids.append(item_id)
                    order[item_id] = (image_id, k)
                    stats[item_id] = entry
                    if size is not None:
                        sizes[item_id] = size
                    if ref is not None and ref.item_id == item_id and (ref.frame is not None or ref.window is not None):
                        items[item_id] = ref
            elif reason:  # "" = not an image at all (a suffixless file that is not DICOM): ignored silently
                shown = display_id(image_id)
                problems.append(ImageProblem(shown, root / shown if shown != image_id else Path(path_text), reason))
            if progress is not None and (done % 500 == 0 or done == total):
                progress(done, total, f"checked {done}/{total} files")
    finally:
        quick_results.close()  # a scan that ends early stops the read-ahead
    ids.sort(key=order.__getitem__)
    problems.sort(key=lambda p: p.id)
    return ImagePool(root=root, ids=ids, problems=problems, recipe=recipe, _items=items, _stats=stats, _sizes=sizes,
                     _tiff_files=kinds["tiff"])


def _scan_one(
    root: Path, path: Path, image_id: str, recipe: DisplayRecipe, max_pixels: int, full_decode: bool, *,
    verify: bool, non_utf8_names: str, kinds: Counter[str],
) -> tuple[str | None, list[tuple[str, tuple[int, int] | None, ItemRef | None]], tuple[int, int]]:
    """One candidate: ``(reason, items, (size, mtime_ns))``; reason ``""`` means not an image (ignore).

    ``kinds`` counts the files by the kind their content was sniffed as.
    """
    bare = not _has_known_suffix(path.name)
    reason, entry = _file_problem(root, path)
    if bare and reason is not None:
        return "", [], entry  # a name without a suffix is an image only when its content says DICOM
    if reason is None and non_utf8_names == "skip" and not is_portable_id(image_id):
        if bare and not _sniffs_dicom(path):
            return "", [], entry
        reason = "file or folder name is not valid UTF-8 text; rename it to use this image"
    if reason is not None:
        return reason, [], entry
    reason, found = _content_items(root, path, image_id, recipe, max_pixels, full_decode, verify=verify, bare=bare,
                                   kinds=kinds)
    if reason is None and not found:
        return "", [], entry
    return reason, found, entry


def _has_known_suffix(name: str) -> bool:
    from activekd_core.image_formats import DICOM_SUFFIXES  # it imports activekd_core.images, which imports this module

    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES


def _sniffs_dicom(path: Path) -> bool:
    from activekd_core.dicom_images import is_dicom  # pydicom is loaded only when a scan needs it

    return is_dicom(path)


def _walk_candidates(root: Path) -> Iterator[tuple[str, bool]]:
    """``(path, plain)`` for each entry under ``root`` whose name may hold an image.

    Image and DICOM suffixes, names without a suffix and digits-only suffixes
    (:func:`activekd_core.image_formats.is_candidate_name`); folders are listed only when
    their name has a known suffix (to report them). ``plain``: the directory entry is a
    regular file, not a link (from the entry's type, no extra system call). The order is
    ``os.walk``'s top-down order with names sorted (each folder's candidates, then its
    sub-folders in turn); symbolic links to folders are listed, never entered (no loops);
    an unreadable sub-folder is skipped.
    """
    from activekd_core.image_formats import is_candidate_name  # it imports activekd_core.images

    stack = [str(root)]
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as listing:
                entries = list(listing)
        except OSError:  # unreadable sub-folder: skip, scanning goes on
            continue
        folders: list[str] = []
        names: list[tuple[str, bool]] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                folders.append(entry.name)
                if _has_known_suffix(entry.name):
                    names.append((entry.name, False))
            elif is_candidate_name(entry.name):
                try:
                    plain = entry.is_file(follow_symlinks=False)
                except OSError:
                    plain = False
                names.append((entry.name, plain))
        names.sort()
        for name, plain in names:
            yield os.path.join(top, name), plain
        folders.sort()
        for name in reversed(folders):
            path = os.path.join(top, name)
            if not os.path.islink(path):
                stack.append(path)


def _quick_pngs(
    root: str, paths: list[str | None], max_pixels: int
) -> Generator[tuple[tuple[int, int], tuple[int, int]] | None, None, None]:
    """:func:`_quick_png` of each path in order (None for a None path), with the disk reads started ahead.

    Reading many small files one by one waits on the disk for each when they are not in
    the page cache. While this generator checks the files of one chunk (in the caller's
    thread), a few threads ask the kernel to start reading the files of the next
    :data:`_READ_AHEAD_CHUNKS` chunks (:func:`_hint_chunk`), so several reads are in
    flight. Small scans get no threads.
    """
    chunks = [paths[i:i + _QUICK_CHUNK] for i in range(0, len(paths), _QUICK_CHUNK)]
    hints = None
    if len(chunks) > 2 and hasattr(os, "posix_fadvise") and any(path is not None for path in paths):
        hints = ThreadPoolExecutor(_READ_AHEAD_THREADS, thread_name_prefix="scan-read-ahead")
    reached = [0]  # the chunk being checked: hints for chunks behind it are dropped
    hinted = 0  # chunks handed to the hint threads so far
    try:
        for k, chunk in enumerate(chunks):
            reached[0] = k
            while hints is not None and hinted < min(len(chunks), k + 1 + _READ_AHEAD_CHUNKS):
                if hinted > k:  # the current chunk is read right now: no hint
                    hints.submit(_hint_chunk, chunks[hinted], hinted, reached)
                hinted += 1
            for path in chunk:
                yield None if path is None else _quick_png(root, path, max_pixels)
    finally:
        if hints is not None:
            hints.shutdown(wait=True, cancel_futures=True)


def _hint_chunk(paths: list[str | None], index: int, reached: list[int]) -> None:
    """Ask the kernel to read these files into the page cache (``POSIX_FADV_WILLNEED``).

    Only a hint: no byte is read into this process, a final symbolic link is not followed,
    and the scan opens and checks each file itself later (confined). Stops once the scan
    has passed this chunk.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    for path in paths:
        if reached[0] > index:
            return
        if path is None:
            continue
        try:
            fd = os.open(path, flags)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def _quick_png(root: str, path: str, max_pixels: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``((width, height), (size, mtime_ns))`` of an intact, plainly laid out PNG file, else None.

    The file is opened confined to ``root`` (:func:`activekd_core.image_open.open_scanned`),
    read whole in one system call (up to :data:`_QUICK_READ_BYTES`) and checked in memory
    (:func:`activekd_core.png_check.sound_png_size`: what Pillow's open and ``verify``
    would accept, nothing more). None sends the file to the full check, which gives the
    reason when it is unusable: so a scan's results are the same with or without this path.
    """
    try:
        fd, st = image_open.open_scanned(root, path)
    except (OSError, ValueError):
        return None
    try:
        if not 0 < st.st_size <= _QUICK_READ_BYTES:
            return None
        data = os.read(fd, st.st_size)
    except (OSError, MemoryError):
        return None
    finally:
        os.close(fd)
    if data[128:132] == b"DICM":  # DICOM's marker after a 128-byte preamble: the DICOM reader decides
        return None
    size = sound_png_size(data, max_pixels)
    return None if size is None else (size, (st.st_size, st.st_mtime_ns))


def _content_items(
    root: Path, path: Path, image_id: str, recipe: DisplayRecipe, max_pixels: int, full_decode: bool, *, verify: bool,
    bare: bool, kinds: Counter[str],
) -> tuple[str | None, list[tuple[str, tuple[int, int] | None, ItemRef | None]]]:
    """The items of one candidate file: ``(reason it is unusable, [])`` or ``(None, items)``.

    Each item is ``(item id, (width, height) or None, ItemRef or None)``. An empty list
    without a reason means the file is no image at all (a suffixless non-DICOM file).
    """
    from activekd_core import image_formats  # it imports activekd_core.images, which imports this module

    try:
        with _open_confined(root, path) as fh:
            # One read of the head (the DICM marker sits at byte 128), sniffed in memory.
            kind = image_formats.sniff_format(io.BytesIO(fh.read(_SNIFF_BYTES)), name=path.name)
            kinds[kind] += 1
            if bare and kind != "dicom":
                return None, []
            if kind == "other" or (kind == "tiff" and not verify):
                if not verify:
                    return None, [(image_id, None, None)]
                reason, size = _content_problem(path, max_pixels, full_decode, fh=fh)
                return reason, [] if reason else [(image_id, size, None)]
            entries = image_formats.scan_file(fh, image_id, recipe, name=str(path), max_pixels=max_pixels)
            if entries is None:  # a plain 8-bit TIFF: the Pillow path checks it
                reason, size = _content_problem(path, max_pixels, full_decode, fh=fh)
                return reason, [] if reason else [(image_id, size, None)]
            if full_decode:
                for entry in entries:
                    fh.seek(0)
                    image_formats.read_display_rgb(fh, entry.ref, recipe, name=str(path), max_pixels=max_pixels)
            return None, [(e.ref.item_id, e.size, e.ref) for e in entries]
    except ImageLoadError as exc:
        return exc.reason, []
    except OSError as exc:
        return os_error_reason(exc), []
    except PathOutsideRoot as exc:  # swapped for a link leading out after the listing
        return f"refused: {exc.reason}", []
    except MemoryError:
        return "not enough memory to check this file", []
    except Exception as exc:  # noqa: BLE001 - one hostile file must never stop a scan
        return f"corrupt image (reader error {type(exc).__name__})", []


def _open_confined(root: Path, path: Path) -> BinaryIO:
    """A candidate opened confined to ``root`` (a link only when it still is one: the scan checked it)."""
    fd, _ = image_open.open_scanned(str(root), str(path), follow_links=os.path.islink(path))
    return os.fdopen(fd, "rb")


def _file_problem(root: Path, path: Path) -> tuple[str | None, tuple[int, int]]:
    """Check the directory entry: regular file, links resolving inside root."""
    try:
        lst = os.lstat(path)
    except OSError as exc:
        return os_error_reason(exc), (-1, -1)
    if stat_module.S_ISLNK(lst.st_mode):
        try:
            target = path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports loops this way
            return "symbolic link loop", (-1, -1)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic link loop", (-1, -1)
            return "dangling symbolic link (its target does not exist)", (-1, -1)
        if not target.is_relative_to(root):
            return f"symbolic link leads outside the image folder (to {target})", (-1, -1)
        try:
            st = os.stat(path)
        except OSError as exc:
            return os_error_reason(exc), (-1, -1)
    else:
        st = lst
    if stat_module.S_ISDIR(st.st_mode):
        return "is a directory, not an image file", (-1, -1)
    if not stat_module.S_ISREG(st.st_mode):
        return "not a regular file (device, pipe or socket)", (-1, -1)
    if st.st_size == 0:
        return "empty file (0 bytes)", (-1, -1)
    return None, (st.st_size, st.st_mtime_ns)


def _content_problem(
    path: Path, max_pixels: int, full_decode: bool, *, fh: BinaryIO | None = None
) -> tuple[str | None, tuple[int, int] | None]:
    """Check a file's contents: ``(reason it is unusable, None)`` or ``(None, (width, height))``.

    Args:
        path: The file (opened here unless ``fh`` is given).
        max_pixels: Largest width * height accepted.
        full_decode: Decode the pixels completely.
        fh: The file already open (read from its start, left open).
    """
    try:
        if fh is not None:
            fh.seek(0)
        with (image_open.open_plain_file(path) if fh is None else nullcontext(fh)) as fh:
            with Image.open(fh, formats=ALLOWED_FORMATS) as img:
                width, height = img.size
                if width * height > max_pixels:
                    return too_large_reason(width, height, max_pixels), None
                if width < 1 or height < 1:
                    return f"invalid size {width}x{height}", None
                fmt = img.format
                if full_decode:
                    img.load()
                elif fmt == "PNG":
                    img.verify()  # chunk CRCs up to IEND: catches truncation
                elif fmt in JPEG_FORMATS:
                    if not _jpeg_has_end_marker(fh):
                        img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                        img.load()  # raises on truncation; passes if only trailing bytes
                else:
                    img.load()  # GIF/BMP/TIFF/WebP: no cheap check, decode (first frame)
    except Image.DecompressionBombError as exc:
        return f"too large (decompression bomb guard): {exc}", None
    except Image.UnidentifiedImageError:
        return "not a recognised image format (contents do not match any of " + ", ".join(ALLOWED_FORMATS) + ")", None
    except OSError as exc:
        if exc.errno is not None:
            return os_error_reason(exc), None
        return f"corrupt or truncated image: {exc}", None
    except (SyntaxError, ValueError, EOFError, MemoryError, struct.error) as exc:
        return f"corrupt image: {exc}", None
    except Exception as exc:  # noqa: BLE001 - one hostile file must never stop a scan
        return f"corrupt image (decoder error {type(exc).__name__}: {exc})", None
    return None, (width, height)


def _jpeg_has_end_marker(fh: BinaryIO) -> bool:
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - _JPEG_TAIL_BYTES))
    return b"\xff\xd9" in fh.read(_JPEG_TAIL_BYTES)
