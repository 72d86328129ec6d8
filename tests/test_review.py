"""Review and correction: the view model, bulk actions, the revisit queue and the Review page."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from activekd_core.review_state import ReviewFilter, review_page
from activekd_core.project import Project, ProjectError
from test_project import make_images, new_project, siblings  # noqa: F401 (siblings: autouse fixture)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Ev:
    id: int
    event: str
    class_name: str | None
    annotator: str
    round: int | None
    time: str = "2026-01-01T00:00:00+00:00"


IDS = ["a", "b", "c", "d", "e", "f"]
CLASSES = ["x", "y", "z"]
CURRENT = {
    "a": Ev(5, "label", "x", "ann", 0),
    "b": Ev(9, "label", "y", "bob", 1),
    "c": Ev(7, "skip", None, "ann", 1),
    "d": Ev(2, "unsure", None, "bob", 0),
}
TEACHER = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .1, .8], [.4, .35, .25], [.5, .3, .2], [.1, .6, .3]], np.float32)
STUDENT = np.array([[.9, .05, .05], [.6, .3, .1], [.1, .1, .8], [.3, .4, .3], [.34, .33, .33], [.2, .7, .1]], np.float32)


def _ids(flt: ReviewFilter, **kw) -> list[str]:
    return [r.id for r in review_page(IDS, CLASSES, CURRENT, flt, audit_ids=["f"], teacher_probs=TEACHER,
                                      student_probs=STUDENT, **kw).rows]


def test_filters_by_hand() -> None:
    assert _ids(ReviewFilter(states=("labeled",))) == ["a", "b"]
    assert _ids(ReviewFilter(states=("skipped", "unsure"))) == ["c", "d"]
    assert _ids(ReviewFilter(states=("unlabeled",))) == ["e", "f"]
    assert _ids(ReviewFilter(states=("audit",))) == ["f"]
    assert _ids(ReviewFilter(classes=("y",))) == ["b"]
    assert _ids(ReviewFilter(annotators=("bob",))) == ["b", "d"]
    assert _ids(ReviewFilter(rounds=(1,))) == ["b", "c"]
    # student (the reference model once a round exists) predicts x x z y x y
    assert _ids(ReviewFilter(predicted=("x",))) == ["a", "b", "e"]
    # teacher x y z x x y vs student x x z y x y
    assert _ids(ReviewFilter(disagreement=True)) == ["b", "d"]
    assert _ids(ReviewFilter(confidence=(0.0, 0.5))) == ["d", "e"]
    assert _ids(ReviewFilter(states=("labeled", "unsure"), annotators=("bob",))) == ["b", "d"]


def test_sorting_and_paging() -> None:
    assert _ids(ReviewFilter(sort="recent")) == ["b", "c", "a", "d", "e", "f"]
    assert _ids(ReviewFilter(sort="confidence_asc")) == ["e", "d", "b", "f", "c", "a"]
    assert _ids(ReviewFilter(sort="confidence_desc"))[:2] == ["a", "c"]
    page = review_page(IDS, CLASSES, CURRENT, ReviewFilter(), page=5, per_page=4)
    assert (page.total, page.pages, page.page) == (6, 2, 1)  # clamped to the last page
    assert [r.id for r in page.rows] == ["e", "f"] and page.matching_ids == IDS
    first = review_page(IDS, CLASSES, CURRENT, ReviewFilter(), per_page=4, teacher_probs=TEACHER)
    assert first.model == "teacher" and first.rows[1].label == "y" and first.rows[1].annotator == "bob"
    assert first.rows[0].confidence == pytest.approx(0.8) and first.rows[0].margin == pytest.approx(0.7)


def test_without_models_model_filters_match_nothing() -> None:
    page = review_page(IDS, CLASSES, CURRENT, ReviewFilter(disagreement=True))
    assert page.total == 0 and page.model == ""
    with pytest.raises(ValueError, match="unknown review state"):
        ReviewFilter(states=("done",))
    with pytest.raises(ValueError, match="confidence range"):
        ReviewFilter(confidence=(0.8, 0.2))


@pytest.fixture
def project(tmp_path: Path):
    root = tmp_path / "images"
    truth = make_images(root, per_class=4)
    p = new_project(tmp_path, root)
    yield p, truth
    p.close()


def test_bulk_label_clear_and_history(project) -> None:
    p, truth = project
    ids = sorted(truth)[:4]
    p.label(ids[0], "red", annotator="ann", session="s1")
    p.skip(ids[0], annotator="ann", session="s1")
    assert p.bulk_label(ids, "green", annotator="rev", session="s2") == 4
    assert all(p.store.current_labels()[i] == "green" for i in ids)
    assert [e.event for e in p.image_history(ids[0])] == ["label", "skip", "label"]
    assert p.bulk_clear(ids[:2] + [sorted(truth)[9]], annotator="rev") == 2  # the unlabeled one is unchanged
    assert ids[0] not in p.store.current() and ids[1] not in p.store.current()
    history = p.image_history(ids[0])
    assert [e.event for e in history] == ["label", "skip", "label", "undo", "undo", "undo"]
    assert {e.undoes for e in history if e.event == "undo"} == {e.id for e in history if e.event != "undo"}
    assert p.review(ReviewFilter(states=("labeled",))).matching_ids == ids[2:]
    assert p.review_choices()[0] == ["rev"]


def test_revisit_queue_needs_a_new_decision(project) -> None:
    p, truth = project
    ids = sorted(truth)
    p.skip(ids[0], annotator="ann")
    p.unsure(ids[1], annotator="ann")
    p.label(ids[2], "red", annotator="ann")
    assert p.revisit_ids() == ids[:2]
    view = p.queue_revisit()
    assert [it.image_id for it in view.batch.items] == ids[:2]
    assert view.done == 0 and not view.complete  # skipped earlier does not count as done
    p.label(ids[0], "blue", annotator="ann")
    p.skip(ids[1], annotator="ann")  # skipped again: a decision made now
    view = p.current_batch()
    assert view.done == 2 and view.complete
    assert p.revisit_ids() == [ids[1]]
    with pytest.raises(ProjectError, match="no skipped or unsure"):
        p.queue_revisit([ids[2]])


# ---- the page ------------------------------------------------------------------------------------


def test_review_page_relabels_and_bulk_labels_with_confirmation(tmp_path, monkeypatch) -> None:
    sys.path.insert(0, str(ROOT))
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from activekd_core.demo_data import materialize_demo
    from activekd_core.project import open_demo
    from activekd_core.store import Store

    materialize_demo("textile", tmp_path / "data", per_class=4)
    monkeypatch.setenv("ACTIVEKD_HOME", str(tmp_path))
    monkeypatch.setenv("ACTIVEKD_DEMO_PER_CLASS", "4")
    monkeypatch.delenv("ACTIVEKD_PROJECT", raising=False)
    with open_demo("textile", base_dir=tmp_path, per_class=4) as demo:
        ids = demo.pool().ids
        demo.label(ids[0], demo.classes[0], annotator="someone")
        classes = demo.classes
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    at.switch_page("pages/review.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("12 image(s) match" in c.value for c in at.caption)
    # relabel the first card: one event, by this session's annotator
    at.selectbox(key="rev_relabel_0").set_value(classes[2]).run()
    assert not at.exception, [e.message for e in at.exception]
    db = home_db = Store.open(tmp_path / "projects" / "textile" / "project.db")
    try:
        assert home_db.current_labels()[ids[0]] == classes[2]
        assert [e.event for e in db.events(ids[0])] == ["label", "label"]
        # bulk: every labeled image... first filter to unlabeled, then label all matching after confirming
        at.multiselect(key="rev_states").set_value(["unlabeled"]).run()
        assert any("11 image(s) match" in c.value for c in at.caption)
        at.radio(key="rev_target").set_value("every matching image").run()
        at.selectbox(key="rev_bulk_class").set_value(classes[1]).run()
        at.button(key="rev_bulk_go").click().run()
        assert any("Confirm: label 11 image(s)" in w.value for w in at.warning)
        assert len(db.current_labels()) == 1  # nothing written before the confirmation
        at.button(key="rev_bulk_yes").click().run()
        assert not at.exception, [e.message for e in at.exception]
        labels = db.current_labels()
        assert len(labels) == 12 and sum(1 for c in labels.values() if c == classes[1]) == 11
        assert any("Labeled 11 image(s)" in s.value for s in at.success)
    finally:
        db.close()
        st.cache_resource.clear()


# ---- the next batch prepared during the current one -------------------------------------------


def test_prefetched_batch_is_what_next_batch_would_pick(tmp_path: Path) -> None:
    """With a teacher that does not learn from labels, the prepared batch equals the later selection."""
    results = []
    for name in ("ahead", "after"):
        root = tmp_path / name / "images"
        truth = make_images(root, per_class=6)
        p = new_project(tmp_path / name, root, batch_size=3)
        try:
            view = p.ensure_batch()
            batch_ids = [it.image_id for it in view.batch.items]
            if name == "ahead":
                assert p.prefetch_wanted() and p.prefetch_next_batch()
                assert not p.prefetch_wanted()  # prepared once per batch
                assert p.promote_prefetched() is None  # not while the batch is open
            for i in batch_ids:
                p.label(i, truth[i], annotator="ann")
            nxt = p.promote_prefetched() if name == "ahead" else p.next_batch()
            assert nxt is not None
            results.append([it.image_id for it in nxt.batch.items])
            assert not set(results[-1]) & set(batch_ids)
        finally:
            p.close()
    assert results[0] == results[1]


def test_prefetched_batch_is_dropped_when_stale(project) -> None:
    p, truth = project
    view = p.ensure_batch()
    assert p.prefetch_next_batch()
    ready = p.store.get_setting("prefetched_batch")
    first = ready["picks"][0][0]
    p.label(first, truth[first], annotator="rev")  # labeled from Review meanwhile: left out
    for it in view.batch.items:
        p.skip(it.image_id, annotator="ann")
    promoted = p.promote_prefetched()
    assert promoted is not None and first not in [it.image_id for it in promoted.batch.items]
    assert len(promoted.batch.items) == len(ready["picks"]) - 1
    assert p.promote_prefetched() is None  # used once
    # prepared for a batch that is no longer the latest: ignored and cleared
    assert p.prefetch_next_batch()
    p.queue_images([i for i in p.pool().ids if i not in p.store.current()][:2])
    for it in p.current_batch().batch.items:
        p.skip(it.image_id, annotator="ann")
    assert p.promote_prefetched() is None and p.store.get_setting("prefetched_batch") is None


def test_retrain_keeps_a_hand_made_queue_and_dismiss_closes_it(project, monkeypatch) -> None:
    p, truth = project
    ids = sorted(truth)
    for i in ids[:6]:
        p.label(i, truth[i], annotator="ann")
    queue = [i for i in ids[6:] if i not in p.store.current()][:3]
    p.queue_images(queue, reason="explore selection")
    p.retrain()
    view = p.current_batch()
    assert view is not None and [it.image_id for it in view.batch.items] == queue  # used to be closed here
    assert p.dismiss_queue() and p.current_batch() is None
    assert not p.dismiss_queue()


def test_undo_limited_to_images_on_screen(project) -> None:
    """Z after a batch ended used to un-label an image that was no longer on screen."""
    p, truth = project
    ids = sorted(truth)
    p.label(ids[0], truth[ids[0]], annotator="ann", session="s")
    assert p.undo(annotator="ann", session="s", image_ids=ids[1:4]) is None  # the label is not on screen
    assert p.store.current_labels() == {ids[0]: truth[ids[0]]}
    p.label(ids[2], truth[ids[2]], annotator="ann", session="s")
    p.label(ids[5], truth[ids[5]], annotator="ann", session="s")
    undone = p.undo(annotator="ann", session="s", image_ids=ids[1:4])
    assert undone is not None and undone.image_id == ids[2]  # the newest one on screen, not ids[5]
    assert p.undo(annotator="ann", session="s", image_ids=[]) is None


def test_change_teacher_keeps_labels_and_history(project) -> None:
    p, truth = project
    first = sorted(truth)[0]
    p.label(first, truth[first], annotator="ann")
    with pytest.raises(ProjectError, match="kind"):
        p.change_teacher({})
    p.change_teacher({"kind": "other-fake"}, note={"source": "Project page"})
    assert p.config["teacher_spec"] == {"kind": "other-fake"}
    (entry,) = p.teacher_history()
    assert entry["before"]["kind"] == "fake" and entry["after"]["kind"] == "other-fake"
    assert entry["source"] == "Project page" and entry["time"]
    assert p.store.current_labels() == {first: truth[first]}  # labels untouched


def test_retrain_closes_a_started_batch_unless_asked_to_keep_it(project) -> None:
    p, truth = project
    ids = sorted(truth)
    for i in ids[:5]:
        p.label(i, truth[i], annotator="ann")
    view = p.ensure_batch()
    p.label(view.batch.items[0].image_id, truth[view.batch.items[0].image_id], annotator="ann")
    p.retrain(keep_batch_in_progress=True)  # the Label page's retrain: the expert keeps the started batch
    assert p.current_batch() is not None and p.current_batch().batch.id == view.batch.id
    p.retrain()  # the Train page's: the next batch comes from the new student
    assert p.current_batch() is None
