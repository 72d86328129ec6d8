"""Explore: the teacher's and the student's probability spaces, side by side.

What the page shows (all numbers come from :mod:`activekd_core`; this script only wires
widgets to it):

* 2-D layouts (UMAP or PCA, :mod:`activekd_core.projection`) of the teacher's probability
  vectors and of the latest student's, over the whole pool (a seeded sample above 200,000 images, the page says so), with the same encodings in both
  (:mod:`activekd_core.figures.explore`): colour by human label (unlabeled grey) or by predicted
  class, open circles for images picked in each round, open diamonds for the current query.
  UMAP runs in a warm background worker (``LayoutJob``) and is cached on disk; PCA is shown
  at once while it computes, and a small fragment polls until the layout is ready.
* For 3 classes, the probability simplex itself (ternary plot) for teacher and student.
* A selection demo: the next batch each strategy would pick, and PCoreSet's greedy picks
  one at a time with each pick's distance to the nearest labeled/already-picked point.
* Box/lasso/click selection on any plot: the same images are highlighted on every panel of
  every plot (teacher and student maps, teacher and student simplex; state in
  :class:`activekd_core.view_models.explore.LinkedSelection`), and shown as a grid, which can be
  sent to the labeling queue.
* Coverage per round: mean/max distance from pool images to their nearest labeled image in
  teacher and student probability space (:mod:`activekd_core.coverage`).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np
import streamlit as st

from activekd_core.display_text import MESSAGE_MAX, md
from activekd_core.figures import explore as figs
from activekd_core.project import Project
from activekd_core.view_models.explore import (
    GreedyTrace,
    Layout,
    LayoutJob,
    LayoutParams,
    LinkedSelection,
    PoolState,
    coverage_curve,
    coverage_inputs,
    demo_strategies,
    display_rows,
    greedy_steps,
    layout_cache_dir,
    layout_failed,
    layout_wait,
    make_layout_job,
    pca_layouts,
    read_pool_state,
    sampling_help,
    selection_space_probs,
    umap_layouts,
)
from pages._session import current_project, show_project_error, thumbnail

MAX_GRID = 60  # most images shown in the selection grid
KEY_PREFIX = "exp_"
K_SCATTER = KEY_PREFIX + "scatter"
K_TERNARY = KEY_PREFIX + "ternary_chart"
K_LINKED = KEY_PREFIX + "linked"  # the selection highlighted on every chart (LinkedSelection.to_state)
SELECTION_MODES = ("points", "box", "lasso")


def _linked() -> LinkedSelection:
    return LinkedSelection.from_state(st.session_state.get(K_LINKED))


def _on_select(chart: str) -> None:
    """A person changed ``chart``'s selection: it becomes the highlight on every chart."""
    linked = _linked()
    linked.observe(chart, figs.selected_indices(st.session_state.get(chart)), user=True)
    st.session_state[K_LINKED] = linked.to_state()


def _clear_selection() -> None:
    linked = _linked()
    linked.clear()
    st.session_state[K_LINKED] = linked.to_state()


# ---------------------------------------------------------------------------------------------
# Layouts (UMAP in a warm background worker)
# ---------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=8)
def layout_job(cache_dir: str) -> LayoutJob:
    """One UMAP worker per project layout cache, shared by every session of the server
    (started with the first layout missing from the disk cache, see
    :func:`activekd_core.view_models.explore.make_layout_job`)."""
    return make_layout_job(cache_dir)


def get_layouts(project: Project, state: PoolState, params: LayoutParams,
                retry: bool = False, rows: np.ndarray | None = None) -> tuple[Layout, Layout | None]:
    """Teacher and student layouts: at once for PCA; cached or pending (PCA stand-in) for UMAP
    (a large pool's cover the drawn ``rows``, fitted on a sample)."""
    if params.method == "pca":
        return pca_layouts(state, params, rows)
    return umap_layouts(layout_job(layout_cache_dir(project)), state, params, retry=retry, rows=rows)


def _failed(project: Project, layout: Layout) -> bool:
    """True when the background UMAP of ``layout`` failed (the PCA stand-in stays; no polling)."""
    return layout_failed(layout_job(layout_cache_dir(project)), layout)


def poll_layouts(cache_dir: str, keys: tuple[str, ...]) -> None:
    """Rerun the page once every pending layout is on disk (or failed); runs every 2 s."""
    wait = layout_wait(layout_job(cache_dir), keys)
    if wait is None:
        st.rerun()
    warm = "" if wait.warm else " (the worker compiles UMAP once per server start: about a minute)"
    st.info(f"UMAP computing... {wait.elapsed:.0f} s{warm}. PCA is shown meanwhile; the page updates by itself.",
            icon=":material/hourglass_top:")


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


def _controls(n_classes: int) -> dict[str, Any]:
    with st.expander("View settings", expanded=True):
        c1, c2, c3, c4 = st.columns(4)
        method = c1.radio("Layout", ["UMAP", "PCA"], key=KEY_PREFIX + "method", horizontal=True,
                          help="PCA is instant; UMAP is computed in the background and cached on disk.")
        metric = c1.selectbox("Metric", ["euclidean", "hellinger"], key=KEY_PREFIX + "metric",
                              help="Hellinger is the natural distance between probability vectors.")
        n_neighbors = c2.slider("UMAP n_neighbors", 2, 100, 15, key=KEY_PREFIX + "nn", disabled=method == "PCA")
        min_dist = c2.slider("UMAP min_dist", 0.0, 0.99, 0.1, 0.01, key=KEY_PREFIX + "md", disabled=method == "PCA")
        color_by = c3.radio("Colour by", ["human label", "teacher prediction", "student prediction"],
                            key=KEY_PREFIX + "color")
        max_points = c4.number_input("Max points drawn", 500, 100_000, 5000, 500, key=KEY_PREFIX + "maxpts",
                                     help="Larger pools are subsampled for drawing (labeled and picked "
                                          f"images are always drawn); {sampling_help()}.")
        ternary = c4.checkbox("Ternary simplex", value=n_classes == 3, disabled=n_classes != 3,
                              key=KEY_PREFIX + "ternary", help="Only for exactly 3 classes.")
    return {
        "params": LayoutParams(method="umap" if method == "UMAP" else "pca", metric=metric,
                                  n_neighbors=int(n_neighbors), min_dist=float(min_dist)),
        "color_by": {"human label": "human", "teacher prediction": "teacher",
                     "student prediction": "student"}[color_by],
        "max_points": int(max_points),
        "ternary": bool(ternary) and n_classes == 3,
    }


def _demo_controls(project: Project, state: PoolState) -> tuple[list[figs.Overlay], GreedyTrace | None, int]:
    """Selection demo widgets; returns overlays for the plots, the greedy trace and the step."""
    overlays: list[figs.Overlay] = []
    with st.expander("Selection demo: what each strategy would pick next", expanded=False):
        available = demo_strategies()
        if state.candidates.size == 0:
            st.info("No unlabeled image left to pick.")
            return overlays, None, 0
        c1, c2 = st.columns([3, 1])
        chosen = c1.multiselect("Overlay the next batch of", available, default=[], key=KEY_PREFIX + "demo_strats")
        k = int(c2.number_input("Batch size", 1, max(1, int(state.candidates.size)),
                                min(project.batch_size, int(state.candidates.size)), key=KEY_PREFIX + "demo_k"))
        picks: dict[str, np.ndarray] = {}
        scores: dict[str, np.ndarray] = {}
        for name in chosen:
            try:
                picks[name], scores[name] = project.preview_batch(name, k)
            except Exception as exc:  # a strategy that cannot run here (e.g. no features yet)
                st.warning(f"{md(name)}: {type(exc).__name__}: {md(exc, MESSAGE_MAX)}")
        overlays.extend(figs.strategy_overlays(picks, scores))
        trace = None
        step = 0
        if state.seed_rows.size == 0:
            st.caption("Step-through needs at least one labeled image (PCoreSet seeds from the labeled set).")
        elif st.checkbox("Step through PCoreSet's greedy picks", key=KEY_PREFIX + "demo_steps"):
            space, _ = selection_space_probs(state)
            trace = greedy_steps(state, k)
            if trace.indices.size:
                step = st.slider("Pick", 1, int(trace.indices.size), 1, key=KEY_PREFIX + "demo_step")
                st.caption(f"Space: {space} probabilities. Each pick is the image farthest (L2) from every "
                           "labeled and already-picked image; its distance is the bar height.")
                upto = trace.indices[:step]
                overlays.append(figs.Overlay(
                    "PCoreSet picks so far", upto[:-1], "star-open", "#9467bd", 14,
                    tuple(f"step {i + 1}: distance {d:.3f}" for i, d in enumerate(trace.distances[:step - 1]))))
                overlays.append(figs.Overlay(
                    f"PCoreSet pick {step}", upto[-1:], "star", "#d62728", 18,
                    (f"step {step}: distance {trace.distances[step - 1]:.3f}",)))
    return overlays, trace, step


def _image_grid(project: Project, state: PoolState, rows: np.ndarray, *, key: str) -> None:
    """Selected images as a grid, and a button that sends the unlabeled ones to the labeling queue."""
    shown = rows[:MAX_GRID]
    human = dict(zip(shown.tolist(), state.human_names(shown)))
    st.markdown(f"**{rows.size} image(s) selected**" + (f" (first {MAX_GRID} shown)" if rows.size > MAX_GRID else ""))
    cols = st.columns(6)
    for j, r in enumerate(shown):
        r = int(r)
        cap = [md(state.ids[r]), f"human: {md(human[r])}",
               f"teacher: {md(state.classes[int(state.teacher[r].argmax())])} {state.teacher[r].max():.2f}"]
        if state.student is not None:
            cap.append(f"student: {md(state.classes[int(state.student[r].argmax())])} {state.student[r].max():.2f}")
        with cols[j % 6]:
            try:
                st.image(thumbnail(project, state.ids[r], 160), caption=" · ".join(cap))
            except Exception as exc:  # a file removed since the scan: say so, keep the grid
                st.warning(f"{md(state.ids[r])}: {md(exc, MESSAGE_MAX)}")
    queueable = np.intersect1d(rows, state.candidates)
    if queueable.size == 0:
        st.caption("None of the selected images can be queued (all are labeled, skipped, unsure or audit images).")
        return
    pending_key = key + "_confirm"
    if st.button(f"Send {queueable.size} unlabeled image(s) to the labeling queue...", key=key,
                 help="Replaces the open query batch; the Label page shows these images next."):
        st.session_state[pending_key] = [state.ids[int(r)] for r in queueable]
    pending = st.session_state.get(pending_key)
    if pending:
        st.warning(f"Confirm: replace the open batch with a queue of {len(pending)} image(s)? It stays until "
                   "every image has a decision or you dismiss it on the Label page.")
        yes, no = st.columns(2)
        if yes.button(f"Yes, queue {len(pending)} image(s)", key=key + "_yes", type="primary"):
            st.session_state.pop(pending_key, None)
            view = project.queue_images(pending, reason="explore selection")
            st.success(f"Queued {view.total} image(s); open the Label page to label them.")
        elif no.button("Cancel", key=key + "_no"):
            st.session_state.pop(pending_key, None)
            st.rerun()


def render(project: Project) -> None:
    """Draw the Explore page for ``project``."""
    st.title("Explore the probability spaces")
    try:
        with st.spinner("Reading teacher and student predictions (the first view after new labels refits "
                        "a few-shot teacher)..."):
            state = read_pool_state(project)
    except Exception as exc:  # e.g. CLIP weights missing offline: the message says how to supply them
        st.error(f"Cannot read the teacher's predictions: {type(exc).__name__}: {md(exc, MESSAGE_MAX)}")
        return
    if state.n == 0:
        st.info("The project has no images.")
        return
    opts = _controls(len(state.classes))
    if opts["color_by"] == "student" and state.student is None:
        st.caption("No student yet (train a round first): colouring by human label.")
        opts["color_by"] = "human"
    probe = state.teacher if state.fit_rows is None else state.teacher[state.fit_rows[:5000]]
    if float(np.ptp(probe, axis=0).max()) < 1e-6:
        st.warning("The teacher gives every image the same probabilities (e.g. the offline stand-in before "
                   "any label): its map is a single point until it has labels.")

    overlays, trace, step = _demo_controls(project, state)

    linked = _linked()
    highlight = linked.in_pool(state.n)
    subset = display_rows(state, opts["max_points"], highlight=highlight, extra=[ov.indices for ov in overlays])

    params: LayoutParams = opts["params"]
    t0 = time.perf_counter()
    retry = bool(st.session_state.pop(KEY_PREFIX + "retry", False))
    t_layout, s_layout = get_layouts(project, state, params, retry=retry, rows=subset.indices)
    layout_s = time.perf_counter() - t0
    pending = [lay.key for lay in (t_layout, s_layout) if lay is not None and lay.pending and not _failed(project, lay)]
    if pending:
        cache_dir = layout_cache_dir(project)
        st.fragment(run_every=2)(poll_layouts)(cache_dir, tuple(pending))
    for name, lay in (("Teacher", t_layout), ("Student", s_layout)):
        if lay is not None and lay.pending and _failed(project, lay):
            st.warning(f"{name}: {md(lay.note, MESSAGE_MAX)}. PCA is shown instead.")
            if st.button("Retry UMAP", key=f"{KEY_PREFIX}retry_{name}"):
                st.session_state[KEY_PREFIX + "retry"] = True
                st.rerun()
        elif lay is not None and lay.note and not lay.pending:
            st.caption(f"{name}: {md(lay.note, MESSAGE_MAX)}")

    st.caption(f"{subset.caption()} · layouts ready in {layout_s:.2f} s"
               + (" · **subsampled for display**" if subset.subsampled else "")
               + (f" · layouts fitted on {state.fit_rows.size:,} of {state.n:,} images (seeded sample)"
                  if state.fit_rows is not None else ""))

    def title(who: str, lay: Layout | None) -> str:
        if lay is None:
            return f"{who}: no student yet"
        if lay.pending and _failed(project, lay):
            return f"{who} — PCA (UMAP failed)"
        how = "PCA (UMAP computing...)" if lay.pending else {"umap-transform": "UMAP (placed on last map)",
                                                             "umap-sample": "UMAP (fitted on a sample)"}.get(
            lay.method_used, lay.method_used.upper())
        return f"{who} — {how}"

    common = dict(color_by=opts["color_by"], labeled=state.human_rows, y=state.human_y,
                  picked_rounds=state.picked_rounds, query=state.query, overlays=overlays, ids=state.ids,
                  indices=subset.indices, highlight=highlight)
    student_title = f"Student round {state.student_round}" if state.student_round else "Student"
    fig = figs.scatter_pair(t_layout.coords, None if s_layout is None else s_layout.coords, state.classes,
                            teacher_probs=state.teacher, student_probs=state.student,
                            titles=(title("Teacher", t_layout), title(student_title, s_layout)), **common)
    fig.update_layout(height=520)
    ev = st.plotly_chart(fig, key=K_SCATTER, on_select=partial(_on_select, K_SCATTER), selection_mode=SELECTION_MODES)
    changed = linked.observe(K_SCATTER, figs.selected_indices(ev))
    if opts["ternary"]:
        st.subheader("The probability simplex (no projection)")
        st.caption("Selection happens in this space: PCoreSet covers it with farthest-first picks.")
        tfig = figs.ternary_pair(state.teacher, state.student, state.classes, **common)
        tfig.update_layout(height=460)
        tev = st.plotly_chart(tfig, key=K_TERNARY, on_select=partial(_on_select, K_TERNARY),
                              selection_mode=SELECTION_MODES)
        changed = linked.observe(K_TERNARY, figs.selected_indices(tev)) or changed
    st.session_state[K_LINKED] = linked.to_state()
    if changed:  # a selection read back from a chart (not from its callback): draw it on every chart
        st.rerun()

    if trace is not None and step:
        st.plotly_chart(figs.greedy_trace_figure(trace, upto=step), key=KEY_PREFIX + "greedy")
        frame = trace.to_frame().head(step)
        frame.insert(2, "image", [state.ids[int(i)] for i in frame["index"]])
        st.dataframe(frame, hide_index=True, key=KEY_PREFIX + "greedy_table")

    st.subheader("Selected images")
    if highlight.size:
        where = {K_SCATTER: "the maps", K_TERNARY: "the simplex"}.get(linked.source or "", "a plot")
        st.caption(f"Selected on {where}; highlighted (orange rings) on every panel of every plot above.")
        st.button("Clear selection", key=KEY_PREFIX + "clear", on_click=_clear_selection)
        _image_grid(project, state, highlight, key=KEY_PREFIX + "queue")
    else:
        st.caption("Click a point, or use box/lasso select on any plot above, to see the images here.")

    st.subheader("Coverage per round")
    labeled, spaces, names = coverage_inputs(state)
    if not labeled:
        st.caption("Coverage needs at least one labeled image (outside the audit set).")
    else:
        curve = coverage_curve(labeled, spaces)
        st.plotly_chart(figs.coverage_figure(curve), key=KEY_PREFIX + "coverage")
        st.caption("Mean (solid) and max (dashed) L2 distance from every pool image to its nearest labeled "
                   "image; PCoreSet drives the max down in the student's space. Rounds: " + ", ".join(names)
                   + (f". Estimated over a seeded sample of {state.fit_rows.size:,} of {state.n:,} images plus "
                      "every labeled one" if state.fit_rows is not None else ""))


try:
    _project = current_project()
except Exception as exc:  # no project open: the Project page fixes it
    show_project_error(exc)
else:
    render(_project)
