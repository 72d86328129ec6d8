"""Label keys per class and the Label page's remembered settings."""

from __future__ import annotations

import pytest

from activekd_core.label_keys import default_class_keys, parse_class_keys
from test_app_pages import APP, _batch_key, demo_images, home  # noqa: F401 (fixtures)


def test_number_words_get_their_own_digit() -> None:
    # "zero".."three" used to get keys 1-4, so key 3 labelled "two"
    assert default_class_keys(["zero", "one", "two", "three"]) == ["0", "1", "2", "3"]
    assert default_class_keys(["Three", "One"]) == ["3", "1"]
    assert default_class_keys(["one", "one again"]) == ["1", "2"]  # not all number words: positional
    assert default_class_keys(["one", "1"]) == ["1", "2"]  # the same digit twice: positional


def test_parse_class_keys() -> None:
    classes = ["cat", "dog", "bird"]
    assert parse_class_keys("a, d g", classes) == ["a", "d", "g"]
    assert parse_class_keys("  ", classes) == ["1", "2", "3"]
    for text, why in (("a d", "one key per class"), ("a d ab", "single letter"), ("a a d", "its own key"),
                      ("a d s", "taken"), ("a d é", "single letter"), ("a d !", "single letter")):
        with pytest.raises(ValueError, match=why):
            parse_class_keys(text, classes)


def test_project_keys_drive_the_keyboard_bar(home) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/project.py").run()
    at.text_input(key="prj_keys").input("q w e").run()
    assert not at.exception and not at.error
    at.switch_page("pages/label.py").run()
    shortcuts = {b.key: b.proto.shortcut for b in at.button if b.key in ("lbl_key_c0", "lbl_key_c1", "lbl_key_c2")}
    assert shortcuts == {"lbl_key_c0": "q", "lbl_key_c1": "w", "lbl_key_c2": "e"}
    at.switch_page("pages/project.py").run()
    at.text_input(key="prj_keys").input("q q e").run()
    assert any("its own key" in e.value for e in at.error)
    assert at.text_input(key="prj_keys").value == "q w e"  # kept


def test_view_settings_survive_the_batch_turnover_and_a_new_session(home) -> None:
    from streamlit.testing.v1 import AppTest

    from activekd_core.project import Project

    at = AppTest.from_file(APP, default_timeout=60).run()
    at.selectbox(key="lbl_cols").set_value(2).run()
    at.toggle(key="lbl_show_teacher").set_value(True).run()
    key = _batch_key(at)
    with Project.open(home / "projects" / "textile") as project:
        project.store.close_batches()  # the next run selects a new batch: the widgets are not drawn meanwhile
    at.run()
    import time

    deadline = time.monotonic() + 120
    while not [b for b in at.button if b.key and b.key.startswith("lbl_batch-")] and time.monotonic() < deadline:
        with Project.open(home / "projects" / "textile") as project:  # the next batch: prepared or selected
            for kind in ("prefetch", "select"):
                job = project.jobs().latest(kind)
                if job is not None:
                    project.jobs().wait(job.id, timeout=60)
        time.sleep(0.2)
        at.run()
    assert _batch_key(at) != key
    assert at.selectbox(key="lbl_cols").value == 2 and at.toggle(key="lbl_show_teacher").value is True
    other = AppTest.from_file(APP, default_timeout=60).run()  # the same annotator in a new browser session
    assert other.selectbox(key="lbl_cols").value == 2 and other.toggle(key="lbl_show_teacher").value is True
