"""What the store hands out: its error types, one frozen record per row kind, and name checks.

Every record is a frozen dataclass built from a ``sqlite3.Row`` by the ``*_from_row``
helpers here, so readers in every part of the store build them the same way.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from activekd_core.display_text import check_name


class StoreError(Exception):
    """A store operation was refused; the message says what and why."""


class SchemaVersionError(StoreError):
    """The database was written by a newer (or unknown) version of ActiveKD Studio."""


class DatabaseReplacedError(StoreError):
    """The file at the database's path is no longer the one this connection writes to.

    The project folder was removed, or ``project.db`` deleted or replaced, while it was
    open. Nothing more is written through this connection (a label written now would
    land in a deleted file); reopen the project.
    """


class DatabaseDamagedError(StoreError):
    """The database file is damaged (SQLite reports corruption); the message says how to recover."""


@dataclass(frozen=True)
class LabelEvent:
    """One row of the append-only label history."""

    id: int
    image_id: str
    event: str
    class_name: str | None
    annotator: str
    session: str | None
    time: str
    round: int | None
    strategy: str | None
    undoes: int | None

    @property
    def is_label(self) -> bool:
        """Whether this event gives the image a class (what :meth:`Store.current_labels` holds)."""
        return self.event == "label" and bool(self.class_name)


@dataclass(frozen=True)
class ImageRecord:
    """One scanned file: usable images have a pool ``row``; others a ``reason``."""

    id: str
    row: int | None
    path: str
    width: int | None
    height: int | None
    readable: bool
    reason: str | None


@dataclass(frozen=True)
class ClassRecord:
    """A class: display order, name and text prompt for the teacher."""

    position: int
    name: str
    prompt: str


@dataclass(frozen=True)
class RoundRecord:
    """One training round."""

    id: int
    strategy: str
    space: str
    picks: list
    teacher: dict
    metrics: dict
    checkpoint: str | None
    status: str
    n_labeled: int
    started: str
    finished: str | None
    error: str | None


@dataclass(frozen=True)
class BatchItem:
    """One image of a query batch, in pick order, with the strategy's score."""

    position: int
    image_id: str
    score: float | None


@dataclass(frozen=True)
class QueryBatch:
    """A batch of images picked together by a strategy."""

    id: int
    round: int
    strategy: str
    space: str
    created: str
    closed: bool
    items: list[BatchItem]


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def validate_class_names(names: Sequence[str]) -> list[str]:
    """Check class names: at least two, none blank, no duplicates (case-insensitive), each at most
    :data:`activekd_core.display_text.NAME_MAX` characters of visible text.

    Args:
        names: Proposed class names.

    Returns:
        The names with surrounding whitespace removed.

    Raises:
        StoreError: Naming every problem found.
    """
    cleaned = [str(n).strip() for n in names]
    problems = []
    if len(cleaned) == 0:
        problems.append("no classes given: add at least two class names")
    elif len(cleaned) == 1:
        problems.append(f"only one class ({cleaned[0]!r}): a classifier needs at least two")
    blanks = [i + 1 for i, n in enumerate(cleaned) if not n]
    if blanks:
        problems.append(f"blank class name in row(s) {blanks}")
    for i, n in enumerate(cleaned):
        if n:
            try:
                check_name(n, f"class name in row {i + 1}")
            except ValueError as exc:  # too long, or invisible/control characters
                problems.append(str(exc))
    seen: dict[str, str] = {}
    dups = []
    for n in cleaned:
        if n and n.casefold() in seen:
            dups.append(n)
        seen.setdefault(n.casefold(), n)
    if dups:
        problems.append(f"duplicate class name(s): {sorted(set(dups))}")
    if problems:
        raise StoreError("; ".join(problems))
    return cleaned


def event_from_row(r: sqlite3.Row) -> LabelEvent:
    """A :class:`LabelEvent` from a ``label_events`` row."""
    return LabelEvent(
        r["id"], r["image_id"], r["event"], r["class_name"], r["annotator"], r["session"], r["time"],
        r["round"], r["strategy"], r["undoes"],
    )


def image_from_row(r: sqlite3.Row) -> ImageRecord:
    """An :class:`ImageRecord` from an ``images`` row."""
    return ImageRecord(r["id"], r["row"], r["path"], r["width"], r["height"], bool(r["readable"]), r["reason"])


def round_from_row(r: sqlite3.Row) -> RoundRecord:
    """A :class:`RoundRecord` from a ``rounds`` row (JSON columns decoded)."""
    return RoundRecord(
        r["id"], r["strategy"], r["space"], json.loads(r["picks"]), json.loads(r["teacher"]), json.loads(r["metrics"]),
        r["checkpoint"], r["status"], r["n_labeled"], r["started"], r["finished"], r["error"],
    )
