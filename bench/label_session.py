"""A keys-only labeling session in Chromium (issue 12): time per label and batch turnover.

A real ``streamlit run app.py`` server (its own ``ACTIVEKD_HOME`` in a temporary folder,
so the built-in textile demo is created fresh: offline stand-in teacher, batch size 10,
``ACTIVEKD_DEMO_PER_CLASS`` images per class) is driven by headless Chromium through
Playwright the way an expert works: look at the focused card, press its class key, and
go on. Nothing is clicked.

For every label the time runs from the key press (a ``keydown`` listener in the page
stamps ``performance.now()``) until the page shows the label committed on that card and
the focus marker on the next open card (``page.wait_for_function``, polled every animation
frame). The label that completes a batch instead runs until the next batch's grid shows
its first open card focused with its image loaded: that is the batch turnover. Between
labels the script waits until the app's script run has ended and then "looks" at the next
image for ``--think`` seconds (the prepared-next-batch design needs a labeler's pace; a
robot pressing keys back to back would be a different workload), counted in the session
time but in no per-label time.

Which key labels which class is read from the page per version: the ``<kbd>`` badge of
each class button on the keyboard bar (Streamlit's button shortcuts); failing that, the
key-hint caption ("Keys 1, 2, 3 ..." or "Keys: 1-3 ..."). The class to choose comes from
the demo's ground truth: the ``truth.csv`` sidecar when the demo has one, else the class
folder in the image id (older demos).

Before and after in one run, alternating when ``--rounds`` > 1::

    git -C /work/main worktree add --detach /tmp/before96 96be19b
    nice -n 5 python bench/label_session.py --before /tmp/before96 --after . --rounds 2
    python bench/label_session.py --repo .          # one version only

Each version's app runs with this interpreter (its ``PYTHONPATH`` and working folder set
to that checkout). Prints per-label p50/p95/mean, the session time, the turnover times
and the load average before and after each session, then the after/before ratios.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TURNOVER_P95_TARGET_MS = 300.0  # issue 12: the next grid within 300 ms of the last label (p95)

# ---- what the page shows (one script, evaluated in the page) ---------------------------------

# Cards of the Label grid: position, image id, state text, focus marker, batch id, image loaded.
PAGE_JS = r"""
window.__akd = window.__akd || {
  cards() {
    // Classic card: a "#N · focused" head, caption "<id> — <state>". Compact card: the id (a
    // caption, or the panel's <code>), then one line "#N · focused · <state> · ..." (a caption,
    // or the panel's text line; state: "labeled X by Y", "skipped", "marked unsure" or, last,
    // "not labeled yet").
    const out = {};
    for (const el of document.querySelectorAll('[class*="st-key-lbl_card_"]')) {
      const m = el.className.match(/st-key-lbl_card_(\d+)\b/);
      if (!m) continue;
      const caps = [...el.querySelectorAll('[data-testid="stCaptionContainer"]')].map(e => e.textContent);
      const panelLine = el.querySelector('.akd-panel .akd-text');  // compact card since 2026-11-30: one panel
      if (panelLine) caps.push(panelLine.textContent);
      const code = el.querySelector('[data-testid="stCaptionContainer"] code, .akd-panel code');
      const classic = caps.find(t => t.includes(' — '));
      const line = caps.find(t => /^#\d+\b/.test(t.trim()));
      let state = '', focused = false;
      if (classic !== undefined) {
        state = classic.split(' — ').slice(1).join(' — ');
        const head = el.querySelector('[data-testid="stMarkdownContainer"]');
        focused = !!(head && /·\s*focused/.test(head.textContent));
      } else if (line !== undefined) {
        const parts = line.split(' · ').map(x => x.trim());
        focused = parts.includes('focused');
        state = parts.find(x => x.startsWith('labeled ') || x === 'skipped' || x === 'marked unsure'
                                || x === 'not labeled yet') || '';
      }
      const btn = el.querySelector('[class*="st-key-lbl_batch-"]');
      const bm = btn ? btn.className.match(/st-key-lbl_batch-(\d+)_/) : null;
      const img = el.querySelector('[data-testid="stImage"] img');
      out[m[1]] = {
        id: code ? code.textContent : null,
        state: state,
        focused: focused,
        batch: bm ? Number(bm[1]) : null,
        img: !!(img && img.complete && img.naturalWidth > 0),
      };
    }
    return out;
  },
  idle() {
    const app = document.querySelector('[data-testid="stApp"]');
    return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
      && !document.querySelector('[data-stale="true"]');
  },
  keymap() {
    const keys = [];
    for (const el of document.querySelectorAll('[class*="st-key-lbl_key_c"]')) {
      const m = el.className.match(/st-key-lbl_key_c(\d+)\b/);
      if (!m) continue;
      const p = el.querySelector('[data-testid="stMarkdownContainer"]');
      const kbd = el.querySelector('kbd');
      keys.push({k: Number(m[1]), name: p ? p.textContent : null, key: kbd ? kbd.textContent.trim() : null});
    }
    const hint = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
      .map(e => e.textContent).find(t => /^Keys\b/.test(t)) || null;
    return {buttons: keys.sort((a, b) => a.k - b.k), hint};
  },
};
if (!window.__akdListening) {
  window.__akdListening = true;
  window.addEventListener('keydown', () => { window.__akdT0 = performance.now(); }, true);
}
"""

# Truthy (ms since the key press) once card `pos` shows the label and card `next` holds the focus.
LABELED_JS = r"""
([batch, pos, cls, next]) => {
  const c = window.__akd.cards(), a = c[pos], b = c[next];
  if (window.__akdT0 === undefined || !a || !b || a.batch !== batch || b.batch !== batch) return false;
  const ok = a.state.startsWith('labeled ' + cls + ' by') && !a.focused && b.focused && b.state === 'not labeled yet';
  return ok ? Math.max(performance.now() - window.__akdT0, 0.001) : false;
}
"""

# Truthy once a grid of another batch shows a focused open card whose image has loaded.
TURNOVER_JS = r"""
(batch) => {
  for (const e of document.querySelectorAll('[data-testid="stProgress"]')) {
    const t = e.textContent;  // the wait for a selection (older pages: 'Selecting the next batch')
    if (t.includes('Selecting the next batch') || t.includes('Next batch being prepared')) window.__akdSelecting = true;
  }
  const c = Object.values(window.__akd.cards());
  if (!c.length) window.__akdEmptied = true;  // the grid was gone in this frame
  if (window.__akdT0 === undefined || !c.length || c.some(x => x.batch === batch || x.batch === null)) return false;
  const f = c.find(x => x.focused);
  if (!f || f.state !== 'not labeled yet') return false;
  if (window.__akdGridMs === null) window.__akdGridMs = performance.now() - window.__akdT0;  // card there
  return f.img ? Math.max(performance.now() - window.__akdT0, 0.001) : false;  // and its image drawn
}
"""


# ---- helpers ----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The ``q`` percentile (nearest rank; NaN for none)."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method="inverted_cdf"))


def load_average() -> list[float]:
    """The 1/5/15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git_head(repo: Path) -> str:
    """The checkout's commit (short), or "?" when it is not a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=30)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def parse_hint(hint: str, n: int) -> list[str] | None:
    """Class keys from the page's key-hint caption: "Keys 1, 2, 3 label ..." or "Keys: 1-3 label ..."."""
    m = re.match(r"Keys:?\s+(.+?)\s+label\b", hint)
    if not m:
        return None
    text = m.group(1)
    r = re.fullmatch(r"(\w)-(\w)", text)
    if r and n == 10 and r.group(1) == "1" and r.group(2) == "0":
        return ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
    if r and r.group(1).isdigit() and r.group(2).isdigit() and int(r.group(2)) - int(r.group(1)) + 1 == n:
        return [str(d) for d in range(int(r.group(1)), int(r.group(2)) + 1)]
    keys = [k for k in re.split(r"[,\s]+", text) if k]
    return keys if len(keys) == n else None


def read_truth(home: Path) -> dict[str, str]:
    """The demo's ground truth (``data/*/truth.csv`` under the app's home), or {} when it has none."""
    truth: dict[str, str] = {}
    for path in sorted((home / "data").glob("*/truth.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                truth[row["id"]] = row["label"]
    return truth


def true_class(image_id: str, truth: dict[str, str], classes: list[str]) -> str:
    """The class of ``image_id``: from the sidecar, else its class folder (demos before the sidecar)."""
    if image_id in truth:
        return truth[image_id]
    folder = image_id.split("/", 1)[0]
    if folder in classes:
        return folder
    raise KeyError(f"no ground truth for {image_id!r}")


def stored_labels(home: Path, truth: dict[str, str], classes: list[str]) -> str:
    """What the project database holds afterwards: label events, distinct images, how many match the truth."""
    import sqlite3

    try:
        (db_path,) = sorted(home.glob("projects/*/project.db")) or sorted(home.glob("project/project.db"))
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT image_id, class_name FROM label_events WHERE event = 'label'").fetchall()
        finally:
            db.close()
    except (ValueError, sqlite3.Error) as exc:
        return f"not checked ({exc})"
    try:
        right = sum(1 for image_id, cls in rows if cls == true_class(image_id, truth, classes))
    except KeyError as exc:
        return f"{len(rows)} label events; truth not found ({exc})"
    return f"{len(rows)} label events on {len({r[0] for r in rows})} images, {right} match the truth"


def job_seconds(home: Path) -> str:
    """How long each batch job (prefetch / select) of the session ran, from the project's jobs table."""
    import sqlite3

    try:
        (db_path,) = sorted(home.glob("projects/*/project.db")) or sorted(home.glob("project/project.db"))
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT kind, finished - started FROM jobs WHERE kind IN ('prefetch', 'select') "
                              "AND finished IS NOT NULL ORDER BY id").fetchall()
        finally:
            db.close()
    except (ValueError, sqlite3.Error) as exc:
        return f"not read ({exc})"
    return ", ".join(f"{kind} {sec:.1f}" for kind, sec in rows) or "none"


class App:
    """``streamlit run app.py`` of one checkout, in its own process group."""

    def __init__(self, repo: Path, home: Path, per_class: int, project: Path | None = None) -> None:
        self.repo, self.home, self.per_class, self.project = repo, home, per_class, project
        self.log = home / "streamlit.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 180.0) -> str:
        port = free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, ACTIVEKD_HOME=str(self.home), ACTIVEKD_DEMO_PER_CLASS=str(self.per_class),
                   HF_HUB_OFFLINE="1", PYTHONPATH=str(self.repo))
        for name in ("ACTIVEKD_PROJECT", "ACTIVEKD_TRAIN_IN_THREAD", "ACTIVEKD_SHOW_TIMINGS"):
            env.pop(name, None)
        if self.project is not None:
            env["ACTIVEKD_PROJECT"] = str(self.project)
        cmd = [sys.executable, "-m", "streamlit", "run", str(self.repo / "app.py"), "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
        fh = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.repo, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        fh.close()
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"streamlit did not answer within {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


# ---- one session ------------------------------------------------------------------------------

MAKE_PROJECT = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from app_scale import CLASSES, write_teacher_file
from activekd_core.project import Project
pool, folder, tfile = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
ids = sorted(str(p.relative_to(pool).as_posix()) for p in pool.glob("*/*.png"))
if not tfile.is_file():
    write_teacher_file(pool, ids, tfile, 0)
Project.create(folder, pool, [(c, f"a photo of a {c}") for c in CLASSES], {"kind": "precomputed", "path": str(tfile)},
               batch_size=10).close()
"""


def make_pool_project(repo: Path, home: Path, pool: Path) -> Path:
    """A fresh copy, under ``home``, of a project over ``pool`` (precomputed teacher, batches of 10).

    The project is created once per pool by ``repo``'s code in a subprocess (a 100k-image
    scan takes minutes) next to the scratch folder, then copied for every session so each
    starts from the same state; the teacher file is written once next to the pool's folder.
    """
    template = home.parent / f"template_{pool.resolve().name}"
    if not (template / "project.db").is_file():
        tfile = pool.resolve().parent / f"{pool.resolve().name}_teacher.npz"
        env = dict(os.environ, PYTHONPATH=str(repo), HF_HUB_OFFLINE="1")
        shutil.rmtree(template, ignore_errors=True)
        subprocess.run([sys.executable, "-c", MAKE_PROJECT, str(pool.resolve()), str(template), str(tfile),
                        str(ROOT / "bench")], check=True, env=env, cwd=repo, timeout=3600)
    folder = home / "project"
    shutil.copytree(template, folder)
    return folder


def _keymap(page: Any) -> tuple[list[str], list[str], str]:
    """``(classes, keys, how the keys were found)`` from the keyboard bar of the open Label page."""
    deadline = time.monotonic() + 30
    while True:  # a bar still being drawn may lack a name for a moment: read it until it is whole
        info = page.evaluate("() => window.__akd.keymap()")
        buttons = info["buttons"]
        whole = [b["k"] for b in buttons] == list(range(len(buttons))) and all(b["name"] for b in buttons)
        if (buttons and whole) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    if not buttons:
        raise RuntimeError("the Label page has no keyboard bar (.st-key-lbl_key_c*): it cannot be driven by keys")
    classes = [b["name"] for b in buttons]
    keys = [b["key"] for b in buttons]
    if all(keys):
        return classes, keys, f"<kbd> badges of the keyboard bar; hint caption: {info['hint']!r}"
    from_hint = parse_hint(info["hint"] or "", len(classes))
    if from_hint is None:
        raise RuntimeError(f"no key shown for the classes and the hint caption {info['hint']!r} names none")
    return classes, from_hint, f"the key-hint caption {info['hint']!r} (no <kbd> badges)"


def _focused(cards: dict[str, dict]) -> tuple[int, dict]:
    hits = [(int(p), c) for p, c in cards.items() if c["focused"]]
    if len(hits) != 1:
        raise RuntimeError(f"expected one focused card, saw {len(hits)}")
    return hits[0]


def _next_open(cards: dict[str, dict], pos: int) -> int | None:
    """The open card the page should focus after labeling ``pos`` (the page's own rule), or None."""
    n = len(cards)
    for step in range(1, n):
        p = (pos + step) % n
        if cards[str(p)]["state"] == "not labeled yet":
            return p
    return None


def _wait_idle(page: Any, timeout_ms: float) -> None:
    page.wait_for_function("() => window.__akd.idle()", timeout=timeout_ms, polling=50)


def run_session(repo: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start the app of ``repo``, label ``args.labels`` images by key, return the timings."""
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="home_", dir=work))
    project = make_pool_project(repo, home, args.pool) if args.pool else None
    app = App(repo, home, args.per_class, project)
    out: dict[str, Any] = {"repo": str(repo), "commit": git_head(repo), "load_before": load_average()}
    timeout_ms = args.timeout * 1000
    try:
        t_start = time.perf_counter()
        app.start()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app.url, wait_until="domcontentloaded")
            page.wait_for_selector(".st-key-lbl_card_0", timeout=timeout_ms)
            page.evaluate(PAGE_JS)
            page.wait_for_function("() => Object.values(window.__akd.cards()).some(c => c.focused && c.img)",
                                   timeout=timeout_ms)
            _wait_idle(page, timeout_ms)
            out["first_grid_s"] = time.perf_counter() - t_start  # server start + demo creation + first batch
            classes, keys, how = _keymap(page)
            out.update(classes=classes, keys=keys, keys_from=how)
            truth = read_truth(home)
            out["truth_from"] = "truth.csv sidecar" if truth else "class folder in the image id"
            labels: list[dict[str, Any]] = []
            t_session = time.perf_counter()
            for n in range(args.labels):
                page.evaluate(PAGE_JS)  # idempotent; a rerun never reloads the document, but be safe
                cards = page.evaluate("() => window.__akd.cards()")
                pos, card = _focused(cards)
                cls = true_class(card["id"], truth, classes)
                if cls not in classes:
                    raise RuntimeError(f"class {cls!r} of {card['id']!r} is not among the keyboard bar's {classes}")
                key = keys[classes.index(cls)]
                nxt = _next_open(cards, pos)
                if nxt is None:
                    page.evaluate("() => { window.__akdSelecting = false; window.__akdGridMs = null; "
                                  "window.__akdEmptied = false; }")
                    page.keyboard.press(key)
                    ms = page.wait_for_function(TURNOVER_JS, arg=card["batch"], timeout=timeout_ms).json_value()
                else:
                    page.keyboard.press(key)
                    ms = page.wait_for_function(LABELED_JS, arg=[card["batch"], str(pos), cls, str(nxt)],
                                                timeout=timeout_ms).json_value()
                labels.append({"n": n + 1, "batch": card["batch"], "pos": pos, "key": key,
                               "turnover": nxt is None, "ms": float(ms)})
                if nxt is None:  # did the page show the selection progress (no batch prepared ahead)?
                    labels[-1]["selecting_shown"] = bool(page.evaluate("() => window.__akdSelecting"))
                    labels[-1]["grid_ms"] = page.evaluate("() => window.__akdGridMs")
                    labels[-1]["emptied"] = bool(page.evaluate("() => window.__akdEmptied"))
                _wait_idle(page, timeout_ms)
                if n + 1 < args.labels and args.think > 0:
                    time.sleep(args.think)
            out["session_s"] = time.perf_counter() - t_session
            out["labels"] = labels
            out["stored"] = stored_labels(home, truth, classes)
            out["jobs"] = job_seconds(home)
            browser.close()
    finally:
        app.stop()
        out["load_after"] = load_average()
    return out


# ---- report -----------------------------------------------------------------------------------


def summary(sessions: list[dict[str, Any]]) -> dict[str, float]:
    """Pooled figures of one version's sessions (ms unless named ``_s``)."""
    every = [x["ms"] for s in sessions for x in s["labels"]]
    within = [x["ms"] for s in sessions for x in s["labels"] if not x["turnover"]]
    turn = [x["ms"] for s in sessions for x in s["labels"] if x["turnover"]]
    ready = [x["ms"] for s in sessions for x in s["labels"] if x["turnover"] and not x.get("selecting_shown")]
    grid = [x["grid_ms"] for s in sessions for x in s["labels"] if x["turnover"] and x.get("grid_ms") is not None]
    return {
        "labels": len(every), "p50": pct(every, 50), "p95": pct(every, 95), "mean": float(np.mean(every)),
        "within_p50": pct(within, 50), "within_p95": pct(within, 95), "within_mean": float(np.mean(within)),
        "turnovers": len(turn), "turn_p50": pct(turn, 50), "turn_p95": pct(turn, 95),
        "turn_max": max(turn) if turn else float("nan"),
        "grid_p50": pct(grid, 50), "grid_p95": pct(grid, 95),
        "emptied": sum(1 for s in sessions for x in s["labels"] if x["turnover"] and x.get("emptied")),
        "ready": len(ready), "ready_p50": pct(ready, 50), "ready_max": max(ready) if ready else float("nan"),
        "keys_only_s": float(np.mean([sum(x["ms"] for x in s["labels"]) / 1000 for s in sessions])),
        "session_s": float(np.mean([s["session_s"] for s in sessions])),
    }


def describe(name: str, sessions: list[dict[str, Any]], think: float) -> str:
    """A readable block for one version."""
    s0 = sessions[0]
    f = summary(sessions)
    lines = [f"== {name}: {s0['repo']} (commit {s0['commit']})",
             f"  classes {s0['classes']} -> keys {s0['keys']}; keys from {s0['keys_from']}",
             f"  truth from {s0['truth_from']}"]
    for k, s in enumerate(sessions, 1):
        turns = ", ".join(f"{x['ms']:.0f}" + ("*" if x.get("selecting_shown") else "")
                          + ("E" if x.get("emptied") else "")
                          for x in s["labels"] if x["turnover"])
        lines.append(f"  session {k}: first grid {s['first_grid_s']:.1f} s; {len(s['labels'])} labels in "
                     f"{s['session_s']:.1f} s (think {think:g} s/label included; stored: {s.get('stored', 'n/a')}); "
                     f"turnovers ms [{turns}]; batch jobs s [{s.get('jobs', 'n/a')}]; "
                     f"load {s['load_before']} -> {s['load_after']}")
    lines += [
        "  (* = the page showed 'Selecting the next batch' / 'Next batch being prepared' during that turnover; "
        "E = the grid was empty in some frame)",
        f"  per label, all {f['labels']} (key press -> label shown + next card focused; batch end -> next grid):"
        f" p50 {f['p50']:.0f} ms, p95 {f['p95']:.0f} ms, mean {f['mean']:.0f} ms",
        f"  per label within a batch: p50 {f['within_p50']:.0f} ms, p95 {f['within_p95']:.0f} ms, "
        f"mean {f['within_mean']:.0f} ms",
        f"  batch turnover ({f['turnovers']}; last label -> next grid's first card focused, image loaded): "
        f"p50 {f['turn_p50']:.0f} ms, p95 {f['turn_p95']:.0f} ms, max {f['turn_max']:.0f} ms "
        f"(target p95 < {TURNOVER_P95_TARGET_MS:.0f} ms)",
        f"  of which until the focused card is there (its image not yet drawn): p50 {f['grid_p50']:.0f} ms, "
        f"p95 {f['grid_p95']:.0f} ms",
        f"  turnovers with the next batch ready (no 'Selecting' shown): {f['ready']}, p50 {f['ready_p50']:.0f} ms, "
        f"max {f['ready_max']:.0f} ms; turnovers during which the grid was empty in some frame: {f['emptied']}",
        f"  keys-only waiting per session (sum of the per-label times): {f['keys_only_s']:.1f} s; "
        f"session incl. think time: {f['session_s']:.1f} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, help="measure one checkout (default: this repository)")
    ap.add_argument("--before", type=Path, help="the older checkout")
    ap.add_argument("--after", type=Path, help="the newer checkout")
    ap.add_argument("--labels", type=int, default=50, help="labels per session (default 50: five batches of 10)")
    ap.add_argument("--rounds", type=int, default=1, help="sessions per version, alternating before/after")
    ap.add_argument("--think", type=float, default=1.0, help="seconds spent looking at each image (default 1)")
    ap.add_argument("--per-class", type=int, default=30, help="demo images per class (default 30: 90 images)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for any one page state")
    ap.add_argument("--pool", type=Path, help="label a project over this bench/make_pool.py pool (precomputed "
                    "teacher, 10 classes, made afresh per session by the checkout's own code) instead of the demo")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a new temporary folder)")
    ap.add_argument("--json", type=Path, help="also write every timing here")
    args = ap.parse_args(argv)
    if (args.before is None) != (args.after is None):
        ap.error("--before and --after go together")
    versions = ([("before", args.before.resolve()), ("after", args.after.resolve())] if args.before
                else [("this", (args.repo or ROOT).resolve())])
    work = args.work or Path(tempfile.mkdtemp(prefix="akd_label_session_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs; load {load_average()}; work {work}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in versions}
    failures: dict[str, str] = {}
    for r in range(args.rounds):
        for name, repo in versions:
            if name in failures:
                continue
            print(f"-- round {r + 1}: {name} ({repo})", flush=True)
            try:
                s = run_session(repo, work, args)
            except Exception as exc:  # noqa: BLE001 - say why this version could not be driven; go on
                import traceback

                where = traceback.extract_tb(exc.__traceback__)[-1]
                failures[name] = f"{type(exc).__name__}: {str(exc)[:1500]} (line {where.lineno}: {where.line})"
                print(f"   {name} failed: {failures[name]}", flush=True)
                continue
            results[name].append(s)
            f = summary([s])
            print(f"   p50 {f['p50']:.0f} ms, p95 {f['p95']:.0f} ms, turnover p95 {f['turn_p95']:.0f} ms, "
                  f"session {s['session_s']:.1f} s, load {s['load_before']} -> {s['load_after']}", flush=True)
    print()
    for name, _ in versions:
        if results[name]:
            print(describe(name, results[name], args.think))
        if name in failures:
            print(f"== {name}: could not be driven by keys: {failures[name]}")
    if args.before and results["before"] and results["after"]:
        b, a = summary(results["before"]), summary(results["after"])
        print("== after / before")
        for k, what in (("p50", "per label p50"), ("p95", "per label p95"), ("mean", "per label mean"),
                        ("within_p50", "within-batch p50"), ("turn_p50", "turnover p50"),
                        ("turn_p95", "turnover p95"), ("keys_only_s", "keys-only waiting per session")):
            print(f"  {what}: {b[k]:.0f} -> {a[k]:.0f} ({a[k] / b[k]:.2f}x, before/after {b[k] / a[k]:.1f}x)")
    print(f"load at the end {load_average()}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "failures": failures}, indent=1))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
