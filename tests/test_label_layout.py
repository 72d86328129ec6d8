"""The Label page's compact card layout: its texts (view model) and its preference (AppTest).

The browser measurement (the image's share of the card, a click on a compact card) is in
``tests/test_browser_label_layout.py``.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from activekd_core.project import Project  # noqa: E402
from activekd_core.store import LabelEvent  # noqa: E402
from activekd_core.view_models.label import card_detail, class_button_title, pick_reason  # noqa: E402
from test_app_pages import _app, _batch_key, _card_ids, _db, demo_images, home  # noqa: E402,F401
from button_rows import class_row, class_rows, panel_texts, pick  # noqa: E402


def _event(event: str, class_name: str | None, annotator: str) -> LabelEvent:
    return LabelEvent(id=1, image_id="a.png", event=event, class_name=class_name, annotator=annotator, session="s",
                      time="2026-11-30T08:00:00", round=1, strategy=None, undoes=None)


def _joined(segments) -> str:
    return "".join(text for text, _style in segments)


def test_card_detail_puts_a_decision_first_and_an_open_state_last() -> None:
    open_line = card_detail(2, True, None, "pcoreset", 0.41234, ("nominal", 0.853))
    assert _joined(open_line) == "#3 · focused · Teacher suggests nominal (85%) · score 0.412 · not labeled yet"
    assert [t for t, style in open_line if style == "strong"] == ["#3", "nominal"]
    assert [t for t, style in open_line if style == "focus"] == ["focused"]
    done = card_detail(0, False, _event("label", "x", "ada"), "audit", None, None)
    assert _joined(done) == "#1 · labeled x by ada · audit image"
    skipped = card_detail(4, False, _event("skip", None, "ada"), "random", 0.5, None)
    assert _joined(skipped) == "#5 · skipped · score 0.5"


def test_card_texts_are_plain_bounded_and_literal() -> None:
    hostile = "**bold** [x](http://e) <b>x</b>"
    line = card_detail(0, False, None, "random", None, (hostile, 0.5))
    assert (hostile, "strong") in line  # plain text for textContent: no Markdown escapes, no markup
    huge = card_detail(0, False, _event("label", "y" * 10**6, "\u202e" * 3), "r", None, None)
    assert len(_joined(huge)) < 500 and "\\u202e" in _joined(huge)  # bounded; invisible characters shown
    assert pick_reason("pcoreset", 0.41234, 2, "distance to nearest labeled") == (
        "Pick #3 of pcoreset. Score 0.4123: distance to nearest labeled.")
    assert pick_reason("audit", None, 0, "score").startswith("Audit image")
    # a class button's tooltip is plain text (an HTML title): whole, bounded, invisible characters shown
    assert class_button_title("**a** [x](y)", "1") == "Label as **a** [x](y) (key 1 when focused)"
    assert class_button_title("eleventh", None) == "Label as eleventh"
    assert "\\u202e" in class_button_title("a\u202eb", None) and len(class_button_title("x" * 10**6, None)) < 1000


def test_compact_cards_are_the_default_and_a_remembered_choice(home: Path) -> None:
    at = _app()
    assert at.toggle(key="lbl_compact").value is True  # a new user starts compact
    with _db(home) as db:
        batch = db.open_batch_current()
        classes = db.class_names()
    ids = [it.image_id for it in batch.items]
    assert _card_ids(at) == ids
    key = _batch_key(at)
    row = class_row(at, f"{key}_0")
    assert row.labels == classes and row.values == classes and row.hints == ["1", "2", "3"]  # names literal, whole; keys in front
    assert row.titles[1] == f"Label as {classes[1]} (key 2 when focused)"
    assert [k for k, r in class_rows(at).items() if r.focused] == [f"{key}_0_classes"]  # the outlined card
    assert not any(p.proto.popover.label == "Why this image?" for p in at.get("popover"))  # the why is a tooltip now
    head = panel_texts(at, f"{key}_0")
    assert head[0] == ids[0] and head[1].startswith("#1 · focused ·") and "not labeled yet" in head[1]

    pick(at, f"{key}_2", 1)  # a click on a compact card labels that image
    assert not at.exception, [e.message for e in at.exception]
    with _db(home) as db:
        assert db.current_labels() == {ids[2]: classes[1]}
    assert panel_texts(at, f"{key}_2")[1].startswith(f"#3 · labeled {classes[1]} by ")

    at.toggle(key="lbl_compact").set_value(False).run()  # the classic card is one click away
    assert sum(p.proto.popover.label == "Why this image?" for p in at.get("popover")) == len(ids)
    with Project.open(home / "projects" / "textile") as project:
        assert project.view_prefs(getpass.getuser())["lbl_compact"] is False
    again = _app()  # a new session of the same annotator keeps the choice
    assert again.toggle(key="lbl_compact").value is False
