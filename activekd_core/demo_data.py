"""Demo datasets materialised as real image files in class sub-folders.

Two datasets work offline:

* ``textile`` -- 2000 simulated textile images, 250x250 RGB JPEG, from the PyPI package
  ``conformal-clip-data`` (MIT licence): ``nominal`` 1000, ``local defect`` 500,
  ``global defect`` 500. The package's JPEG files are copied byte for byte (re-encoding
  them as PNG would store the very same decoded pixels in about five times the space).
* ``digits`` -- scikit-learn's ``load_digits`` (1797 handwritten digits, 8x8, 17 grey
  levels, classes ``0``-``9``), upscaled bilinearly to 64x64 PNG, dark digit on a light
  background, so a person can read them.

Layout: ``dest/<name>/<class>/<file>``; the image id is ``<class>/<file>``, so
:func:`activekd_core.labels_import.labels_from_subfolders` recovers the same labels.

Idempotent and crash-safe: every file is written under a temporary name and renamed; a
manifest (``.activekd_demo.json``) is written last and removed before any rebuild. A call
that finds a complete manifest with the same parameters returns at once (it only checks
that the files exist); otherwise missing or damaged files are (re)written, files of the
dataset that the new parameters exclude are removed, and other files are left alone.
"""

from __future__ import annotations

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
from activekd_core.progress import ProgressFn

MANIFEST = ".activekd_demo.json"
MANIFEST_VERSION = 1
DIGITS_SIZE = 64


@dataclass
class DemoDataset:
    """A materialised demo dataset.

    Attributes:
        name: ``"textile"`` or ``"digits"``.
        root: The image root (``dest/name``).
        classes: Class names, in a fixed order.
        prompts: Class -> a CLIP prompt describing it.
        labels: Image id -> class name (ground truth, for the simulated oracle).
        description: One line on the source and licence, for the UI.
    """

    name: str
    root: Path
    classes: list[str]
    prompts: dict[str, str]
    labels: dict[str, str]
    description: str = ""


@dataclass(frozen=True)
class _Item:
    image_id: str
    label: str
    write: Callable[[Path], None]  # writes the complete file at the given path
    expected_size: int | None  # bytes, when known in advance (copies)


@dataclass(frozen=True)
class _Spec:
    classes: list[str]
    prompts: dict[str, str]
    description: str
    items: Callable[[], dict[str, list[_Item]]]  # class -> items in source order


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
            _Item(f"{label}/{src.name}", label, _copier(src), src.stat().st_size) for src in files
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
        out[label].append(_Item(f"{label}/digit_{index:04d}.png", label, _digit_writer(image), None))
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


def _select(by_class: dict[str, list[_Item]], classes: list[str], per_class: int | None, limit: int | None) -> list[_Item]:
    lists = [by_class.get(c, [])[: per_class if per_class is not None else None] for c in classes]
    if limit is None:
        return [item for items in lists for item in items]
    # Round-robin over classes so a small limit still covers every class.
    interleaved = (item for group in itertools.zip_longest(*lists) for item in group if item is not None)
    return list(itertools.islice(interleaved, limit))


def materialize_demo(
    name: str,
    dest: Path | str,
    *,
    per_class: int | None = None,
    limit: int | None = None,
    progress: ProgressFn | None = None,
) -> DemoDataset:
    """Write a demo dataset as image files under ``dest/name`` (idempotent).

    Args:
        name: ``"textile"`` or ``"digits"``.
        dest: Parent folder; the images go to ``dest/name/<class>/``.
        per_class: Keep only the first ``per_class`` images of each class (source order).
        limit: Keep at most ``limit`` images in all, taken round-robin over classes.
        progress: ``progress(done, total, message)`` while files are written.

    Returns:
        The dataset: root, classes, prompts and ground-truth labels of the written files.

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
    root = Path(dest) / name
    params = {"name": name, "version": MANIFEST_VERSION, "per_class": per_class, "limit": limit}
    manifest_path = root / MANIFEST

    done = _read_complete_manifest(manifest_path, params, root)
    if done is not None:
        if progress is not None:
            progress(len(done), len(done), f"{name}: {len(done)} images already in {root}")
        return _dataset(spec, name, root, done)

    items = _select(spec.items(), spec.classes, per_class, limit)
    manifest_path.unlink(missing_ok=True)  # from here on the folder is "being built"
    root.mkdir(parents=True, exist_ok=True)
    for label in spec.classes:
        (root / label).mkdir(exist_ok=True)
    wanted = {item.image_id for item in items}
    _remove_extras(root, spec, wanted)
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
    labels = {item.image_id: item.label for item in items}
    atomic_write_text(manifest_path, json.dumps({**params, "labels": labels}, indent=0, sort_keys=True))
    return _dataset(spec, name, root, labels)


def _dataset(spec: _Spec, name: str, root: Path, labels: dict[str, str]) -> DemoDataset:
    return DemoDataset(
        name=name,
        root=root.resolve(),
        classes=list(spec.classes),
        prompts=dict(spec.prompts),
        labels=dict(sorted(labels.items())),
        description=spec.description,
    )


def _read_complete_manifest(path: Path, params: dict, root: Path) -> dict[str, str] | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if any(meta.get(k) != v for k, v in params.items()):
        return None
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        return None
    if not all((root / image_id).is_file() for image_id in labels):
        return None
    return {str(k): str(v) for k, v in labels.items()}


def _intact(path: Path, expected_size: int | None) -> bool:
    try:
        size = path.stat().st_size
    except OSError:
        return False
    return size > 0 if expected_size is None else size == expected_size


def _remove_extras(root: Path, spec: _Spec, wanted: set[str]) -> None:
    """Delete leftovers of this dataset: temp files, and images the parameters exclude."""
    for label in spec.classes:
        folder = root / label
        for path in _files(folder):
            image_id = f"{label}/{path.name}"
            if path.name.endswith(".tmp") or (image_id not in wanted and _looks_like_ours(path.name)):
                path.unlink(missing_ok=True)


def _files(folder: Path) -> Iterator[Path]:
    try:
        yield from (p for p in folder.iterdir() if p.is_file() or p.is_symlink())
    except FileNotFoundError:
        return


def _looks_like_ours(name: str) -> bool:
    return (name.startswith("digit_") and name.endswith(".png")) or (name.startswith("textile_") and name.endswith(".jpg"))
