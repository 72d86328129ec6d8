"""Page wiring with streamlit.testing.v1.AppTest on a small textile demo project.

Each test gets its own ``ACTIVEKD_HOME`` (a temp folder) and a demo with 4 images per
class (12 images, batches of 10). The database is checked through a separate
connection (:class:`activekd_core.store.Store`), i.e. what was committed, not what a
page shows.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402
from button_rows import (  # noqa: E402
    act, actions_row, button_rows, card_ids, class_row, class_rows, panel_texts, pick, send)
from button_rows import batch_key as _batch_key  # noqa: E402  (other test files import it from here)

from activekd_core.paths import PathOutsideRoot  # noqa: E402
from activekd_core.project import Project, open_demo  # noqa: E402
from activekd_core.store import Store  # noqa: E402

APP = str(ROOT / "app.py")
TRAIN_FAST = {"steps": 4, "batch_labeled": 8, "batch_unlabeled": 8, "image_size": 16, "augment": False}


@pytest.fixture(scope="session")
def demo_images(tmp_path_factory) -> Path:
    """The demo image files, written once per test session (copied into each home)."""
    from activekd_core.demo_data import materialize_demo

    base = tmp_path_factory.mktemp("demo_images")
    for name in ("textile", "digits"):
        materialize_demo(name, base / "data", per_class=4)
    return base / "data"


@pytest.fixture()
def home(tmp_path, monkeypatch, demo_images):
    """A fresh ACTIVEKD_HOME holding a prepared 12-image textile demo with fast training."""
    shutil.copytree(demo_images, tmp_path / "data")
    monkeypatch.setenv("ACTIVEKD_HOME", str(tmp_path))
    monkeypatch.setenv("ACTIVEKD_DEMO_PER_CLASS", "4")
    monkeypatch.setenv("ACTIVEKD_TRAIN_IN_THREAD", "1")
    monkeypatch.delenv("ACTIVEKD_PROJECT", raising=False)
    monkeypatch.delenv("ACTIVEKD_ANNOTATOR", raising=False)
    with open_demo("textile", base_dir=tmp_path, per_class=4) as project:
        project.update_config(train=TRAIN_FAST)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield tmp_path
    st.cache_resource.clear()  # closes nothing; the next test uses another folder


def _db(home: Path) -> Store:
    return Store.open(home / "projects" / "textile" / "project.db")


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _card_ids(at: AppTest) -> list[str]:
    """Image ids shown in the grid, in order (compact cards: their panels; classic cards: their captions)."""
    return card_ids(at) or [c.value.split("`")[1] for c in at.caption if c.value.startswith("`")]


def test_label_page_renders_the_open_batch(home):
    at = _app()
    with _db(home) as db:
        batch = db.open_batch_current()
        classes = db.class_names()
    assert batch is not None and len(batch.items) == 10
    assert _card_ids(at) == [it.image_id for it in batch.items]
    assert any("0/10 done" in (p.proto.text or "") for p in at.get("progress"))
    # one class row per card, plus the keyboard bar with shortcuts
    key = _batch_key(at)
    assert class_row(at, f"{key}_0").labels == classes and len(class_rows(at)) == 10
    assert at.button(key="lbl_key_c0").proto.shortcut == "1"
    assert at.button(key="lbl_key_undo").proto.shortcut.lower() == "z"


def test_click_records_exactly_that_label_then_undo(home):
    at = _app()
    ids = _card_ids(at)
    key = _batch_key(at)
    pick(at, f"{key}_3", 2)
    assert not at.exception
    with _db(home) as db:
        classes = db.class_names()
        assert db.current_labels() == {ids[3]: classes[2]}
        ev = db.current()[ids[3]]
        # single-user mode: the operating-system user is the default annotator (was "expert")
        assert ev.annotator == __import__("getpass").getuser() and ev.session  # the session id is recorded
    assert f"labeled {classes[2]} by" in panel_texts(at, f"{key}_3")[1]
    assert any("1/10 done" in (p.proto.text or "") for p in at.get("progress"))

    act(at, f"{key}_5", "skip")
    act(at, f"{key}_6", "unsure")
    assert actions_row(at, f"{key}_5").chosen == ["skip"]  # shown pressed
    with _db(home) as db:
        assert {i: e.event for i, e in db.current().items()} == {ids[3]: "label", ids[5]: "skip", ids[6]: "unsure"}

    at.button(key="lbl_key_undo").click().run()  # undoes the latest event: unsure on #7
    at.button(key="lbl_key_undo").click().run()  # then the skip on #6
    with _db(home) as db:
        assert {i: e.event for i, e in db.current().items()} == {ids[3]: "label"}
        kinds = [e.event for e in db.events()]
        assert kinds == ["label", "skip", "unsure", "undo", "undo"]  # history is append-only


def test_keyboard_bar_labels_the_focused_image_and_moves_focus(home):
    at = _app()
    ids = _card_ids(at)
    with _db(home) as db:
        classes = db.class_names()
    at.button(key="lbl_key_c1").click().run()  # focus starts on #1
    at.button(key="lbl_key_next").click().run()  # focus had advanced to #2; now #3
    at.button(key="lbl_key_c0").click().run()
    at.button(key="lbl_key_k").click().run()  # back to #3 (focus advanced to #4 after the label)
    at.button(key="lbl_key_skip").click().run()  # replaces #3's label by a skip
    with _db(home) as db:
        assert db.current_labels() == {ids[0]: classes[1]}
        assert {i: e.event for i, e in db.current().items()} == {ids[0]: "label", ids[2]: "skip"}
        assert [(e.image_id, e.event) for e in db.events()] == [(ids[0], "label"), (ids[2], "label"), (ids[2], "skip")]


def test_completing_a_batch_selects_the_next_one(home):
    at = _app()
    first = _card_ids(at)
    key = _batch_key(at)
    for pos in range(9):
        pick(at, f"{key}_{pos}", pos % 3)
        assert not at.exception, [e.message for e in at.exception]
    # the next batch is prepared in a background job while this one is labeled...
    with Project.open(home / "projects" / "textile") as project:
        job = project.jobs().latest("prefetch")
        assert job is not None
        assert project.jobs().wait(job.id, timeout=60).state == "done"
    # ...so the last label shows the next grid at once (the grid never empties; before this
    # change the page showed selection progress and an empty grid here)
    old_classes, old_actions = class_row(at, f"{key}_0"), actions_row(at, f"{key}_1")
    pick(at, f"{key}_9", 0)
    assert not at.exception, [e.message for e in at.exception]
    second = _card_ids(at)
    assert len(second) == 2 and not set(second) & set(first)
    with _db(home) as db:
        assert len(db.current_labels()) == 10
        assert len(db.batches()) == 2 and db.open_batch_current().id == 2
        n_events = len(db.events())
    # clicks on cards of the replaced grid (a page that had not drawn the new one yet) are
    # dropped: they never label or skip the image now at that position
    send(at, old_classes, old_classes.values[2])
    send(at, old_actions, "skip")
    assert not at.exception, [e.message for e in at.exception]
    with _db(home) as db:
        assert len(db.events()) == n_events and not set(db.current()) & set(second)
    pick(at, f"{_batch_key(at)}_0", 2)  # while the new grid's own row labels its image
    with _db(home) as db:
        assert db.current_labels()[second[0]] == db.class_names()[2]


def _nine_labels_and_a_late_next_batch(home: Path) -> tuple[AppTest, list[str], str]:
    """The Label page after nine of ten labels, with the batch prepared ahead thrown away (as
    if it had not finished in time); returns the app, the batch's image ids and its key."""
    at = _app()
    first = _card_ids(at)
    key = _batch_key(at)
    for pos in range(9):
        pick(at, f"{key}_{pos}", pos % 3)
    with Project.open(home / "projects" / "textile") as project:
        job = project.jobs().latest("prefetch")
        assert job is not None and project.jobs().wait(job.id, timeout=60).state == "done"
        project.store.set_setting("prefetched_batch", None)
    return at, first, key


def test_a_late_next_batch_keeps_the_finished_grid_on_screen_read_only(home):
    at, first, key = _nine_labels_and_a_late_next_batch(home)
    pick(at, f"{key}_9", 0)
    assert not at.exception, [e.message for e in at.exception]
    assert _card_ids(at) == first  # the finished batch stays (before: an empty page with a progress bar)
    assert any("Next batch being prepared" in str(p.proto) for p in at.get("progress"))
    decisions = [b for b in at.button if b.key and (b.key.startswith(key) or b.key.startswith("lbl_key_"))
                 and not b.key.endswith("_zoom") and b.key not in ("lbl_key_prev", "lbl_key_next", "lbl_key_j",
                                                                  "lbl_key_k", "lbl_key_focus")]
    assert len(decisions) == 6 and all(b.disabled for b in decisions)  # looking only: no label, skip or undo
    rows = button_rows(at)
    actions = [r for k, r in rows.items() if k.endswith("_actions")]
    assert len(rows) == 20 and all(r.disabled == [True, True, False] for r in actions)  # zoom stays: looking is fine
    assert all(all(r.disabled) for r in class_rows(at).values())
    with Project.open(home / "projects" / "textile") as project:
        job = project.jobs().latest("select")
        assert job is not None and project.jobs().wait(job.id, timeout=120).state == "done"
    at.run()  # what the polling fragment triggers once the selection has ended
    second = _card_ids(at)
    assert len(second) == 2 and not set(second) & set(first)
    assert not any(b.disabled for b in at.button if b.key and b.key.startswith(_batch_key(at)))
    assert not any(any(r.disabled) for r in button_rows(at).values())


def test_a_round_closing_the_finished_batch_keeps_it_on_screen_until_the_next_opens(home):
    """A round that ends while the next batch is selected closes the finished batch; the grid
    keeps showing it, read-only (before: an empty page until the selection ended)."""
    at, first, key = _nine_labels_and_a_late_next_batch(home)
    pick(at, f"{key}_9", 0)
    with Project.open(home / "projects" / "textile") as project:
        project.store.close_batches()  # what a round that ends now does (Batches.close_after_round)
        assert project.current_batch() is None
    at.run()  # a rerun before the selection has stored the next batch
    assert not at.exception, [e.message for e in at.exception]
    assert _card_ids(at) == first
    rows = [r for k, r in class_rows(at).items() if k.startswith(f"{key}_")]
    assert len(rows) == 10 and all(all(r.disabled) for r in rows)
    with Project.open(home / "projects" / "textile") as project:
        job = project.jobs().latest("select")
        assert job is not None and project.jobs().wait(job.id, timeout=120).state == "done"
    at.run()
    second = _card_ids(at)
    assert second and not set(second) & set(first)


def test_focus_mode_and_teacher_toggle(home):
    at = _app()
    ids = _card_ids(at)
    key = _batch_key(at)
    pick(at, f"{key}_1", 0)
    at.toggle(key="lbl_show_teacher").set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    assert sum("Teacher suggests" in panel_texts(at, f"{key}_{pos}")[1] for pos in range(10)) == 10
    act(at, f"{key}_4", "zoom")
    assert not at.exception
    assert any(c.value.startswith(f"`{ids[4]}` ·") and "px" in c.value for c in at.caption)
    at.select_slider(key="lbl_zoom").set_value(2.0).run()
    assert not at.exception
    at.button(key="lbl_fm_back").click().run()
    assert len(_card_ids(at)) == 10


def test_audit_set_is_labeled_apart_from_the_batch(home):
    with Project.open(home / "projects" / "textile") as project:
        audit = project.create_audit_set(2)
        batch_ids = {it.image_id for it in project.current_batch().batch.items}
    assert not set(audit) & batch_ids
    at = _app()
    at.segmented_control(key="lbl_source").set_value("audit set").run()
    assert not at.exception, [e.message for e in at.exception]
    assert _card_ids(at) == audit
    at.button(key="lbl_key_c1").click().run()
    with _db(home) as db:
        ev = db.current()[audit[0]]
        assert (ev.event, ev.class_name, ev.strategy) == ("label", db.class_names()[1], "audit")
    with Project.open(home / "projects" / "textile") as project:
        rows, _ = project.training_labels()
        assert rows.size == 0  # audit labels never train


def test_audit_images_stay_in_place_while_labeled_by_keys(home):
    """Labeling the audit set by keys: every image in turn, nothing shifts, progress counts up."""
    with Project.open(home / "projects" / "textile") as project:
        project.store.close_batches()  # the whole 12-image pool is free for the audit sample
        audit = project.create_audit_set(5)
    assert len(audit) == 5
    at = _app()
    at.segmented_control(key="lbl_source").set_value("audit set").run()
    assert _card_ids(at) == audit
    for n in range(1, 5):
        at.button(key="lbl_key_c0").click().run()
        assert not at.exception, [e.message for e in at.exception]
        assert _card_ids(at) == audit  # labeled images keep their place (they used to vanish)
        texts = [p.proto.text or "" for p in at.get("progress")]
        assert any(f"{n}/5 audit images labeled" in t for t in texts), texts
    with _db(home) as db:
        labels = db.current_labels()
    assert [i for i in audit if i in labels] == audit[:4]  # each in turn: none skipped over


def test_two_sessions_label_the_same_image_last_write_wins(home):
    a, b = _app(), _app()
    ids = _card_ids(a)
    assert _card_ids(b) == ids
    key = _batch_key(a)
    pick(a, f"{key}_0", 0)
    pick(b, f"{key}_0", 2)
    a.run()
    with _db(home) as db:
        classes = db.class_names()
        events = [(e.image_id, e.class_name) for e in db.events()]
        assert events == [(ids[0], classes[0]), (ids[0], classes[2])]
        assert db.current_labels() == {ids[0]: classes[2]}
    assert f"labeled {classes[2]} by" in panel_texts(a, f"{key}_0")[1]  # visible to both


def test_train_page_runs_a_round_and_a_second_start_is_refused(home):
    at = _app()
    key = _batch_key(at)
    for pos in range(4):
        pick(at, f"{key}_{pos}", pos % 3)
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("No rounds yet" in c.value for c in at.caption)
    other = AppTest.from_file(APP, default_timeout=60).run()
    other.switch_page("pages/train.py").run()
    at.button(key="trn_start").click().run()
    other.button(key="trn_start").click().run()  # the page was drawn before the first start
    assert not at.exception and not other.exception
    folder = home / "projects" / "textile"
    with Project.open(folder) as project:
        jobs = project.jobs().history("train")
        assert len(jobs) == 1  # started twice, runs once
        final = project.jobs().wait(jobs[0].id, timeout=120)
        assert final.state == "done", final.error
        assert [r.status for r in project.store.rounds()] == ["done"]
        classes = project.classes
    assert any("Already training" in w.value for w in other.warning)
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["status"]) == ["done"] and list(table["labels"]) == [4]
    assert list(table["steps"]) == [4]  # every round records its step count
    assert any("Next round: **4 steps**" in c.value and "s/step" in c.value for c in at.caption)
    assert any("finished" in s.value for s in at.success)
    # audit set: offered, then created
    at.number_input[0].set_value(2)
    submit = [b for b in at.button if b.label == "Create audit set"]
    submit[0].click().run()
    with _db(home) as db:
        audit = db.audit_ids()
        assert len(audit) == 2
        for i in audit:
            db.label(i, classes[0], annotator="expert", strategy="audit")
    at.run()
    table = at.dataframe[0].value
    assert table["student audit acc"][0].endswith("n=2)")  # accuracy ± interval on the audit labels
    assert any("2/2 labeled" in c.value for c in at.caption)
    # the trained student can be exported from the Project page
    at.switch_page("pages/project.py").run()
    at.button(key="prj_exp_student").click().run()
    assert not at.exception, [e.message for e in at.exception]
    out = home / "projects" / "textile" / "exports" / "student_round_0001"
    assert (out / "student.safetensors").is_file() and (out / "student_torchscript.pt").is_file()
    assert "prj_dl_student.safetensors" in [b.key for b in at.get("download_button")]


def test_failed_round_shows_the_error_and_keeps_labels(home, monkeypatch):
    at = _app()
    key = _batch_key(at)
    pick(at, f"{key}_0", 0)
    with Project.open(home / "projects" / "textile") as project:
        project.update_config(train={**TRAIN_FAST, "arch": "no_such_arch"})
    st.cache_resource.clear()
    at.switch_page("pages/train.py").run()
    at.button(key="trn_start").click().run()
    with Project.open(home / "projects" / "textile") as project:
        job = project.jobs().history("train")[0]
        final = project.jobs().wait(job.id, timeout=60)
        assert final.state == "failed"
        assert project.active_round() is None
    at.run()
    assert any("failed" in e.value and "unchanged" in e.value for e in at.error)
    with _db(home) as db:
        assert len(db.current_labels()) == 1


def test_project_page_validates_and_switches_to_digits(home, tmp_path):
    assert (home / "data" / "digits-v2" / "images").is_dir()
    at = _app()
    at.switch_page("pages/project.py").run()
    assert not at.exception, [e.message for e in at.exception]
    at.text_input(key="prj_new_images").input(str(tmp_path / "missing")).run()
    assert any("Image folder not found" in e.value for e in at.error)
    at.text_input(key="prj_new_folder").input(str(tmp_path / "newproj")).run()
    at.button(key="prj_create").click().run()
    errors = " ".join(e.value for e in at.error)
    assert "Not created" in errors and "no classes given" in errors
    assert not (tmp_path / "newproj").exists()  # nothing written
    # the demo switch: one click
    at.button(key="prj_demo_digits").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert (home / "projects" / "digits" / "project.db").is_file()
    at.switch_page("pages/label.py").run()
    assert not at.exception
    # classes named "0".."9": each digit key labels its own class
    assert [at.button(key=f"lbl_key_c{k}").proto.shortcut for k in range(10)] == [str(k) for k in range(10)]


def test_class_keys():
    from activekd_core.label_keys import default_class_keys as class_keys

    assert class_keys(["0", "1", "2"]) == ["0", "1", "2"]
    assert class_keys(["cat", "dog", "bird"]) == ["1", "2", "3"]
    assert class_keys([f"c{i}" for i in range(12)]) == list("1234567890")


def test_class_table_rules():
    sys.modules.pop("pages.project", None)
    from pages.project import class_table_problems

    ok, problems = class_table_problems(pd.DataFrame({"name": ["a", "b", None], "prompt": ["x", "", None]}))
    assert ok == [("a", "x"), ("b", "")] and problems == []
    _, problems = class_table_problems(pd.DataFrame({"name": ["scratch", "Scratch"], "prompt": ["", ""]}))
    assert any("duplicate" in p for p in problems)
    _, problems = class_table_problems(pd.DataFrame({"name": ["a", " ", "b"], "prompt": ["", "a hole", ""]}))
    assert any("blank" in p and "row 2" in p for p in problems)


def test_images_are_served_only_from_inside_the_root(home):
    from pages._session import image_path, thumbnail

    with Project.open(home / "projects" / "textile") as project:
        some = project.pool().ids[0]
        assert image_path(project, some).is_file()
        assert thumbnail(project, some, 64)[:8] == b"\x89PNG\r\n\x1a\n"
        for bad in ("../projects/textile/project.db", "/etc/passwd", "x/../../y"):
            with pytest.raises(PathOutsideRoot):
                image_path(project, bad)


def test_cancel_leaves_labels_and_model_untouched(home):
    with Project.open(home / "projects" / "textile") as project:
        for it in project.current_batch().batch.items[:3]:
            project.label(it.image_id, project.classes[0])
        project.update_config(train={**TRAIN_FAST, "steps": 100_000})
    at = _app()
    at.switch_page("pages/train.py").run()
    at.button(key="trn_start").click().run()
    with Project.open(home / "projects" / "textile") as project:
        job = project.jobs().history("train")[0]
        _wait_for(lambda: project.jobs().status(job.id).step > 0, 60)
    at.run()  # the live fragment now shows the running job and its cancel button
    at.button(key="trn_cancel").click().run()
    with Project.open(home / "projects" / "textile") as project:
        final = project.jobs().wait(job.id, timeout=60)
        assert final.state == "cancelled"
        assert project.active_round() is None
        assert [r.status for r in project.store.rounds()] == ["cancelled"]
        assert len(project.store.current_labels()) == 3
        assert not list(project.path("checkpoints").glob("*.safetensors"))
    at.run()
    # a cancel is the user's own decision: shown as information, not as a red error
    assert any("cancelled" in e.value and "unchanged" in e.value for e in at.info)
    assert not any("cancelled" in e.value for e in at.error)


def test_import_demo_truth_csv_and_export_csv(home):
    from activekd_core.demo_data import read_truth

    at = _app()
    at.switch_page("pages/project.py").run()
    at.text_input(key="prj_annotator_input").input("dr. ada").run()
    at.button(key="prj_import_dirs").click().run()  # the demo's paths name no class: nothing to import
    assert not at.exception, [e.message for e in at.exception]
    assert any("Imported 0 labels" in s.value for s in at.success)
    truth_file = home / "data" / "textile-v2" / "truth.csv"  # the sidecar, imported on purpose
    at.file_uploader(key="prj_import_csv").set_value(("truth.csv", truth_file.read_bytes(), "text/csv")).run()
    at.button(key="prj_import_csv_go").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Imported 12 labels" in s.value for s in at.success)
    with _db(home) as db:
        labels = db.current_labels()
    assert len(labels) == 12 and labels == read_truth(truth_file)
    at.button(key="prj_exp_csv").click().run()
    out = home / "projects" / "textile" / "exports" / "labels.csv"
    table = pd.read_csv(out)
    assert len(table) == 12 and {"id", "label"} <= set(table.columns)
    assert dict(zip(table["id"], table["label"])) == labels
    assert at.get("download_button")  # offered for download too
    with _db(home) as db:
        assert {e.annotator for e in db.events()} == {"import:dr. ada"}


def test_annotator_name_survives_page_switches(home):
    at = _app()
    at.switch_page("pages/project.py").run()
    at.text_input(key="prj_annotator_input").input("dr. ada").run()
    at.switch_page("pages/train.py").run()
    at.switch_page("pages/label.py").run()
    at.button(key="lbl_key_c0").click().run()
    with _db(home) as db:
        assert [e.annotator for e in db.events()] == ["dr. ada"]


def _wait_for(predicate, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_pinned_project_folder(home, monkeypatch):
    folder = home / "projects" / "textile"
    monkeypatch.setenv("ACTIVEKD_PROJECT", str(folder))
    monkeypatch.setenv("ACTIVEKD_HOME", str(home / "elsewhere"))  # no demo is created there
    at = _app()
    assert len(_card_ids(at)) == 10
    at.switch_page("pages/project.py").run()
    assert any("pinned" in i.value for i in at.info)
    assert not [b for b in at.button if b.key == "prj_demo_digits"]
    assert not (home / "elsewhere").exists()


def test_annotator_name_is_bounded_and_visible_at_input(home):
    """A 200,000-character or bidi-override annotator name never becomes the annotator (issue 9, item 3)."""
    from activekd_core.display_text import NAME_MAX
    from pages._session import KEY_ANNOTATOR

    at = _app()
    at.switch_page("pages/project.py").run()
    box = at.text_input(key="prj_annotator_input")
    # the browser stops typing at max_chars; single-user mode starts from the OS user's name
    assert box.proto.max_chars == NAME_MAX and box.value == __import__("getpass").getuser()
    box.set_value("x" * 200_000).run()  # a crafted client ignores max_chars: Streamlit cuts it
    assert at.session_state[KEY_ANNOTATOR] == "x" * NAME_MAX
    at.text_input(key="prj_annotator_input").set_value("ada\u202eevil").run()
    assert any("invisible or control characters" in e.value for e in at.error)
    assert at.session_state[KEY_ANNOTATOR] == "x" * NAME_MAX
    assert at.text_input(key="prj_annotator_input").value == "x" * NAME_MAX  # the box shows the kept name
    at.text_input(key="prj_annotator_input").set_value("Dr. Ada").run()
    assert not at.error and at.session_state[KEY_ANNOTATOR] == "Dr. Ada"


def test_project_folder_recreated_while_running_gets_the_next_label(home):
    """Issue 9 item 6: the folder is removed and re-created at the same path while the server
    runs; the next click must land in the file now at that path (before: in the deleted file)."""
    at = _app()
    ids = _card_ids(at)
    key = _batch_key(at)
    pick(at, f"{key}_0", 0)
    folder = home / "projects" / "textile"
    shutil.rmtree(folder)
    with open_demo("textile", base_dir=home, per_class=4) as fresh:
        fresh.update_config(train=TRAIN_FAST)
        assert fresh.store.events() == []
    pick(at, f"{key}_1", 1)
    assert not at.exception, [e.message for e in at.exception]
    with _db(home) as db:
        classes = db.class_names()
        # The click after the re-creation is in the file at that path; nothing was acknowledged elsewhere.
        assert db.current_labels() == {ids[1]: classes[1]}
    at.run()
    assert any("1/10 done" in (p.proto.text or "") for p in at.get("progress"))  # the page shows the new file


def test_damaged_database_shows_how_to_recover_and_the_project_page_still_switches(home):
    """Issue 9 item 9: one damaged page gives a clear message (not a traceback) on every page."""
    import sqlite3

    db = home / "projects" / "textile" / "project.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'images'").fetchone()[0]
    conn.close()
    with open(db, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xa5" * page_size)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.message for e in at.exception]
    shown = " ".join(e.value for e in at.error)
    assert "damaged" in shown and ".recover" in shown
    at.switch_page("pages/project.py").run()
    assert not at.exception, [e.message for e in at.exception]
    at.button(key="prj_demo_digits").click().run()  # the session can still switch project
    assert not at.exception, [e.message for e in at.exception]
    assert (home / "projects" / "digits" / "project.db").is_file()
    assert not any("damaged" in e.value for e in at.error)


def test_undo_in_one_session_never_reverts_another_sessions_label(home):
    """Issue 9 item 5: both sessions are "expert"; B's Z undoes B's label, not A's newer one."""
    a, b = _app(), _app()
    ids, key = _card_ids(a), _batch_key(a)
    assert _card_ids(b) == ids
    pick(b, f"{key}_1", 1)
    pick(a, f"{key}_0", 0)  # A's label is the newest event
    b.button(key="lbl_key_undo").click().run()
    assert not b.exception
    with _db(home) as db:
        classes = db.class_names()
        assert db.current_labels() == {ids[0]: classes[0]}
    b.button(key="lbl_key_undo").click().run()  # nothing of B's is left to undo
    with _db(home) as db:
        assert db.current_labels() == {ids[0]: classes[0]}


def test_pages_warn_on_a_collapsed_student_and_show_labels_found_per_class(home):
    at = _app()
    key = _batch_key(at)
    for pos in range(4):
        pick(at, f"{key}_{pos}", min(pos, 1))  # classes 0, 1, 1, 1; class 2 not found
    folder = home / "projects" / "textile"
    with Project.open(folder) as project:
        record = project.retrain()
        classes = project.classes
        assert record.metrics["labels_per_class"] == [1, 3, 0]
        # Make the stored student a collapsed one: it answers classes[0] for every image.
        path = folder / "cache" / "student" / f"round_{record.id:04d}_probs.npy"
        probs = np.load(path)
        collapsed = np.full_like(probs, 0.05)
        collapsed[:, 0] = 0.9
        np.save(path, collapsed)
    st.cache_resource.clear()
    at = _app()  # Label page
    texts = [w.value for w in at.warning]
    assert any("student (round 1) predicts" in t and "almost everything" in t for t in texts), texts
    assert any("predicts" in t and "for nothing" in t for t in texts), texts
    assert not at.dataframe  # the labels-per-round table is drawn only while its expander is open
    at.session_state["lbl_round_table"] = True  # as a click on the expander does
    at.run()
    per_round = at.dataframe[0].value
    assert list(per_round["round"]) == ["1", "now"] and list(per_round[classes[2]]) == [0, 0]
    assert list(per_round[classes[1]]) == [3, 3]
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("almost everything" in w.value for w in at.warning)
    rounds, found = at.dataframe[0].value, at.dataframe[1].value
    assert "student audit balanced acc" in rounds.columns
    assert list(found[classes[0]]) == [1, 1]
    # the two rare-class options are off by default and reach the next round's training config
    assert at.toggle(key="trn_ce_cw").value is False and at.number_input(key="trn_la_tau").value == 0.0
    at.toggle(key="trn_ce_cw").set_value(True).run()
    at.number_input(key="trn_la_tau").set_value(1.0).run()
    with Project.open(folder) as project:
        cfg = project.train_config()
        assert cfg.ce_class_weight is True and cfg.teacher_logit_adjust == 1.0 and cfg.steps == TRAIN_FAST["steps"]


def test_project_page_display_recipe_inputs_are_checked(home, tmp_path):
    at = _app()
    at.switch_page("pages/project.py").run()
    assert [o for o in at.selectbox(key="prj_new_window").options if "40/400" in o]  # the CT presets are offered
    at.text_input(key="prj_new_bands").input("4, 3").run()
    assert any("Display recipe" in e.value and "1 or 3 band numbers" in e.value for e in at.error)
    at.text_input(key="prj_new_folder").input(str(tmp_path / "newproj")).run()
    at.text_input(key="prj_new_images").input(str(tmp_path)).run()
    at.button(key="prj_create").click().run()
    assert any("Not created" in e.value and "display recipe" in e.value for e in at.error)
    at.text_input(key="prj_new_bands").input("4, 3, 2").run()
    assert not any("Display recipe" in e.value for e in at.error)
    assert not (tmp_path / "newproj").exists()
