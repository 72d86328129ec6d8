"""What a new grid's buttons cost the browser: st.button against our button-row component.

A tiny Streamlit app (written to a temporary folder) draws ten cards, each with a caption
and ten class buttons, keyed by a counter so that every click on "next" mounts a whole new
grid, as a batch turnover does. Headless Chromium clicks "next" ``--reps`` times per
variant and measures, in the page, from the click until the new grid is drawn and the
script run has ended. Variants (one browser tab each, taken in turn):

* ``none``: the cards without buttons (the reference: what the rest costs);
* ``st_button_help``: ten ``st.button`` a card with a tooltip (``help=``), the Label
  page's cards before 2026-11-30;
* ``st_button``: the same without tooltip;
* ``row``: one ``pages._card_panel`` panel a card holding its class row (the Label page's
  rows since 2026-11-30).

Prints each variant's median and p90, and (variant - none) per button. Run from the
repository root::

    python bench/button_rows.py --reps 16
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from browser_support import ARGS, CHROMIUM, free_port  # noqa: E402

VARIANTS = ["none", "st_button_help", "st_button", "row"]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

APP = f'''
import streamlit as st
from pages._card_panel import class_buttons, panel, panel_style

CLASSES = {CLASSES!r}
variant = st.query_params.get("v", "none")
n = int(st.session_state.get("n", 0))


def bump() -> None:
    st.session_state["n"] = n + 1


panel_style()
st.button("next", key="next", on_click=bump)
cols = st.columns(4)
for pos in range(10):
    with cols[pos % 4], st.container(border=True, key=f"card_{{pos}}"):
        st.caption(f"grid {{n}} card {{pos}}")
        if variant == "row":
            panel(f"g{{n}}_{{pos}}_card", [[class_buttons(CLASSES, [str((k + 1) % 10) for k in range(10)], None,
                                                          lambda name: None)]])
        elif variant.startswith("st_button"):
            with st.container(horizontal=True):
                for k, c in enumerate(CLASSES):
                    st.button(c, key=f"g{{n}}_{{pos}}_c{{k}}", width="stretch", wrap=False,
                              help=f"Label as {{c}} (key {{k}})" if variant == "st_button_help" else None)
st.caption(f"done {{n}}")
'''

# Resolves with the ms from the click on "next" until grid `n` is drawn and the run has ended.
TIME_JS = """(n) => new Promise(resolve => {
  const t0 = performance.now();
  const check = () => {
    const done = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
      .some(e => e.textContent === 'done ' + n);
    const app = document.querySelector('[data-testid="stApp"]');
    if (done && app.getAttribute('data-test-script-state') === 'notRunning') resolve(performance.now() - t0);
    else requestAnimationFrame(check);
  };
  document.querySelector('.st-key-next button').click();
  requestAnimationFrame(check);
})"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=16, help="new grids per variant (default 16)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "button_rows_app.py"
        app.write_text(APP)
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
                                 "--server.address", "127.0.0.1", "--server.headless", "true",
                                 "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                        break
                except OSError:
                    time.sleep(0.3)
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            print(f"load before {[round(x, 2) for x in os.getloadavg()]}")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                pages = {}
                for v in VARIANTS:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.goto(f"{url}/?v={v}")
                    page.get_by_text("done 0", exact=True).wait_for(timeout=90_000)
                    pages[v] = page
                for r in range(1, args.reps + 1):
                    for v in VARIANTS:  # in turn, so a load change hits every variant alike
                        pages[v].bring_to_front()
                        times[v].append(pages[v].evaluate(TIME_JS, r))
                        time.sleep(0.3)
                browser.close()
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    print(f"load after {[round(x, 2) for x in os.getloadavg()]}")
    ref = statistics.median(times["none"])
    for v in VARIANTS:
        xs = sorted(times[v])
        med = statistics.median(xs)
        extra = "" if v == "none" else f"; +{med - ref:.0f} ms over none = {(med - ref) / 100:.2f} ms a button"
        print(f"{v:15s} median {med:6.0f} ms, p90 {xs[max(0, int(0.9 * len(xs)) - 1)]:6.0f} ms "
              f"({med / ref:.2f}x none{extra}; n={len(xs)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
