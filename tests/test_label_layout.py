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
from activekd_core.view_models.label import card_detail, class_button_help, key_hint_css  # noqa: E402
from test_app_pages import _app, _batch_key, _card_ids, _db, demo_images, home  # noqa: E402,F401


def test_card_detail_puts_a_decision_first_and_an_open_state_last() -> None:
    open_line = card_detail(2, True, "not labeled yet", False, "pcoreset", 0.41234, ("nominal", 0.853))
    assert open_line == ("**#3** · :blue[focused] · Teacher suggests **nominal** (85%) · score 0.412 · "
                         "not labeled yet")
    done = card_detail(0, False, "labeled **x** by ada", True, "audit", None, None)
    assert done == "**#1** · labeled **x** by ada · audit image"


def test_card_texts_show_hostile_class_names_literally() -> None:
    line = card_detail(0, False, "not labeled yet", False, "random", None, ("**bold** [x](http://e)", 0.5))
    assert "\\*\\*bold\\*\\* \\[x\\]" in line  # escaped: no bold, no link
    assert class_button_help("a_b*", "1").startswith("Label as a\\_b\\*") and "key 1" in class_button_help("a", "1")
    assert "key" not in class_button_help("eleventh", None)


def test_key_hints_write_only_single_letters_and_digits_into_the_style_sheet() -> None:
    css = key_hint_css(".row", ["1", '"', "a", "}x", "é"])
    assert '.row > div:nth-child(1) button p::before { content: "1"; }' in css
    assert '.row > div:nth-child(3) button p::before { content: "a"; }' in css
    assert css.count("content") == 2  # the quote, the brace and the non-ASCII letter get no hint


def test_compact_cards_are_the_default_and_a_remembered_choice(home: Path) -> None:
    at = _app()
    assert at.toggle(key="lbl_compact").value is True  # a new user starts compact
    with _db(home) as db:
        batch = db.open_batch_current()
        classes = db.class_names()
    ids = [it.image_id for it in batch.items]
    assert _card_ids(at) == ids
    key = _batch_key(at)
    assert [at.button(key=f"{key}_0_c{k}").label for k in range(3)] == classes  # names literal, whole
    assert "key 2" in at.button(key=f"{key}_0_c1").help
    assert not any(p.proto.popover.label == "Why this image?" for p in at.get("popover"))  # the why is a tooltip now
    assert any(c.value.startswith("**#1** · :blue[focused]") and c.help for c in at.caption)

    at.button(key=f"{key}_2_c1").click().run()  # a click on a compact card labels that image
    assert not at.exception, [e.message for e in at.exception]
    with _db(home) as db:
        assert db.current_labels() == {ids[2]: classes[1]}
    assert any(c.value.startswith("**#3** · labeled **") for c in at.caption)

    at.toggle(key="lbl_compact").set_value(False).run()  # the classic card is one click away
    assert sum(p.proto.popover.label == "Why this image?" for p in at.get("popover")) == len(ids)
    with Project.open(home / "projects" / "textile") as project:
        assert project.view_prefs(getpass.getuser())["lbl_compact"] is False
    again = _app()  # a new session of the same annotator keeps the choice
    assert again.toggle(key="lbl_compact").value is False
