"""Tests for the project store: schema, label history, undo semantics, batches, rounds."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest

from activekd_core.store import (
    SCHEMA_VERSION,
    ImageRecord,
    SchemaVersionError,
    Store,
    StoreError,
    validate_class_names,
)


def make_store(tmp_path: Path, n: int = 6) -> Store:
    store = Store.create(tmp_path / "project.db")
    recs = [ImageRecord(f"img{i}.png", i, f"/x/img{i}.png", 8, 8, True, None) for i in range(n)]
    recs.append(ImageRecord("bad.png", None, "/x/bad.png", None, None, False, "empty file (0 bytes)"))
    store.add_images(recs)
    store.set_classes([("cat", "a photo of a cat"), ("dog", "a photo of a dog"), ("fox", "")])
    return store


def test_pragmas_and_schema(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    assert store.query("PRAGMA foreign_keys")[0][0] == 1
    assert store.query("PRAGMA synchronous")[0][0] == 2  # FULL
    assert store.schema_version() == SCHEMA_VERSION
    assert store.integrity_check() == "ok"
    assert [r.id for r in store.skipped_images()] == ["bad.png"]
    assert store.skipped_images()[0].reason == "empty file (0 bytes)"
    assert store.image_ids() == [f"img{i}.png" for i in range(6)]


def test_create_refuses_existing(tmp_path: Path) -> None:
    make_store(tmp_path).close()
    with pytest.raises(StoreError, match="already exists"):
        Store.create(tmp_path / "project.db")


def test_open_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="project database not found"):
        Store.open(tmp_path / "nope.db")


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_newer_schema_refused_and_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "project.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE images(id TEXT)")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    before = _digest(tmp_path)
    with pytest.raises(SchemaVersionError, match=r"newer ActiveKD Studio \(schema version 6\).*Nothing was changed"):
        Store.open(db)
    assert _digest(tmp_path) == before  # no -wal/-shm created, bytes identical


def test_foreign_db_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match="not an ActiveKD Studio project"):
        Store.open(db)
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="junk.db"):
        Store.open(tmp_path / "junk.db")


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "no classes"),
        (["only"], "only one class"),
        (["a", " "], "blank class name"),
        (["a", "b", "A "], "duplicate class name"),
    ],
)
def test_class_validation(names: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=message):
        validate_class_names(names)
    store = Store.create(tmp_path / "p.db")
    with pytest.raises(StoreError, match=message):
        store.set_classes([(n, "") for n in names])
    assert store.classes() == []


def test_classes_frozen_after_labels(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    assert store.class_names() == ["cat", "dog", "fox"]
    assert store.classes()[0].prompt == "a photo of a cat"
    store.label("img0.png", "cat")
    with pytest.raises(StoreError, match="once labels exist"):
        store.set_classes([("x", ""), ("y", "")])


def test_label_events_and_current(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    e1 = store.label("img0.png", "cat", annotator="ann", session="s1")
    e2 = store.skip("img1.png", annotator="ann")
    e3 = store.unsure("img2.png", annotator="ann")
    e4 = store.label("img0.png", "DOG", annotator="bob")  # class match is case-insensitive, stored canonical
    assert e1 < e2 < e3 < e4
    cur = store.current()
    assert cur["img0.png"].class_name == "dog" and cur["img0.png"].annotator == "bob"
    assert cur["img1.png"].event == "skip" and cur["img2.png"].event == "unsure"
    assert store.current_labels() == {"img0.png": "dog"}
    assert store.class_counts() == {"cat": 0, "dog": 1, "fox": 0}
    hist = store.events("img0.png")
    assert [(e.event, e.class_name, e.annotator) for e in hist] == [("label", "cat", "ann"), ("label", "dog", "bob")]
    assert hist[0].session == "s1" and hist[0].round == 0
    assert store.event_ids() == {e1, e2, e3, e4}


def test_label_rejects_bad_input(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(StoreError, match="unknown or unreadable image id 'nope.png'"):
        store.label("nope.png", "cat")
    with pytest.raises(StoreError, match="unreadable"):
        store.label("bad.png", "cat")
    with pytest.raises(StoreError, match="unknown class 'horse'"):
        store.label("img0.png", "horse")
    with pytest.raises(StoreError, match="needs a class"):
        store.add_event("img0.png", "label")
    with pytest.raises(StoreError, match="undo has its own method"):
        store.add_event("img0.png", "undo")
    with pytest.raises(StoreError, match="annotator"):
        store.label("img0.png", "cat", annotator=" ")
    assert store.events() == []


def test_history_is_append_only(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.label("img0.png", "cat")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.execute("UPDATE label_events SET class_name = 'dog'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.execute("DELETE FROM label_events")
    assert store.current_labels() == {"img0.png": "cat"}


def test_undo_walks_back_own_history(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.label("img0.png", "cat", annotator="a")
    store.label("img0.png", "dog", annotator="a")
    store.label("img1.png", "fox", annotator="a")
    undone = store.undo("a")
    assert undone is not None and undone.image_id == "img1.png"
    assert "img1.png" not in store.current()
    assert store.undo("a").class_name == "dog"  # type: ignore[union-attr]
    assert store.current_labels() == {"img0.png": "cat"}
    assert store.undo("a").class_name == "cat"  # type: ignore[union-attr]
    assert store.current() == {}
    assert store.undo("a") is None
    kinds = [e.event for e in store.events()]
    assert kinds == ["label", "label", "label", "undo", "undo", "undo"]
    assert [e.undoes for e in store.events() if e.event == "undo"] == [3, 2, 1]


def test_undo_is_per_annotator_and_per_image(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.label("img0.png", "cat", annotator="a")
    store.label("img0.png", "dog", annotator="b")  # b overwrites a: last write wins
    store.label("img1.png", "fox", annotator="a")
    # a undoes its label on img0 specifically: b's later label stays current.
    assert store.undo("a", "img0.png").class_name == "cat"  # type: ignore[union-attr]
    assert store.current_labels() == {"img0.png": "dog", "img1.png": "fox"}
    # b undoes: img0 falls back to nothing (a's label was already undone).
    assert store.undo("b").class_name == "dog"  # type: ignore[union-attr]
    assert store.current_labels() == {"img1.png": "fox"}
    assert store.undo("b") is None


def test_undo_stays_inside_the_session_that_presses_it(tmp_path: Path) -> None:
    """Two browser sessions of the same annotator: B's undo never reverts A's label."""
    store = make_store(tmp_path)
    store.label("img0.png", "cat", annotator="expert", session="A")
    store.label("img1.png", "dog", annotator="expert", session="B")
    store.label("img2.png", "fox", annotator="expert", session="A")  # A's label is the newest
    undone = store.undo("expert", session="B")
    assert undone is not None and undone.image_id == "img1.png" and undone.session == "B"
    assert store.current_labels() == {"img0.png": "cat", "img2.png": "fox"}
    assert store.undo("expert", session="B") is None  # B has nothing left; A's labels stay
    assert store.current_labels() == {"img0.png": "cat", "img2.png": "fox"}
    assert store.undo("expert", "img0.png", session="B") is None
    assert store.undo("expert", session="A").image_id == "img2.png"  # type: ignore[union-attr]
    # The undo row records the session that pressed it.
    assert [e.session for e in store.events() if e.event == "undo"] == ["B", "A"]


def test_undo_reverts_to_previous_state(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.label("img0.png", "cat", annotator="a")
    store.skip("img0.png", annotator="b")
    store.label("img0.png", "fox", annotator="a")
    store.undo("a")
    state = store.current_state("img0.png")
    assert state is not None and state.event == "skip" and state.annotator == "b"


def test_add_labels_all_or_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(StoreError, match="nothing imported.*nope.png.*horse"):
        store.add_labels([("img0.png", "cat"), ("nope.png", "dog"), ("img1.png", "horse")], annotator="csv")
    assert store.events() == []
    assert store.add_labels([("img0.png", "Cat"), ("img1.png", "dog")], annotator="csv") == 2
    assert store.current_labels() == {"img0.png": "cat", "img1.png": "dog"}
    assert {e.strategy for e in store.events()} == {"import"}


def test_batches_and_strategy_attribution(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    assert store.open_batch_current() is None
    b1 = store.open_batch(0, "pcoreset", "teacher", [("img3.png", 0.9), ("img1.png", 0.5)])
    assert [i.image_id for i in b1.items] == ["img3.png", "img1.png"]
    assert [i.score for i in b1.items] == [0.9, 0.5]
    store.label("img3.png", "cat")
    assert store.events()[0].strategy == "pcoreset"
    b2 = store.open_batch(0, "random", "teacher", [("img4.png", None)])
    assert store.batch(b1.id).closed and not b2.closed  # type: ignore[union-attr]
    assert store.open_batch_current().id == b2.id  # type: ignore[union-attr]
    assert len(store.batches(round=0)) == 2
    store.close_batches()
    assert store.open_batch_current() is None


def test_rounds_lifecycle(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    r1 = store.start_round("pcoreset", "teacher", picks=[["img0.png", 0.3]], teacher={"kind": "standin"}, n_labeled=3)
    assert r1 == 1 and store.latest_done_round() is None
    store.finish_round(r1, "done", metrics={"loss": 0.5}, checkpoint="checkpoints/round_1.safetensors")
    with pytest.raises(StoreError, match="not running"):
        store.finish_round(r1, "failed")
    r2 = store.start_round("pcoreset", "student", picks=[], teacher={}, n_labeled=5)
    store.finish_round(r2, "failed", error="boom")
    r3 = store.start_round("pcoreset", "student", picks=[], teacher={}, n_labeled=5)
    assert store.mark_stale_rounds() == 1
    assert [r.status for r in store.rounds()] == ["done", "failed", "interrupted"]
    latest = store.latest_done_round()
    assert latest is not None and latest.id == r1 and latest.metrics == {"loss": 0.5}
    assert store.round(r2).error == "boom"  # type: ignore[union-attr]
    assert store.round(r3).status == "interrupted"  # type: ignore[union-attr]
    store.label("img0.png", "cat")
    assert store.events()[0].round == 1  # labeled while round 1's model was active


def test_audit_set_and_settings(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.set_audit_set(["img5.png", "img2.png"])
    assert store.audit_ids() == ["img5.png", "img2.png"]
    with pytest.raises(StoreError, match="already exists"):
        store.set_audit_set(["img1.png"])
    with pytest.raises(sqlite3.IntegrityError):
        store.execute("INSERT INTO audit_set(image_id, position, created) VALUES ('nope.png', 9, 'x')")
    store.set_setting("teacher", {"kind": "standin", "seed": 1})
    assert store.get_setting("teacher") == {"kind": "standin", "seed": 1}
    assert store.get_setting("missing", 7) == 7
    assert store.settings() == {"teacher": {"kind": "standin", "seed": 1}}


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.label("img0.png", "cat")
    store.close()
    again = Store.open(tmp_path / "project.db")
    assert again.current_labels() == {"img0.png": "cat"}
    assert again.integrity_check() == "ok"


def test_threads_share_one_store(tmp_path: Path) -> None:
    store = make_store(tmp_path, n=20)
    errors: list[BaseException] = []
    ids: list[int] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        try:
            for i in range(20):
                eid = store.label(f"img{i}.png", ["cat", "dog", "fox"][k], annotator=f"t{k}")
                with lock:
                    ids.append(eid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(ids) == 60 and store.event_ids() == set(ids)
    last = {}
    for e in store.events():
        last[e.image_id] = e.class_name
    assert store.current_labels() == last


def test_current_cache_sees_other_connections(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    other = Store.open(store.path)
    store.label("img0.png", "cat")
    assert store.current_labels() == {"img0.png": "cat"}
    other.label("img0.png", "dog", annotator="b")
    assert store.current_labels() == {"img0.png": "dog"}  # cache invalidated by the new event
    other.undo("b")
    assert store.current_labels() == {"img0.png": "cat"}
    snapshot = store.current()
    with pytest.raises(TypeError):  # callers get a read-only snapshot
        snapshot["img0.png"] = None  # type: ignore[index]
    assert store.class_counts() == {"cat": 1, "dog": 0, "fox": 0}
    other.close()


def _full_current(store: Store) -> dict[str, tuple]:
    """The current state recomputed from the whole view (the reference for the cache)."""
    conn = sqlite3.connect(store.path)  # its own connection: not seen by the store's SQL trace
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM current_labels").fetchall()
    finally:
        conn.close()
    return {r["image_id"]: (r["id"], r["event"], r["class_name"], r["annotator"]) for r in rows}


def _as_tuples(current) -> dict[str, tuple]:
    return {i: (e.id, e.event, e.class_name, e.annotator) for i, e in current.items()}


@pytest.mark.parametrize("limit", [2000, 3])
def test_incremental_current_exact_across_connections(tmp_path: Path, monkeypatch, limit: int) -> None:
    """Random label/skip/unsure/undo/import from two connections: every current() equals a
    full recompute, earlier snapshots never change, and (small steps) the whole view is
    not re-read after the first call."""
    import random

    import activekd_core.store.labels as store_labels

    monkeypatch.setattr(store_labels, "_INCREMENTAL_LIMIT", limit)
    a = make_store(tmp_path, n=8)
    b = Store.open(a.path)
    ids = [f"img{i}.png" for i in range(8)]
    rng = random.Random(7)
    sql: list[str] = []
    a._conn.set_trace_callback(sql.append)
    assert a.current() == {}
    snapshots = []
    for step in range(160):
        writer = rng.choice([a, b])
        who = rng.choice(["x", "y"])
        op = rng.random()
        if op < 0.35:
            writer.label(rng.choice(ids), rng.choice(["cat", "dog", "fox"]), annotator=who)
        elif op < 0.5:
            writer.skip(rng.choice(ids), annotator=who)
        elif op < 0.62:
            writer.unsure(rng.choice(ids), annotator=who)
        elif op < 0.95:
            writer.undo(who, rng.choice([None, rng.choice(ids)]))
        else:
            writer.add_labels([(rng.choice(ids), "dog") for _ in range(5)], annotator=who)
        reader = rng.choice([a, b])
        got = reader.current()
        assert _as_tuples(got) == _full_current(reader), f"step {step}"
        snapshots.append((got, _as_tuples(got)))
    for snap, frozen in snapshots:
        assert _as_tuples(snap) == frozen  # handed-out snapshots are never patched in place
    assert _as_tuples(a.current()) == _as_tuples(b.current()) == _full_current(a)
    full_reads = sum("current_labels" in s for s in sql)
    if limit == 2000:
        assert full_reads == 1  # only the first call read the whole view
    else:
        assert full_reads > 1  # imports of 5 events exceed the limit: read back in full
    assert a.newest_event_id() == max(a.event_ids())
    b.close()
    a.close()


# ---- a replaced or damaged database file (issue 9 items 6 and 9) ------------------------------


def test_writes_to_a_replaced_database_are_refused_never_acknowledged(tmp_path: Path) -> None:
    """The project folder is removed and re-created at the same path while a store is open."""
    import shutil

    from activekd_core.store import DatabaseReplacedError

    folder = tmp_path / "proj"
    folder.mkdir()
    old = make_store(folder)
    old.label("img0.png", "cat")
    assert not old.replaced()
    shutil.rmtree(folder)
    folder.mkdir()
    new = make_store(folder)  # same path, another file
    assert old.replaced()
    with pytest.raises(DatabaseReplacedError, match="removed or replaced.*Reopen the project"):
        old.label("img1.png", "dog")
    with pytest.raises(DatabaseReplacedError):
        old.undo("expert")
    assert new.events() == []  # nothing reached the file at that path, and nothing was claimed saved
    reopened = Store.open(folder / "project.db")
    assert not reopened.replaced() and reopened.label("img1.png", "dog") > 0
    assert new.current_labels() == {"img1.png": "dog"}
    # Removed without a replacement: refused as well.
    (folder / "project.db").unlink()
    with pytest.raises(DatabaseReplacedError):
        reopened.label("img2.png", "fox")
    for s in (old, new, reopened):
        s.close()


def test_replacement_between_begin_and_commit_is_not_acknowledged(tmp_path: Path, monkeypatch) -> None:
    import shutil

    from activekd_core.store import DatabaseReplacedError

    folder = tmp_path / "proj"
    folder.mkdir()
    store = make_store(folder)
    real_check = Store._check_identity

    swapped: list[bool] = []

    def swap_after_first_check(self, when):  # type: ignore[no-untyped-def]
        real_check(self, when)
        if self is store and "before" in when and not swapped:  # replaced while the write is in flight
            swapped.append(True)
            shutil.move(str(folder), str(tmp_path / "gone"))
            folder.mkdir()
            make_store(folder).close()

    monkeypatch.setattr(Store, "_check_identity", swap_after_first_check)
    with pytest.raises(DatabaseReplacedError, match="went to the old file"):
        store.label("img0.png", "cat")
    store.close()


def _damage_a_table_page(db: Path, table: str) -> None:
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    conn.close()
    assert root > 1
    with open(db, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xa5" * page_size)


def test_damaged_page_is_found_on_open_with_how_to_recover(tmp_path: Path) -> None:
    from activekd_core.store import DatabaseDamagedError

    store = make_store(tmp_path, n=400)
    store.label("img0.png", "cat")
    store.close()
    _damage_a_table_page(tmp_path / "project.db", "label_events")
    with pytest.raises(DatabaseDamagedError) as info:
        Store.open(tmp_path / "project.db")
    text = str(info.value)
    assert "damaged" in text and ".recover" in text and "backup" in text and "Project page" in text
    assert isinstance(info.value, StoreError)


def test_damage_found_after_opening_is_a_clear_error_not_a_raw_sqlite_one(tmp_path: Path, monkeypatch) -> None:
    from activekd_core.store import DatabaseDamagedError
    from activekd_core.store import connection as store_connection

    store = make_store(tmp_path, n=400)
    store.label("img0.png", "cat")
    store.close()
    _damage_a_table_page(tmp_path / "project.db", "label_events")
    monkeypatch.setattr(store_connection, "quick_check", lambda conn: None)  # as if the check ran out of time
    damaged = Store.open(tmp_path / "project.db")
    with pytest.raises(DatabaseDamagedError, match="recover"):
        damaged.events()
    assert damaged.damage
    damaged.close()
