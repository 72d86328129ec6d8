"""Exports of a project: labels as CSV/JSON, an ImageFolder tree, and the trained student.

Every file is written to a temporary name in its destination folder and renamed into
place, so a crash never leaves a half-written export that looks complete.

* Labels: one row per image whose current state is a label, with ``id, path, label,
  annotator, time, round`` (plus ``strategy`` and ``event_id``); ``path`` is the absolute
  path of the image file at export time (for a frame ``file#n`` or a chip ``file@x,y,w,h``
  the file that holds it; the ``id`` says which frame or window). Optional: skipped/unsure images too (empty
  ``label``, ``state`` column says which).
* ImageFolder: ``<dest>/<class>/<file>`` where ``<file>`` is the image id with ``/``
  replaced by ``__`` (unique because ids are unique); copies or hard links. Images that
  are not plain files (DICOM files, their frames, scientific TIFFs and chips) are written
  as ``<file>.png`` holding the project's display pixels (``render``): a DICOM file is
  never copied, since it carries patient data. Geo-referenced images (GeoTIFFs and their
  chips) get their geo-reference in ``<dest>/geo.json``: ``{"version": 1, "items":
  {exported file path relative to dest (POSIX): record}}`` with the records of
  :mod:`activekd_core.geo_tags` (a chip's own geotransform and tags).
* Student: the safetensors checkpoint, a TorchScript module taking uint8 images
  ``(N, S, S, 3)`` and returning class probabilities ``(N, C)``, ONNX of the same when
  the ``onnx`` package is installed, and ``model.json`` describing inputs and classes.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activekd_core.atomic import atomic_path, atomic_write_bytes, fsync_dir
from activekd_core.csv_safe import SafeDictWriter
from activekd_core.geo_tags import items_geo
from activekd_core.images import ImageLoadError, item_ref, open_image_file
from activekd_core.store import Store

GEO_FILE = "geo.json"
LABEL_FIELDS = ("id", "path", "label", "annotator", "time", "round", "strategy", "state", "event_id")


class ExportError(Exception):
    """An export was refused; the message names the destination and the problem."""


@dataclass
class ExportReport:
    """What an export wrote.

    Attributes:
        dest: The file or folder written.
        count: Number of label rows or image files.
        files: Files written (student export).
        skipped: ``(id, reason)`` for images that could not be exported.
        document_root: For Label Studio tasks: the folder their ``d=`` paths are relative
            to (``LOCAL_FILES_DOCUMENT_ROOT``); None for other exports.
    """

    dest: Path
    count: int
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    document_root: Path | None = None


def label_rows(store: Store, image_root: Path | str, *, include_states: Sequence[str] = ("label",)) -> list[dict[str, Any]]:
    """The current state of every labeled image as export rows, in pool order.

    Args:
        store: The project store.
        image_root: The project's image root (for absolute paths).
        include_states: Which current states to export: ``"label"``, ``"skip"``, ``"unsure"``.
    """
    root = Path(image_root)
    current = store.current()
    rows = []
    for image_id in store.image_ids():
        ev = current.get(image_id)
        if ev is None or ev.event not in include_states:
            continue
        file_id = item_ref(root, image_id).file_id if ("#" in image_id or "@" in image_id) else image_id
        rows.append(
            {
                "id": image_id,
                "path": str(root / file_id),
                "label": ev.class_name or "",
                "annotator": ev.annotator,
                "time": ev.time,
                "round": ev.round,
                "strategy": ev.strategy or "",
                "state": ev.event,
                "event_id": ev.id,
            }
        )
    return rows


def export_labels_csv(store: Store, image_root: Path | str, dest: Path | str, **kw: Any) -> ExportReport:
    """Write the current labels as CSV (header: :data:`LABEL_FIELDS`).

    Text cells that a spreadsheet would run as a formula (an id, class or annotator
    starting with ``=``, ``+``, ``-``, ``@``...) are written with a leading ``'``
    (:mod:`activekd_core.csv_safe`); the label import removes it again.
    """
    rows = label_rows(store, image_root, **kw)
    buf = io.StringIO(newline="")
    writer = SafeDictWriter(buf, fieldnames=list(LABEL_FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    dest = Path(dest)
    atomic_write_bytes(dest, buf.getvalue().encode("utf-8"))
    return ExportReport(dest, len(rows), [dest])


def export_labels_json(store: Store, image_root: Path | str, dest: Path | str, **kw: Any) -> ExportReport:
    """Write the current labels as JSON: ``{"classes": [...], "labels": [row, ...]}``."""
    rows = label_rows(store, image_root, **kw)
    payload = {"classes": store.class_names(), "labels": rows}
    dest = Path(dest)
    atomic_write_bytes(dest, json.dumps(payload, indent=1, ensure_ascii=False).encode("utf-8"))
    return ExportReport(dest, len(rows), [dest])


def safe_folder_name(name: str) -> str:
    """A class name usable as one folder name on any OS (separators and control chars replaced)."""
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip().strip(".")
    return cleaned or "_"


def export_imagefolder(
    store: Store, image_root: Path | str, dest: Path | str, *, mode: str = "copy", exclude: Sequence[str] = (),
    render: Callable[[str], bytes | None] | None = None, geo: bool = True,
) -> ExportReport:
    """Write labeled images as an ImageFolder tree ``dest/<class>/<file>``.

    Args:
        store: The project store.
        image_root: Where the images live; every source path is checked to stay inside it.
        dest: A new or empty folder.
        mode: ``"copy"`` or ``"hardlink"`` (falls back to a copy across file systems).
        exclude: Image ids to leave out (e.g. the audit set).
        render: ``render(image_id)`` gives PNG bytes for an image that must not be copied
            as its file (DICOM, frames, scientific TIFF, chips), or None to copy the file.
        geo: Read the geo-reference of exported GeoTIFFs and chips (confined to the root)
            and write it to ``geo.json`` at the top of ``dest`` (only when there is one).

    Raises:
        ExportError: If ``dest`` is a non-empty folder or a file, or ``mode`` is unknown.
    """
    if mode not in ("copy", "hardlink"):
        raise ExportError(f"unknown ImageFolder mode {mode!r}: use 'copy' or 'hardlink'")
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest}: export folder must be new or empty")
    folders = {n: safe_folder_name(n) for n in store.class_names()}
    if len(set(f.casefold() for f in folders.values())) != len(folders):
        raise ExportError(f"{dest}: class names {sorted(folders)} collide once made safe as folder names")
    if geo and GEO_FILE.casefold() in {f.casefold() for f in folders.values()}:
        raise ExportError(f"{dest}: a class folder would be named {GEO_FILE!r}, the geo-reference file's name")
    skip = set(exclude)
    staging = Path(tempfile.mkdtemp(prefix=".imagefolder-", dir=str(dest.parent if dest.parent.exists() else _mk(dest.parent))))
    count = 0
    skipped: list[tuple[str, str]] = []
    exported: dict[str, str] = {}  # image id -> path relative to dest
    try:
        for folder in folders.values():
            (staging / folder).mkdir()
        for image_id, name in store.current_labels().items():
            if image_id in skip:
                continue
            target = staging / folders[name] / image_id.replace("/", "__")
            try:
                png = render(image_id) if render is not None else None
                if png is not None:
                    target = target.with_name(target.name + ".png")
                    with open(target, "xb") as out:
                        out.write(png)
                else:
                    _export_one(image_root, image_id, target, hardlink=mode == "hardlink")
            except (ValueError, OSError, ImageLoadError) as exc:  # refused (outside the root) or unreadable
                target.unlink(missing_ok=True)
                skipped.append((image_id, str(exc)))
                continue
            exported[image_id] = target.relative_to(staging).as_posix()
            count += 1
        if geo:
            records = items_geo(image_root, exported)
            if records:
                payload = {"version": 1, "items": {exported[i]: r for i, r in records.items()}}
                with open(staging / GEO_FILE, "xb") as out:
                    out.write(json.dumps(payload, ensure_ascii=False, indent=1, allow_nan=False).encode("utf-8"))
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)  # the folder's commit: complete or absent under its final name
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportReport(dest, count, skipped=skipped)


def _export_one(image_root: Path | str, image_id: str, target: Path, *, hardlink: bool) -> None:
    """Copy (or hard-link) one pool image to ``target``, reading only a file inside the root.

    The source is opened confined to the root (:func:`activekd_core.images.open_image_file`)
    and the bytes come from that open file. A hard link is made to the checked path and
    kept only when it is the very file that was opened (same device and inode).
    """
    with open_image_file(image_root, image_id) as src:
        opened = os.fstat(src.fileno())
        if hardlink:
            try:
                os.link(Path(image_root).resolve() / image_id, target, follow_symlinks=False)
                linked = os.stat(target, follow_symlinks=False)
                if (linked.st_dev, linked.st_ino) == (opened.st_dev, opened.st_ino):
                    return
                target.unlink()
            except OSError:
                target.unlink(missing_ok=True)
        with open(target, "xb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.utime(target, ns=(opened.st_atime_ns, opened.st_mtime_ns))


def export_student(
    checkpoint: Path | str, dest_dir: Path | str, classes: Sequence[str], *, image_size: int | None = None,
    onnx: bool | None = None,
) -> ExportReport:
    """Export a trained student: safetensors copy, TorchScript, optional ONNX, and ``model.json``.

    The TorchScript/ONNX module takes uint8 ``(N, S, S, 3)`` RGB images (``S`` =
    ``image_size``, the size it was trained at) and returns ``(N, C)`` probabilities,
    normalisation included.

    Args:
        checkpoint: The student's ``.safetensors`` checkpoint.
        dest_dir: Folder to write into (created).
        classes: Class names (column order).
        image_size: Input side (default: from the checkpoint header).
        onnx: Write ONNX (default: when the ``onnx`` package is importable).

    Raises:
        ExportError: If the checkpoint is missing or does not match ``classes``.
    """
    import torch

    from activekd_core.student import CheckpointError, load_student, prepare_batch

    checkpoint = Path(checkpoint)
    try:
        model, header = load_student(checkpoint, num_classes=len(classes))
    except CheckpointError as exc:
        raise ExportError(str(exc)) from exc
    size = int(image_size or header.get("image_size") or 32)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)

    class ProbsModule(torch.nn.Module):
        def __init__(self, student: torch.nn.Module) -> None:
            super().__init__()
            self.student = student

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.student.predict_proba(prepare_batch(pixels))

    wrapper = ProbsModule(model).eval()
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    files: list[Path] = []
    st_path = dest_dir / "student.safetensors"
    with atomic_path(st_path) as tmp:
        shutil.copyfile(checkpoint, tmp)
    files.append(st_path)
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks and normalisation constants are fixed at trace time, as intended.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    ts_path = dest_dir / "student_torchscript.pt"
    with atomic_path(ts_path) as tmp:
        traced.save(str(tmp))
    files.append(ts_path)
    if onnx is None:
        try:
            import onnx as _onnx  # noqa: F401

            onnx = True
        except ImportError:
            onnx = False
    if onnx:
        onnx_path = dest_dir / "student.onnx"
        with atomic_path(onnx_path) as tmp:
            torch.onnx.export(wrapper, (example,), str(tmp), input_names=["pixels"], output_names=["probs"],
                              dynamic_axes={"pixels": {0: "batch"}, "probs": {0: "batch"}})
        files.append(onnx_path)
    info = {
        "classes": list(classes),
        "arch": header.get("arch"),
        "input": {"dtype": "uint8", "shape": ["N", size, size, 3], "layout": "NHWC RGB"},
        "output": {"dtype": "float32", "shape": ["N", len(classes)], "meaning": "class probabilities"},
        "alpha": header.get("alpha"),
        "beta": header.get("beta"),
        "source_checkpoint": str(checkpoint),
        "files": [f.name for f in files],
    }
    info_path = dest_dir / "model.json"
    atomic_write_bytes(info_path, json.dumps(info, indent=1).encode())
    files.append(info_path)
    return ExportReport(dest_dir, len(files), files)


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
