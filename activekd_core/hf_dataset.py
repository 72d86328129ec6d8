"""The labeled images as a Hugging Face ``datasets`` dataset on disk.

Columns: ``image`` (``datasets.Image``, the file's bytes embedded so the folder is self
contained), ``label`` (``datasets.ClassLabel`` with the project's class names, in class-index
order) and ``id`` (our stable image id). Written with ``Dataset.save_to_disk`` into a new or
empty folder, staged next to it and renamed into place, so a crash never leaves a partial
dataset that looks complete; read it back with ``datasets.load_from_disk``.

``datasets`` is imported only here, on first use.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["export_hf_dataset"]


def export_hf_dataset(
    labels: Mapping[str, str],
    classes: Sequence[str],
    dest: Path | str,
    read_bytes: Callable[[str], bytes],
) -> tuple[int, list[tuple[str, str]]]:
    """Write labeled images as a ``datasets`` dataset with a ``ClassLabel`` column.

    Args:
        labels: Image id -> class name, in the order the rows should have.
        classes: Class names in class-index order (the ``ClassLabel`` names).
        dest: A new or empty folder.
        read_bytes: Reads one image's file bytes by id (confined to the image root);
            ``OSError``/``ValueError`` skips that image with the reason.

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
            yield {"image": {"bytes": data, "path": Path(image_id).name}, "label": index[name], "id": image_id}

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(classes)), "id": datasets.Value("string")}
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".hf-dataset-", dir=str(dest.parent)))
    try:
        records = list(rows())  # labeled images only: a few thousand at most in practice
        columns = {name: [r[name] for r in records] for name in ("image", "label", "id")}
        ds = datasets.Dataset.from_dict(columns, features=features)
        out = staging / "dataset"
        ds.save_to_disk(str(out))
        if dest.exists():
            dest.rmdir()
        out.replace(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(records), skipped
