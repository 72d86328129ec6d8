"""Chromium: in the compact card layout the image dominates each card, and a click still labels its image;
the sidebar's counts include what the page just did (a label, an import).

One server per test (a 12-image textile demo, batches of 10, at 1440x900; or a small
project in class sub-folders); labels are read back from the project database.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from browser_support import CHROMIUM, Server, served_browser  # noqa: E402
from label_layout import MEASURE_JS  # noqa: E402
from test_browser import _settled, _wait, home, playwright_api  # noqa: E402,F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: install Debian's chromium package"),
]

MIN_IMAGE_SHARE = 0.6  # of the card's height (the classic card: about a third)


def test_compact_card_image_dominates_and_a_click_labels_that_image(home: Path, tmp_path: Path) -> None:
    from activekd_core.store import Store

    db_path = home / "projects" / "textile" / "project.db"
    with Store.open(db_path) as s:
        batch = s.open_batch_current()
        classes = s.class_names()
    ids = [it.image_id for it in batch.items]
    key = f"lbl_batch-{batch.id}"
    server = Server(home, tmp_path / "streamlit.log")
    with served_browser(server, (1440, 900)) as (url, browser, page):
        page.set_default_timeout(60_000)
        page.goto(url)
        page.locator(".st-key-lbl_card_0 img").wait_for(state="visible", timeout=90_000)
        _settled(page)
        page.wait_for_function("[...document.images].every(i => i.complete)")
        cards = page.evaluate(MEASURE_JS)["cards"]
        assert len(cards) == len(ids)
        shares = [c["img_h"] / c["h"] for c in cards]
        assert min(shares) >= MIN_IMAGE_SHARE, shares
        assert sum(c["bottom"] <= 900 for c in cards) >= 1  # a whole card above the fold
        outlines = [page.locator(f".st-key-lbl_card_{pos}").evaluate("e => getComputedStyle(e).outlineStyle")
                    for pos in range(len(ids))]
        assert outlines == ["solid"] + ["none"] * (len(ids) - 1), outlines  # the focused card, outlined
        # each class button shows its key in front of the name, and the whole name with its key in its tooltip
        button = page.locator(f".st-key-{key}_3_card .akd-classes button[data-k='2']:visible").first
        assert button.locator(".akd-key").inner_text() == "3" and button.locator(".akd-name").inner_text() == classes[2]
        assert button.get_attribute("title") == f"Label as {classes[2]} (key 3 when focused)"

        button.click()
        _wait(lambda: _labels(db_path) == {ids[3]: classes[2]}, 30, "the label of card #4")
        card = page.locator(".st-key-lbl_card_3")
        _wait(lambda: f"labeled {classes[2]}" in card.inner_text(), 30, "card #4 to show its label")
        pressed = [page.locator(f".st-key-{key}_3_card .akd-classes button[data-k='{k}']:visible").first.get_attribute("aria-pressed")
                   for k in range(len(classes))]
        assert pressed == ["false", "false", "true"]  # the chosen class, shown pressed
        color = button.evaluate("b => getComputedStyle(b).backgroundColor")  # (hovered: a darker shade)
        red, _, blue = (int(v) for v in color[color.index("(") + 1:color.index(")")].split(",")[:3])
        assert blue > 120 and blue > 2 * red, color  # the theme's calm blue, not Streamlit's alarm red
        _wait(lambda: "1/12 labeled" in _sidebar(page), 30, "the sidebar to count the label")


def _labels(db_path: Path) -> dict[str, str]:
    from activekd_core.store import Store

    with Store.open(db_path) as s:
        return s.current_labels()


def _sidebar(page) -> str:
    return page.locator("[data-testid='stSidebar']").inner_text()


def test_sidebar_counts_include_an_import_made_on_the_project_page(tmp_path: Path) -> None:
    from PIL import Image

    from activekd_core.project import Project

    root = tmp_path / "images"
    for name, color in (("red", (220, 30, 30)), ("green", (30, 200, 40))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), tuple(c + 5 * i for c in color)).save(root / name / f"{i}.png")
    folder = tmp_path / "proj"
    Project.create(folder, root, [("red", ""), ("green", "")], teacher_spec={"kind": "standin"},
                   batch_size=4, strategy="random").close()
    server = Server(tmp_path / "home", tmp_path / "streamlit.log", env={"ACTIVEKD_PROJECT": str(folder)})
    with served_browser(server, (1440, 900)) as (url, browser, page):
        page.set_default_timeout(60_000)
        page.goto(url + "/project")
        page.locator(".st-key-prj_import_dirs button:visible").wait_for(timeout=90_000)
        _settled(page)
        assert "0/6 labeled" in _sidebar(page)
        page.locator(".st-key-prj_import_dirs button:visible").click()
        page.get_by_text("Imported 6 labels from sub-folder names.").wait_for()
        _settled(page)
        assert "6/6 labeled" in _sidebar(page)  # the same run as the import, not the next click
    assert len(_labels(folder / "project.db")) == 6


def test_compact_class_buttons_stay_one_line_with_the_whole_name_in_the_tooltip(tmp_path: Path) -> None:
    from PIL import Image

    from activekd_core.project import Project

    long_name = ("an unusually long class name, " * 3).strip()  # cut on its button; whole in its tooltip
    classes = ["red", "<b>mid</b> **green**", long_name]
    root = tmp_path / "images"
    root.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (40 * i, 90, 160)).save(root / f"{i}.png")
    folder = tmp_path / "proj"
    Project.create(folder, root, [(c, "") for c in classes], teacher_spec={"kind": "standin"},
                   batch_size=4, strategy="random").close()
    server = Server(tmp_path / "home", tmp_path / "streamlit.log", env={"ACTIVEKD_PROJECT": str(folder)})
    with served_browser(server, (1440, 900)) as (url, browser, page):
        page.set_default_timeout(60_000)
        page.goto(url)
        page.locator(".st-key-lbl_card_0 img").wait_for(state="visible", timeout=90_000)
        _settled(page)
        rows = page.evaluate("""() => [...document.querySelectorAll('[class*="st-key-lbl_batch-"][class*="_0_card"] .akd-classes button')]
            .map(b => { const name = b.querySelector('.akd-name');
              return {h: b.getBoundingClientRect().height, cut: b.scrollWidth > b.clientWidth, name: name.textContent,
                      html: name.innerHTML, title: b.title}; })""")
    assert len(rows) == 3, rows
    assert len({round(r["h"]) for r in rows}) == 1, rows  # one line each: the long name does not wrap
    assert rows[2]["cut"] and rows[2]["title"] == f"Label as {long_name} (key 3 when focused)", rows
    assert rows[1]["name"] == classes[1] and "<b>" not in rows[1]["html"].replace("&lt;b&gt;", ""), rows  # literal
