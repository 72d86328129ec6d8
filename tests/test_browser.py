"""A real browser against ``streamlit run app.py``: label, undo, retrain, kill, restart.

Chromium is Debian's (``/usr/bin/chromium``) driven by Playwright's Python package (never
``playwright install``). The server runs on 127.0.0.1 with ``ACTIVEKD_HOME`` in a temp
folder and a 12-image textile demo. Everything the test expects is read back from the
project database through :class:`activekd_core.store.Store`.

Printed (run with ``-s``): the click-to-rerun times measured from the browser (click until
the card shows the new label) and screenshots under ``/tmp/shots``.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path("/tmp/shots")
TRAIN_FAST = {"steps": 4, "batch_labeled": 8, "batch_unlabeled": 8, "image_size": 16, "augment": False}

# In the page: click the visible button, then poll each animation frame until the card shows `text`.
CLICK_TO_RERUN_JS = """([buttonSel, cardSel, text]) => new Promise((resolve, reject) => {
  const button = [...document.querySelectorAll(buttonSel)].find(b => b.offsetParent !== null);
  if (!button) { reject(new Error('no visible ' + buttonSel)); return; }
  const t0 = performance.now();
  button.click();
  const check = () => {
    const card = document.querySelector(cardSel);
    if (card && card.innerText.includes(text) && !card.closest('[data-stale="true"]')) resolve(performance.now() - t0);
    else if (performance.now() - t0 > 30000) reject(new Error('timeout waiting for ' + text));
    else requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
})"""

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_support import ARGS, CHROMIUM, Server, served_browser  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: install Debian's chromium package"),
]

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


def _wait(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture()
def home(tmp_path):
    from activekd_core.project import open_demo

    with open_demo("textile", base_dir=tmp_path, per_class=4) as project:
        project.update_config(train=TRAIN_FAST)
    return tmp_path


def test_label_retrain_kill_restart_in_chromium(home, tmp_path):
    from activekd_core.store import Store

    db_path = home / "projects" / "textile" / "project.db"
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)

    def db() -> Store:
        return Store.open(db_path)

    with db() as s:
        classes = s.class_names()
        batch = s.open_batch_current()
    ids = [it.image_id for it in batch.items]
    key = f"lbl_batch-{batch.id}"

    server = Server(home, tmp_path / "streamlit.log", env={"ACTIVEKD_SHOW_TIMINGS": "1"})
    url = server.start()
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.locator(f".st-key-{key}_0_card .akd-classes button[data-k='0']:visible").wait_for(state="visible", timeout=90_000)
            page.locator(".st-key-lbl_card_0 img").wait_for(state="visible")
            _settled(page)
            page.screenshot(path=str(SHOTS / "01_label_grid.png"))

            def card_text(pos: int) -> str:
                return page.locator(f".st-key-lbl_card_{pos}").inner_text()

            expected: dict[str, str] = {}
            times = []
            # --- by click: images #2, #1, #4, #6 (each click waits for the page to show it)
            for pos, k in ((1, 1), (0, 0), (3, 1), (5, 2)):
                page.locator(f".st-key-{key}_{pos}_card .akd-classes button[data-k='{k}']:visible").scroll_into_view_if_needed()
                _settled(page)
                args = [f".st-key-{key}_{pos}_card .akd-classes button[data-k='{k}']", f".st-key-lbl_card_{pos}", f"labeled {classes[k]}"]
                times.append(page.evaluate(CLICK_TO_RERUN_JS, args) / 1000)
                expected[ids[pos]] = classes[k]
            click_times = list(times)
            server_ms = page.get_by_text("Last action saved and page redrawn in").inner_text()
            with db() as s:
                assert s.current_labels() == expected
            # focus moved to the first open image after #6: #7. Keyboard from here.
            page.mouse.click(5, 400)  # focus the document, not a widget
            for keyname, k in (("2", 1), ("3", 2), ("1", 0)):
                n_before = len(expected)
                with db() as s:
                    before = set(s.current_labels())
                t0 = time.perf_counter()
                page.keyboard.press(keyname)
                got = _wait(lambda: (lambda c: c if len(c) > n_before else None)(_labels(db)), 30,
                            f"key {keyname} to label an image")
                (new_id,) = set(got) - before
                _wait(lambda: f"labeled {classes[k]}" in card_text(ids.index(new_id)), 30, "card update", 0.01)
                times.append(time.perf_counter() - t0)
                assert got[new_id] == classes[k]
                expected[new_id] = classes[k]
            assert [i for i in ids if i in expected] == [ids[0], ids[1], ids[3], ids[5], ids[6], ids[7], ids[8]]
            _settled(page)
            page.screenshot(path=str(SHOTS / "02_labeled_by_click_and_keys.png"))
            # --- undo the last one with Z
            page.keyboard.press("z")
            _wait(lambda: ids[8] not in _labels(db), 30, "undo to reach the database")
            del expected[ids[8]]
            _wait(lambda: "not labeled yet" in card_text(8), 30, "card 9 to show the undo")
            with db() as s:
                assert s.current_labels() == expected
                assert [e.event for e in s.events()][-1] == "undo"
            # --- focus mode with zoom
            page.keyboard.press("f")
            page.get_by_text("Back to the grid").wait_for()
            _settled(page)
            page.screenshot(path=str(SHOTS / "03_focus_mode.png"), )
            page.get_by_text("Back to the grid").click()
            page.locator(".st-key-lbl_card_9").wait_for()

            # --- retrain, clicked in two browser sessions: one job runs
            page.get_by_role("link", name="Train").click()
            start = page.locator(".st-key-trn_start button:visible")
            start.wait_for()
            other = browser.new_page(viewport={"width": 1300, "height": 900})
            other.set_default_timeout(60_000)
            other.goto(url + "/train")
            other.locator(".st-key-trn_start button:visible").wait_for(timeout=90_000)
            start.click()
            other.locator(".st-key-trn_start button:visible").click()
            other.get_by_text("Already training").or_(other.get_by_text("Training started")).wait_for()
            page.get_by_text("finished in").wait_for(timeout=180_000)
            page.locator("[data-testid='stDataFrame']").first.wait_for()  # rounds; labels per class follows
            _settled(page)
            page.screenshot(path=str(SHOTS / "04_train_done.png"), )
            with db() as s:
                jobs = s.query("SELECT state FROM jobs WHERE kind = 'train'")
                assert [r[0] for r in jobs] == ["done"]
                rounds = s.rounds()
                assert [(r.status, r.n_labeled) for r in rounds] == [("done", len(expected))]
                assert s.current_labels() == expected
            other.close()

            # --- back to labeling: the next batch comes from the new student
            page.get_by_role("link", name="Label").click()
            _wait(lambda: _open_batch(db) is not None, 60, "the next batch")
            batch2 = _open_batch(db)
            key2 = f"lbl_batch-{batch2.id}"
            page.locator(f".st-key-{key2}_0_card .akd-classes button[data-k='1']:visible").click()
            expected[batch2.items[0].image_id] = classes[1]
            _wait(lambda: _labels(db) == expected, 30, "the label in batch 2")
            page.locator(f".st-key-lbl_card_0").get_by_text(f"labeled {classes[1]}").wait_for()
            codes = page.locator("[class*='st-key-lbl_card_'] code")
            _wait(lambda: codes.count() == len(batch2.items), 60, "every card of the batch")
            _settled(page)
            shown_before = codes.all_inner_texts()
            browser.close()

        # --- crash: SIGKILL the server, restart it, same labels and same batch
        server.kill()
        url = server.start()
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.set_default_timeout(60_000)
            # the restarted server's first request is a deep link: app.py's navigation must still be used
            page.goto(url + "/train")
            page.locator(".st-key-trn_start button:visible").wait_for(timeout=90_000)
            nav = page.locator("[data-testid='stSidebarNav']").inner_text()
            assert "Label" in nav and "Project" in nav and "session" not in nav, nav
            page.get_by_role("link", name="Label").click()
            page.locator(f".st-key-{key2}_0_card .akd-classes button[data-k='0']:visible").wait_for(state="visible", timeout=90_000)
            page.locator(".st-key-lbl_card_0").get_by_text(f"labeled {classes[1]}").wait_for()
            page.locator(".st-key-lbl_card_1").get_by_text("focused").wait_for()  # first open image
            codes = page.locator("[class*='st-key-lbl_card_'] code")
            _wait(lambda: codes.count() == len(batch2.items), 60, "every card of the batch")
            _settled(page)
            shown_after = codes.all_inner_texts()
            assert shown_after == shown_before == [it.image_id for it in batch2.items]
            _settled(page)
            page.screenshot(path=str(SHOTS / "05_after_restart.png"))
            page.get_by_role("link", name="Project").click()
            page.get_by_text("Open a project").wait_for()
            page.get_by_text("Labels CSV", exact=True).wait_for()
            _settled(page)
            page.screenshot(path=str(SHOTS / "06_project_page.png"))
            browser.close()
        with db() as s:
            assert s.integrity_check() == "ok"
            assert s.current_labels() == expected
            assert _open_batch(db).id == batch2.id
    finally:
        server.kill()
    key_times = times[len(click_times):]
    print(f"\nclick-to-rerun in the browser (click until the card shows the new label, measured in the page), "
          f"n={len(click_times)}: median {1000 * statistics.median(click_times):.0f} ms, "
          f"all {[round(1000 * t) for t in click_times]}")
    print(f"server side, last click: {server_ms}")
    print(f"key-to-rerun (Playwright key press until the database and the card show it), n={len(key_times)}: "
          f"median {1000 * statistics.median(key_times):.0f} ms, all {[round(1000 * t) for t in key_times]}")


def _settled(page, timeout: float = 30.0) -> None:
    """Wait until the script run has finished (no stale elements left on screen)."""
    time.sleep(0.3)
    page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0",
                           timeout=timeout * 1000)
    time.sleep(0.2)


def _labels(db) -> dict[str, str]:
    with db() as s:
        return s.current_labels()


def _open_batch(db):
    with db() as s:
        return s.open_batch_current()


def test_collapse_warning_and_labels_per_class_in_chromium(tmp_path):
    """An imbalanced project (every label 'nominal'): both pages say the model collapsed, in a real browser."""
    from activekd_core.demo_data import truth_for_root
    from activekd_core.project import open_demo

    with open_demo("textile", base_dir=tmp_path, per_class=4) as project:
        project.update_config(train=TRAIN_FAST)
        truth = truth_for_root(project.pool().root)
        for image_id in [i for i in project.pool().ids if truth[i] == "nominal"]:
            project.label(image_id, "nominal")
        project.retrain()  # the few-shot stand-in teacher has seen one class: it answers 'nominal' everywhere
    server = Server(tmp_path, tmp_path / "server.log")
    with served_browser(server) as (url, browser, page):
        page.goto(url + "/train")
        warning = page.get_by_text("The teacher predicts 'nominal' for almost everything")
        warning.wait_for(timeout=90_000)
        assert "12 of 12 images" in warning.inner_text()
        page.get_by_text("The teacher predicts 'global defect' for nothing").wait_for()
        page.get_by_text("Labels found per class").first.wait_for()
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "10_collapse_train.png"), full_page=True)
        page.goto(url)
        page.get_by_text("The teacher predicts 'nominal' for almost everything").wait_for(timeout=90_000)
        expander = page.locator("[data-testid='stExpander']").filter(has_text="Labels found per class per round")
        expander.wait_for()
        assert expander.locator("[data-testid='stDataFrame']").count() == 0  # drawn only once opened
        expander.get_by_text("Labels found per class per round").click()
        expander.locator("[data-testid='stDataFrame']").wait_for(timeout=30_000)
