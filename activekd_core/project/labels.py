"""Human decisions: label, skip, unsure, undo, bulk changes, imports, and the progress counts.

Every decision is committed to the store before a call returns (see
:mod:`activekd_core.store` for the append-only history and the exact undo rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from activekd_core.project.context import ProjectContext
from activekd_core.store import LabelEvent


class Labels:
    """The human decisions of one project."""

    def __init__(self, ctx: ProjectContext) -> None:
        self.ctx = ctx

    def _kw(self, image_id: str, annotator: str, session: str | None) -> dict[str, Any]:
        kw: dict[str, Any] = {"annotator": annotator, "session": session}
        if image_id in set(self.ctx.store.audit_ids()):
            kw["strategy"] = "audit"
        return kw

    def label(self, image_id: str, class_name: str, *, annotator: str = "expert", session: str | None = None) -> int:
        """Label an image (committed before returning); returns the event id."""
        return self.ctx.store.label(image_id, class_name, **self._kw(image_id, annotator, session))

    def skip(self, image_id: str, *, annotator: str = "expert", session: str | None = None) -> int:
        """Skip an image (it leaves the candidate pool until undone)."""
        return self.ctx.store.skip(image_id, **self._kw(image_id, annotator, session))

    def unsure(self, image_id: str, *, annotator: str = "expert", session: str | None = None) -> int:
        """Mark an image as unsure (kept out of training and selection until changed)."""
        return self.ctx.store.unsure(image_id, **self._kw(image_id, annotator, session))

    def bulk_label(self, image_ids: Sequence[str], class_name: str, *, annotator: str = "expert",
                   session: str | None = None) -> int:
        """Label many images as one class in one transaction (one event per image); returns the count."""
        ids = list(dict.fromkeys(image_ids))
        return self.ctx.store.add_labels([(i, class_name) for i in ids], annotator=annotator, strategy="review",
                                         session=session)

    def counts(self) -> dict[str, Any]:
        """Overall progress: per-class label counts, skipped, unsure, unlabeled, audit.

        Read from the counts the store keeps with its cached current state (updated by
        each new event), so a page rerun costs O(classes), not a pass over every image.
        """
        store = self.ctx.store
        states, per_class = store.current_counts()
        total = len(self.ctx.pool())
        return {
            "per_class": per_class,
            "labeled": states["label"],
            "skipped": states["skip"],
            "unsure": states["unsure"],
            "unlabeled": total - states["label"] - states["skip"] - states["unsure"],
            "audit": len(store.audit_ids()),
            "total": total,
        }

    def review_choices(self) -> tuple[list[str], list[int]]:
        """The annotators and rounds that current decisions carry (the Review page's filter choices)."""
        current = self.ctx.store.current()
        return (sorted({ev.annotator for ev in current.values() if ev.annotator}),
                sorted({ev.round for ev in current.values() if ev.round is not None}))

    def image_history(self, image_id: str) -> list[LabelEvent]:
        """Every event of one image, oldest first (undo rows point at the event they revert)."""
        return self.ctx.store.events(image_id)

    # ---- imports ---------------------------------------------------------------------------

    def import_csv(self, path: Path | str, *, annotator: str = "import") -> Any:
        """Import labels from a CSV (``id``/``path``/``filename`` + ``label``/``class`` columns).

        Returns:
            The :class:`activekd_core.labels_import.LabelImport` (labels written and
            problems found). Rows with problems are skipped; the rest is written in one
            transaction.
        """
        from activekd_core.labels_import import labels_from_csv

        result = labels_from_csv(path, self.ctx.pool(), self.ctx.classes)
        self.ctx.store.add_labels(list(result.labels.items()), annotator=annotator, strategy="import")
        return result

    def import_subfolders(self, *, annotator: str = "import") -> tuple[int, dict[str, int]]:
        """Label images by their first folder name when it matches a class (case-insensitive).

        Returns:
            ``(number imported, {folder name not matching a class: image count})``.
        """
        from activekd_core.labels_import import labels_from_subfolders

        names = {c.casefold(): c for c in self.ctx.classes}
        found = labels_from_subfolders(self.ctx.pool())
        good = [(i, names[f.casefold()]) for i, f in found.items() if f.casefold() in names]
        unknown: dict[str, int] = {}
        for f in found.values():
            if f.casefold() not in names:
                unknown[f] = unknown.get(f, 0) + 1
        self.ctx.store.add_labels(good, annotator=annotator, strategy="import")
        return len(good), unknown

    def import_label_studio(self, path: Path | str, *, annotator: str = "label-studio") -> Any:
        """Import labels from a Label Studio JSON export (tasks that cannot be used are reported).

        Returns:
            The :class:`activekd_core.labels_import.LabelImport`; its labels are written in
            one transaction.
        """
        from activekd_core.label_studio import labels_from_label_studio

        result = labels_from_label_studio(path, self.ctx.pool().ids, self.ctx.classes)
        self.ctx.store.add_labels(list(result.labels.items()), annotator=annotator, strategy="import")
        return result
