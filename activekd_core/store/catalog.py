"""Project settings, the scanned images (usable and skipped) and the class list.

Classes can be replaced only while no label exists; their names are checked by
:func:`activekd_core.store.records.validate_class_names`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from activekd_core.store.connection import StoreConnection
from activekd_core.store.records import ClassRecord, ImageRecord, StoreError, image_from_row, validate_class_names


# One row of the ``images`` table: id, pool row (None when skipped), path, width, height,
# readable (1/0) and the reason a file was skipped.
ImageRow = tuple[str, int | None, str, int | None, int | None, int, str | None]


class StoreCatalog(StoreConnection):
    """Settings, images and classes of one project database."""

    # ---- settings ------------------------------------------------------------------

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key``."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def set_settings(self, values: dict[str, Any]) -> None:
        """Store several JSON-serialisable values in one transaction (all or none)."""
        rows = [(key, json.dumps(value)) for key, value in values.items()]
        with self.transaction() as c:
            c.executemany("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", rows)

    def get_setting(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def settings(self) -> dict[str, Any]:
        """All settings as a dict."""
        return {r[0]: json.loads(r[1]) for r in self._query("SELECT key, value FROM settings")}

    # ---- images --------------------------------------------------------------------

    def add_images(self, records: Iterable[ImageRecord]) -> int:
        """Insert scanned images (usable and skipped) in one transaction; returns the count."""
        return self.add_image_rows((r.id, r.row, r.path, r.width, r.height, int(r.readable), r.reason) for r in records)

    def add_image_rows(self, rows: Iterable[ImageRow]) -> int:
        """Insert scanned images given as ``(id, row, path, width, height, readable 0/1, reason)``
        tuples, all in one transaction (all or none); returns the count.

        The rows are consumed as they are inserted (no list of them is built), so a
        project creation at 1M images holds no second copy of its catalog.
        """
        with self.transaction() as c:
            cursor = c.executemany(
                "INSERT INTO images(id, row, path, width, height, readable, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return max(0, cursor.rowcount)

    def images(self, *, readable: bool | None = True) -> list[ImageRecord]:
        """Images in pool-row order (readable), or the skipped ones (``readable=False``), or all."""
        sql = "SELECT * FROM images"
        if readable is True:
            sql += " WHERE readable = 1 ORDER BY row"
        elif readable is False:
            sql += " WHERE readable = 0 ORDER BY id"
        else:
            sql += " ORDER BY readable DESC, row, id"
        return [image_from_row(r) for r in self._query(sql)]

    def image_ids(self) -> list[str]:
        """Ids of the usable images in pool-row order."""
        return [r[0] for r in self._query("SELECT id FROM images WHERE readable = 1 ORDER BY row")]

    def skipped_images(self) -> list[ImageRecord]:
        """Files that were found but could not be used, with reasons."""
        return self.images(readable=False)

    # ---- classes -------------------------------------------------------------------

    def set_classes(self, classes: Sequence[tuple[str, str]]) -> None:
        """Define the classes (name, prompt) in display order. Only allowed before any label.

        Raises:
            StoreError: For blank/duplicate names, fewer than two classes, or if labels exist.
        """
        names = validate_class_names([n for n, _ in classes])
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM label_events LIMIT 1").fetchone():
                raise StoreError(f"{self.path}: classes cannot be replaced once labels exist")
            c.execute("DELETE FROM classes")
            c.executemany(
                "INSERT INTO classes(position, name, prompt) VALUES (?, ?, ?)",
                [(i, n, str(p or "").strip()) for i, (n, (_, p)) in enumerate(zip(names, classes))],
            )

    def classes(self) -> list[ClassRecord]:
        """The classes in display order."""
        return [ClassRecord(r[0], r[1], r[2]) for r in self._query("SELECT position, name, prompt FROM classes ORDER BY position")]

    def class_names(self) -> list[str]:
        """Class names in display order (index = class index)."""
        return [c.name for c in self.classes()]
