"""The project database: images, classes, append-only label history, rounds, batches, jobs.

One SQLite file per project (``project.db``), opened in WAL mode with foreign keys on;
:class:`Store` is the one way to read and write it. The package is split by concern:

- :mod:`~activekd_core.store.schema`: tables, views, triggers, schema version.
- :mod:`~activekd_core.store.records`: error types, the frozen row records, name checks.
- :mod:`~activekd_core.store.connection`: opening (version and damage checks), file
  identity, durability, locking, transactions, raw reads/writes (the ``jobs`` rows of
  :mod:`activekd_core.jobs` go through :meth:`Store.execute` / :meth:`Store.query`).
- :mod:`~activekd_core.store.catalog`: settings, scanned images, classes.
- :mod:`~activekd_core.store.labels`: the label history, exact undo, current state.
- :mod:`~activekd_core.store.batches`: query batches.
- :mod:`~activekd_core.store.rounds`: training rounds and the audit set.
"""

from __future__ import annotations

from activekd_core.store.batches import QueryBatches
from activekd_core.store.connection import StoreConnection, quick_check, recovery_advice
from activekd_core.store.labels import LabelHistory
from activekd_core.store.records import (
    BatchItem,
    ClassRecord,
    DatabaseDamagedError,
    DatabaseReplacedError,
    ImageRecord,
    LabelEvent,
    QueryBatch,
    RoundRecord,
    SchemaVersionError,
    StoreError,
    utc_now,
    validate_class_names,
)
from activekd_core.store.rounds import TrainingRounds
from activekd_core.store.schema import BUSY_TIMEOUT_MS, EVENTS, QUICK_CHECK_SECONDS, ROUND_STATES, SCHEMA_VERSION

__all__ = [
    "BUSY_TIMEOUT_MS",
    "EVENTS",
    "QUICK_CHECK_SECONDS",
    "ROUND_STATES",
    "SCHEMA_VERSION",
    "BatchItem",
    "ClassRecord",
    "DatabaseDamagedError",
    "DatabaseReplacedError",
    "ImageRecord",
    "LabelEvent",
    "QueryBatch",
    "RoundRecord",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "quick_check",
    "recovery_advice",
    "utc_now",
    "validate_class_names",
]


class Store(LabelHistory, QueryBatches, TrainingRounds, StoreConnection):
    """Access to one project database. Use :meth:`create` or :meth:`open`.

    All methods are safe to call from several threads; writes are committed before
    they return.
    """
