"""Image discovery and robust loading.

An image is named by a stable id: its POSIX path relative to the image root. Scanning
never stops on a bad file; each unreadable file is reported with its path and reason.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
DEFAULT_MAX_PIXELS = 64_000_000


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
    """A file that looked like an image but could not be used."""

    id: str
    path: Path
    reason: str


@dataclass
class ImagePool:
    """An ordered set of images under one root; row i of every array is ``ids[i]``.

    Attributes:
        root: The image root folder.
        ids: Image ids (POSIX paths relative to ``root``), in pool order.
        problems: Files skipped while scanning, with reasons.
    """

    root: Path
    ids: list[str]
    problems: list[ImageProblem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, index: int) -> Path:
        """Absolute path of the image at pool row ``index``."""
        return self.root / self.ids[index]

    def fingerprint(self) -> str:
        """A hash of the pool's content: ids, sizes and modification times, in order."""
        digest = hashlib.sha256()
        for image_id in self.ids:
            stat = (self.root / image_id).stat()
            digest.update(f"{image_id}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]


def load_rgb(path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load an image file as an RGB PIL image, whatever its mode.

    Applies EXIF orientation, takes the first frame of animations, converts
    L/LA/P/RGBA/CMYK/16-bit modes to 8-bit RGB (alpha composited on white), and
    refuses images with more than ``max_pixels`` pixels before decoding them.

    Args:
        path: Image file.
        max_pixels: Largest width * height accepted.

    Returns:
        A fully loaded RGB image.

    Raises:
        ImageLoadError: With the path and the reason when the file cannot be used.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageLoadError(path, f"too large: {width}x{height} pixels exceeds the limit of {max_pixels}")
            img.seek(0)
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, f"too large (decompression bomb guard): {exc}") from exc
    except FileNotFoundError as exc:
        raise ImageLoadError(path, "file not found") from exc
    except PermissionError as exc:
        raise ImageLoadError(path, "permission denied") from exc
    except IsADirectoryError as exc:
        raise ImageLoadError(path, "is a directory, not an image file") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(path, "not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(path, f"corrupt or truncated image: {exc}") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = Image.fromarray(((arr - lo) * scale).astype("uint8"), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("LA", "RGBA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = img.convert("RGB")
    rgb.load()
    return rgb


def scan_images(root: Path | str, *, verify: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImagePool:
    """Find every image under ``root`` recursively, in sorted id order.

    Args:
        root: Folder to scan. Symlinked folders are not followed (no loops).
        verify: Open each file's header to catch non-images and oversize files.
        max_pixels: Largest width * height accepted.

    Returns:
        The pool of usable images, with skipped files listed in ``problems``.

    Raises:
        FileNotFoundError: If ``root`` does not exist or is not a folder.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found or not a folder: {root}")
    ids: list[str] = []
    problems: list[ImageProblem] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if Path(d).suffix.lower() in IMAGE_SUFFIXES]):
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(dirpath) / name
            image_id = path.relative_to(root).as_posix()
            if path.is_dir():
                problems.append(ImageProblem(image_id, path, "is a directory, not an image file"))
                continue
            if verify:
                reason = _header_problem(path, max_pixels)
                if reason:
                    problems.append(ImageProblem(image_id, path, reason))
                    continue
            ids.append(image_id)
    ids.sort()
    return ImagePool(root=root, ids=ids, problems=problems)


def _header_problem(path: Path, max_pixels: int) -> str | None:
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                return f"too large: {width}x{height} pixels exceeds the limit of {max_pixels}"
            img.verify()
    except Image.DecompressionBombError as exc:
        return f"too large (decompression bomb guard): {exc}"
    except PermissionError:
        return "permission denied"
    except Image.UnidentifiedImageError:
        return "not a recognised image format"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"corrupt or truncated image: {exc}"
    return None
