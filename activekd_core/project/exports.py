"""What leaves a project: label and prediction tables, image bytes, datasets, students, Label Studio tasks.

Also the per-image views built from the stored predictions (the prediction table and the
Review page's filtered pages); they read the cached teacher probabilities and the active
student's stored outputs and never compute either.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from activekd_core import export as export_mod
from activekd_core.geo_tags import items_geo
from activekd_core.images import ImageLoadError, open_image_file
from activekd_core.project.context import ProjectContext, ProjectError
from activekd_core.project.rounds import Rounds
from activekd_core.project.teacher_probs import TeacherProbs

LABEL_FORMATS = ("csv", "json", "jsonl", "parquet")


class Exports:
    """Exports and prediction views of one project."""

    def __init__(self, ctx: ProjectContext, teacher: TeacherProbs, rounds: Rounds) -> None:
        self.ctx = ctx
        self.teacher = teacher
        self.rounds = rounds

    # ---- image bytes -----------------------------------------------------------------------

    def display_png(self, image_id: str) -> bytes | None:
        """PNG of the display pixels of a DICOM file, frame, scientific TIFF or chip; None for a plain image.

        What exports write instead of the file: a DICOM file carries patient data, and a
        16-bit or multi-band raster is not what the expert labeled.

        Raises:
            activekd_core.images.ImageLoadError: When the image cannot be read.
        """
        if self.ctx.is_plain_image(image_id):
            return None
        buf = io.BytesIO()
        self.ctx.load_image(image_id).save(buf, format="PNG")
        return buf.getvalue()

    def image_bytes(self, image_id: str) -> bytes:
        """The bytes of one pool image as an image file, opened inside the image root.

        A plain image's file bytes; for DICOM files, frames, scientific TIFFs and chips a
        PNG of the display pixels (:meth:`display_png`), never the DICOM file itself.

        Raises:
            ValueError: If the id is not in the pool or leaves the image root.
            OSError: If the file cannot be read (or a DICOM/raster item decoded).
        """
        if image_id not in self.ctx.row_of():
            raise ValueError(f"{image_id[:200]!r} is not an image of this project")
        try:
            png = self.display_png(image_id)
        except ImageLoadError as exc:
            raise OSError(str(exc)) from exc
        if png is not None:
            return png
        with open_image_file(self.ctx.image_root, image_id) as fh:
            return fh.read()

    # ---- labels, images and students ---------------------------------------------------------

    def export_labels(self, fmt: str = "csv", dest: Path | str | None = None, **kw: Any) -> export_mod.ExportReport:
        """Export current labels as ``csv``, ``json``, ``jsonl`` or ``parquet`` (default: ``exports/labels.<fmt>``)."""
        if fmt not in LABEL_FORMATS:
            raise ProjectError(f"unknown label export format {fmt!r}: use 'csv', 'json', 'jsonl' or 'parquet'")
        dest = Path(dest) if dest else self.ctx.path("exports", f"labels.{fmt}")
        store, root = self.ctx.store, self.ctx.image_root
        if fmt in ("jsonl", "parquet"):
            import pandas as pd

            from activekd_core.predictions import write_predictions

            rows = export_mod.label_rows(store, root, **kw)
            table = pd.DataFrame(rows, columns=list(export_mod.LABEL_FIELDS))
            written = write_predictions(table, dest, fmt)  # type: ignore[arg-type]
            return export_mod.ExportReport(written, len(rows), [written])
        fn = export_mod.export_labels_csv if fmt == "csv" else export_mod.export_labels_json
        return fn(store, root, dest, **kw)

    def export_imagefolder(self, dest: Path | str | None = None, *, mode: str = "copy",
                           include_audit: bool = True) -> export_mod.ExportReport:
        """Export labeled images as an ImageFolder tree (default: ``exports/imagefolder``)."""
        dest = Path(dest) if dest else self.ctx.path("exports", "imagefolder")
        exclude = () if include_audit else tuple(self.ctx.store.audit_ids())
        return export_mod.export_imagefolder(self.ctx.store, self.ctx.image_root, dest, mode=mode, exclude=exclude,
                                             render=self.display_png)

    def export_student(self, dest: Path | str | None = None, *, round_id: int | None = None) -> export_mod.ExportReport:
        """Export the active (or a given round's) student: safetensors + TorchScript (+ ONNX)."""
        ckpt = self.rounds.checkpoint_path(round_id)
        if ckpt is None:
            raise ProjectError("no trained student yet: retrain first" if round_id is None
                               else f"round {round_id} has no finished checkpoint")
        rid = round_id or self.rounds.active().id  # type: ignore[union-attr]
        dest = Path(dest) if dest else self.ctx.path("exports", f"student_round_{rid:04d}")
        return export_mod.export_student(ckpt, dest, self.ctx.classes)

    def export_hf_dataset(self, dest: Path | str | None = None, *, include_audit: bool = True
                          ) -> export_mod.ExportReport:
        """The labeled images as a Hugging Face ``datasets`` dataset (``save_to_disk``, ``ClassLabel`` column)."""
        from activekd_core.hf_dataset import export_hf_dataset

        dest = Path(dest) if dest else self.ctx.path("exports", "hf_dataset")
        audit = set() if include_audit else set(self.ctx.store.audit_ids())
        labels = {i: c for i, c in self.ctx.store.current_labels().items() if i not in audit}
        try:
            count, skipped = export_hf_dataset(labels, self.ctx.classes, dest, self.image_bytes,
                                               geo=items_geo(self.ctx.image_root, labels))
        except FileExistsError as exc:
            raise export_mod.ExportError(str(exc)) from exc
        return export_mod.ExportReport(dest, count, skipped=skipped)

    # ---- predictions -------------------------------------------------------------------------

    def prediction_table(self) -> Any:
        """Teacher and student predictions and the human state of every image (a DataFrame).

        Uses the cached teacher probabilities and the active student's stored outputs; never
        computes either (columns of a model that has none are left out).
        """
        from activekd_core.predictions import prediction_table

        states = {
            image_id: (ev.event, ev.class_name, ev.annotator, ev.round)
            for image_id, ev in self.ctx.store.current().items()
        }
        return prediction_table(
            self.ctx.pool().ids,
            self.ctx.classes,
            states,
            audit_ids=self.ctx.store.audit_ids(),
            teacher_probs=self.teacher.cached(),
            student_probs=self.rounds.active_student_probs(),
            geo=items_geo(self.ctx.image_root, self.ctx.pool().ids),
        )

    def export_predictions(self, fmt: str = "csv", dest: Path | str | None = None) -> export_mod.ExportReport:
        """Write :meth:`prediction_table` as ``csv``, ``jsonl`` or ``parquet`` (default: ``exports/predictions.<fmt>``)."""
        from activekd_core.predictions import PREDICTION_FORMATS, geo_sidecar_path, write_predictions

        if fmt not in PREDICTION_FORMATS:
            raise ProjectError(f"unknown prediction format {fmt!r}: use one of {', '.join(PREDICTION_FORMATS)}")
        table = self.prediction_table()
        geo = items_geo(self.ctx.image_root, self.ctx.pool().ids)
        dest = Path(dest) if dest else self.ctx.path("exports", f"predictions.{fmt}")
        written = write_predictions(table, dest, fmt, geo=geo)  # type: ignore[arg-type]
        extra = [geo_sidecar_path(written)] if geo and fmt != "parquet" else []
        return export_mod.ExportReport(written, len(table), [written, *extra])

    def export_label_studio(self, dest: Path | str | None = None, *, image_url: str | None = None,
                            document_root: Path | str | None = None) -> export_mod.ExportReport:
        """Label Studio tasks for every image with pre-annotations, plus the labeling config.

        The student's prediction is the pre-annotation when a round exists, else the
        teacher's cached one. Writes ``<dest>`` (JSON) and ``<dest stem>.config.xml``; frames,
        chips and formats a browser cannot show are written as PNGs beside them
        (:func:`activekd_core.label_studio.export_label_studio`).
        """
        from activekd_core.label_studio import DEFAULT_IMAGE_URL, export_label_studio

        probs, version = self.rounds.active_student_probs(), None
        if probs is not None:
            version = f"activekd-student-round-{self.rounds.active().id}"  # type: ignore[union-attr]
        else:
            probs = self.teacher.cached()
            version = "activekd-teacher" if probs is not None else None
        labels = {
            i: (ev.class_name, ev.annotator)
            for i, ev in self.ctx.store.current().items()
            if ev.is_label
        }
        dest = Path(dest) if dest else self.ctx.path("exports", "label_studio_tasks.json")
        ids = self.ctx.pool().ids
        return export_label_studio(dest, self.ctx.image_root, ids, self.ctx.classes, labels, render=self.display_png,
                                   probs=probs, model_version=version or "activekd",
                                   image_url=image_url or DEFAULT_IMAGE_URL,
                                   geo=items_geo(self.ctx.image_root, ids), document_root=document_root)

    def review(self, flt: Any = None, *, page: int = 0, per_page: int = 24) -> Any:
        """One page of the pool, filtered and sorted (:func:`activekd_core.review_state.review_page`).

        Uses the cached teacher probabilities and the active student's stored outputs; never
        computes either.
        """
        from activekd_core.review_state import ReviewFilter, review_page

        return review_page(
            self.ctx.pool().ids, self.ctx.classes, self.ctx.store.current(), flt or ReviewFilter(),
            audit_ids=self.ctx.store.audit_ids(), teacher_probs=self.teacher.cached(),
            student_probs=self.rounds.active_student_probs(), page=page, per_page=per_page,
        )
