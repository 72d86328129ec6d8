"""Label Studio interchange: tasks with pre-annotations out, a JSON export back in.

Export (:func:`label_studio_tasks`): one task per image, ``data.image`` is the image's URL
for Label Studio's local-file serving (``/data/local-files/?d=<id>`` by default: start
Label Studio with ``LOCAL_FILES_SERVING_ENABLED=true`` and ``LOCAL_FILES_DOCUMENT_ROOT``
set to the project's image root) and ``data.activekd_id`` keeps our stable id. The model's
predicted class goes into ``predictions`` (shown as pre-annotations, with the probability
as ``score``); current human labels go into ``annotations``. :func:`labeling_config` gives
the matching labeling configuration (an ``Image`` named ``image`` and ``Choices`` named
``choice``). A geo-referenced item (GeoTIFF or chip of one) carries its record of
:mod:`activekd_core.geo_tags` in the task's ``meta.activekd_geo``.

Items that are not files a browser shows (DICOM files and their frames ``path#frame``,
scientific TIFFs and their chips ``path@x,y,w,h``) are written by :func:`export_label_studio`
as PNGs of the project's display pixels into ``<tasks stem>_images/`` next to the tasks
file, and their tasks point there. Label Studio serves local files from one document root,
so when such PNGs exist every ``d=`` path is relative to a common folder of the image root
and that PNG folder (or the ``document_root`` given); the export reports which folder to set
as ``LOCAL_FILES_DOCUMENT_ROOT``. Without such items the paths stay the image ids (document
root = the image root).

Import (:func:`labels_from_label_studio`): a Label Studio JSON export (a list of tasks).
Each task's image is found by ``data.activekd_id`` or, for tasks made elsewhere, by the
path in its ``data.image`` URL (the ``d=`` parameter or the URL path), matched to a pool id
exactly or by a unique path suffix. The newest annotation that was not cancelled and holds
one choice gives the label. Every task that cannot be used is reported with its task id and
the reason, as the CSV import does.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse
from xml.sax.saxutils import quoteattr

import numpy as np
import numpy.typing as npt

from activekd_core.atomic import atomic_write_text, fsync_dir
from activekd_core.export import ExportReport
from activekd_core.images import ImageLoadError
from activekd_core.labels_import import LabelImport, LabelImportError, LabelProblem

__all__ = [
    "DEFAULT_IMAGE_URL", "export_label_studio", "label_studio_tasks", "labeling_config", "labels_from_label_studio",
    "rendered_folder",
]

DEFAULT_IMAGE_URL = "/data/local-files/?d={id}"
FROM_NAME, TO_NAME = "choice", "image"
MAX_EXPORT_BYTES = 500 * 1024 * 1024


def labeling_config(classes: Sequence[str]) -> str:
    """The Label Studio labeling configuration (XML) matching the exported tasks."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def _choice(name: str) -> list[dict[str, Any]]:
    return [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [name]}}]


def label_studio_tasks(
    ids: Sequence[str],
    classes: Sequence[str],
    labels: Mapping[str, tuple[str, str]],
    *,
    probs: npt.ArrayLike | None = None,
    model_version: str = "activekd",
    image_url: str = DEFAULT_IMAGE_URL,
    paths: Mapping[str, str] | None = None,
    geo: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Label Studio tasks for every image, with the model's pre-annotations.

    Args:
        ids: Pool image ids in pool order.
        classes: Class names in class-index order.
        labels: Image id -> ``(class name, annotator)`` for images with a human label.
        probs: ``(N, C)`` probabilities of the model whose prediction becomes the
            pre-annotation (None: no predictions).
        model_version: Shown by Label Studio next to the prediction.
        image_url: URL template; ``{id}`` is replaced by the URL-quoted image path.
        paths: Image id -> the path put into the URL (a rendered PNG's, or the file's
            relative to the document root); default the id itself.
        geo: Image id -> geo-reference record, put into the task's ``meta.activekd_geo``.

    Returns:
        A JSON-serialisable list of tasks.
    """
    p = None if probs is None else np.asarray(probs, dtype=np.float32)
    if p is not None and p.shape != (len(ids), len(classes)):
        raise ValueError(f"probabilities have shape {p.shape}, expected {(len(ids), len(classes))}")
    tasks = []
    for row, image_id in enumerate(ids):
        path = paths.get(image_id, image_id) if paths else image_id
        task: dict[str, Any] = {
            "data": {"image": image_url.replace("{id}", quote(path, safe="/")), "activekd_id": image_id},
        }
        if geo and image_id in geo:
            task["meta"] = {"activekd_geo": dict(geo[image_id])}
        if p is not None:
            k = int(p[row].argmax())
            task["predictions"] = [{"model_version": model_version, "score": float(p[row, k]), "result": _choice(classes[k])}]
        if image_id in labels:
            name, annotator = labels[image_id]
            task["annotations"] = [{"result": _choice(name), "meta": {"activekd_annotator": annotator}}]
        tasks.append(task)
    return tasks


def rendered_folder(dest: Path | str) -> Path:
    """The folder :func:`export_label_studio` writes rendered PNGs into: ``<tasks stem>_images`` beside the tasks."""
    dest = Path(dest)
    return dest.with_name(dest.stem + "_images")


def export_label_studio(
    dest: Path | str,
    image_root: Path | str,
    ids: Sequence[str],
    classes: Sequence[str],
    labels: Mapping[str, tuple[str, str]],
    *,
    render: Callable[[str], bytes | None] | None = None,
    probs: npt.ArrayLike | None = None,
    model_version: str = "activekd",
    image_url: str = DEFAULT_IMAGE_URL,
    geo: Mapping[str, Mapping[str, Any]] | None = None,
    document_root: Path | str | None = None,
) -> ExportReport:
    """Write the tasks JSON, its labeling config and the PNGs of items that are not plain files.

    Args:
        dest: The tasks file (JSON); the config goes to ``<stem>.config.xml`` beside it and
            rendered PNGs to :func:`rendered_folder` (replaced as a whole on every export).
        image_root: The project's image root.
        ids: Pool image ids in pool order.
        classes: Class names in class-index order.
        labels: Image id -> ``(class name, annotator)`` for images with a human label.
        render: ``render(image_id)`` gives the PNG of an item that is not a plain image
            (DICOM, frame, scientific TIFF, chip) or None for a plain image; an
            ``ImageLoadError``/``OSError``/``ValueError`` leaves that image out (reported).
        probs: ``(N, C)`` probabilities for the pre-annotations, or None.
        model_version: Shown by Label Studio next to the prediction.
        image_url: URL template (``{id}``: the path relative to the document root).
        geo: Image id -> geo-reference record (``meta.activekd_geo`` of its task).
        document_root: The folder Label Studio serves local files from
            (``LOCAL_FILES_DOCUMENT_ROOT``); default the image root, or when PNGs were
            rendered the deepest folder holding both the image root and the PNG folder.

    Returns:
        The report: ``dest``, the task count, files written (tasks, config, PNGs),
        images left out with the reason, and ``document_root``.

    Raises:
        ValueError: If ``document_root`` does not hold the image root and the PNG folder.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    images = rendered_folder(dest)
    staging = Path(tempfile.mkdtemp(prefix=".ls-images-", dir=str(dest.parent)))
    try:
        rendered, skipped = _render_all(ids, render, staging)
        root = Path(image_root).resolve()
        serve = _serving_root(root, images.resolve() if rendered else None, document_root)
        paths: dict[str, str] = {}
        if rendered or serve != root:
            paths = {i: (root / i).relative_to(serve).as_posix() for i in ids}
            paths.update({i: (images.resolve() / name).relative_to(serve).as_posix() for i, name in rendered.items()})
        left_out = {i for i, _ in skipped}
        rows = [k for k, i in enumerate(ids) if i not in left_out]
        p = None if probs is None else np.asarray(probs, dtype=np.float32)
        if p is not None and p.shape != (len(ids), len(classes)):
            raise ValueError(f"probabilities have shape {p.shape}, expected {(len(ids), len(classes))}")
        tasks = label_studio_tasks([ids[k] for k in rows], classes, labels, probs=None if p is None else p[rows],
                                   model_version=model_version, image_url=image_url, paths=paths, geo=geo)
        _replace_folder(staging, images, keep=bool(rendered))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    config = dest.with_name(dest.stem + ".config.xml")
    atomic_write_text(dest, json.dumps(tasks, ensure_ascii=False, indent=1))
    atomic_write_text(config, labeling_config(classes))
    files = [dest, config] + [images / name for name in rendered.values()]
    return ExportReport(dest, len(tasks), files, skipped=skipped, document_root=serve)


def _render_all(
    ids: Sequence[str], render: Callable[[str], bytes | None] | None, folder: Path
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Write every item's PNG into ``folder``: (id -> file name, [(id, reason)] for failures)."""
    rendered: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    if render is None:
        return rendered, skipped
    for image_id in ids:
        try:
            png = render(image_id)
        except (ImageLoadError, OSError, ValueError) as exc:
            skipped.append((image_id, str(exc)))
            continue
        if png is None:
            continue
        name = image_id.replace("/", "__") + ".png"  # unique because ids are unique
        with open(folder / name, "xb") as out:
            out.write(png)
        rendered[image_id] = name
    return rendered, skipped


def _serving_root(image_root: Path, images: Path | None, document_root: Path | str | None) -> Path:
    if document_root is not None:
        serve = Path(document_root).resolve()
        for needed in (image_root, images):
            if needed is not None and not needed.is_relative_to(serve):
                raise ValueError(f"document root {serve} does not hold {needed}")
        return serve
    if images is None:
        return image_root
    return Path(os.path.commonpath([image_root, images]))


def _replace_folder(staging: Path, target: Path, *, keep: bool) -> None:
    """Put the staged PNG folder in place of an earlier one (or just remove the earlier one)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    if keep:
        os.replace(staging, target)
        fsync_dir(target.parent)
    else:
        shutil.rmtree(staging, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _path_of(url: str) -> str:
    """The file path a Label Studio image URL points at (``d=`` parameter, else the URL path)."""
    parsed = urlparse(url)
    d = parse_qs(parsed.query).get("d")
    path = d[0] if d else unquote(parsed.path)
    return path.lstrip("/")


def _match_id(task: Mapping[str, Any], ids: set[str], by_suffix: Mapping[str, list[str]]) -> tuple[str | None, str]:
    data = task.get("data")
    if not isinstance(data, Mapping):
        return None, "task has no 'data' object"
    own = data.get("activekd_id")
    if isinstance(own, str):
        return (own, own) if own in ids else (None, own)
    url = data.get("image")
    if not isinstance(url, str) or not url:
        return None, ""
    path = _path_of(url)
    if path in ids:
        return path, path
    parts = PurePosixPath(path).parts
    for start in range(1, len(parts)):
        tail = "/".join(parts[start:])
        hits = by_suffix.get(tail, [])
        if len(hits) == 1:
            return hits[0], path
        if len(hits) > 1:
            return None, path
    return None, path


def _suffix_index(ids: Sequence[str]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for image_id in ids:
        parts = PurePosixPath(image_id).parts
        for start in range(len(parts)):
            index.setdefault("/".join(parts[start:]), []).append(image_id)
    return index


def _chosen(task: Mapping[str, Any]) -> tuple[str | None, str]:
    """The class of the newest usable annotation, or ``(None, why not)``."""
    annotations = task.get("annotations")
    if not isinstance(annotations, list) or not annotations:
        return None, "no annotation"
    for ann in reversed(annotations):
        if not isinstance(ann, Mapping) or ann.get("was_cancelled"):
            continue
        choices = [
            c
            for r in ann.get("result") or []
            if isinstance(r, Mapping) and r.get("type") == "choices"
            for c in ((r.get("value") or {}).get("choices") or [])
        ]
        if len(choices) == 1 and isinstance(choices[0], str):
            return choices[0], ""
        if len(choices) > 1:
            return None, f"annotation has {len(choices)} choices, expected one"
    return None, "no annotation with a single choice (cancelled or empty)"


def labels_from_label_studio(path: Path | str, ids: Sequence[str], classes: Sequence[str]) -> LabelImport:
    """Read labels from a Label Studio JSON export.

    Args:
        path: The export file (JSON list of tasks).
        ids: Pool image ids.
        classes: The project's classes (matched exactly, then case-insensitively).

    Returns:
        The labels found and one problem per task that was skipped (``row`` = task position,
        1-based; the value is the task's image path or id).

    Raises:
        LabelImportError: If the file is missing, too large, not JSON or not a list of tasks.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LabelImportError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if size > MAX_EXPORT_BYTES:
        raise LabelImportError(f"{path}: {size:,} bytes is larger than the {MAX_EXPORT_BYTES:,} bytes accepted")
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelImportError(f"{path}: not a Label Studio JSON export ({exc})") from exc
    if not isinstance(tasks, list):
        raise LabelImportError(f"{path}: expected a JSON list of tasks, found {type(tasks).__name__}")
    id_set = set(ids)
    by_suffix = _suffix_index(ids)
    exact = {c: c for c in classes}
    folded = {c.casefold(): c for c in classes}
    result = LabelImport()
    for position, task in enumerate(tasks, start=1):
        if not isinstance(task, Mapping):
            result.problems.append(LabelProblem(position, "", "task is not a JSON object"))
            continue
        image_id, shown = _match_id(task, id_set, by_suffix)
        if image_id is None:
            reason = "task has no image" if not shown else "image is not in this project's pool (or matches several)"
            result.problems.append(LabelProblem(position, shown, reason))
            continue
        name, why = _chosen(task)
        if name is None:
            result.problems.append(LabelProblem(position, image_id, why))
            continue
        cls = exact.get(name) or folded.get(name.casefold())
        if cls is None:
            result.problems.append(LabelProblem(position, image_id, f"unknown class {name[:80]!r}"))
            continue
        if image_id in result.labels and result.labels[image_id] != cls:
            result.problems.append(LabelProblem(position, image_id, "a later task relabels this image; the later one wins"))
        result.labels[image_id] = cls
        if cls not in result.classes:
            result.classes.append(cls)
    return result
