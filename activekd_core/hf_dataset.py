"""The labeled images as a Hugging Face ``datasets`` dataset on disk.

Columns: ``image`` (``datasets.Image``, the file's bytes embedded so the folder is self
contained), ``label`` (``datasets.ClassLabel`` with the project's class names, in class-index
order) and ``id`` (our stable image id); when some rows are geo-referenced (GeoTIFFs and
their chips), a ``geo`` column holds each row's record of :mod:`activekd_core.geo_tags` as
JSON text (empty for the others). Frames, chips, DICOM files and scientific TIFFs come
from ``read_bytes`` as PNGs of their display pixels; their ``image`` path then ends in
``.png``. Written with ``Dataset.save_to_disk`` into a new or
empty folder, staged next to it and renamed into place, so a crash never leaves a partial
dataset that looks complete; read it back with ``datasets.load_from_disk``.

``datasets`` is imported only here, on first use.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from activekd_core.geo_tags import geo_json

__all__ = ["export_hf_dataset"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def export_hf_dataset(
    labels: Mapping[str, str],
    classes: Sequence[str],
    dest: Path | str,
    read_bytes: Callable[[str], bytes],
    *,
    geo: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    """Write labeled images as a ``datasets`` dataset with a ``ClassLabel`` column.

    Args:
        labels: Image id -> class name, in the order the rows should have.
        classes: Class names in class-index order (the ``ClassLabel`` names).
        dest: A new or empty folder.
        read_bytes: Reads one image's file bytes by id (confined to the image root);
            ``OSError``/``ValueError`` skips that image with the reason.
        geo: Image id -> geo-reference record (:func:`activekd_core.geo_tags.items_geo`);
            adds the ``geo`` column when any labeled image has one.

    Returns:
        ``(rows written, [(image id, reason), ...] for images skipped)``.

    Raises:
        FileExistsError: If ``dest`` exists and is a file or a non-empty folder.
    """
    import datasets

    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest}: export folder must be new or empty")
    index = {c: i for i, c in enumerate(classes)}
    skipped: list[tuple[str, str]] = []

    def rows() -> Iterator[dict[str, object]]:
        for image_id, name in labels.items():
            if name not in index:
                skipped.append((image_id, f"class {name[:80]!r} is not one of the project's classes"))
                continue
            try:
                data = read_bytes(image_id)
            except (OSError, ValueError) as exc:
                skipped.append((image_id, str(exc)))
                continue
            yield {"image": {"bytes": data, "path": _file_name(image_id, data)}, "label": index[name], "id": image_id,
                   "geo": geo_json(geo.get(image_id)) if geo else ""}

    names = ["image", "label", "id"]
    spec = {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(classes)), "id": datasets.Value("string")}
    if geo and any(i in geo for i in labels):
        names.append("geo")
        spec["geo"] = datasets.Value("string")
    features = datasets.Features(spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".hf-dataset-", dir=str(dest.parent)))
    try:
        records = list(rows())  # labeled images only: a few thousand at most in practice
        columns = {name: [r[name] for r in records] for name in names}
        ds = datasets.Dataset.from_dict(columns, features=features)
        out = staging / "dataset"
        ds.save_to_disk(str(out))
        if dest.exists():
            dest.rmdir()
        out.replace(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(records), skipped


def _file_name(image_id: str, data: bytes) -> str:
    """The row's file name: the id's last part, with ``.png`` added when a rendered PNG stands for another file."""
    name = Path(image_id).name
    if data[:8] == _PNG_MAGIC and not name.lower().endswith(".png"):
        name += ".png"
    return name
