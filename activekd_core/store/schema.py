"""The project database's schema: tables, views, triggers and the constants they encode.

``label_events`` is append-only (triggers refuse UPDATE and DELETE); ``effective_events``
and ``current_labels`` are the views that apply undo. ``jobs`` holds the rows of
:mod:`activekd_core.jobs` (one running job per kind).
"""

from __future__ import annotations

SCHEMA_VERSION = 1
EVENTS = ("label", "skip", "unsure", "undo")
ROUND_STATES = ("running", "done", "failed", "cancelled", "interrupted")
BUSY_TIMEOUT_MS = 15_000
QUICK_CHECK_SECONDS = 3.0

SCHEMA_SQL = """
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
