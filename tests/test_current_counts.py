"""The counts kept with the store's cached current state (issue 14: the Label page at 1,000,000 images).

Progress counts, per-class counts, training-label counts and the audit progress are read
on every Label page rerun; they are kept by the same incremental cache as
``Store.current()`` instead of a pass over every image. These tests prove they stay equal
to a full recount after every kind of change, from this store and from another
connection (another process or session), and that held snapshots never change.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import activekd_core.store.current_state as current_state_mod
import activekd_core.store.labels as store_labels
from activekd_core.project import Project
from activekd_core.store import ImageRecord, Store
from activekd_core.store.current_state import CurrentState, CurrentView

CLASSES = ["cat", "dog", "fox"]


def make_store(tmp_path: Path, n: int = 12) -> Store:
    store = Store.create(tmp_path / "project.db")
    store.add_images([ImageRecord(f"img{i}.png", i, f"/x/img{i}.png", 8, 8, True, None) for i in range(n)])
    store.set_classes([(c, "") for c in CLASSES])
    return store


def full_recount(path: Path) -> tuple[dict[str, tuple], dict[str, int], dict[str, int]]:
    """``(current state, per state, per class)`` straight from the database view, on its own connection."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT image_id, id, event, class_name FROM current_labels").fetchall()
    finally:
        conn.close()
    states = {k: sum(1 for r in rows if r[2] == k) for k in ("label", "skip", "unsure")}
    per_class = {c: sum(1 for r in rows if r[2] == "label" and r[3] == c) for c in CLASSES}
    return {r[0]: (r[1], r[2], r[3]) for r in rows}, states, per_class


def as_tuples(current) -> dict[str, tuple]:
    return {i: (e.id, e.event, e.class_name) for i, e in current.items()}


@pytest.mark.parametrize("limit, compact_at", [(2000, 4096), (3, 2)])
def test_counts_equal_a_full_recount_after_every_change_from_two_connections(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int, compact_at: int) -> None:
    """Label, relabel, skip, unsure, undo, clear and imports from two stores on one database:
    after each, current_counts() and current() equal a recount from the database, and every
    snapshot handed out earlier still shows the state it was taken at (also across
    compactions of the overlay and full re-reads after long runs of events)."""
    monkeypatch.setattr(store_labels, "_INCREMENTAL_LIMIT", limit)
    monkeypatch.setattr(current_state_mod, "COMPACT_AT", compact_at)
    a = make_store(tmp_path)
    b = Store.open(a.path)
    ids = [f"img{i}.png" for i in range(12)]
    rng = random.Random(11)
    snapshots = []
    for step in range(220):
        writer = rng.choice([a, b])
        who = rng.choice(["x", "y"])
        op = rng.random()
        if op < 0.3:
            writer.label(rng.choice(ids), rng.choice(CLASSES), annotator=who)
        elif op < 0.42:
            writer.skip(rng.choice(ids), annotator=who)
        elif op < 0.52:
            writer.unsure(rng.choice(ids), annotator=who)
        elif op < 0.82:
            writer.undo(who, rng.choice([None, rng.choice(ids)]))
        elif op < 0.9:
            writer.clear(rng.sample(ids, 3), annotator=who)
        else:
            writer.add_labels([(rng.choice(ids), rng.choice(CLASSES)) for _ in range(6)], annotator=who)
        reader = rng.choice([a, b])
        want_current, want_states, want_per_class = full_recount(a.path)
        states, per_class = reader.current_counts()
        assert (states, per_class) == (want_states, want_per_class), f"step {step}"
        assert reader.class_counts() == want_per_class
        got = reader.current()
        assert as_tuples(got) == want_current and len(got) == len(want_current)
        snapshots.append((got, want_current))
    for snap, frozen in snapshots:
        assert as_tuples(snap) == frozen and len(snap) == len(frozen)
    b.close()
    a.close()


def test_counts_exclude_images(tmp_path: Path) -> None:
    """current_counts(exclude=...) takes exactly those images' states off both counts."""
    s = make_store(tmp_path)
    s.label("img0.png", "cat")
    s.label("img1.png", "dog")
    s.skip("img2.png")
    s.unsure("img3.png")
    states, per_class = s.current_counts(exclude=["img1.png", "img2.png", "img9.png", "img1.png"])
    assert states == {"label": 1, "skip": 0, "unsure": 1}
    assert per_class == {"cat": 1, "dog": 0, "fox": 0}
    assert s.current_counts() == ({"label": 2, "skip": 1, "unsure": 1}, {"cat": 1, "dog": 1, "fox": 0})


def test_current_view_is_a_read_only_mapping() -> None:
    """The view behaves like the dict it stands for: get, in, len, iteration, items, KeyError."""
    from activekd_core.store import LabelEvent

    def ev(i: int, image_id: str, event: str = "label", cls: str | None = "cat") -> LabelEvent:
        return LabelEvent(i, image_id, event, cls if event == "label" else None, "x", None, "t", 0, None, None)

    state = CurrentState.from_events(2, [ev(1, "a"), ev(2, "b", "skip")])
    before = state.view()
    after = state.apply(4, {"a": None, "c": ev(4, "c", "label", "dog")})
    view = after.view()
    assert dict(view) == {"b": ev(2, "b", "skip"), "c": ev(4, "c", "label", "dog")}
    assert list(view) == ["b", "c"] and len(view) == 2
    assert "a" not in view and view.get("a") is None and view.get("a", 5) == 5
    with pytest.raises(KeyError):
        view["a"]
    with pytest.raises(TypeError):
        view["a"] = ev(5, "a")  # type: ignore[index]
    assert dict(before) == {"a": ev(1, "a"), "b": ev(2, "b", "skip")}  # the older view is unchanged
    assert sorted(view.items()) == sorted(dict(view).items()) and list(view.values()) == list(dict(view).values())
    again = after.apply(5, {"b": None})  # after the overlay was folded into the base by iterating
    assert dict(again.view()) == {"c": ev(4, "c", "label", "dog")} and dict(view) == dict(after.view())
    assert len(view) == 2 and "b" in view and again.states == {"label": 1, "skip": 0, "unsure": 0}
    assert after.states == {"label": 1, "skip": 1, "unsure": 0} and after.per_class == {"dog": 1}
    assert state.states == {"label": 1, "skip": 1, "unsure": 0} and state.per_class == {"cat": 1}


# ---- the project's counts ---------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for k in range(6):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / c / f"{k}.png")
    p = Project.create(tmp_path / "proj", root, [(c, "") for c in CLASSES], {"kind": "standin"}, batch_size=4)
    yield p
    p.close()


def recount(p: Project) -> dict:
    """Project.counts() computed the slow way: a pass over the whole current state."""
    current = dict(p.store.current())
    labels = [e.class_name for e in current.values() if e.event == "label"]
    events = [e.event for e in current.values()]
    return {"per_class": {c: labels.count(c) for c in CLASSES}, "labeled": events.count("label"),
            "skipped": events.count("skip"), "unsure": events.count("unsure"),
            "unlabeled": len(p.pool()) - len(current), "audit": len(p.store.audit_ids()), "total": len(p.pool())}


def check_project(p: Project, other: Store) -> None:
    """Every kept count the Label page reads equals the slow way, seen from the project and another store."""
    assert p.counts() == recount(p)
    _, y = p.training_labels()
    assert p.training_label_counts().tolist() == np.bincount(y, minlength=len(CLASSES)).tolist()
    assert p.new_labels_since_model() == y.size
    now = p.labels_per_round()[-1]
    assert now["labels"] == y.size and [now[c] for c in CLASSES] == np.bincount(y, minlength=3).tolist()
    labels = p.store.current_labels()
    audit = p.store.audit_ids()
    assert p.audit_progress() == (sum(1 for i in audit if i in labels), len(audit))
    assert other.current_counts()[1] == p.counts()["per_class"]


def test_project_counts_follow_every_kind_of_change(project: Project) -> None:
    """counts(), training-label counts, new labels since the model, the labels-per-round "now"
    row and the audit progress stay equal to a full recount after label, relabel, skip,
    unsure, undo, bulk label, import, a cleared image, an audit set, and a second store
    (another process) writing to the same database."""
    p = project
    other = Store.open(p.store.path)
    ids = p.pool().ids
    check_project(p, other)
    p.label(ids[0], "cat")
    check_project(p, other)
    p.label(ids[0], "dog")  # relabel
    p.skip(ids[1])
    p.unsure(ids[2])
    check_project(p, other)
    p.undo()
    check_project(p, other)
    audit = p.create_audit_set(4, seed=1)
    p.label(audit[0], "fox")
    p.label(audit[1], "cat")
    p.skip(audit[2])
    check_project(p, other)
    assert p.audit_progress() == (2, 4)
    other.label(ids[5], "fox", annotator="someone else")  # another process writes
    other.label(audit[3], "dog", annotator="someone else")
    check_project(p, other)
    assert p.counts()["per_class"]["fox"] == 2 and p.audit_progress() == (3, 4)
    p.bulk_label(ids[6:9], "cat")
    n, unknown = p.import_labels_subfolders()
    assert n == len(ids) and not unknown
    check_project(p, other)
    p.store.clear([ids[0], audit[0]], annotator="expert")
    check_project(p, other)
    other.undo("someone else")
    check_project(p, other)
    other.close()


def test_counts_do_not_pass_over_every_image_after_a_click(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first read, a label and an undo change the counts without iterating the
    current state or reading the whole view again (what cost 319 ms per rerun at 1M images)."""
    p = project
    ids = p.pool().ids
    p.create_audit_set(3, seed=0)
    p.import_labels_subfolders()
    before = p.counts()
    truth = ids[0].split("/", 1)[0]

    def refuse(*_a, **_k):
        raise AssertionError("a pass over every image")

    monkeypatch.setattr(CurrentView, "__iter__", refuse)
    monkeypatch.setattr(CurrentState, "merged", refuse)
    monkeypatch.setattr(CurrentState, "from_events", refuse)
    p.label(ids[0], next(c for c in CLASSES if c != truth))  # a relabel
    after = p.counts()
    assert after["labeled"] == before["labeled"] and after["per_class"][truth] == before["per_class"][truth] - 1
    assert p.audit_progress() == (3, 3)
    p.undo()
    assert p.counts() == before
    assert p.new_labels_since_model() == before["labeled"] - 3  # the audit set never trains
    assert p.labels_per_round()[-1]["labels"] == before["labeled"] - 3
