"""Turning one image file into 8-bit RGB pixels: pool images confined to the root, or plain files.

:func:`load_image` opens a pool image confined to its root
(:func:`activekd_core.image_open.open_image_file`) and decodes it; :func:`load_rgb`
decodes a file by plain path (files that are not pool images). Plain images go through
Pillow: EXIF orientation, first frame, every mode converted to RGB, truncated data never
accepted (``LOAD_TRUNCATED_IMAGES`` is never set). DICOM files, frames, chips and TIFFs
that need the raster reader go through
:func:`activekd_core.image_formats.read_display_rgb` with the pool's display recipe.

Memory: with ``draft_size``, JPEGs are decoded at a reduced DCT scale and other formats
are box-reduced right after decoding, before any mode conversion, so the conversions work
on the small image; every decode reserves its estimated peak from
:data:`activekd_core.decode_budget.DECODE_BUDGET` first.
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from activekd_core import decode_budget, image_open
from activekd_core.decode_budget import estimate_decode_bytes
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_items import ItemRef
from activekd_core.image_open import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    JPEG_FORMATS,
    ImageLoadError,
    open_image_file,
    os_error_reason,
    too_large_reason,
)
from activekd_core.image_pool import display_id, item_ref
from activekd_core.paths import PathOutsideRoot

# Modes whose pixels may be box-averaged (not palette indices, not 1-bit, not I;16).
_REDUCIBLE_MODES = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "I", "F", "CMYK", "YCbCr"})


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
        raise ImageLoadError(display, os_error_reason(exc)) from exc
    with handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise ImageLoadError(display, "empty file (0 bytes)")
        return _decode_item(handle, display, ref, recipe or DisplayRecipe(), max_pixels, draft_size)


def _decode_item(
    fh: BinaryIO, path: Path, ref: ItemRef, recipe: DisplayRecipe, max_pixels: int, draft_size: int | None
) -> Image.Image:
    """Decode one item of an open file: Pillow for plain images, the raster/DICOM readers otherwise."""
    from activekd_core import image_formats  # it imports activekd_core.images, which imports this module

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
    from activekd_core import image_formats, raster_images  # image_formats imports activekd_core.images

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
        raise ImageLoadError(display, os_error_reason(exc)) from exc
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
        handle = image_open.open_plain_file(path)
    except ImageLoadError:
        raise
    except OSError as exc:
        raise ImageLoadError(path, os_error_reason(exc)) from exc
    with handle:
        return _decode(handle, path, max_pixels, draft_size)


def _decode(fh: BinaryIO, path: Path, max_pixels: int, draft_size: int | None) -> Image.Image:
    """Decode an open image file to RGB (see :func:`load_rgb`), within :data:`activekd_core.decode_budget.DECODE_BUDGET`."""
    try:
        with Image.open(fh, formats=ALLOWED_FORMATS) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageLoadError(path, too_large_reason(width, height, max_pixels))
            if width < 1 or height < 1:
                raise ImageLoadError(path, f"invalid size {width}x{height}")
            img.seek(0)
            if draft_size and img.format in JPEG_FORMATS:
                img.draft("RGB", _draft_request(width, height, draft_size))
            w, h = img.size  # after draft: the size that will be decoded
            with decode_budget.DECODE_BUDGET.reserve(estimate_decode_bytes(w, h, img.mode, reduced=bool(draft_size))):
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
            raise ImageLoadError(path, os_error_reason(exc)) from exc
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
