"""Chromium: the Project page's class editor keeps its place while a person types class names.

Each finished cell edit (Tab or Enter) reruns the page. The "Create a project" expander used to
be drawn anew, closed, by that rerun when a project was open, so the table vanished after the
first name and the next keystrokes went nowhere. The test types names and leaves each cell with
Tab, as a person filling a form does, and checks that the page received every name, that the
"at least two classes" request waits for the submit, and that submitting one class is refused.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_support import CHROMIUM, Server, served_browser  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: install Debian's chromium package"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

ROW_PX = 35  # the data editor's header and row height


def _settle(page) -> None:
    """Wait until no element is stale (the rerun has finished drawing)."""
    page.wait_for_function("!document.querySelector('[data-stale=\"true\"]')")
    time.sleep(0.5)


def _type_in_cell(page, row: int, text: str) -> None:
    """Select the class-name cell of ``row`` (0 = first data row), type ``text`` and leave it with Tab."""
    _settle(page)
    grid = page.locator("[data-testid=stDataFrame]").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    assert box is not None
    x, y = box["x"] + 60, box["y"] + ROW_PX * (row + 1) + ROW_PX / 2
    page.mouse.click(x, y)  # focuses the grid (and may only do that when another cell was selected)
    time.sleep(0.4)
    page.mouse.click(x, y)  # selects the cell, or opens its editor when it was selected already
    time.sleep(0.4)
    page.keyboard.type(text, delay=80)  # a printable key opens the editor of a selected cell
    page.keyboard.press("Tab")


def test_class_editor_commits_on_tab_and_asks_for_two_classes_on_submit(tmp_path: Path) -> None:
    server = Server(tmp_path / "home", tmp_path / "streamlit.log")
    (tmp_path / "home").mkdir()
    with served_browser(server, (1400, 1000)) as (url, browser, page):
        page.set_default_timeout(90_000)
        page.goto(url + "/project")
        page.get_by_text("Demo: textile").first.wait_for()  # a project is open: the expander starts closed
        page.get_by_text("Create a project", exact=True).first.click()
        grid = page.locator("[data-testid=stDataFrame]").first
        grid.wait_for()
        grid.scroll_into_view_if_needed()
        time.sleep(0.5)
        hint = page.get_by_text("Add at least two classes.")
        _type_in_cell(page, 0, "scratch")
        # the rerun after the edit keeps the editor open; one class is not an error while typing
        _settle(page)
        assert grid.is_visible()
        assert hint.is_visible()
        assert page.locator("[data-testid=stAlertContentError]").count() == 0
        page.get_by_role("button", name="Create project").click()
        error = page.locator("[data-testid=stAlertContentError]").filter(has_text="Not created")
        error.wait_for()
        assert "class" in error.inner_text()
        _type_in_cell(page, 1, "dent")
        try:
            hint.wait_for(state="detached")  # the page has both names, received on Tab
        finally:
            page.screenshot(path=str(tmp_path / "class_editor.png"), full_page=True)
        assert grid.is_visible()
