"""AppTest for the Explore and Teacher-bias pages on small real projects.

Projects: the textile demo with 5 images per class (stand-in teacher, a few labels, one
short training round, a closed batch and an open query), a 4-class project on the same
images (no ternary view, uniform untrained teacher) and a project on the same images with
a tiny random open_clip teacher for the prompt workshop. Layouts use PCA except in the
``slow`` UMAP case (numba compiles for ~50 s in a new worker process).
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from activekd_core import bias
from activekd_core.demo_data import truth_for_root
from activekd_core.project import Project, open_demo

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
EXPLORE = str(ROOT / "pages" / "explore.py")
BIAS = str(ROOT / "pages" / "teacher_bias.py")
TIMEOUT = 120
TINY_CLIP = {"kind": "clip_zero_shot", "model_name": "akd-tiny-clip", "pretrained": None, "templates": "single",
             "device": "cpu", "batch_size": 8, "num_workers": 0}


_TRUTH: dict[str, str] = {}  # the demo's ground truth (its sidecar), filled by the demo fixture


def _true_class(image_id: str) -> str:
    return _TRUTH[image_id]


def _by_class(project: Project) -> list[str]:
    """The pool's ids grouped by true class (the order the demo's old class-folder ids had)."""
    return sorted(project.pool().ids, key=lambda i: (_TRUTH[i], i))


def _queue(project: Project, ids: list[str], round_id: int, strategy: str = "pcoreset") -> None:
    project.store.open_batch(round_id, strategy, "test", [(i, float(k)) for k, i in enumerate(ids)])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """Textile demo, 15 images: 5 labels, round 1 trained, a labeled batch, an open query batch."""
    base = tmp_path_factory.mktemp("akd")
    project = open_demo("textile", base_dir=base, per_class=5, prepare=False)
    _TRUTH.update(truth_for_root(project.pool().root))
    ids = _by_class(project)
    first = ids[::3]  # 5 images, every class present
    _queue(project, first, 0)
    for i in first:
        project.label(i, _true_class(i))
    project.update_config(train={"steps": 8, "batch_labeled": 8, "batch_unlabeled": 8, "image_size": 32})
    assert project.retrain().status == "done"
    _queue(project, [ids[1], ids[2]], 1)
    project.label(ids[1], _true_class(ids[1]))
    project.label(ids[2], "nominal")  # possibly a wrong label: metrics must still render
    _queue(project, [ids[4], ids[5], ids[7]], 1)  # the open query batch
    return project


@pytest.fixture()
def pinned(monkeypatch: pytest.MonkeyPatch):
    def pin(project: Project) -> None:
        monkeypatch.setenv("ACTIVEKD_PROJECT", str(project.folder))
    return pin


def _run(path: str, **state: Any) -> AppTest:
    at = AppTest.from_file(path, default_timeout=TIMEOUT)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    _no_errors(at)
    return at


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _charts(at: AppTest) -> dict[str, dict]:
    """Plotly figures by element key (the part after the widget id prefix)."""
    out = {}
    for el in at.get("plotly_chart"):
        key = el.proto.id.split("-", 2)[-1] if el.proto.id else f"anon{len(out)}"
        out[key] = json.loads(el.proto.spec)
    return out


def _arr(value: Any) -> np.ndarray:
    """A figure array from its JSON: a list, or plotly's base64 typed array ``{"dtype", "bdata"}``."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = [int(x) for x in shape.split(",")]
        return out.reshape(shape) if shape else out
    return np.asarray(value)


def _rows(trace: dict) -> list[int]:
    return sorted(int(r) for r in _arr(trace["customdata"]).reshape(-1))


def _trace_names(fig: dict) -> set[str]:
    return {t.get("name") for t in fig["data"]}


# ---------------------------------------------------------------------------------------------
# Explore
# ---------------------------------------------------------------------------------------------


def test_explore_pca_pair_ternary_overlays_and_coverage(demo: Project, pinned) -> None:
    pinned(demo)
    at = _run(EXPLORE, exp_method="PCA")
    charts = _charts(at)
    assert {"exp_scatter", "exp_ternary_chart", "exp_coverage"} <= set(charts)
    scatter, tern = charts["exp_scatter"], charts["exp_ternary_chart"]
    # two panels (teacher | student), same encodings in both
    panels = {t["xaxis"] for t in scatter["data"]}
    assert panels == {"x", "x2"}
    names = _trace_names(scatter)
    assert {"round 0 picks", "round 1 picks", "current query", "unlabeled"} <= names
    assert names == {t.get("name") for t in tern["data"] if t["meta"]["role"] != "vertex"}  # + vertex hovers
    assert "ternary" in tern["layout"] and "ternary2" in tern["layout"]
    # customdata holds pool rows; every image drawn once per panel in the base traces
    n = len(demo.pool())
    base_rows = [r for t in scatter["data"] if t["meta"]["role"] == "points" and t["xaxis"] == "x"
                 for r in _rows(t)]
    assert sorted(base_rows) == list(range(n))
    query = next(t for t in scatter["data"] if t["name"] == "current query" and t["xaxis"] == "x")
    ids, rows = _by_class(demo), demo.pool().ids
    assert _rows(query) == sorted(rows.index(i) for i in (ids[4], ids[5], ids[7]))
    # the ternary view and the layouts agree on which images were picked
    for name in ("round 0 picks", "round 1 picks", "current query"):
        rows = [_rows(t) for fig in (scatter, tern) for t in fig["data"] if t["name"] == name]
        assert all(r == rows[0] for r in rows)
    cov_names = _trace_names(charts["exp_coverage"])
    assert {"teacher mean", "student mean"} <= cov_names
    assert any("PCA" in a["text"] for a in scatter["layout"]["annotations"])


def test_explore_selection_grid_sends_unlabeled_to_queue(demo: Project, pinned) -> None:
    pinned(demo)
    ids, rows = _by_class(demo), demo.pool().ids
    labeled_row, free = rows.index(ids[0]), [rows.index(ids[10]), rows.index(ids[11])]
    sel = {"selection": {"points": [{"customdata": r} for r in [labeled_row, *free]], "point_indices": [],
                         "box": [], "lasso": []}}
    at = _run(EXPLORE, exp_method="PCA", exp_scatter=sel)
    assert len(at.get("image")) >= 1
    assert any("3 image(s) selected" in m.value for m in at.markdown)
    button = next(b for b in at.button if b.key == "exp_queue")
    assert "Send 2 unlabeled" in button.label
    before = demo.store.open_batch_current()
    try:
        button.click().run()
        _no_errors(at)
        # a confirmation that states the count comes first; nothing is queued before it
        assert any("queue of 2 image(s)" in w.value for w in at.warning)
        assert demo.store.open_batch_current().id == before.id
        at.button(key="exp_queue_yes").click().run()
        _no_errors(at)
        batch = demo.store.open_batch_current()
        assert batch is not None and batch.strategy == "manual"
        assert sorted(it.image_id for it in batch.items) == sorted([ids[10], ids[11]])
    finally:  # restore the query batch for the other tests
        assert before is not None
        _queue(demo, [it.image_id for it in before.items], before.round)


def _highlighted(fig: dict) -> dict[str, list[int]]:
    """Per panel (its x axis or ternary subplot): the pool rows of the "selected" overlay, and those
    that plotly marks selected in the base traces (``selectedpoints`` are positions in a trace)."""
    out: dict[str, list[int]] = {}
    for t in fig["data"]:
        panel = t.get("xaxis") or t.get("subplot")
        role = t["meta"]["role"]
        if role == "selected":
            out.setdefault(f"{panel} ring", []).extend(_rows(t))
        elif role == "points" and t.get("selectedpoints") is not None:
            rows = _arr(t["customdata"]).reshape(-1)
            out.setdefault(f"{panel} points", []).extend(int(rows[i]) for i in _arr(t["selectedpoints"]).reshape(-1))
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("chart", ["exp_scatter", "exp_ternary_chart"])
def test_explore_selection_on_one_chart_highlights_on_every_panel(demo: Project, pinned, chart: str) -> None:
    """A lasso/box/click on one chart (one panel of it) marks the same images on the teacher and
    student maps and on both simplex panels; the grid shows them; "Clear selection" removes it."""
    pinned(demo)
    rows = [3, 8, 12]
    sel = {"selection": {"points": [{"customdata": r} for r in rows], "point_indices": [], "box": [], "lasso": []}}
    at = _run(EXPLORE, exp_method="PCA", **{chart: sel})
    charts = _charts(at)
    for key in ("exp_scatter", "exp_ternary_chart"):
        marks = _highlighted(charts[key])
        panels = {"x", "x2"} if key == "exp_scatter" else {"ternary", "ternary2"}
        assert set(marks) == {f"{p} {what}" for p in panels for what in ("ring", "points")}, (key, marks)
        assert all(v == rows for v in marks.values()), (key, marks)
    assert any("3 image(s) selected" in m.value for m in at.markdown)
    at.button(key="exp_clear").click().run()
    _no_errors(at)
    after = _charts(at)
    assert not _highlighted(after["exp_scatter"]) and not _highlighted(after["exp_ternary_chart"])
    assert not any("image(s) selected" in m.value for m in at.markdown)


def test_explore_four_classes_uniform_teacher_no_ternary(demo: Project, pinned, tmp_path: Path) -> None:
    classes = [("a", ""), ("b", ""), ("c", ""), ("d", "")]
    project = Project.create(tmp_path / "four", demo.image_root, classes, {"kind": "standin"})
    pinned(project)
    at = _run(EXPLORE, exp_method="PCA")
    charts = _charts(at)
    assert "exp_scatter" in charts and "exp_ternary_chart" not in charts
    assert {t["xaxis"] for t in charts["exp_scatter"]["data"]} == {"x"}  # no student yet: teacher panel only
    assert any("same probabilities" in w.value for w in at.warning)
    project.close()


@pytest.mark.slow
def test_explore_umap_shows_pca_until_the_worker_is_done(demo: Project, pinned) -> None:
    from activekd_core import projection as pj

    pinned(demo)
    at = _run(EXPLORE, exp_method="UMAP")
    titles = [a["text"] for a in _charts(at)["exp_scatter"]["layout"]["annotations"]]
    assert len(titles) == 2 and all("UMAP" in t for t in titles)
    if any("computing" in t for t in titles):  # not cached yet: PCA stand-in plus the polling note
        assert any("UMAP computing" in i.value for i in at.info)
        params = pj.LayoutParams(method="umap")
        student = demo.student_outputs(demo.active_round().id)[0]
        keys = [pj.layout_key(demo.teacher_probs(), params), pj.layout_key(student, params)]
        cache = pj.LayoutCache(demo.path("cache", "layouts"))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and any(cache.load(k) is None for k in keys):
            time.sleep(0.5)
        at.run()
        _no_errors(at)
        titles = [a["text"] for a in _charts(at)["exp_scatter"]["layout"]["annotations"]]
    assert all("UMAP" in t and "computing" not in t for t in titles), titles


def test_explore_selection_demo_greedy_steps(demo: Project, pinned) -> None:
    selection = pytest.importorskip("activekd_core.selection")
    if not hasattr(selection, "STRATEGIES"):
        pytest.skip("activekd_core.selection has no strategy registry yet")
    pinned(demo)
    at = _run(EXPLORE, exp_method="PCA", exp_demo_strats=["pcoreset", "random"], exp_demo_k=3, exp_demo_steps=True,
              exp_demo_step=2)
    charts = _charts(at)
    names = _trace_names(charts["exp_scatter"])
    assert {"pcoreset next", "random next", "PCoreSet picks so far", "PCoreSet pick 2"} <= names
    greedy = charts["exp_greedy"]
    dist = _arr(next(t for t in greedy["data"] if t["name"] == "distance at pick")["y"])
    assert len(dist) == 2 and dist[0] >= dist[1] > 0
    # the greedy steps are exactly the batch PCoreSet would pick next
    pc = _arr(next(t for t in charts["exp_scatter"]["data"] if t["name"] == "pcoreset next")["customdata"])
    step_rows = _arr(next(t for t in greedy["data"] if t["name"] == "distance at pick")["customdata"])
    assert step_rows.tolist() == pc[:2].tolist()


# ---------------------------------------------------------------------------------------------
# Teacher bias
# ---------------------------------------------------------------------------------------------


def test_teacher_bias_renders_every_section(demo: Project, pinned) -> None:
    pinned(demo)
    at = _run(BIAS)
    charts = _charts(at)
    for key in ("tb_cm_Teacher", "tb_cmn_Teacher", "tb_cm_Student", "tb_cmn_Student", "tb_priors",
                "tb_reliability", "tb_entropy", "tb_confidence"):
        assert key in charts, key
    # the page's numbers are the core's numbers on the same arrays
    rows, y = _labels(demo)
    teacher = demo.teacher_probs()
    rep = bias.classification_report(teacher, y, rows, demo.classes)
    metric = next(m for m in at.metric if m.label == "Teacher accuracy")
    assert metric.value == f"{rep.accuracy:.1%}"
    assert np.array_equal(_arr(charts["tb_cm_Teacher"]["data"][0]["z"]), rep.confusion)
    assert {"Student accuracy", "both right", "only student right"} <= {m.label for m in at.metric}
    # galleries and the stand-in note in the workshop
    assert at.dataframe and any("does not read text prompts" in i.value for i in at.info)


def test_teacher_bias_audit_set_only(demo: Project, pinned, tmp_path: Path) -> None:
    classes = [(c.name, c.prompt) for c in demo.store.classes()]
    project = Project.create(tmp_path / "audit", demo.image_root, classes, {"kind": "standin"})
    ids = _by_class(project)
    for i in ids[::4]:
        project.label(i, _true_class(i))
    audit = project.create_audit_set(4)
    for i in audit[:3]:
        project.label(i, _true_class(i))
    pinned(project)
    at = _run(BIAS, tb_labels="audit")
    metric = next(m for m in at.metric if m.label == "Teacher accuracy")
    assert "3 labeled images" in metric.help
    at.radio(key="tb_labels").set_value("train").run()
    _no_errors(at)
    n_train = len(project.training_labels()[0])
    metric = next(m for m in at.metric if m.label == "Teacher accuracy")
    assert f"{n_train} labeled images" in metric.help
    project.close()


def test_prompt_workshop_changes_metrics_then_keep(demo: Project, pinned, tmp_path: Path) -> None:
    classes = [(c.name, c.prompt) for c in demo.store.classes()]
    project = Project.create(tmp_path / "clip", demo.image_root, classes, dict(TINY_CLIP))
    ids = _by_class(project)
    for i in ids[::2]:
        project.label(i, _true_class(i))
    pinned(project)
    at = _run(BIAS)
    assert any("random weights" in w.value for w in at.warning)
    first = project.classes[0]
    at.text_area(key="tb_ws_prompt_0").input("a close-up of woven fabric with {}")
    at.selectbox(key="tb_ws_templates").set_value("custom")
    at.text_area(key="tb_ws_custom").input("a photo of a {}.\na texture of {}.")
    next(b for b in at.button if "Recompute" in b.label).click().run()
    _no_errors(at)
    summary = next(d.value for d in at.dataframe if "delta" in d.value.columns)
    assert set(summary["metric"]) >= {"accuracy", "ece", "mean_entropy", "prior_tv"}
    assert np.nanmax(np.abs(summary["delta"].to_numpy(dtype=float))) > 0  # the prompts really changed the teacher
    before_entropy = float(summary.loc[summary["metric"] == "mean_entropy", "before"].iloc[0])
    assert before_entropy == pytest.approx(float(bias.normalized_entropy(project.teacher_probs()).mean()), abs=1e-6)
    assert "tb_ws_cm_a" in _charts(at)

    at.button(key="tb_ws_keep").click().run()
    _no_errors(at)
    reopened = Project.open(project.folder)
    spec = reopened.config["teacher_spec"]
    assert spec["class_prompts"][first] == ["a close-up of woven fabric with {}"]
    for c in project.classes[1:]:  # untouched classes keep their prompt
        assert spec["class_prompts"][c] == [dict(classes)[c]]
    assert spec["templates"] == ["a photo of a {}.", "a texture of {}."]
    history = reopened.store.get_setting("teacher_history")
    assert len(history) == 1 and history[0]["source"] == "prompt workshop"
    texts = reopened.teacher().describe()["class_texts"][0]
    assert f"a close-up of woven fabric with {first}" in texts
    # the kept teacher's metrics are the candidate's "after" column
    after_entropy = float(summary.loc[summary["metric"] == "mean_entropy", "after"].iloc[0])
    assert float(bias.normalized_entropy(reopened.teacher_probs()).mean()) == pytest.approx(after_entropy, abs=1e-5)
    reopened.close()
    project.close()


def test_prompt_workshop_discard_keeps_teacher(demo: Project, pinned, tmp_path: Path) -> None:
    classes = [(c.name, c.prompt) for c in demo.store.classes()]
    project = Project.create(tmp_path / "clip2", demo.image_root, classes, dict(TINY_CLIP))
    for i in _by_class(project)[::3]:
        project.label(i, _true_class(i))
    pinned(project)
    at = _run(BIAS)
    spec_before = dict(project.config["teacher_spec"])
    at.text_area(key="tb_ws_prompt_1").input("something else entirely")
    next(b for b in at.button if "Recompute" in b.label).click().run()
    _no_errors(at)
    at.button(key="tb_ws_discard").click().run()
    _no_errors(at)
    assert not any("delta" in d.value.columns for d in at.dataframe)
    reopened = Project.open(project.folder)
    assert reopened.config["teacher_spec"] == spec_before
    assert reopened.store.get_setting("teacher_history") is None
    reopened.close()
    project.close()


def test_pages_explain_an_unavailable_teacher(demo: Project, pinned, tmp_path: Path) -> None:
    classes = [(c.name, c.prompt) for c in demo.store.classes()]
    spec = dict(TINY_CLIP, pretrained=str(tmp_path / "missing-weights.safetensors"))
    project = Project.create(tmp_path / "nocl", demo.image_root, classes, spec)
    pinned(project)
    for page in (EXPLORE, BIAS):
        at = AppTest.from_file(page, default_timeout=TIMEOUT)
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        assert any("Cannot read the teacher" in e.value and "missing-weights" in e.value for e in at.error)
    project.close()


def _labels(project: Project) -> tuple[np.ndarray, np.ndarray]:
    row_of = project.row_of()
    idx = {c: i for i, c in enumerate(project.classes)}
    pairs = sorted((row_of[i], idx[c]) for i, c in project.store.current_labels().items())
    return np.asarray([p[0] for p in pairs], dtype=np.int64), np.asarray([p[1] for p in pairs], dtype=np.int64)



# ---------------------------------------------------------------------------------------------
# A real browser: both pages render their plots; Explore switches from PCA to UMAP by itself
# ---------------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _start_streamlit(project: Project, log: Path) -> tuple[Any, str]:
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = dict(os.environ, ACTIVEKD_PROJECT=str(project.folder), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url}: {log.read_text()[-3000:]}")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: install Debian's chromium package")
def test_pages_in_chromium(demo: Project, tmp_path: Path) -> None:
    import signal

    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    proc, url = _start_streamlit(demo, tmp_path / "streamlit.log")
    shots = Path("/tmp/shots_explore")
    shots.mkdir(exist_ok=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            page.set_default_timeout(120_000)
            # Open the app first: a fresh server asked for /explore directly would run the page
            # outside app.py's st.navigation (Streamlit's pages/ folder discovery).
            page.goto(url)
            nav = page.locator('[data-testid="stSidebarNav"]')
            nav.get_by_text("Explore", exact=True).wait_for()
            t0 = time.perf_counter()
            nav.get_by_text("Explore", exact=True).click()
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3")
            first_view = time.perf_counter() - t0
            assert page.locator('[data-testid="stException"]').count() == 0
            # UMAP arrives from the background worker; the page updates without any click
            page.get_by_text("Teacher — UMAP", exact=True).wait_for(timeout=240_000)
            page.get_by_text(f"Student round {demo.active_round().id} — UMAP", exact=True).wait_for(timeout=120_000)
            umap_ready = time.perf_counter() - t0
            sync_api.expect(page.get_by_text("UMAP computing")).to_have_count(0, timeout=30_000)  # run finished
            page.screenshot(path=str(shots / "explore_umap.png"), full_page=True)
            t1 = time.perf_counter()
            page.reload()
            page.get_by_text("Teacher — UMAP", exact=True).wait_for()
            cached_view = time.perf_counter() - t1
            assert page.get_by_text("Demo: textile").count() == 1  # app.py's sidebar: run through st.navigation
            nav.get_by_text("Teacher bias", exact=True).click()
            page.get_by_text("Teacher accuracy").first.wait_for()
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 4")
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(shots / "teacher_bias.png"), full_page=True)
            browser.close()
        print(f"\nExplore in Chromium ({len(demo.pool())} images): first plots {first_view:.1f} s, "
              f"UMAP shown {umap_ready:.1f} s, later (cached) view {cached_view:.1f} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# In the page: per plot, per panel, the pool rows of the orange "selected" rings.
RINGS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(gd => {
  const out = {};
  for (const t of (gd._fullData || [])) {
    if (!t.meta || t.meta.role !== 'selected') continue;
    out[t.meta.panel] = Array.from(t.customdata).map(Number).sort((a, b) => a - b);
  }
  return out;
})"""


def test_explore_box_select_in_chromium_rings_every_panel(demo: Project, tmp_path: Path) -> None:
    """A real box selection dragged over the teacher map: after the rerun both panels of the map and
    both simplex panels ring the same images, and the grid lists them."""
    import signal

    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    proc, url = _start_streamlit(demo, tmp_path / "streamlit.log")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            page.set_default_timeout(120_000)
            page.goto(url)
            nav = page.locator('[data-testid="stSidebarNav"]')
            nav.get_by_text("Explore", exact=True).click()
            page.get_by_text("PCA", exact=True).first.click()
            page.get_by_text("Teacher — PCA", exact=True).wait_for()
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3")
            plot = page.locator(".js-plotly-plot").first
            plot.scroll_into_view_if_needed()
            plot.hover()
            plot.locator('[data-attr="dragmode"][data-val="select"]').first.click()
            area = plot.locator(".xy .nsewdrag").first.bounding_box()  # the teacher panel's plot area
            assert area is not None
            page.mouse.move(area["x"] + 2, area["y"] + 2)
            page.mouse.down()
            page.mouse.move(area["x"] + area["width"] * 0.3, area["y"] + area["height"] * 0.6, steps=8)
            page.mouse.move(area["x"] + area["width"] * 0.55, area["y"] + area["height"] - 2, steps=8)
            page.mouse.up()
            page.get_by_text("image(s) selected").first.wait_for()
            # the rerun is over when the charts drawn before the selection are gone: map, simplex, coverage
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length === 3 && "
                                   f"({RINGS_JS})().filter(r => Object.keys(r).length === 2).length === 2")
            rings = page.evaluate(RINGS_JS)
            shown = page.get_by_text("image(s) selected").first.inner_text()
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(tmp_path / "explore_selected.png"), full_page=True)
            browser.close()
        map_rings, tern_rings = rings[0], rings[1]
        assert map_rings["0"] and map_rings["0"] == map_rings["1"] == tern_rings["0"] == tern_rings["1"]
        assert len(map_rings["0"]) < len(demo.pool())  # the box covered part of the map, not all of it
        assert shown.startswith(f"{len(map_rings['0'])} image(s) selected")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
