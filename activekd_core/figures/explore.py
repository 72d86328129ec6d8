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

import dataclasses
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
from activekd_core.figures.ternary import ternary_pair as _ternary_pair

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
    n_all = np.shape(teacher_xy)[0]
    overlays = [*round_overlays(picked_rounds, query), *overlays]
    rows = _compact_rows(n_all, indices, overlays, highlight)
    if rows is not None:  # a large pool: build the figure over the drawn rows only
        fig = scatter_pair(
            _take(teacher_xy, rows), None if student_xy is None else _take(student_xy, rows), classes,
            color_by=color_by, **_compact_args(rows, labeled, y, overlays, highlight, ids),
            teacher_probs=None if teacher_probs is None else _take(teacher_probs, rows),
            student_probs=None if student_probs is None else _take(student_probs, rows),
            titles=titles, gl=gl, marker_size=marker_size,
        )
        return _restore_rows(fig, rows)
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
        overlays=overlays, ids=ids, indices=indices, gl=gl, marker_size=marker_size, highlight=highlight,
    )


COMPACT_FRACTION = 0.5
"""A figure is built over its drawn rows only when they are fewer than this share of the pool."""


def _compact_rows(n: int, indices: Any, overlays: Sequence[Overlay], highlight: Any) -> np.ndarray | None:
    """The sorted rows a subsampled figure needs (drawn, overlaid, highlighted), or None to use all."""
    if indices is None:
        return None
    parts = [np.asarray(indices, dtype=np.int64).reshape(-1), *[ov.indices for ov in overlays]]
    if highlight is not None:
        parts.append(np.asarray(highlight, dtype=np.int64).reshape(-1))
    rows = np.unique(np.concatenate(parts))
    if rows.size >= COMPACT_FRACTION * n or (rows.size and (rows[0] < 0 or rows[-1] >= n)):
        return None  # small or unsubsampled figures (and bad rows, reported by the full path) as before
    return rows


def _take(values: Any, rows: np.ndarray) -> np.ndarray:
    """``values[rows]`` (rows sorted): only those rows of a memory map are read."""
    return np.asarray((values if isinstance(values, np.ndarray) else np.asarray(values))[rows])


def _compact_args(rows: np.ndarray, labeled: Any, y: Any, overlays: Sequence[Overlay], highlight: Any,
                  ids: Sequence[str] | None) -> dict[str, Any]:
    """Figure arguments renumbered to positions within ``rows``."""
    lab = np.asarray([] if labeled is None else labeled, dtype=np.int64).reshape(-1)
    yy = np.asarray([] if y is None else y, dtype=np.int64).reshape(-1)
    inside = np.isin(lab, rows)
    return {
        "labeled": np.searchsorted(rows, lab[inside]), "y": yy[inside] if yy.size == lab.size else yy,
        "overlays": [dataclasses.replace(ov, indices=np.searchsorted(rows, ov.indices)) for ov in overlays],
        "highlight": None if highlight is None else np.searchsorted(rows, np.asarray(highlight, dtype=np.int64)),
        "ids": None if ids is None else [ids[int(r)] for r in rows],
        "indices": np.arange(rows.size, dtype=np.int64),
    }


def _restore_rows(fig: go.Figure, rows: np.ndarray) -> go.Figure:
    """Put pool rows back into every trace's ``customdata`` of a figure built over ``rows``."""
    for trace in fig.data:
        if getattr(trace, "customdata", None) is not None:
            trace.customdata = rows[np.asarray(trace.customdata, dtype=np.int64)]
    return fig


def ternary_pair(teacher_probs: npt.ArrayLike, student_probs: npt.ArrayLike | None, classes: Sequence[str],
                 **kw: Any) -> go.Figure:
    """:func:`activekd_core.figures.ternary.ternary_pair`, built over the drawn rows only when
    ``indices`` subsamples a large pool (``customdata`` still holds pool rows)."""
    overlays = [*round_overlays(kw.pop("picked_rounds", None), kw.pop("query", None)), *kw.pop("overlays", ())]
    rows = _compact_rows(np.shape(teacher_probs)[0], kw.get("indices"), overlays, kw.get("highlight"))
    if rows is None:
        return _ternary_pair(teacher_probs, student_probs, classes, overlays=overlays, **kw)
    args = _compact_args(rows, kw.pop("labeled", None), kw.pop("y", None), overlays, kw.pop("highlight", None),
                         kw.pop("ids", None))
    kw.pop("indices", None)
    fig = _ternary_pair(_take(teacher_probs, rows), None if student_probs is None else _take(student_probs, rows),
                        classes, **args, **kw)
    return _restore_rows(fig, rows)



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

