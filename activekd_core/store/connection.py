"""Opening the project database and every access to it: identity, damage, locking, transactions.

One SQLite file per project (``project.db``), opened in WAL mode with foreign keys on.

Durability: ``synchronous=FULL``. In WAL mode, ``NORMAL`` already survives a killed
process (SIGKILL): a commit has been ``write()``-n to the WAL before the call returns,
and the kernel keeps it. ``FULL`` additionally ``fsync``-s the WAL at every commit, so an
acknowledged label also survives an OS crash or a power cut. A human clicks a few times
a second at most, so the extra millisecond per commit is invisible; losing a label is
not. Every write method is one ``BEGIN IMMEDIATE ... COMMIT`` transaction that has
committed before the method returns (:meth:`StoreConnection.transaction`).

Identity: the file's device and inode are recorded when it is opened. Every write checks,
before it begins and again after it commits, that the file at ``path`` is still that file,
so a project folder removed and re-created while a server runs can never receive a write
meant for the deleted file, nor a label be acknowledged that is not in the file at that
path (:class:`DatabaseReplacedError`; :meth:`StoreConnection.replaced` asks without raising).

Damage: opening runs ``PRAGMA quick_check`` (stopped after :data:`QUICK_CHECK_SECONDS`;
a check that runs out of time lets the database open), and any corruption SQLite reports
later is raised as :class:`DatabaseDamagedError`, whose message says how to recover
(:func:`recovery_advice`: SQLite's ``.recover``, or the last backup), instead of a raw
``sqlite3.DatabaseError``. :attr:`StoreConnection.damage` remembers it for callers that
cache stores.

Threads: one connection, ``check_same_thread=False``, every use guarded by a re-entrant
lock (Streamlit runs each browser session's script in its own thread). Processes: a
``busy_timeout`` lets two processes (two servers, a training worker) share the file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from activekd_core.store.current_state import CurrentState
from activekd_core.store.records import (
    DatabaseDamagedError,
    DatabaseReplacedError,
    SchemaVersionError,
    StoreError,
)
from activekd_core.store.schema import BUSY_TIMEOUT_MS, QUICK_CHECK_SECONDS, SCHEMA_SQL, SCHEMA_VERSION


class StoreConnection:
    """The connection to one project database: opening, transactions and raw reads/writes.

    :class:`activekd_core.store.Store` adds the table-specific methods on top. All
    methods are safe to call from several threads; writes are committed before they return.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._identity = _file_identity(path)
        self.damage: str | None = None  # set when SQLite reported corruption through this store
        self._lock = threading.RLock()
        # the current state per image as of the newest event seen, with its counts (an
        # immutable value: a view handed out never changes), see LabelHistory.current
        self._current_cache: CurrentState | None = None

    # ---- opening -------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path | str) -> Self:
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
            conn.executescript("BEGIN IMMEDIATE;" + SCHEMA_SQL + f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    @classmethod
    def open(cls, path: Path | str) -> Self:
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

    def __enter__(self) -> Self:
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
