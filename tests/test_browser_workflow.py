"""Chromium: two users at once, Review relabel and bulk action, and a batch turnover with no empty grid.

One server per test on a 12-image textile demo (batches of 10); what the page did is read
back from the project database.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_support import ARGS, CHROMIUM, Server, served_browser  # noqa: E402
from test_browser import _settled, _wait, home, playwright_api  # noqa: E402,F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: install Debian's chromium package"),
]

# Flags in the page when the Label grid is ever without cards (checked every animation frame).
WATCH_EMPTY_GRID_JS = """() => {
  window.__akdEmptied = false;
  const check = () => {
    if (document.querySelectorAll("[class*='st-key-lbl_card_']").length === 0) window.__akdEmptied = true;
    if (!window.__akdStop) requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
}"""


def _store(home: Path):
    from activekd_core.store import Store

    return Store.open(home / "projects" / "textile" / "project.db")


def _button(page, key: str):
    return page.locator(f".st-key-{key} button:visible").first


def _class_button(page, card: str, k: int):
    """Class ``k``'s button on ``card`` (``f"{batch_key}_{pos}"``)."""
    return page.locator(f".st-key-{card}_card .akd-classes button[data-k='{k}']:visible").first


def test_two_users_label_and_undo_only_their_own(home: Path, tmp_path: Path) -> None:
    with _store(home) as s:
        batch = s.open_batch_current()
        classes = s.class_names()
    key = f"lbl_batch-{batch.id}"
    server = Server(home, tmp_path / "streamlit.log")
    url = server.start()
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            ada = browser.new_context().new_page()
            bob = browser.new_context().new_page()
            for page, name in ((ada, "ada"), (bob, "bob")):
                page.set_default_timeout(60_000)
                page.goto(f"{url}/?demo=textile&annotator={name}")
                _class_button(page, f"{key}_0", 0).wait_for(timeout=90_000)
                _settled(page)
            _class_button(bob, f"{key}_1", 1).click()
            _wait(lambda: len(_labels(home)) == 1, 30, "bob's label")
            _settled(bob)
            _class_button(ada, f"{key}_2", 2).click()
            _wait(lambda: len(_labels(home)) == 2, 30, "ada's label")
            _settled(ada)
            bob.mouse.click(5, 300)
            bob.keyboard.press("z")  # bob's undo reverts bob's label, never ada's newer one
            _wait(lambda: len(_labels(home)) == 1, 30, "bob's undo")
            with _store(home) as s:
                events = [(e.event, e.annotator) for e in s.events()]
                assert s.current_labels() == {batch.items[2].image_id: classes[2]}
            assert events == [("label", "bob"), ("label", "ada"), ("undo", "bob")]
            browser.close()
    finally:
        server.kill()


def _labels(home: Path) -> dict[str, str]:
    with _store(home) as s:
        return s.current_labels()


def test_review_relabel_and_bulk_label_in_chromium(home: Path, tmp_path: Path) -> None:
    from activekd_core.project import Project

    with Project.open(home / "projects" / "textile") as project:
        ids = project.pool().ids
        classes = project.classes
        project.label(ids[0], classes[0], annotator="someone")
    server = Server(home, tmp_path / "streamlit.log")
    with served_browser(server, (1500, 1300)) as (url, browser, page):
        page.set_default_timeout(60_000)
        page.goto(f"{url}/review?demo=textile&annotator=reviewer")
        page.get_by_text("12 image(s) match").wait_for(timeout=90_000)
        _settled(page)
        # relabel the first card through its selectbox
        page.locator(".st-key-rev_relabel_0").click()
        page.get_by_role("option", name=classes[2], exact=True).click()
        _wait(lambda: _labels(home).get(ids[0]) == classes[2], 30, "the relabel")
        _settled(page)
        # bulk: every unlabeled image as classes[1], after a confirmation that states the count
        page.locator(".st-key-rev_states").click()
        page.get_by_role("option", name="unlabeled", exact=True).click()
        page.keyboard.press("Escape")
        page.get_by_text("11 image(s) match").wait_for()
        _settled(page)
        page.locator(".st-key-rev_target").get_by_text("every matching image").click()
        _settled(page)
        page.locator(".st-key-rev_bulk_class").click()
        page.get_by_role("option", name=classes[1], exact=True).click()
        _settled(page)
        _button(page, "rev_bulk_go").click()
        page.get_by_text("Confirm: label 11 image(s)").wait_for()
        assert len(_labels(home)) == 1  # nothing before the confirmation
        _button(page, "rev_bulk_yes").click()
        _wait(lambda: len(_labels(home)) == 12, 30, "the bulk label")
        labels = _labels(home)
        assert sum(1 for c in labels.values() if c == classes[1]) == 11 and labels[ids[0]] == classes[2]
        with _store(home) as s:
            assert {e.annotator for e in s.events()} == {"someone", "reviewer"}


def test_batch_turnover_never_empties_the_grid(home: Path, tmp_path: Path) -> None:
    from activekd_core.project import Project

    with _store(home) as s:
        batch = s.open_batch_current()
    key = f"lbl_batch-{batch.id}"
    server = Server(home, tmp_path / "streamlit.log")
    with served_browser(server, (1500, 1300)) as (url, browser, page):
        page.set_default_timeout(60_000)
        page.goto(url)
        _class_button(page, f"{key}_0", 0).wait_for(timeout=90_000)
        _settled(page)
        for pos in range(9):
            _class_button(page, f"{key}_{pos}", pos % 3).scroll_into_view_if_needed()
            _class_button(page, f"{key}_{pos}", pos % 3).click()
            _wait(lambda: len(_labels(home)) == pos + 1, 30, f"label {pos + 1}")
            _settled(page)
        with Project.open(home / "projects" / "textile") as project:  # prepared while we labeled
            job = project.jobs().latest("prefetch")
            assert job is not None and project.jobs().wait(job.id, timeout=120).state == "done"
        page.evaluate(WATCH_EMPTY_GRID_JS)
        _class_button(page, f"{key}_9", 0).scroll_into_view_if_needed()
        _class_button(page, f"{key}_9", 0).click()
        _wait(lambda: _open_batch_id(home) != batch.id, 30, "the next batch to open")
        next_key = f"lbl_batch-{_open_batch_id(home)}"
        _class_button(page, f"{next_key}_0", 0).wait_for(timeout=30_000)
        page.evaluate("() => { window.__akdStop = true; }")
        assert page.evaluate("() => window.__akdEmptied") is False
        assert page.get_by_text("Next batch being prepared").count() == 0  # no wait shown


def test_a_late_next_batch_keeps_the_finished_grid_read_only(home: Path, tmp_path: Path) -> None:
    """When the batch prepared ahead is not ready at the last label, the finished grid stays
    (its decision buttons disabled, "Next batch being prepared") until the next grid replaces it."""
    from activekd_core.project import Project

    with _store(home) as s:
        batch = s.open_batch_current()
    key = f"lbl_batch-{batch.id}"
    server = Server(home, tmp_path / "streamlit.log")
    with served_browser(server, (1500, 1300)) as (url, browser, page):
        page.set_default_timeout(60_000)
        page.goto(url)
        _class_button(page, f"{key}_0", 0).wait_for(timeout=90_000)
        _settled(page)
        page.mouse.click(5, 300)  # keys go to the page
        for pos in range(9):
            page.keyboard.press("1")  # the focused card; focus moves on by itself
            _wait(lambda: len(_labels(home)) == pos + 1, 30, f"label {pos + 1}")
            _settled(page)
        with Project.open(home / "projects" / "textile") as project:
            job = project.jobs().latest("prefetch")
            assert job is not None and project.jobs().wait(job.id, timeout=120).state == "done"
            project.store.set_setting("prefetched_batch", None)  # as if it had not finished in time
        page.evaluate(WATCH_EMPTY_GRID_JS)
        page.keyboard.press("1")
        page.get_by_text("Next batch being prepared").wait_for(timeout=30_000)
        _wait(lambda: _class_button(page, f"{key}_9", 0).is_disabled(), 30, "the finished grid, read-only")
        assert _button(page, "lbl_key_undo").is_disabled()
        _wait(lambda: _open_batch_id(home) != batch.id, 120, "the next batch to be selected")
        next_key = f"lbl_batch-{_open_batch_id(home)}"
        _class_button(page, f"{next_key}_0", 0).wait_for(timeout=30_000)
        page.evaluate("() => { window.__akdStop = true; }")
        assert page.evaluate("() => window.__akdEmptied") is False
        assert not _class_button(page, f"{next_key}_0", 0).is_disabled()


def _open_batch_id(home: Path) -> int | None:
    with _store(home) as s:
        b = s.open_batch_current()
        return None if b is None else b.id


def test_keyboard_focus_scrolls_the_focused_card_into_view(home: Path, tmp_path: Path) -> None:
    with _store(home) as s:
        batch = s.open_batch_current()
    key = f"lbl_batch-{batch.id}"
    server = Server(home, tmp_path / "streamlit.log")
    url = server.start()
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 700})  # the last cards are below the fold
            page.set_default_timeout(60_000)
            page.goto(url)
            _class_button(page, f"{key}_0", 0).wait_for(timeout=90_000)
            _settled(page)
            page.mouse.click(5, 300)
            for _ in range(9):  # focus the tenth card with the arrow key
                page.keyboard.press("ArrowRight")
                _settled(page)
            box = page.locator(".st-key-lbl_card_9").bounding_box()
            assert box is not None
            assert box["y"] + 40 < 700 and box["y"] + box["height"] > 0, box  # on screen (it was at y=1800)
            browser.close()
    finally:
        server.kill()
