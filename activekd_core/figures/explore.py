"""Plotly figure builders for the Explore page (no Streamlit here).

Every point trace carries ``customdata`` = pool row index (1-D int array) so that a page can map
a click, box or lasso selection back to images with ``selected_indices``. Colours per class are
fixed by class index (:func:`activekd_core.figures.common.class_colors`) so all figures agree;
unlabeled points are grey.

Scatter encodings (shared by the UMAP/PCA pair and the ternary pair, drawn by
:mod:`activekd_core.figures.pair`; the simplex itself is in :mod:`activekd_core.figures.ternary`):

* colour: the human label (unlabeled grey), or the teacher's / student's predicted class;
* overlays: open circles for images picked in each round (one trace per round, darker = later),
  an open diamond for the current query batch, and any extra named overlay (e.g. the next batch
  each strategy would pick, or PCoreSet's greedy steps);
* a highlighted selection: the images selected on any chart, outlined on every panel;
* hover: id, human label, top-3 probabilities of teacher and student.

Also the coverage curve and PCoreSet's greedy step-through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from activekd_core.coverage import GreedyTrace
from activekd_core.figures.common import UNLABELED, UNLABELED_COLOR, class_colors
from activekd_core.figures.pair import (
    GL_THRESHOLD,
    SELECTED_NAME,
    ColorBy,
    Overlay,
    Panel,
    highlight_positions,
    hover_texts,
    pair_figure,
    point_categories,
    round_overlays,
    strategy_overlays,
)
from activekd_core.figures.ternary import ternary_pair

__all__ = [
    "GL_THRESHOLD",
    "SELECTED_NAME",
    "Overlay",
    "UNLABELED",
    "UNLABELED_COLOR",
    "class_colors",
    "round_overlays",
    "strategy_overlays",
    "hover_texts",
    "highlight_positions",
    "point_categories",
    "scatter_pair",
    "ternary_pair",
    "selected_indices",
    "coverage_figure",
    "greedy_trace_figure",
]


def scatter_pair(
    teacher_xy: npt.ArrayLike,
    student_xy: npt.ArrayLike | None,
    classes: Sequence[str],
    *,
    color_by: ColorBy = "human",
    labeled: npt.ArrayLike | None = None,
    y: npt.ArrayLike | None = None,
    teacher_probs: npt.ArrayLike | None = None,
    student_probs: npt.ArrayLike | None = None,
    picked_rounds: Mapping[int, npt.ArrayLike] | Sequence[npt.ArrayLike] | None = None,
    query: npt.ArrayLike | None = None,
    overlays: Sequence[Overlay] = (),
    ids: Sequence[str] | None = None,
    indices: npt.ArrayLike | None = None,
    titles: Sequence[str] = ("Teacher", "Student"),
    gl: bool | None = None,
    marker_size: int = 6,
    highlight: npt.ArrayLike | None = None,
) -> go.Figure:
    """Side-by-side 2-D layouts (teacher | student) with shared encodings.

    Args:
        teacher_xy: ``(N, 2)`` teacher layout (``Layout.coords``).
        student_xy: ``(N, 2)`` student layout, or None for the teacher panel alone.
        classes: Class names.
        color_by: ``"human"``, ``"teacher"`` or ``"student"``.
        labeled: Labeled pool rows.
        y: Class index per labeled row.
        teacher_probs: ``(N, C)`` for hover and ``color_by="teacher"``.
        student_probs: ``(N, C)`` for hover and ``color_by="student"``.
        picked_rounds: Pool rows picked per round (see ``round_overlays``).
        query: Current query batch.
        overlays: Extra overlays (strategy previews, greedy steps).
        ids: Image id per pool row.
        indices: Pool rows to draw (``display_subset(...).indices``); overlays are always drawn.
        titles: Panel titles.
        gl: Force WebGL traces on/off (default: on above 3,000 points).
        marker_size: Base marker size.
        highlight: Pool rows selected on any chart: outlined on both panels, the rest faded.

    Returns:
        A figure with one trace per colour category and overlay per panel; every trace's
        ``customdata`` holds pool rows.
    """
    t = np.asarray(teacher_xy, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"figures: teacher_xy must be (N, 2), got {t.shape}")
    panels = [Panel("xy", t)]
    if student_xy is not None:
        s = np.asarray(student_xy, dtype=np.float64)
        if s.shape != t.shape:
            raise ValueError(f"figures: student_xy {s.shape} and teacher_xy {t.shape} differ in shape")
        panels.append(Panel("xy", s))
    return pair_figure(
        panels, list(titles)[: len(panels)], classes, n=t.shape[0], color_by=color_by, labeled=labeled, y=y,
        teacher_probs=teacher_probs, student_probs=student_probs,
        overlays=[*round_overlays(picked_rounds, query), *overlays], ids=ids, indices=indices, gl=gl,
        marker_size=marker_size, highlight=highlight,
    )



def selected_indices(selection: Any) -> np.ndarray:
    """Pool rows from a plot selection event.

    Accepts Streamlit's ``st.plotly_chart(..., on_select="rerun")`` return value (attribute or
    dict access, ``selection.points``), a plotly ``{"points": [...]}`` dict, or a list of point
    dicts. Each point's ``customdata`` (a scalar or a 1-element list) is the pool row.

    Returns:
        Sorted unique int64 pool rows (empty when nothing is selected).
    """
    if selection is None:
        return np.zeros(0, dtype=np.int64)
    sel = selection
    for key in ("selection",):
        if isinstance(sel, Mapping) and key in sel:
            sel = sel[key]
        elif hasattr(sel, key) and not isinstance(sel, (list, tuple)):
            sel = getattr(sel, key)
    points: Iterable[Any]
    if isinstance(sel, Mapping):
        points = sel.get("points", [])
    elif hasattr(sel, "points"):
        points = sel.points
    else:
        points = sel
    rows = []
    for pt in points or []:
        cd = pt.get("customdata") if isinstance(pt, Mapping) else getattr(pt, "customdata", None)
        if cd is None:
            continue
        if isinstance(cd, (list, tuple, np.ndarray)):
            if len(cd) == 0:
                continue
            cd = cd[0]
        rows.append(int(cd))
    return np.unique(np.asarray(rows, dtype=np.int64))


def coverage_figure(curve: pd.DataFrame, *, show_max: bool = True, title: str = "Coverage of the probability space") -> go.Figure:
    """Mean (solid) and max (dashed) distance to the nearest labeled image per round, per space.

    Args:
        curve: Output of ``coverage.coverage_curve``.
        show_max: Also draw the max distance.
        title: Figure title.
    """
    fig = go.Figure()
    palette = list(qualitative.D3)
    for i, (space, part) in enumerate(curve.groupby("space", sort=False)):
        col = palette[i % len(palette)]
        fig.add_trace(go.Scatter(x=part["round"], y=part["mean_distance"], mode="lines+markers", name=f"{space} mean",
                                 line={"color": col}, customdata=part["n_labeled"],
                                 hovertemplate="round %{x}<br>mean %{y:.3f}<br>%{customdata} labeled<extra></extra>"))
        if show_max:
            fig.add_trace(go.Scatter(x=part["round"], y=part["max_distance"], mode="lines+markers", name=f"{space} max",
                                     line={"color": col, "dash": "dash"}))
    fig.update_layout(title=title, xaxis={"title": "round", "dtick": 1}, yaxis_title="L2 distance to nearest labeled")
    return fig


def greedy_trace_figure(trace: GreedyTrace, *, upto: int | None = None, title: str = "PCoreSet greedy picks") -> go.Figure:
    """Per-pick distance to the nearest labeled or already-picked point (bars) and pool max after it.

    Args:
        trace: Output of ``coverage.greedy_trace``.
        upto: Show only the first ``upto`` steps (for step-through).
        title: Figure title.
    """
    m = trace.indices.size if upto is None else max(0, min(int(upto), trace.indices.size))
    steps = np.arange(1, m + 1)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=steps, y=trace.distances[:m], name="distance at pick", customdata=trace.indices[:m],
                         hovertemplate="step %{x}: #%{customdata}<br>distance %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=steps, y=trace.max_after[:m], mode="lines+markers", name="max distance after"))
    fig.add_trace(go.Scatter(x=steps, y=trace.mean_after[:m], mode="lines+markers", name="mean distance after"))
    fig.update_layout(title=title, xaxis={"title": "step", "dtick": 1}, yaxis_title="L2 distance")
    return fig

