"""Training rounds (running, done, failed, cancelled, interrupted) and the fixed audit set.

The newest ``done`` round's checkpoint is the active model. A round left ``running`` by a
process that died is marked ``interrupted`` by :meth:`TrainingRounds.mark_stale_rounds`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from activekd_core.store.connection import StoreConnection
from activekd_core.store.records import RoundRecord, StoreError, round_from_row, utc_now
from activekd_core.store.schema import ROUND_STATES


class TrainingRounds(StoreConnection):
    """The ``rounds`` and ``audit_set`` tables."""

    # ---- rounds --------------------------------------------------------------------

    def start_round(self, strategy: str, space: str, *, picks: list, teacher: dict, n_labeled: int,
                    owner: dict | None = None) -> int:
        """Record a training round as running; returns its id (1, 2, ...).

        ``owner`` (which process runs it) is kept in the round's metrics while it runs, so
        a later open can tell a live round from one whose process died.
        """
        metrics = {"owner": owner} if owner else {}
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO rounds(strategy, space, picks, teacher, metrics, status, n_labeled, started) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                (strategy, space, json.dumps(picks), json.dumps(teacher), json.dumps(metrics), n_labeled, utc_now()),
            )
            return int(cur.lastrowid)

    def finish_round(
        self,
        round_id: int,
        status: str,
        *,
        metrics: dict | None = None,
        checkpoint: str | None = None,
        error: str | None = None,
    ) -> None:
        """Mark a running round done/failed/cancelled/interrupted with its results."""
        if status not in ROUND_STATES or status == "running":
            raise StoreError(f"invalid final round status {status!r}")
        with self.transaction() as c:
            n = c.execute(
                "UPDATE rounds SET status = ?, metrics = ?, checkpoint = ?, error = ?, finished = ? "
                "WHERE id = ? AND status = 'running'",
                (status, json.dumps(metrics or {}), checkpoint, error, utc_now(), round_id),
            ).rowcount
            if n != 1:
                raise StoreError(f"{self.path}: round {round_id} is not running")

    def update_round_metrics(self, round_id: int, metrics: dict) -> None:
        """Replace a round's metrics JSON (e.g. to add audit results)."""
        with self.transaction() as c:
            c.execute("UPDATE rounds SET metrics = ? WHERE id = ?", (json.dumps(metrics), round_id))

    def rounds(self) -> list[RoundRecord]:
        """All training rounds in order."""
        return [round_from_row(r) for r in self._query("SELECT * FROM rounds ORDER BY id")]

    def round(self, round_id: int) -> RoundRecord | None:
        """One round by id."""
        rows = self._query("SELECT * FROM rounds WHERE id = ?", (round_id,))
        return round_from_row(rows[0]) if rows else None

    def latest_done_round(self) -> RoundRecord | None:
        """The newest successful round: its checkpoint is the active model."""
        rows = self._query("SELECT * FROM rounds WHERE status = 'done' ORDER BY id DESC LIMIT 1")
        return round_from_row(rows[0]) if rows else None

    def mark_stale_rounds(
        self,
        error: str = "interrupted: the process running it stopped",
        alive: Callable[[RoundRecord], bool] | None = None,
    ) -> int:
        """Mark rounds left 'running' by a dead process as interrupted; returns how many.

        Args:
            error: The message stored with each.
            alive: Tells a live round (left alone) from a stale one; None marks every
                running round.
        """
        running = [r for r in self.rounds() if r.status == "running"]
        stale = [r.id for r in running if alive is None or not alive(r)]
        if not stale:
            return 0
        with self.transaction() as c:
            return sum(c.execute(
                "UPDATE rounds SET status = 'interrupted', error = ?, finished = ? WHERE id = ? AND status = 'running'",
                (error, utc_now(), rid),
            ).rowcount for rid in stale)

    # ---- audit set -----------------------------------------------------------------

    def set_audit_set(self, image_ids: Sequence[str]) -> None:
        """Define the audit set (once). Raises StoreError if one already exists."""
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM audit_set LIMIT 1").fetchone():
                raise StoreError(f"{self.path}: an audit set already exists")
            now = utc_now()
            c.executemany(
                "INSERT INTO audit_set(image_id, position, created) VALUES (?, ?, ?)",
                [(i, p, now) for p, i in enumerate(image_ids)],
            )

    def audit_ids(self) -> list[str]:
        """Audit-set image ids in their sampled order."""
        return [r[0] for r in self._query("SELECT image_id FROM audit_set ORDER BY position")]
