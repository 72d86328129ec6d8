"""Demo datasets materialised as real image files with neutral names, the truth kept apart.

Two datasets work offline:

* ``textile`` -- 2000 simulated textile images, 250x250 RGB JPEG, from the PyPI package
  ``conformal-clip-data`` (MIT licence): ``nominal`` 1000, ``local defect`` 500,
  ``global defect`` 500. The package's JPEG files are copied byte for byte (re-encoding
  them as PNG would store the very same decoded pixels in about five times the space).
* ``digits`` -- scikit-learn's ``load_digits`` (1797 handwritten digits, 8x8, 17 grey
  levels, classes ``0``-``9``), upscaled bilinearly to 64x64 PNG, dark digit on a light
  background, so a person can read them.

Layout (version 2) under ``dest/<name>-v2/``::

    images/img_3fa9c2d1.jpg     the image root: one flat folder, neutral names
    truth.csv                   the ground truth: ``id,label`` per image (the sidecar)
    manifest.json               what was built (parameters, image count), written last

An image's name is ``img_`` plus the first 8 hex digits of a SHA-256 of the dataset and
the image's source (its class and original file name): a fixed keyed shuffle, so neither
the name nor the sorted order of the pool says anything about the class, and a name
always denotes the same source image whatever subset is materialised. The truth lies
outside the image root, so no scan, thumbnail, caption or export of a project over that
root can reach it; it is read only by whoever asks for it on purpose -- the simulated
oracle (:mod:`activekd_core.simulation_data`) and a user's explicit label import (the
sidecar is a labels CSV that :func:`activekd_core.labels_import.labels_from_csv` reads).

Version 1 (``dest/<name>/<class>/<file>``, ids revealing the class) is no longer
written; a folder of that layout is never touched here, so a project created over it
keeps its image root, ids and labels.

Idempotent and crash-safe: every file is written under a temporary name and renamed; the
manifest is written last and removed before any rebuild. A call that finds a complete
manifest with the same parameters returns at once (it reads the sidecar and checks that
the files exist); otherwise missing or damaged files are (re)written, files of the
dataset that the new parameters exclude are removed, and other files are left alone.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from activekd_core.atomic import atomic_write_text
from activekd_core.csv_safe import restore_cell, write_rows
from activekd_core.progress import ProgressFn

LAYOUT_SUFFIX = "-v2"  # dest/<name>-v2: the neutral-name layout (dest/<name> held version 1)
IMAGES_DIR = "images"
TRUTH_FILE = "truth.csv"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 2
DIGITS_SIZE = 64
_NAME_PREFIX = "img_"
_HASH_DIGITS = 8


@dataclass
class DemoDataset:
    """A materialised demo dataset.

    Attributes:
        name: ``"textile"`` or ``"digits"``.
        root: The image root (``dest/<name>-v2/images``): neutral file names only.
        classes: Class names, in a fixed order.
        prompts: Class -> a CLIP prompt describing it.
        labels: Image id -> class name, read from the sidecar (for the simulated oracle).
        description: One line on the source and licence, for the UI.
        truth_file: The sidecar ``truth.csv`` (``id,label``), outside the image root.
    """

    name: str
    root: Path
    classes: list[str]
    prompts: dict[str, str]
    labels: dict[str, str]
    description: str = ""
    truth_file: Path | None = None


@dataclass(frozen=True)
class _Item:
    image_id: str  # the neutral file name
    label: str
    write: Callable[[Path], None]  # writes the complete file at the given path
    expected_size: int | None  # bytes, when known in advance (copies)


@dataclass(frozen=True)
class _Spec:
    classes: list[str]
    prompts: dict[str, str]
    description: str
    items: Callable[[], dict[str, list[_Item]]]  # class -> items in source order


def neutral_name(dataset: str, source: str, suffix: str) -> str:
    """The neutral file name of one source image: ``img_<8 hex digits><suffix>``.

    Args:
        dataset: The demo's name (part of the hash, so two demos never share a name scheme).
        source: What identifies the source image (its class and original file name).
        suffix: File ending including the dot (``".jpg"``).
    """
    digest = hashlib.sha256(f"activekd-demo/{dataset}/{source}".encode()).hexdigest()
    return f"{_NAME_PREFIX}{digest[:_HASH_DIGITS]}{suffix.lower()}"


def _textile_items() -> dict[str, list[_Item]]:
    try:
        import conformal_clip_data as ccd
    except ImportError as exc:
        raise RuntimeError(
            "the 'textile' demo needs the conformal-clip-data package: pip install conformal-clip-data"
        ) from exc
    sources = {"nominal": ccd.nominal_dir(), "local defect": ccd.local_dir(), "global defect": ccd.global_dir()}
    out: dict[str, list[_Item]] = {}
    for label, folder in sources.items():
        folder = Path(folder)
        if not folder.is_dir():
            raise RuntimeError(f"conformal-clip-data is installed but its folder is missing: {folder}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        out[label] = [
            _Item(neutral_name("textile", f"{label}/{src.name}", src.suffix), label, _copier(src), src.stat().st_size)
            for src in files
        ]
    return out


def _copier(src: Path) -> Callable[[Path], None]:
    def write(dst: Path) -> None:
        shutil.copyfile(src, dst)

    return write


def _digits_items() -> dict[str, list[_Item]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    out: dict[str, list[_Item]] = {str(d): [] for d in range(10)}
    for index, (image, target) in enumerate(zip(digits.images, digits.target)):
        label = str(int(target))
        out[label].append(_Item(neutral_name("digits", f"{index:04d}", ".png"), label, _digit_writer(image), None))
    return out


def _digit_writer(image: np.ndarray) -> Callable[[Path], None]:
    def write(dst: Path) -> None:
        light = np.clip(255.0 - image * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
        big = Image.fromarray(light).resize((DIGITS_SIZE, DIGITS_SIZE), Image.Resampling.BILINEAR)
        big.save(dst, format="PNG")

    return write


DEMOS: dict[str, _Spec] = {
    "textile": _Spec(
        classes=["nominal", "local defect", "global defect"],
        prompts={
            "nominal": "a photo of nominal textile fabric with no defect",
            "local defect": "a photo of textile fabric with a small local defect",
            "global defect": "a photo of textile fabric with a global defect across the whole surface",
        },
        description="2000 simulated textile images (250x250) from the conformal-clip-data package, MIT licence",
        items=_textile_items,
    ),
    "digits": _Spec(
        classes=[str(d) for d in range(10)],
        prompts={str(d): f"a photo of a handwritten digit {d}" for d in range(10)},
        description="1797 handwritten digits from scikit-learn (8x8, shown at 64x64), BSD licence",
        items=_digits_items,
    ),
}


def demo_names() -> list[str]:
    """Names accepted by :func:`materialize_demo`."""
    return list(DEMOS)


def demo_folder(name: str, dest: Path | str) -> Path:
    """The folder :func:`materialize_demo` writes demo ``name`` to (``dest/<name>-v2``)."""
    return Path(dest) / f"{name}{LAYOUT_SUFFIX}"


def _select(by_class: dict[str, list[_Item]], classes: list[str], per_class: int | None, limit: int | None) -> list[_Item]:
    lists = [by_class.get(c, [])[: per_class if per_class is not None else None] for c in classes]
    if limit is None:
        return [item for items in lists for item in items]
    # Round-robin over classes so a small limit still covers every class.
    interleaved = (item for group in itertools.zip_longest(*lists) for item in group if item is not None)
    return list(itertools.islice(interleaved, limit))


def _check_unique(by_class: dict[str, list[_Item]]) -> None:
    seen: set[str] = set()
    for item in (i for items in by_class.values() for i in items):
        if item.image_id in seen:  # never for the shipped datasets; a changed source would be caught here
            raise RuntimeError(f"two demo images share the neutral name {item.image_id}")
        seen.add(item.image_id)


def materialize_demo(
    name: str,
    dest: Path | str,
    *,
    per_class: int | None = None,
    limit: int | None = None,
    progress: ProgressFn | None = None,
) -> DemoDataset:
    """Write a demo dataset under ``dest/<name>-v2`` (idempotent): neutral images, truth apart.

    Args:
        name: ``"textile"`` or ``"digits"``.
        dest: Parent folder; the images go to ``dest/<name>-v2/images/``, the truth to
            ``dest/<name>-v2/truth.csv``.
        per_class: Keep only the first ``per_class`` images of each class (source order).
        limit: Keep at most ``limit`` images in all, taken round-robin over classes.
        progress: ``progress(done, total, message)`` while files are written.

    Returns:
        The dataset: image root, classes, prompts, the ground truth of the written files
        and where the sidecar lies.

    Raises:
        ValueError: Unknown name, or a non-positive ``per_class`` / ``limit``.
        RuntimeError: The dataset's source package is not installed.
    """
    if name not in DEMOS:
        raise ValueError(f"unknown demo dataset {name!r}; choose one of {', '.join(DEMOS)}")
    for arg, value in (("per_class", per_class), ("limit", limit)):
        if value is not None and int(value) < 1:
            raise ValueError(f"{arg} must be at least 1, got {value}")
    spec = DEMOS[name]
    folder = demo_folder(name, dest)
    root = folder / IMAGES_DIR
    params = {"name": name, "version": MANIFEST_VERSION, "per_class": per_class, "limit": limit}
    manifest_path = folder / MANIFEST

    done = _read_complete(folder, params)
    if done is not None:
        if progress is not None:
            progress(len(done), len(done), f"{name}: {len(done)} images already in {root}")
        return _dataset(spec, name, folder, done)

    by_class = spec.items()
    _check_unique(by_class)
    items = _select(by_class, spec.classes, per_class, limit)
    manifest_path.unlink(missing_ok=True)  # from here on the folder is "being built"
    root.mkdir(parents=True, exist_ok=True)
    _remove_extras(root, {item.image_id for item in items})
    total = len(items)
    for count, item in enumerate(items, start=1):
        target = root / item.image_id
        if not _intact(target, item.expected_size):
            # Part of the folder's commit protocol: a renamed temp file (cleaned up by
            # _remove_extras if a run dies), no fsync per image; the manifest below commits.
            tmp = target.with_name(target.name + ".tmp")
            item.write(tmp)
            os.replace(tmp, target)
        if progress is not None and (count % 200 == 0 or count == total):
            progress(count, total, f"{name}: wrote {count}/{total} images")
    labels = dict(sorted((item.image_id, item.label) for item in items))
    _write_truth(folder / TRUTH_FILE, labels)
    atomic_write_text(manifest_path, json.dumps({**params, "images": len(labels)}, indent=0, sort_keys=True))
    return _dataset(spec, name, folder, labels)


def read_truth(path: Path | str) -> dict[str, str]:
    """The ground truth in a demo's sidecar ``truth.csv``: image id -> class name.

    Only the simulated oracle and tests read it; in the app the truth arrives only
    through a label import the user starts.

    Raises:
        OSError: The file cannot be read.
        ValueError: It is not a truth file (no ``id`` and ``label`` columns).
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"id", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: not a demo truth file (needs id,label columns)")
        return {restore_cell(row["id"]): restore_cell(row["label"]) for row in reader}


def truth_for_root(image_root: Path | str) -> dict[str, str]:
    """The ground truth of the demo whose image root is ``image_root`` (its sidecar lies beside it)."""
    return read_truth(Path(image_root).parent / TRUTH_FILE)


def _write_truth(path: Path, labels: dict[str, str]) -> None:
    text = io.StringIO()
    write_rows(text, ["id", "label"], labels.items())
    atomic_write_text(path, text.getvalue())


def _dataset(spec: _Spec, name: str, folder: Path, labels: dict[str, str]) -> DemoDataset:
    return DemoDataset(
        name=name,
        root=(folder / IMAGES_DIR).resolve(),
        classes=list(spec.classes),
        prompts=dict(spec.prompts),
        labels=dict(sorted(labels.items())),
        description=spec.description,
        truth_file=(folder / TRUTH_FILE).resolve(),
    )


def _read_complete(folder: Path, params: dict) -> dict[str, str] | None:
    """The truth of a complete build with ``params``, or None when it must be (re)built."""
    try:
        meta = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        labels = read_truth(folder / TRUTH_FILE)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in params.items()):
        return None
    if not labels or meta.get("images") != len(labels):
        return None
    root = folder / IMAGES_DIR
    if not all(_is_ours(image_id) and (root / image_id).is_file() for image_id in labels):
        return None
    return labels


def _intact(path: Path, expected_size: int | None) -> bool:
    try:
        size = path.stat().st_size
    except OSError:
        return False
    return size > 0 if expected_size is None else size == expected_size


def _remove_extras(root: Path, wanted: set[str]) -> None:
    """Delete leftovers of this dataset: temp files, and images the parameters exclude."""
    for path in _files(root):
        if path.name.endswith(".tmp") or (path.name not in wanted and _is_ours(path.name)):
            path.unlink(missing_ok=True)


def _files(folder: Path) -> Iterator[Path]:
    try:
        yield from (p for p in folder.iterdir() if p.is_file() or p.is_symlink())
    except FileNotFoundError:
        return


def _is_ours(name: str) -> bool:
    """A neutral demo image name (``img_<8 hex>.jpg|.png``): the only names written or removed here."""
    stem, dot, suffix = name.rpartition(".")
    digits = stem[len(_NAME_PREFIX):]
    return (
        bool(dot)
        and suffix in ("jpg", "jpeg", "png")
        and stem.startswith(_NAME_PREFIX)
        and len(digits) == _HASH_DIGITS
        and all(c in "0123456789abcdef" for c in digits)
    )
