"""Image discovery and robust loading.

An image is named by a stable id: its POSIX path relative to the image root. Scanning
never stops on a bad file; each unusable file is reported with its path and a reason
(:class:`ImageProblem`) and skipped.

Design decisions (documented here because callers depend on them):

* **What a scan checks.** ``scan_images(verify=True)`` opens every candidate's header
  (format, size, pixel-count limit, which runs *before* any pixel is decoded), then runs a
  cheap per-format integrity check: PNG chunk CRCs up to ``IEND`` (``Image.verify``);
  JPEG files must end with an end-of-image marker (``FF D9``) in their last 4 KiB -- if it
  is missing the file is decoded once at 1/8 scale (``draft``) to tell a truncated file from
  one with trailing bytes; GIF, BMP, TIFF and WebP (no cheap check exists) are decoded
  fully. This keeps a scan of 100k JPEG/PNG images at header-read speed. Corruption that
  only a full decode finds (e.g. a bad zlib stream with valid CRCs) is caught later by
  :func:`load_rgb`, which never accepts truncated data (``LOAD_TRUNCATED_IMAGES`` is
  never set here), and callers such as ``pixel_cache.decode_pool`` record it per row.
  ``scan_images(full_decode=True)`` decodes every file at scan time instead.
* **File names that are not valid UTF-8.** On POSIX, names are bytes. Python decodes
  them with ``surrogateescape``, so such an id contains lone surrogates (``\\udcXX``) and
  cannot be encoded as UTF-8: SQLite and UTF-8 text files refuse it. By default
  (``non_utf8_names="skip"``) the scan therefore reports such a file as a problem asking
  for a rename. With ``non_utf8_names="keep"`` it is kept: the id stays usable for file
  access (``pool.path(i)``, ``root / id``, ``open``), :func:`id_to_bytes` /
  :func:`id_from_bytes` store it losslessly, and :func:`display_id` shows it (undecodable
  bytes as ``\\xNN``). :func:`is_portable_id` tells the two kinds apart.
  ``ImageProblem.id`` and ``.path`` are always in the printable :func:`display_id` form:
  a problem is a report to store and show, not a key to open the file with.
* **Links.** Symlinked folders are not followed (no loops). A file symlink is used only
  when it resolves to a regular file inside the root; loops, dangling links and links
  leading out of the root are reported.
* **Confined opening.** Every reader of a pool image (thumbnails, training pixels,
  teachers, exports) opens it with :func:`open_image_file` / :func:`load_image`, which
  check *at the moment of opening* that the file actually opened lies inside the image
  root: the id is resolved and checked (:func:`activekd_core.paths.resolve_inside`), the
  file is opened with ``O_NOFOLLOW`` (a last component swapped for a symbolic link since
  the check is refused), and the opened descriptor itself is checked (its path through
  ``/proc/self/fd`` on Linux, else its device and inode against the checked path). A
  file replaced by a link to somewhere outside the root after it was first shown or
  scanned is therefore never read. :func:`load_rgb` takes a plain path (no root) and is
  for files that are not pool images.
* **Memory.** Decoding allocates about ``width * height * 4`` bytes before any resizing
  (an 8000x8000 RGBA PNG of 249 KB holds 256 MB of pixels). With ``draft_size``, JPEGs are
  decoded at a reduced DCT scale and other formats are box-reduced right after decoding,
  before any mode conversion, so the conversions work on the small image. Every decode
  first reserves its estimated peak from a process-wide :class:`DecodeBudget`
  (:data:`DECODE_BUDGET`, ``$ACTIVEKD_DECODE_MEMORY_MB``, default an eighth of the RAM,
  at most 512 MiB), so concurrent decoders (pixel cache threads, thumbnails) wait rather
  than add their peaks; one decode larger than the whole budget runs alone.
* **Formats.** Only the decoders for the listed suffixes are enabled
  (``Image.open(formats=...)``), so a file named ``.png`` that is really some exotic
  format is refused rather than handed to a rarely used decoder.
* **DICOM and scientific TIFF** (:mod:`activekd_core.image_formats`). Candidates are the
  image suffixes, DICOM suffixes and names without a suffix (or a digits-only one, as PACS
  exports name files by UID); every candidate is sniffed by content. DICOM files and TIFFs
  that Pillow cannot show properly (16-bit, float, more than 3 bands, geo-referenced,
  chipped) are checked from their header and contribute one or more items: a frame
  (``path#frame``, 1-based, with the recipe's ``frames="each"``) or a chip
  (``path@x,y,w,h``); the others keep the plain file id. The pool's
  :class:`~activekd_core.display_recipe.DisplayRecipe` decides frames, chips, window and
  bands, is part of :meth:`ImagePool.fingerprint` (when not the default) and is passed to
  :func:`load_image`, which opens the item's FILE confined to the root and turns it into
  the same 8-bit RGB for the page, the teacher and the student. A name without a suffix
  whose content is not DICOM (README, LICENSE) is ignored silently; every other refusal
  (DICOMDIR, unsupported transfer syntax, too many frames or bands, truncated pixel data)
  is a problem with its reason. No patient data reaches a reason: the DICOM reader never
  decodes patient elements.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat as stat_module
import struct
import threading
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_items import ItemRef, split_item_id
from activekd_core.paths import PathOutsideRoot, resolve_inside

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
DEFAULT_MAX_PIXELS = 64_000_000
# Pillow decoders allowed for our suffixes (the JPEG one also opens MPO files from phones).
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "TIFF", "WEBP", "GIF")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_JPEG_TAIL_BYTES = 4096
_SNIFF_BYTES = 132  # DICOM: 128-byte preamble + "DICM"; TIFF: the first 4 bytes

ProgressFn = Callable[[int, int, str], None]


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

    A pool is treated as immutable once built (by :func:`scan_images` or by hand):
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
    # (the ids list object, its length, fingerprint) of the last fingerprint() call; holding
    # the list itself (not its id()) so a replaced list can never be mistaken for it.
    _fingerprint: tuple[list[str], int, str] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, index: int) -> Path:
        """Absolute path of the image at pool row ``index``."""
        return self.root / self.ids[index]

    def item_ref(self, image_id: str) -> ItemRef:
        """The file and frame/window an id names (see :func:`item_ref`)."""
        ref = self._items.get(image_id)
        return ref if ref is not None else item_ref(self.root, image_id)

    def index_of(self) -> dict[str, int]:
        """A mapping from image id to pool row."""
        return {image_id: i for i, image_id in enumerate(self.ids)}

    def image_size(self, image_id: str) -> tuple[int, int] | None:
        """``(width, height)`` of an image as read by a verifying scan, or None when unknown
        (a pool built by hand or scanned with ``verify=False``); no file is opened."""
        return self._sizes.get(image_id)

    def fingerprint(self, *, recheck: bool = False) -> str:
        """A hash of the pool's content: ids, file sizes and modification times, in order,
        and the display recipe's key when the pool has a recipe other than the default.

        Cheap: sizes and times recorded by :func:`scan_images` are reused, so no file is
        touched (about 0.1 s for 100k ids), and the result is cached on the pool (see the
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
        for image_id in self.ids:
            entry = None if recheck else self._stats.get(image_id)
            if entry is None:
                entry = _stat_entry(self.root / self.item_ref(image_id).file_id)
                self._stats[image_id] = entry
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
    try:
        st = path.stat()
    except OSError:
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


def _open_file(path: Path) -> BinaryIO:
    """Open a file for reading (a seam so tests can inject I/O failures)."""
    return open(path, "rb")  # noqa: SIM115 - closed by the caller's context manager


def _os_error_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (cannot read the file)"
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return "file not found (deleted, or a dangling symbolic link)"
    if isinstance(exc, IsADirectoryError) or exc.errno == errno.EISDIR:
        return "is a directory, not an image file"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return f"cannot read the file: {exc.strerror or exc}"


class DecodeBudget:
    """A counting semaphore over bytes: concurrent decodes together stay under ``capacity``.

    ``reserve(n)`` waits until ``n`` bytes are free (a request larger than the whole
    capacity waits until nothing else is reserved, then runs alone), and releases them on
    exit. Used by every image decode in this process (see the module docstring).

    Attributes:
        capacity: Bytes that may be reserved at once.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        self._in_use = 0
        self._peak = 0
        self._cond = threading.Condition()

    @property
    def in_use(self) -> int:
        """Bytes reserved right now."""
        return self._in_use

    @property
    def peak(self) -> int:
        """The most bytes reserved at once since creation (for tests and benchmarks)."""
        return self._peak

    def reserve(self, nbytes: int) -> _Reservation:
        """A context manager holding ``nbytes`` (clamped to the capacity) while it is open."""
        return _Reservation(self, min(max(0, int(nbytes)), self.capacity))

    def _acquire(self, n: int) -> None:
        with self._cond:
            while self._in_use + n > self.capacity:
                self._cond.wait()
            self._in_use += n
            self._peak = max(self._peak, self._in_use)

    def _release(self, n: int) -> None:
        with self._cond:
            self._in_use -= n
            self._cond.notify_all()


class _Reservation:
    def __init__(self, budget: DecodeBudget, n: int) -> None:
        self.budget, self.n = budget, n

    def __enter__(self) -> _Reservation:
        self.budget._acquire(self.n)
        return self

    def __exit__(self, *exc: object) -> None:
        self.budget._release(self.n)


def _default_budget_bytes() -> int:
    raw = os.environ.get("ACTIVEKD_DECODE_MEMORY_MB", "").strip()
    if raw:
        try:
            return max(16, int(raw)) << 20
        except ValueError:
            pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 4 << 30
    return int(min(512 << 20, max(128 << 20, ram // 8)))


DECODE_BUDGET = DecodeBudget(_default_budget_bytes())
# Pillow allocates pixels in blocks of 16 MB by default. glibc serves blocks that size from
# per-thread heap arenas, which keep the memory after an image is freed, so N decoding
# threads would each hold on to their largest decode. Blocks above glibc's largest mmap
# threshold (32 MB) are mapped and unmapped one by one, so freed pixels go back to the
# system at once. Small images are unaffected (a block is never larger than the image).
_PILLOW_BLOCK_BYTES = 64 << 20
if Image.core.get_block_size() < _PILLOW_BLOCK_BYTES:
    Image.core.set_block_size(_PILLOW_BLOCK_BYTES)
# Modes whose pixels may be box-averaged (not palette indices, not 1-bit, not I;16).
_REDUCIBLE_MODES = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "I", "F", "CMYK", "YCbCr"})


def estimate_decode_bytes(width: int, height: int, mode: str, *, reduced: bool) -> int:
    """Estimated peak bytes of decoding a ``width`` x ``height`` image of ``mode``.

    Pillow stores 1/L/P in one byte per pixel, I;16 in two and every other mode in four.
    A decode that is reduced right away (``draft_size``) peaks at the full-size pixels
    plus the small copy; a full-size decode also holds a few full-size conversions
    (alpha compositing, RGB).
    """
    per_pixel = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    pixels = int(width) * int(height)
    return pixels * per_pixel + (pixels * 4 // 4 if reduced else pixels * 4 * 3)


def open_image_file(root: Path | str, image_id: str) -> BinaryIO:
    """Open the pool image ``image_id`` for reading, confined to ``root`` when it is opened.

    See "Confined opening" in the module docstring: the id is resolved and checked, the
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


def _os_open(path: Path, flags: int) -> int:
    """``os.open`` (a seam so tests can swap a file between the check and the open)."""
    return os.open(path, flags)


def _descriptor_path(fd: int) -> str | None:
    """The path the kernel holds for an open descriptor (Linux ``/proc``), or None."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def load_image(
    root: Path | str,
    image_id: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
    recipe: DisplayRecipe | None = None,
    ref: ItemRef | None = None,
) -> Image.Image:
    """Load the pool image ``image_id`` as RGB, opened confined to ``root`` (see :func:`open_image_file`).

    Plain images get the same decoding as :func:`load_rgb`. DICOM files, item ids
    (``path#frame``, ``path@x,y,w,h``) and TIFFs that need the raster reader are read by
    :func:`activekd_core.image_formats.read_display_rgb` with ``recipe``: the FILE is
    opened confined to the root, then only the item's frame or window is decoded. Every
    way the file can be unusable, a refused (escaping) file included, is an
    :class:`ImageLoadError`.

    Args:
        root: The image root.
        image_id: The image's id (a file id or an item id).
        max_pixels: Most pixels decoded at once.
        draft_size: The shorter side the caller needs (decode at a reduced size).
        recipe: The project's display recipe (None: the default recipe).
        ref: The item the id names when the caller already knows it (a scanned pool's
            :meth:`ImagePool.item_ref`); else it is worked out from the id.

    Raises:
        ImageLoadError: With the path and the reason.
    """
    display = Path(root) / display_id(image_id)
    if ref is None:
        ref = item_ref(root, image_id)
    try:
        handle = open_image_file(root, ref.file_id)
    except PathOutsideRoot as exc:
        raise ImageLoadError(display, f"refused: {exc.reason}") from exc
    except FileNotFoundError as exc:
        raise ImageLoadError(display, "file not found (deleted, or a dangling symbolic link)") from exc
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise ImageLoadError(display, "not a regular file (device, pipe or socket)") from exc
        raise ImageLoadError(display, _os_error_reason(exc)) from exc
    with handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise ImageLoadError(display, "empty file (0 bytes)")
        return _decode_item(handle, display, ref, recipe or DisplayRecipe(), max_pixels, draft_size)


def _decode_item(
    fh: BinaryIO, path: Path, ref: ItemRef, recipe: DisplayRecipe, max_pixels: int, draft_size: int | None
) -> Image.Image:
    """Decode one item of an open file: Pillow for plain images, the raster/DICOM readers otherwise."""
    from activekd_core import image_formats  # it imports this module

    name = str(path)
    try:
        whole = ref.frame is None and ref.window is None
        plain = _pillow_reads(fh, ref, recipe, name, max_pixels)
        fh.seek(0)
        if plain:
            return _decode(fh, path, max_pixels, draft_size)
        arr = image_formats.read_display_rgb(
            fh, None if whole else ref, recipe, name=name, min_side=draft_size, max_pixels=max_pixels
        )
        return Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), "RGB")
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageLoadError(path, "not enough memory to decode this image") from exc
    except Exception as exc:  # noqa: BLE001 - a hostile file must never escape as another error
        raise ImageLoadError(path, f"unreadable image ({type(exc).__name__}: {str(exc)[:200]})") from exc


def _pillow_reads(fh: BinaryIO, ref: ItemRef, recipe: DisplayRecipe, name: str, max_pixels: int) -> bool:
    """Whether an open file's item is a whole plain image that Pillow reads (else the DICOM/raster readers).

    Raises:
        ImageLoadError: A frame or chip id names a plain image, or a TIFF header is refused.
    """
    from activekd_core import image_formats, raster_images  # they import this module

    kind = image_formats.sniff_format(fh, name=ref.file_id)
    whole = ref.frame is None and ref.window is None
    if kind == "tiff" and whole:
        info = raster_images.inspect_raster(fh, recipe, name=name, max_pixels=max_pixels)
        return not image_formats.needs_raster_reader(info, recipe, max_pixels=max_pixels)
    if kind == "other" and not whole:
        raise ImageLoadError(name, "a frame or chip id names a file that is neither DICOM nor a scientific TIFF")
    return kind == "other"


def is_plain_image(
    root: Path | str, image_id: str, *, recipe: DisplayRecipe | None = None, ref: ItemRef | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> bool:
    """Whether a pool image is a whole file Pillow shows as it is (so its bytes can be exported as they are).

    False for DICOM files (their bytes hold patient data), frames, chips and TIFFs that
    need the raster reader: exports write their display pixels instead. The file is
    opened confined to ``root`` and only its header is read.

    Raises:
        ImageLoadError: When the file cannot be opened or its header is refused.
    """
    ref = ref if ref is not None else item_ref(root, image_id)
    display = Path(root) / display_id(image_id)
    try:
        handle = open_image_file(root, ref.file_id)
    except PathOutsideRoot as exc:
        raise ImageLoadError(display, f"refused: {exc.reason}") from exc
    except OSError as exc:
        raise ImageLoadError(display, _os_error_reason(exc)) from exc
    with handle:
        return _pillow_reads(handle, ref, recipe or DisplayRecipe(), str(display), max_pixels)


def load_rgb(
    path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Load an image file as an RGB PIL image, whatever its mode.

    Applies EXIF orientation, takes the first frame of animations, converts
    1/L/LA/P/PA/RGBA/CMYK/YCbCr/I;16/I/F modes to 8-bit RGB (alpha composited on white;
    16-bit, 32-bit and float images are min-max stretched to 0..255 per image), and
    refuses images with more than ``max_pixels`` pixels before decoding them. Pool
    images are read with :func:`load_image` instead (confined to the image root).

    Args:
        path: Image file.
        max_pixels: Largest width * height accepted (checked from the header).
        draft_size: The size the caller needs (the shorter side, in pixels). When
            given, JPEG files may be decoded at a reduced scale (1/2, 1/4, 1/8) and other
            formats are box-reduced right after decoding, in both cases keeping the shorter
            side at least ``draft_size`` (at least twice that for the box reduction):
            much faster and far less memory for thumbnails and training inputs.

    Returns:
        A fully loaded RGB image.

    Raises:
        ImageLoadError: With the path and the reason when the file cannot be used.
    """
    path = Path(path)
    try:
        st = os.stat(path)
        if stat_module.S_ISDIR(st.st_mode):
            raise ImageLoadError(path, "is a directory, not an image file")
        if not stat_module.S_ISREG(st.st_mode):
            raise ImageLoadError(path, "not a regular file (device, pipe or socket)")
        if st.st_size == 0:
            raise ImageLoadError(path, "empty file (0 bytes)")
        handle = _open_file(path)
    except ImageLoadError:
        raise
    except OSError as exc:
        raise ImageLoadError(path, _os_error_reason(exc)) from exc
    with handle:
        return _decode(handle, path, max_pixels, draft_size)


def _decode(fh: BinaryIO, path: Path, max_pixels: int, draft_size: int | None) -> Image.Image:
    """Decode an open image file to RGB (see :func:`load_rgb`), within :data:`DECODE_BUDGET`."""
    try:
        with Image.open(fh, formats=ALLOWED_FORMATS) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageLoadError(path, _too_large(width, height, max_pixels))
            if width < 1 or height < 1:
                raise ImageLoadError(path, f"invalid size {width}x{height}")
            img.seek(0)
            if draft_size and img.format in _JPEG_FORMATS:
                img.draft("RGB", _draft_request(width, height, draft_size))
            w, h = img.size  # after draft: the size that will be decoded
            with DECODE_BUDGET.reserve(estimate_decode_bytes(w, h, img.mode, reduced=bool(draft_size))):
                img.load()
                if draft_size:
                    img = _reduce(img, draft_size)
                img = _upright(img)
                return _to_rgb(img, path)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, f"too large (decompression bomb guard): {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(path, "not a recognised image format (or not one of " + ", ".join(ALLOWED_FORMATS) + ")") from exc
    except OSError as exc:
        if exc.errno is not None:
            raise ImageLoadError(path, _os_error_reason(exc)) from exc
        raise ImageLoadError(path, f"corrupt or truncated image: {exc}") from exc
    except (SyntaxError, ValueError, EOFError, MemoryError, struct.error) as exc:
        raise ImageLoadError(path, f"corrupt image: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a hostile file must never escape as another error
        raise ImageLoadError(path, f"corrupt image (decoder error {type(exc).__name__}: {exc})") from exc


def _reduce(img: Image.Image, target: int) -> Image.Image:
    """Box-reduce a decoded image by a whole factor keeping its shorter side >= 2 * ``target``."""
    factor = min(img.size) // (2 * max(1, int(target)))
    if factor < 2 or img.mode not in _REDUCIBLE_MODES:
        return img
    return img.reduce(factor)


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - malformed EXIF must not make the pixels unusable
        return img


def _too_large(width: int, height: int, max_pixels: int) -> str:
    return f"too large: {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,}"


def _draft_request(width: int, height: int, target: int) -> tuple[int, int]:
    # Pillow keeps the scale whose result is >= the requested size in both sides. Ask for
    # a box with the image's aspect whose shorter side is ``target``.
    short = max(1, min(width, height))
    scale = max(target / short, 1e-9)
    return (max(1, int(round(width * scale))), max(1, int(round(height * scale))))


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img).astype(np.float32)
        arr = np.where(np.isfinite(arr), arr, 0.0)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = Image.fromarray(np.clip((arr - lo) * scale + 0.5, 0, 255).astype(np.uint8))  # 2-D uint8 -> "L"
    elif mode in ("P", "PA"):
        img = img.convert("RGBA")
    elif mode in ("La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode in ("LA", "RGBA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    try:
        rgb = img.convert("RGB")
    except ValueError as exc:
        raise ImageLoadError(path, f"unsupported colour mode {mode!r}: {exc}") from exc
    rgb.load()
    return rgb


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
            ``"keep"`` (use them, with surrogate-escaped ids; see the module docstring).
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
    ids: list[str] = []
    problems: list[ImageProblem] = []
    stats: dict[str, tuple[int, int]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    items: dict[str, ItemRef] = {}
    order: dict[str, tuple[str, int]] = {}  # (file id, position in the file): frames in frame order
    effective = recipe if recipe is not None else DisplayRecipe()
    total = len(candidates)
    for done, path in enumerate(candidates, start=1):
        if cancel is not None and cancel.is_set():
            raise InterruptedError(f"scan of {root} cancelled")
        image_id = path.relative_to(root).as_posix()
        reason, found, entry = _scan_one(root, path, image_id, effective, max_pixels, full_decode, verify=verify,
                                         non_utf8_names=non_utf8_names)
        # An item id that is also a file's name ("s#2" next to the frames of "s") would read
        # that file when the id is looked up (split_item_id tries the whole id first).
        clash = next((item_id for item_id, _, _ in found
                      if item_id in order or (item_id != image_id and os.path.lexists(root / item_id))), None)
        if reason is None and clash is not None:
            reason = f"the image id {display_id(clash)!r} of one of its frames or chips is another file's name; rename that file"
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
            problems.append(ImageProblem(shown, root / shown if shown != image_id else path, reason))
        if progress is not None and (done % 500 == 0 or done == total):
            progress(done, total, f"checked {done}/{total} files")
    ids.sort(key=order.__getitem__)
    problems.sort(key=lambda p: p.id)
    return ImagePool(root=root, ids=ids, problems=problems, recipe=recipe, _items=items, _stats=stats, _sizes=sizes)


def _scan_one(
    root: Path, path: Path, image_id: str, recipe: DisplayRecipe, max_pixels: int, full_decode: bool, *,
    verify: bool, non_utf8_names: str,
) -> tuple[str | None, list[tuple[str, tuple[int, int] | None, ItemRef | None]], tuple[int, int]]:
    """One candidate: ``(reason, items, (size, mtime_ns))``; reason ``""`` means not an image (ignore)."""
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
    reason, found = _content_items(path, image_id, recipe, max_pixels, full_decode, verify=verify, bare=bare)
    if reason is None and not found:
        return "", [], entry
    return reason, found, entry


def _has_known_suffix(name: str) -> bool:
    from activekd_core.image_formats import DICOM_SUFFIXES  # it imports this module

    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES


def _sniffs_dicom(path: Path) -> bool:
    from activekd_core.dicom_images import is_dicom  # it imports this module

    return is_dicom(path)


def _walk_candidates(root: Path) -> Iterable[Path]:
    """Paths under ``root`` whose name may hold an image (files, links, odd entries).

    Image and DICOM suffixes, names without a suffix and digits-only suffixes
    (:func:`activekd_core.image_formats.is_candidate_name`); folders are listed only when
    their name has a known suffix (to report them).
    """
    from activekd_core.image_formats import is_candidate_name  # it imports this module

    def on_error(exc: OSError) -> None:  # unreadable sub-folder: skip, scanning goes on
        return None

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=on_error):
        dirnames.sort()
        names = [f for f in filenames if is_candidate_name(f)] + [d for d in dirnames if _has_known_suffix(d)]
        for name in sorted(names):
            yield Path(dirpath) / name


def _content_items(
    path: Path, image_id: str, recipe: DisplayRecipe, max_pixels: int, full_decode: bool, *, verify: bool, bare: bool
) -> tuple[str | None, list[tuple[str, tuple[int, int] | None, ItemRef | None]]]:
    """The items of one candidate file: ``(reason it is unusable, [])`` or ``(None, items)``.

    Each item is ``(item id, (width, height) or None, ItemRef or None)``. An empty list
    without a reason means the file is no image at all (a suffixless non-DICOM file).
    """
    from activekd_core import image_formats  # it imports this module

    try:
        with _open_file(path) as fh:
            # One read of the head (the DICM marker sits at byte 128), sniffed in memory.
            kind = image_formats.sniff_format(io.BytesIO(fh.read(_SNIFF_BYTES)), name=path.name)
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
        return _os_error_reason(exc), []
    except MemoryError:
        return "not enough memory to check this file", []
    except Exception as exc:  # noqa: BLE001 - one hostile file must never stop a scan
        return f"corrupt image (reader error {type(exc).__name__})", []


def _file_problem(root: Path, path: Path) -> tuple[str | None, tuple[int, int]]:
    """Check the directory entry: regular file, links resolving inside root."""
    try:
        lst = os.lstat(path)
    except OSError as exc:
        return _os_error_reason(exc), (-1, -1)
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
            return _os_error_reason(exc), (-1, -1)
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
        with (_open_file(path) if fh is None else nullcontext(fh)) as fh:
            with Image.open(fh, formats=ALLOWED_FORMATS) as img:
                width, height = img.size
                if width * height > max_pixels:
                    return _too_large(width, height, max_pixels), None
                if width < 1 or height < 1:
                    return f"invalid size {width}x{height}", None
                fmt = img.format
                if full_decode:
                    img.load()
                elif fmt == "PNG":
                    img.verify()  # chunk CRCs up to IEND: catches truncation
                elif fmt in _JPEG_FORMATS:
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
            return _os_error_reason(exc), None
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


def file_digest(path: Path | str, *, chunk_size: int = 1 << 20, root: Path | str | None = None) -> str:
    """BLAKE2b-128 hex digest of a file's bytes.

    Args:
        path: The file; with ``root``, an image id opened confined to ``root``
            (:func:`open_image_file`).
        chunk_size: Bytes read at a time.
        root: The image root, for pool images.
    """
    digest = hashlib.blake2b(digest_size=16)
    handle = open_image_file(root, os.fspath(path)) if root is not None else _open_file(Path(path))
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
