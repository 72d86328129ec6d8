"""How much of a Label page card is image, and how many cards fit above the fold (issue 12).

A demo project is served by ``streamlit run app.py`` and opened in Chromium (Playwright,
Debian's ``/usr/bin/chromium``) at a fixed window size, once per card layout: the classic
card (image, caption, "Why this image?", one row of buttons per class or two, skip/unsure/zoom)
and the compact card (image, two one-line captions, one wrapping row of short class buttons,
small skip/unsure/zoom). Each layout is a stored Label page preference of its own annotator
(named in the URL), so each page opens fresh in that layout.

Measured in the page (``getBoundingClientRect``), over every card of the open batch:

- the image's share of the card's height and of its area (median, min);
- the cards fully visible above the fold (card bottom inside the window at scroll 0), and
  the cards whose image is fully visible there;
- where the first card starts (what the page's controls take above the grid).

These are layout figures, not timings: machine load changes only how long the run takes.

Usage::

    python bench/label_layout.py                       # textile, 1440x900, 4 per row
    python bench/label_layout.py --demo digits --per-row 5 --shots /tmp/layout
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from browser_support import ARGS, CHROMIUM, Server  # noqa: E402

LAYOUTS = {"classic": False, "compact": True}  # layout name -> the "lbl_compact" preference

# Every card's box and its image's box, in CSS pixels relative to the window (page at scroll 0).
MEASURE_JS = """() => {
  const cards = [...document.querySelectorAll("[class*='st-key-lbl_card_']")]
    .filter(el => [...el.classList].some(c => /^st-key-lbl_card_\\d+$/.test(c)));
  return {fold: window.innerHeight, cards: cards.map(card => {
    const r = card.getBoundingClientRect();
    const img = card.querySelector('img');
    const i = img ? img.getBoundingClientRect() : null;
    return {top: r.top, bottom: r.bottom, w: r.width, h: r.height,
            img_bottom: i ? i.bottom : null, img_w: i ? i.width : 0, img_h: i ? i.height : 0};
  })};
}"""


def measure(page) -> dict:
    """The layout figures of the Label page now on screen (see the module docstring)."""
    data = page.evaluate(MEASURE_JS)
    cards, fold = data["cards"], data["fold"]
    if not cards:
        raise RuntimeError("no Label page cards on screen")
    h_share = [c["img_h"] / c["h"] for c in cards if c["h"]]
    a_share = [c["img_w"] * c["img_h"] / (c["w"] * c["h"]) for c in cards if c["w"] and c["h"]]
    return {
        "cards": len(cards),
        "card_h": statistics.median(c["h"] for c in cards),
        "img_h": statistics.median(c["img_h"] for c in cards),
        "height_share": statistics.median(h_share),
        "height_share_min": min(h_share),
        "area_share": statistics.median(a_share),
        "above_fold": sum(1 for c in cards if c["bottom"] <= fold),
        "images_above_fold": sum(1 for c in cards if c["img_bottom"] is not None and c["img_bottom"] <= fold),
        "first_card_top": min(c["top"] for c in cards),
    }


def settled(page, timeout: float = 60.0) -> None:
    """Wait until the script run has finished (no stale elements) and images are decoded."""
    time.sleep(0.5)
    page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0", timeout=timeout * 1000)
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=timeout * 1000)
    time.sleep(0.5)


def run(demo: str, per_class: int, width: int, height: int, per_row: int, shots: Path | None) -> dict[str, dict]:
    """Serve a fresh ``demo`` project and measure each layout at ``width`` x ``height``."""
    from playwright.sync_api import sync_playwright

    from activekd_core.project import open_demo

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="akd_layout_") as tmp:
        home = Path(tmp)
        with open_demo(demo, base_dir=home, per_class=per_class) as project:
            for name, compact in LAYOUTS.items():
                project.set_view_pref(f"bench-{name}", "lbl_compact", compact)
                project.set_view_pref(f"bench-{name}", "lbl_cols", per_row)
        server = Server(home, home / "streamlit.log", env={"ACTIVEKD_DEMO_PER_CLASS": str(per_class)})
        url = server.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                for name in LAYOUTS:
                    page = browser.new_page(viewport={"width": width, "height": height})
                    page.set_default_timeout(120_000)
                    page.goto(f"{url}/?demo={demo}&annotator=bench-{name}")
                    page.locator(".st-key-lbl_card_0 img").wait_for(state="visible")
                    settled(page)
                    results[name] = measure(page)
                    if shots is not None:
                        shots.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(shots / f"label_{demo}_{name}.png"))
                    page.close()
                browser.close()
        finally:
            server.kill()
    return results


def report(results: dict[str, dict], demo: str, width: int, height: int, per_row: int) -> str:
    """A small table of the figures per layout, and the compact/classic ratios."""
    lines = [f"Label page cards, {demo} demo, {width}x{height} window, {per_row} per row; "
             f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
             f"{'layout':<9} {'cards':>5} {'card h':>7} {'image h':>7} {'img/card h':>10} {'(min)':>6} "
             f"{'img/card area':>13} {'cards above fold':>16} {'images above fold':>17} {'grid top':>8}"]
    for name, r in results.items():
        lines.append(f"{name:<9} {r['cards']:>5} {r['card_h']:>7.0f} {r['img_h']:>7.0f} {r['height_share']:>10.0%} "
                     f"{r['height_share_min']:>6.0%} {r['area_share']:>13.0%} {r['above_fold']:>16} "
                     f"{r['images_above_fold']:>17} {r['first_card_top']:>8.0f}")
    if set(LAYOUTS) <= set(results):
        a, b = results["classic"], results["compact"]
        lines.append(f"compact vs classic: image share of card height {b['height_share'] / a['height_share']:.2f}x, "
                     f"card height {b['card_h'] / a['card_h']:.2f}x, cards above the fold "
                     f"{a['above_fold']} -> {b['above_fold']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="textile", choices=["textile", "digits"])
    ap.add_argument("--per-class", type=int, default=4, help="images per class in the demo (the batch needs 10)")
    ap.add_argument("--width", type=int, default=1440)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--per-row", type=int, default=4, choices=[2, 3, 4, 5, 6])
    ap.add_argument("--shots", type=Path, default=None, help="write a screenshot per layout here")
    args = ap.parse_args(argv)
    results = run(args.demo, args.per_class, args.width, args.height, args.per_row, args.shots)
    print(report(results, args.demo, args.width, args.height, args.per_row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
