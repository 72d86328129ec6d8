"""The project database: images, classes, append-only label history, rounds, batches, jobs.

One SQLite file per project (``project.db``), opened in WAL mode with foreign keys on.

Durability: ``synchronous=FULL``. In WAL mode, ``NORMAL`` already survives a killed
process (SIGKILL): a commit has been ``write()``-n to the WAL before the call returns,
and the kernel keeps it. ``FULL`` additionally ``fsync``-s the WAL at every commit, so an
acknowledged label also survives an OS crash or a power cut. A human clicks a few times
a second at most, so the extra millisecond per commit is invisible; losing a label is
not. Every write method is one ``BEGIN IMMEDIATE ... COMMIT`` transaction that has
committed before the method returns.

Identity: the file's device and inode are recorded when it is opened. Every write checks,
before it begins and again after it commits, that the file at ``path`` is still that file,
so a project folder removed and re-created while a server runs can never receive a write
meant for the deleted file, nor a label be acknowledged that is not in the file at that
path (:class:`DatabaseReplacedError`; :meth:`Store.replaced` asks without raising).

Damage: opening runs ``PRAGMA quick_check`` (stopped after :data:`QUICK_CHECK_SECONDS`;
a check that runs out of time lets the database open), and any corruption SQLite reports
later is raised as :class:`DatabaseDamagedError`, whose message says how to recover
(:func:`recovery_advice`: SQLite's ``.recover``, or the last backup), instead of a raw
``sqlite3.DatabaseError``. :attr:`Store.damage` remembers it for callers that cache stores.

Threads: one connection, ``check_same_thread=False``, every use guarded by a re-entrant
lock (Streamlit runs each browser session's script in its own thread). Processes: a
``busy_timeout`` lets two processes (two servers, a training worker) share the file.

Undo, exactly: ``undo(annotator, image_id=None, session=None)`` appends an ``undo`` event
that points (``undoes``) at that annotator's most recent event that is not an undo and has
not been undone yet (restricted to ``image_id`` when given). With a ``session`` (every
browser session passes its own id) only events recorded by that same session qualify:
two sessions of one annotator (everyone defaults to "expert") never undo each other's
work. Repeated undos walk back that history. An image's current state is its latest non-undo event that has not
been undone (last write wins across annotators); if none is left the image is
unlabeled. Undoing an event that another annotator has since overwritten changes
nothing visible: the later event stays current. Undo of an undo (redo) is not offered.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

from activekd_core.display_text import check_name

SCHEMA_VERSION = 1
EVENTS = ("label", "skip", "unsure", "undo")
ROUND_STATES = ("running", "done", "failed", "cancelled", "interrupted")
BUSY_TIMEOUT_MS = 15_000
QUICK_CHECK_SECONDS = 3.0

_SCHEMA = """
CREATE TABLE images (
    id TEXT PRIMARY KEY,
    row INTEGER UNIQUE,
    path TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    readable INTEGER NOT NULL CHECK (readable IN (0, 1)),
    reason TEXT,
    CHECK ((readable = 1) = (row IS NOT NULL))
);
CREATE TABLE classes (
    position INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE CHECK (length(trim(name)) > 0),
    prompt TEXT NOT NULL DEFAULT ''
);
CREATE TABLE label_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id TEXT NOT NULL REFERENCES images(id),
    event TEXT NOT NULL CHECK (event IN ('label', 'skip', 'unsure', 'undo')),
    class_name TEXT REFERENCES classes(name),
    annotator TEXT NOT NULL,
    session TEXT,
    time TEXT NOT NULL,
    round INTEGER,
    strategy TEXT,
    undoes INTEGER REFERENCES label_events(id),
    CHECK ((event = 'label') = (class_name IS NOT NULL)),
    CHECK ((event = 'undo') = (undoes IS NOT NULL))
);
CREATE INDEX label_events_image ON label_events(image_id, id);
CREATE INDEX label_events_annotator ON label_events(annotator, id);
CREATE UNIQUE INDEX label_events_undoes ON label_events(undoes) WHERE undoes IS NOT NULL;
CREATE TRIGGER label_events_no_update BEFORE UPDATE ON label_events
BEGIN SELECT RAISE(ABORT, 'label_events is append-only'); END;
CREATE TRIGGER label_events_no_delete BEFORE DELETE ON label_events
BEGIN SELECT RAISE(ABORT, 'label_events is append-only'); END;
CREATE VIEW effective_events AS
    SELECT e.* FROM label_events e
    WHERE e.event <> 'undo'
      AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id);
CREATE VIEW current_labels AS
    SELECT e.* FROM effective_events e
    WHERE e.id = (SELECT max(f.id) FROM effective_events f WHERE f.image_id = e.image_id);
CREATE TABLE rounds (
    id INTEGER PRIMARY KEY,
    strategy TEXT NOT NULL,
    space TEXT NOT NULL,
    picks TEXT NOT NULL DEFAULT '[]',
    teacher TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    checkpoint TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'cancelled', 'interrupted')),
    n_labeled INTEGER NOT NULL DEFAULT 0,
    started TEXT NOT NULL,
    finished TEXT,
    error TEXT
);
CREATE TABLE query_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    round INTEGER NOT NULL,
    strategy TEXT NOT NULL,
    space TEXT NOT NULL,
    created TEXT NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0 CHECK (closed IN (0, 1))
);
CREATE TABLE batch_items (
    batch_id INTEGER NOT NULL REFERENCES query_batches(id),
    position INTEGER NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(id),
    score REAL,
    PRIMARY KEY (batch_id, position),
    UNIQUE (batch_id, image_id)
);
CREATE TABLE audit_set (
    image_id TEXT PRIMARY KEY REFERENCES images(id),
    position INTEGER NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed', 'cancelled', 'interrupted')),
    step INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    started REAL NOT NULL,
    updated REAL NOT NULL,
    finished REAL,
    pid INTEGER NOT NULL,
    owner TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT
);
CREATE UNIQUE INDEX jobs_one_running ON jobs(kind) WHERE state = 'running';
"""


# Store.current(): above this many new events, re-read the whole view instead of patching.
_INCREMENTAL_LIMIT = 2000


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


class Store:
    """Access to one project database. Use :meth:`create` or :meth:`open`.

    All methods are safe to call from several threads; writes are committed before
    they return.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._identity = _file_identity(path)
        self.damage: str | None = None  # set when SQLite reported corruption through this store
        self._lock = threading.RLock()
        # (newest event id seen, image id -> current event); the dict is never mutated once
        # handed out (callers get a read-only view of it), see :meth:`current`.
        self._current_cache: tuple[int, dict[str, LabelEvent]] | None = None

    # ---- opening -------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path | str) -> Store:
        """Create a new, empty project database.

        Raises:
            StoreError: If ``path`` already exists.
        """
        path = Path(path)
        if path.exists():
            raise StoreError(f"{path}: a database already exists here; open it instead of creating it")
        conn = _connect(path)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    @classmethod
    def open(cls, path: Path | str) -> Store:
        """Open an existing project database, checking its schema version first.

        The version is read through a read-only connection, so a database from a
        newer version is refused without a single byte of it being changed.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            SchemaVersionError: If the schema is newer than this code or not ours.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: project database not found")
        version, n_tables = _peek_version(path)
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{path}: written by a newer ActiveKD Studio (schema version {version}); this version reads up to "
                f"{SCHEMA_VERSION}. Upgrade ActiveKD Studio to open it. Nothing was changed."
            )
        if version < 1:
            raise SchemaVersionError(
                f"{path}: not an ActiveKD Studio project database (schema version {version}, {n_tables} tables). "
                "Nothing was changed."
            )
        conn = _connect(path)
        live = int(conn.execute("PRAGMA user_version").fetchone()[0])  # the WAL may hold a newer page 1
        if not 1 <= live <= SCHEMA_VERSION:
            conn.close()
            raise SchemaVersionError(
                f"{path}: schema version {live} (this version reads 1 to {SCHEMA_VERSION}); nothing was changed"
            )
        try:
            problem = quick_check(conn)
        except BaseException:
            conn.close()
            raise
        if problem is not None and problem != "ok":
            conn.close()
            raise DatabaseDamagedError(f"{path}: the database is damaged ({problem}). {recovery_advice(path)}")
        conn.execute("PRAGMA journal_mode=WAL")
        return cls(path, conn)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def replaced(self) -> bool:
        """True when the file at :attr:`path` is gone or is another file than the one opened."""
        return self._identity is None or _file_identity(self.path) != self._identity

    def _check_identity(self, when: str) -> None:
        if self.replaced():
            raise DatabaseReplacedError(
                f"{self.path}: the project database was removed or replaced while it was open ({when}); "
                "nothing was saved to the new file. Reopen the project (choose it again on the Project page)."
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``) committed on exit, rolled back on error.

        Raises:
            DatabaseReplacedError: Before writing, when the file at :attr:`path` was replaced;
                after committing, when it was replaced meanwhile (the write went to the old
                file and must not be reported as saved).
        """
        with self._lock:
            self._check_identity("checked before writing")
            with self._damage_reported():
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            self._check_identity("checked after writing: the last change went to the old file")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._damage_reported():
            return self._conn.execute(sql, params).fetchall()

    @contextmanager
    def _damage_reported(self) -> Iterator[None]:
        """Turn SQLite's corruption errors into :class:`DatabaseDamagedError` (and remember them)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            self.damage = str(exc)
            raise DatabaseDamagedError(f"{self.path}: the database is damaged ({exc}). {recovery_advice(self.path)}") from exc

    def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check`` and return its first line (``"ok"`` when sound)."""
        return str(self._query("PRAGMA integrity_check")[0][0])

    def schema_version(self) -> int:
        """The schema version stored in ``PRAGMA user_version``."""
        return int(self._query("PRAGMA user_version")[0][0])

    # ---- settings ------------------------------------------------------------------

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key``."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, json.dumps(value)))

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
        rows = [(r.id, r.row, r.path, r.width, r.height, int(r.readable), r.reason) for r in records]
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO images(id, row, path, width, height, readable, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def images(self, *, readable: bool | None = True) -> list[ImageRecord]:
        """Images in pool-row order (readable), or the skipped ones (``readable=False``), or all."""
        sql = "SELECT * FROM images"
        if readable is True:
            sql += " WHERE readable = 1 ORDER BY row"
        elif readable is False:
            sql += " WHERE readable = 0 ORDER BY id"
        else:
            sql += " ORDER BY readable DESC, row, id"
        return [_image(r) for r in self._query(sql)]

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

    # ---- labels --------------------------------------------------------------------

    def add_event(
        self,
        image_id: str,
        event: str,
        class_name: str | None = None,
        *,
        annotator: str = "expert",
        session: str | None = None,
        round: int | None = None,
        strategy: str | None = None,
    ) -> int:
        """Append one label/skip/unsure event and commit it before returning.

        ``round`` and ``strategy`` default to the latest completed round and the strategy
        of the open batch holding the image (if any).

        Returns:
            The new event's id.

        Raises:
            StoreError: For an unknown image or class, a missing/extra class, or ``undo``
                (use :meth:`undo`).
        """
        if event not in ("label", "skip", "unsure"):
            raise StoreError(f"unknown event {event!r}: use 'label', 'skip' or 'unsure' (undo has its own method)")
        if (event == "label") != (class_name is not None):
            raise StoreError("a 'label' event needs a class; 'skip' and 'unsure' take none")
        if not annotator or not str(annotator).strip():
            raise StoreError("annotator must be a non-blank name")
        with self.transaction() as c:
            if not c.execute("SELECT 1 FROM images WHERE id = ? AND readable = 1", (image_id,)).fetchone():
                raise StoreError(f"{self.path}: unknown or unreadable image id {image_id!r}")
            if class_name is not None:
                row = c.execute("SELECT name FROM classes WHERE name = ?", (class_name,)).fetchone()
                if not row:
                    raise StoreError(f"{self.path}: unknown class {class_name!r}; classes are {self.class_names()}")
                class_name = row[0]
            if round is None:
                round = _latest_done_round(c)
            if strategy is None:
                hit = c.execute(
                    "SELECT b.strategy FROM batch_items i JOIN query_batches b ON b.id = i.batch_id "
                    "WHERE i.image_id = ? ORDER BY b.id DESC LIMIT 1",
                    (image_id,),
                ).fetchone()
                strategy = hit[0] if hit else None
            cur = c.execute(
                "INSERT INTO label_events(image_id, event, class_name, annotator, session, time, round, strategy) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (image_id, event, class_name, annotator, session, utc_now(), round, strategy),
            )
            return int(cur.lastrowid)

    def label(self, image_id: str, class_name: str, **kw: Any) -> int:
        """Label ``image_id`` as ``class_name``; see :meth:`add_event`."""
        return self.add_event(image_id, "label", class_name, **kw)

    def skip(self, image_id: str, **kw: Any) -> int:
        """Mark ``image_id`` as skipped; see :meth:`add_event`."""
        return self.add_event(image_id, "skip", **kw)

    def unsure(self, image_id: str, **kw: Any) -> int:
        """Mark ``image_id`` as unsure; see :meth:`add_event`."""
        return self.add_event(image_id, "unsure", **kw)

    def undo(self, annotator: str = "expert", image_id: str | None = None, *, session: str | None = None,
             image_ids: Sequence[str] | None = None) -> LabelEvent | None:
        """Revert ``annotator``'s latest not-yet-undone event (on ``image_id`` if given).

        Args:
            annotator: Whose events may be undone.
            image_id: Only events on this image.
            session: Only events recorded by this session (a browser session's id); None
                (the command line, scripts) considers the annotator's events from anywhere.
            image_ids: Only events on these images (e.g. the ones on screen: Z never
                reverts a decision the expert can no longer see).

        Returns:
            The event that was undone, or None when there was nothing to undo.
        """
        with self.transaction() as c:
            sql = "SELECT * FROM effective_events WHERE annotator = ?"
            params: list[Any] = [annotator]
            if image_id is not None:
                sql += " AND image_id = ?"
                params.append(image_id)
            if session is not None:
                sql += " AND session = ?"
                params.append(session)
            if image_ids is not None:
                wanted = list(dict.fromkeys(image_ids))
                if not wanted:
                    return None
                sql += f" AND image_id IN ({','.join('?' * len(wanted))})"
                params.extend(wanted)
            target = c.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
            if target is None:
                return None
            c.execute(
                "INSERT INTO label_events(image_id, event, annotator, session, time, round, strategy, undoes) "
                "VALUES (?, 'undo', ?, ?, ?, ?, ?, ?)",
                (target["image_id"], annotator, session, utc_now(), target["round"], target["strategy"], target["id"]),
            )
            return _event(target)

    def add_labels(
        self, labels: Iterable[tuple[str, str]], *, annotator: str, strategy: str = "import", session: str | None = None
    ) -> int:
        """Append many label events in one transaction (imports, bulk labels); returns the count.

        Raises:
            StoreError: Before writing anything, if an image or class is unknown.
        """
        labels = list(labels)
        with self.transaction() as c:
            ids = {r[0] for r in c.execute("SELECT id FROM images WHERE readable = 1")}
            names = {r[0].casefold(): r[0] for r in c.execute("SELECT name FROM classes")}
            bad_ids = sorted({i for i, _ in labels if i not in ids})
            bad_cls = sorted({n for _, n in labels if str(n).casefold() not in names})
            if bad_ids or bad_cls:
                raise StoreError(
                    f"{self.path}: nothing imported: unknown image ids {bad_ids[:5]}{'...' if len(bad_ids) > 5 else ''} "
                    f"unknown classes {bad_cls[:5]}"
                )
            rnd, now = _latest_done_round(c), utc_now()
            c.executemany(
                "INSERT INTO label_events(image_id, event, class_name, annotator, session, time, round, strategy) "
                "VALUES (?, 'label', ?, ?, ?, ?, ?, ?)",
                [(i, names[str(n).casefold()], annotator, session, now, rnd, strategy) for i, n in labels],
            )
        return len(labels)

    def clear(self, image_ids: Iterable[str], *, annotator: str, session: str | None = None) -> int:
        """Return images to unlabeled: undo every effective event on each, in one transaction.

        The history keeps everything (one ``undo`` row per reverted event, recorded as
        ``annotator``'s); an image without a current state is left as it is.

        Returns:
            The number of images whose state changed.
        """
        if not annotator or not str(annotator).strip():
            raise StoreError("annotator must be a non-blank name")
        changed = 0
        with self.transaction() as c:
            now = utc_now()
            for image_id in dict.fromkeys(image_ids):
                targets = c.execute(
                    "SELECT id, round, strategy FROM effective_events WHERE image_id = ? ORDER BY id DESC", (image_id,)
                ).fetchall()
                c.executemany(
                    "INSERT INTO label_events(image_id, event, annotator, session, time, round, strategy, undoes) "
                    "VALUES (?, 'undo', ?, ?, ?, ?, ?, ?)",
                    [(image_id, annotator, session, now, t["round"], t["strategy"], t["id"]) for t in targets],
                )
                changed += bool(targets)
        return changed

    def events(self, image_id: str | None = None, *, since_id: int = 0) -> list[LabelEvent]:
        """The label history in order (all images, or one)."""
        if image_id is None:
            rows = self._query("SELECT * FROM label_events WHERE id > ? ORDER BY id", (since_id,))
        else:
            rows = self._query("SELECT * FROM label_events WHERE image_id = ? AND id > ? ORDER BY id", (image_id, since_id))
        return [_event(r) for r in rows]

    def event_ids(self) -> set[int]:
        """Ids of every stored event (for audits and crash tests)."""
        return {int(r[0]) for r in self._query("SELECT id FROM label_events")}

    def newest_event_id(self) -> int:
        """Id of the newest label event (0 when there is none); changes with every label/undo.

        The history is append-only and writers are serialised, so an unchanged id means an
        unchanged labeling state: use it as a cache key.
        """
        return int(self._query("SELECT max(id) FROM label_events")[0][0] or 0)

    def current(self) -> Mapping[str, LabelEvent]:
        """The current state per image that has one: image id -> its effective latest event.

        Returns a read-only snapshot (``types.MappingProxyType``): it does not change when
        labels are added later; call again for the new state. Copy it (``dict(...)``) to
        modify it.

        Cached on the newest event id and updated incrementally: the history is append-only
        (an undo row carries the image id of the event it undoes), so only the images named
        by events newer than the cached id can have changed; each one's state is re-read
        with :meth:`current_state`'s query and patched into a copy of the cached dict (the
        previous snapshot stays as it was). Events from any connection or process are seen.
        A long run of new events (e.g. an import) is read back in full instead.
        """
        with self._lock:
            cache = self._current_cache
            if cache is not None:
                seen, states = cache
                new = self._query(
                    "SELECT id, image_id FROM label_events WHERE id > ? ORDER BY id LIMIT ?",
                    (seen, _INCREMENTAL_LIMIT + 1),
                )
                if not new:
                    return MappingProxyType(states)
                if len(new) <= _INCREMENTAL_LIMIT:
                    # Events committed after this query have larger ids than ``newest`` and are
                    # picked up next time, so a state read here that already includes one stays exact.
                    newest = int(new[-1][0])
                    patched = dict(states)
                    for image_id in dict.fromkeys(r[1] for r in new):
                        ev = self.current_state(image_id)
                        if ev is None:
                            patched.pop(image_id, None)
                        else:
                            patched[image_id] = ev
                    self._current_cache = (newest, patched)
                    return MappingProxyType(patched)
            newest = self.newest_event_id()  # read before the view: later events are re-read next time
            rows = self._query("SELECT * FROM current_labels ORDER BY id")
            states = {r["image_id"]: _event(r) for r in rows}
            self._current_cache = (newest, states)
            return MappingProxyType(states)

    def current_state(self, image_id: str) -> LabelEvent | None:
        """The current state of one image, or None when unlabeled."""
        rows = self._query(
            "SELECT * FROM effective_events WHERE image_id = ? ORDER BY id DESC LIMIT 1",
            (image_id,),
        )
        return _event(rows[0]) if rows else None

    def current_labels(self) -> dict[str, str]:
        """Image id -> class name, for images whose current state is a label."""
        return {i: e.class_name for i, e in self.current().items() if e.event == "label" and e.class_name}

    def class_counts(self) -> dict[str, int]:
        """Current number of labeled images per class (all classes, zeros included)."""
        counts = {n: 0 for n in self.class_names()}
        for e in self.current().values():
            if e.event == "label" and e.class_name in counts:
                counts[e.class_name] += 1
        return counts

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
        return [_round(r) for r in self._query("SELECT * FROM rounds ORDER BY id")]

    def round(self, round_id: int) -> RoundRecord | None:
        """One round by id."""
        rows = self._query("SELECT * FROM rounds WHERE id = ?", (round_id,))
        return _round(rows[0]) if rows else None

    def latest_done_round(self) -> RoundRecord | None:
        """The newest successful round: its checkpoint is the active model."""
        rows = self._query("SELECT * FROM rounds WHERE status = 'done' ORDER BY id DESC LIMIT 1")
        return _round(rows[0]) if rows else None

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

    # ---- jobs (rows used by activekd_core.jobs) --------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement in its own transaction; returns rowcount/lastrowid.

        For the sibling modules (jobs) that keep their own SQL on this database.
        """
        with self.transaction() as c:
            cur = c.execute(sql, params)
            return int(cur.lastrowid) if sql.lstrip().upper().startswith("INSERT") else cur.rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run one read statement; rows support access by column name."""
        return self._query(sql, params)


# ---- helpers ---------------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def quick_check(conn: sqlite3.Connection, seconds: float = QUICK_CHECK_SECONDS) -> str | None:
    """Run ``PRAGMA quick_check`` for at most ``seconds``.

    Returns:
        ``"ok"``, the problems SQLite found (first few, ``; ``-joined), or None when the
        check did not finish in time (a very large database; it is then not refused).
    """
    deadline = time.monotonic() + max(0.0, seconds)
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
    try:
        rows = conn.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.OperationalError as exc:
        if "interrupt" in str(exc).lower():
            return None
        raise
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.set_progress_handler(None, 0)
    lines = [str(r[0]) for r in rows]
    return "ok" if lines == ["ok"] else "; ".join(lines)


def recovery_advice(path: Path | str) -> str:
    """How to recover a damaged project database (one paragraph, for error messages)."""
    path = Path(path)
    return (
        "Nothing was changed. To recover: stop ActiveKD Studio, copy the project folder somewhere safe, then run "
        f"`sqlite3 {path.name} \".recover\" | sqlite3 {path.name}.recovered` inside {path.parent} and, if it "
        f"succeeds, replace {path.name} by {path.name}.recovered (SQLite's .recover copies every row it can still "
        "read); or restore the project folder from your last backup. Until then, open or create another project "
        "on the Project page."
    )


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """True for SQLite's "the file is damaged" errors (not constraint or operational errors)."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
                        sqlite3.NotSupportedError)):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
    text = str(exc).lower()
    return "malformed" in text or "corrupt" in text or "not a database" in text


def _file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path``, or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _peek_version(path: Path) -> tuple[int, int]:
    """``(user_version, number of tables)`` read through a short-lived plain connection.

    Nothing is written: no pragma that changes the file is issued, and closing the last
    connection to a WAL database removes the ``-wal``/``-shm`` files it needed, so a
    refused database is left exactly as it was. Never read the file with ``open()``:
    closing any descriptor of a database file drops every POSIX lock this process holds
    on it, which silently breaks other open connections (SQLite's documented pitfall);
    SQLite's own close keeps such descriptors until the locks are gone.
    """
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot be opened as a database: {exc}") from exc
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        n_tables = int(conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        if _is_corruption(exc) and "not a database" not in str(exc):
            raise DatabaseDamagedError(f"{path}: the database is damaged ({exc}). {recovery_advice(path)}") from exc
        raise StoreError(f"{path}: not a readable SQLite database: {exc}. Nothing was changed.") from exc
    finally:
        conn.close()
    return version, n_tables


def _latest_done_round(c: sqlite3.Connection) -> int:
    row = c.execute("SELECT max(id) FROM rounds WHERE status = 'done'").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _event(r: sqlite3.Row) -> LabelEvent:
    return LabelEvent(
        r["id"], r["image_id"], r["event"], r["class_name"], r["annotator"], r["session"], r["time"],
        r["round"], r["strategy"], r["undoes"],
    )


def _image(r: sqlite3.Row) -> ImageRecord:
    return ImageRecord(r["id"], r["row"], r["path"], r["width"], r["height"], bool(r["readable"]), r["reason"])


def _round(r: sqlite3.Row) -> RoundRecord:
    return RoundRecord(
        r["id"], r["strategy"], r["space"], json.loads(r["picks"]), json.loads(r["teacher"]), json.loads(r["metrics"]),
        r["checkpoint"], r["status"], r["n_labeled"], r["started"], r["finished"], r["error"],
    )
