"""Query batches: the images a strategy picked together, in pick order with their scores.

At most one batch is open at a time: opening a new one closes the previous one.
"""

from __future__ import annotations

from collections.abc import Sequence

from activekd_core.store.connection import StoreConnection
from activekd_core.store.records import BatchItem, QueryBatch, utc_now


class QueryBatches(StoreConnection):
    """The ``query_batches`` and ``batch_items`` tables."""

    # ---- query batches -------------------------------------------------------------

    def open_batch(
        self, round: int, strategy: str, space: str, picks: Sequence[tuple[str, float | None]]
    ) -> QueryBatch:
        """Close any open batch and store a new one (image ids in pick order, with scores)."""
        with self.transaction() as c:
            c.execute("UPDATE query_batches SET closed = 1 WHERE closed = 0")
            cur = c.execute(
                "INSERT INTO query_batches(round, strategy, space, created) VALUES (?, ?, ?, ?)",
                (round, strategy, space, utc_now()),
            )
            bid = int(cur.lastrowid)
            c.executemany(
                "INSERT INTO batch_items(batch_id, position, image_id, score) VALUES (?, ?, ?, ?)",
                [(bid, i, img, None if s is None else float(s)) for i, (img, s) in enumerate(picks)],
            )
        batch = self.batch(bid)
        assert batch is not None
        return batch

    def batch(self, batch_id: int) -> QueryBatch | None:
        """One query batch by id."""
        rows = self._query("SELECT * FROM query_batches WHERE id = ?", (batch_id,))
        if not rows:
            return None
        r = rows[0]
        items = [
            BatchItem(i[0], i[1], i[2])
            for i in self._query(
                "SELECT position, image_id, score FROM batch_items WHERE batch_id = ? ORDER BY position", (batch_id,)
            )
        ]
        return QueryBatch(r["id"], r["round"], r["strategy"], r["space"], r["created"], bool(r["closed"]), items)

    def open_batch_current(self) -> QueryBatch | None:
        """The open query batch, if any."""
        rows = self._query("SELECT id FROM query_batches WHERE closed = 0 ORDER BY id DESC LIMIT 1")
        return self.batch(rows[0][0]) if rows else None

    def batches(self, *, round: int | None = None) -> list[QueryBatch]:
        """All query batches in creation order (optionally only those of one round)."""
        if round is None:
            rows = self._query("SELECT id FROM query_batches ORDER BY id")
        else:
            rows = self._query("SELECT id FROM query_batches WHERE round = ? ORDER BY id", (round,))
        return [b for b in (self.batch(r[0]) for r in rows) if b is not None]

    def close_batches(self) -> None:
        """Close every open batch (e.g. after retraining changes the model)."""
        with self.transaction() as c:
            c.execute("UPDATE query_batches SET closed = 1 WHERE closed = 0")
