"""Plotly figure builders for the Explore page (no Streamlit here).

Every point trace carries ``customdata`` = pool row index (1-D int array) so that a page can map
a click, box or lasso selection back to images with ``selected_indices``. Colours per class are
fixed by class index (:func:`activekd_core.figures.common.class_colors`) so all figures agree;
unlabeled points are grey.

Scatter encodings (shared by the UMAP/PCA pair and the ternary pair):

* colour: the human label (unlabeled grey), or the teacher's / student's predicted class;
* overlays: open circles for images picked in each round (one trace per round, darker = later),
  an open diamond for the current query batch, and any extra named overlay (e.g. the next batch
  each strategy would pick, or PCoreSet's greedy steps);
* hover: id, human label, top-3 probabilities of teacher and student.

Also the coverage curve and PCoreSet's greedy step-through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from activekd_core.coverage import GreedyTrace
from activekd_core.display_text import plotly_text
from activekd_core.figures.common import UNLABELED, UNLABELED_COLOR, class_colors

__all__ = [
    "Overlay",
    "UNLABELED",
    "UNLABELED_COLOR",
    "class_colors",
    "round_overlays",
    "strategy_overlays",
    "hover_texts",
    "point_categories",
    "scatter_pair",
    "ternary_pair",
    "selected_indices",
    "coverage_figure",
    "greedy_trace_figure",
]

GL_THRESHOLD = 3000
ColorBy = Literal["human", "teacher", "student"]


@dataclass(frozen=True)
class Overlay:
    """A highlighted set of points drawn on top of the base scatter.

    Attributes:
        name: Legend name (e.g. ``"round 2 picks"``).
        indices: Pool rows to highlight.
        symbol: Plotly marker symbol.
        color: Marker (outline) colour.
        size: Marker size.
        text: Optional per-point extra hover line (same length as ``indices``), e.g. a score.
    """

    name: str
    indices: np.ndarray
    symbol: str = "circle-open"
    color: str = "#222222"
    size: int = 12
    text: tuple[str, ...] | None = None


def round_overlays(
    picked_rounds: Mapping[int, npt.ArrayLike] | Sequence[npt.ArrayLike] | None,
    query: npt.ArrayLike | None = None,
) -> list[Overlay]:
    """Overlays for images picked in each round (open circles, darker = later) and the current query.

    Args:
        picked_rounds: Round number -> pool rows picked in that round (a sequence means rounds
            1, 2, ...).
        query: Pool rows of the current query batch (open diamonds).

    Returns:
        Overlays in drawing order.
    """
    out: list[Overlay] = []
    items: list[tuple[int, npt.ArrayLike]] = []
    if isinstance(picked_rounds, Mapping):
        items = sorted(picked_rounds.items())
    elif picked_rounds is not None:
        items = [(r + 1, idx) for r, idx in enumerate(picked_rounds)]
    if items:
        shades = sample_colorscale("Greys", np.linspace(0.45, 1.0, len(items)).tolist())
        for (r, idx), col in zip(items, shades):
            out.append(Overlay(f"round {r} picks", _idx(idx), "circle-open", col, 11))
    if query is not None and np.asarray(query).size:
        out.append(Overlay("current query", _idx(query), "diamond-open", "#d62728", 14))
    return out


STRATEGY_SYMBOLS = ("x-thin-open", "cross-thin-open", "star-triangle-up-open", "hexagram-open", "asterisk-open")


def strategy_overlays(
    picks: Mapping[str, npt.ArrayLike], scores: Mapping[str, npt.ArrayLike] | None = None
) -> list[Overlay]:
    """Overlays for the next batch each strategy would pick (selection demo).

    Args:
        picks: Strategy name -> pool rows it would pick (e.g. ``Selection.indices``).
        scores: Optional strategy name -> per-pick score (``Selection.scores``), shown in hover.

    Returns:
        One overlay per strategy, each with its own symbol and colour.
    """
    palette = list(qualitative.Dark2)
    out = []
    for i, (name, idx) in enumerate(picks.items()):
        arr = _idx(idx)
        text = None
        if scores is not None and name in scores:
            sc = np.asarray(scores[name], dtype=np.float64).reshape(-1)
            if sc.size != arr.size:
                raise ValueError(f"figures: strategy {name!r} has {arr.size} picks but {sc.size} scores")
            text = tuple(f"{name} pick {j + 1}, score {v:.3g}" for j, v in enumerate(sc))
        out.append(Overlay(f"{name} next", arr, STRATEGY_SYMBOLS[i % len(STRATEGY_SYMBOLS)],
                           palette[i % len(palette)], 12, text))
    return out


def _idx(a: npt.ArrayLike | None) -> np.ndarray:
    if a is None:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(a, dtype=np.int64).reshape(-1)


def _top_k(probs: np.ndarray, classes: Sequence[str], k: int = 3) -> list[str]:
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(probs, order, axis=1)
    names = [plotly_text(c) for c in classes]
    return [", ".join(f"{names[c]} {v:.2f}" for c, v in zip(o, vv)) for o, vv in zip(order, vals)]


def hover_texts(
    indices: npt.ArrayLike,
    classes: Sequence[str],
    *,
    ids: Sequence[str] | None = None,
    human: Sequence[str] | None = None,
    teacher_probs: npt.ArrayLike | None = None,
    student_probs: npt.ArrayLike | None = None,
) -> list[str]:
    """Hover text per point: id, human label, top-3 probabilities of teacher and student.

    Args:
        indices: Pool rows to describe.
        classes: Class names.
        ids: Image id per pool row (default: the row number).
        human: Human label name per pool row (``"unlabeled"`` where none).
        teacher_probs: ``(N, C)`` teacher probabilities.
        student_probs: ``(N, C)`` student probabilities.

    Returns:
        One HTML string per index; ids and names are escaped (shown literally).
    """
    idx = _idx(indices)
    lines = [[f"<b>{plotly_text(ids[i]) if ids is not None else f'#{i}'}</b>"] for i in idx]
    if human is not None:
        for li, i in zip(lines, idx):
            li.append(f"human: {plotly_text(human[i])}")
    for name, probs in (("teacher", teacher_probs), ("student", student_probs)):
        if probs is None:
            continue
        p = np.asarray(probs)[idx]
        for li, t in zip(lines, _top_k(p, classes)):
            li.append(f"{name}: {t}")
    return ["<br>".join(li) for li in lines]


def point_categories(
    n: int,
    classes: Sequence[str],
    *,
    color_by: ColorBy = "human",
    labeled: npt.ArrayLike | None = None,
    y: npt.ArrayLike | None = None,
    teacher_probs: npt.ArrayLike | None = None,
    student_probs: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Colour category (a class name or ``"unlabeled"``) per pool row.

    Args:
        n: Pool size.
        classes: Class names.
        color_by: ``"human"`` (unlabeled grey), ``"teacher"`` or ``"student"`` (predicted class).
        labeled: Labeled pool rows (for ``"human"``).
        y: Class index per labeled row.
        teacher_probs: Needed for ``color_by="teacher"``.
        student_probs: Needed for ``color_by="student"``.

    Returns:
        ``(n,)`` object array of category names.
    """
    names = np.asarray([str(c) for c in classes] + [UNLABELED], dtype=object)
    if color_by == "human":
        cat = np.full(n, len(classes), dtype=np.int64)
        lab, yy = _idx(labeled), _idx(y)
        if lab.size != yy.size:
            raise ValueError(f"figures: labeled has {lab.size} rows but y has {yy.size}")
        cat[lab] = yy
        return names[cat]
    probs = teacher_probs if color_by == "teacher" else student_probs if color_by == "student" else None
    if color_by not in ("teacher", "student"):
        raise ValueError(f"figures: color_by must be 'human', 'teacher' or 'student', got {color_by!r}")
    if probs is None:
        raise ValueError(f"figures: color_by={color_by!r} needs {color_by}_probs")
    p = np.asarray(probs)
    if p.shape[0] != n:
        raise ValueError(f"figures: {color_by}_probs has {p.shape[0]} rows for a pool of {n}")
    return names[p.argmax(axis=1)]


def _human_names(n: int, classes: Sequence[str], labeled: Any, y: Any) -> np.ndarray:
    return point_categories(n, classes, color_by="human", labeled=labeled, y=y)


@dataclass
class _Panel:
    kind: Literal["xy", "ternary"]
    coords: np.ndarray  # (N, 2) for xy, (N, 3) for ternary


def _trace(panel: _Panel, idx: np.ndarray, gl: bool, **kw: Any) -> go.BaseTraceType:
    if panel.kind == "ternary":
        c = panel.coords[idx]
        return go.Scatterternary(a=c[:, 0], b=c[:, 1], c=c[:, 2], mode="markers", **kw)
    cls = go.Scattergl if gl else go.Scatter
    return cls(x=panel.coords[idx, 0], y=panel.coords[idx, 1], mode="markers", **kw)


def _pair_figure(
    panels: Sequence[_Panel],
    titles: Sequence[str],
    classes: Sequence[str],
    *,
    n: int,
    color_by: ColorBy,
    labeled: Any,
    y: Any,
    teacher_probs: Any,
    student_probs: Any,
    overlays: Sequence[Overlay],
    ids: Sequence[str] | None,
    indices: npt.ArrayLike | None,
    gl: bool | None,
    marker_size: int,
) -> go.Figure:
    shown = np.arange(n, dtype=np.int64) if indices is None else _idx(indices)
    if shown.size and (shown.min() < 0 or shown.max() >= n):
        raise ValueError(f"figures: indices out of range [0, {n})")
    for ov in overlays:
        if ov.indices.size and (ov.indices.min() < 0 or ov.indices.max() >= n):
            raise ValueError(f"figures: overlay {ov.name!r} has indices out of range [0, {n})")
    use_gl = (shown.size > GL_THRESHOLD) if gl is None else gl
    shown_names = [plotly_text(c) for c in classes]  # legend entries and axis titles read HTML
    cats = point_categories(
        n, shown_names, color_by=color_by, labeled=labeled, y=y, teacher_probs=teacher_probs,
        student_probs=student_probs,
    )
    human = _human_names(n, classes, labeled, y)  # raw: hover_texts escapes
    colors = class_colors(shown_names)
    order = shown_names + [UNLABELED]
    need = np.unique(np.concatenate([shown, *[ov.indices for ov in overlays]]))  # hover text only where drawn
    texts = np.empty(n, dtype=object)
    texts[need] = hover_texts(need, classes, ids=ids, human=human, teacher_probs=teacher_probs,
                              student_probs=student_probs)
    kind = panels[0].kind
    spec = {"type": "ternary"} if kind == "ternary" else {"type": "xy"}
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(titles), specs=[[spec] * len(panels)],
                        horizontal_spacing=0.08)
    for col, panel in enumerate(panels, start=1):
        for cat in order:
            sel = shown[cats[shown] == cat]
            if sel.size == 0:
                continue
            fig.add_trace(
                _trace(
                    panel, sel, use_gl,
                    name=cat, legendgroup=cat, showlegend=col == 1,
                    marker={"color": colors[cat], "size": marker_size, "opacity": 0.5 if cat == UNLABELED else 0.85},
                    customdata=sel, hovertext=texts[sel], hoverinfo="text",
                    meta={"role": "points", "category": cat, "panel": col - 1},
                ),
                row=1, col=col,
            )
        for ov in overlays:
            extra = texts[ov.indices]
            if ov.text is not None:
                extra = np.asarray([f"{t}<br>{e}" for t, e in zip(extra, ov.text)], dtype=object)
            fig.add_trace(
                _trace(
                    panel, ov.indices, use_gl,
                    name=ov.name, legendgroup=ov.name, showlegend=col == 1,
                    marker={"symbol": ov.symbol, "size": ov.size, "color": ov.color, "line": {"width": 2, "color": ov.color}},
                    customdata=ov.indices, hovertext=extra, hoverinfo="text",
                    meta={"role": "overlay", "category": ov.name, "panel": col - 1},
                ),
                row=1, col=col,
            )
    fig.update_layout(
        dragmode="lasso" if kind == "xy" else "pan",
        legend={"itemsizing": "constant"},
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        clickmode="event+select",
    )
    if kind == "xy":
        fig.update_xaxes(showticklabels=False, zeroline=False)
        fig.update_yaxes(showticklabels=False, zeroline=False)
    else:
        axes = {f"ternary{'' if i == 0 else i + 1}": {
            "aaxis": {"title": {"text": shown_names[0]}},
            "baxis": {"title": {"text": shown_names[1]}},
            "caxis": {"title": {"text": shown_names[2]}},
        } for i in range(len(panels))}
        fig.update_layout(**axes)
    return fig


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

    Returns:
        A figure with one trace per colour category and overlay per panel; every trace's
        ``customdata`` holds pool rows.
    """
    t = np.asarray(teacher_xy, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"figures: teacher_xy must be (N, 2), got {t.shape}")
    panels = [_Panel("xy", t)]
    if student_xy is not None:
        s = np.asarray(student_xy, dtype=np.float64)
        if s.shape != t.shape:
            raise ValueError(f"figures: student_xy {s.shape} and teacher_xy {t.shape} differ in shape")
        panels.append(_Panel("xy", s))
    return _pair_figure(
        panels, list(titles)[: len(panels)], classes, n=t.shape[0], color_by=color_by, labeled=labeled, y=y,
        teacher_probs=teacher_probs, student_probs=student_probs,
        overlays=[*round_overlays(picked_rounds, query), *overlays], ids=ids, indices=indices, gl=gl,
        marker_size=marker_size,
    )


def ternary_pair(
    teacher_probs: npt.ArrayLike,
    student_probs: npt.ArrayLike | None,
    classes: Sequence[str],
    *,
    color_by: ColorBy = "human",
    labeled: npt.ArrayLike | None = None,
    y: npt.ArrayLike | None = None,
    picked_rounds: Mapping[int, npt.ArrayLike] | Sequence[npt.ArrayLike] | None = None,
    query: npt.ArrayLike | None = None,
    overlays: Sequence[Overlay] = (),
    ids: Sequence[str] | None = None,
    indices: npt.ArrayLike | None = None,
    titles: Sequence[str] = ("Teacher simplex", "Student simplex"),
    marker_size: int = 6,
) -> go.Figure:
    """The 3-class probability simplex itself (no projection), teacher | student.

    Axis a = class 0, b = class 1, c = class 2. Same encodings and ``customdata`` as
    ``scatter_pair``.

    Args:
        teacher_probs: ``(N, 3)`` teacher probabilities.
        student_probs: ``(N, 3)`` student probabilities or None.
        classes: The 3 class names.
        color_by: See ``scatter_pair``.
        labeled: Labeled pool rows.
        y: Class index per labeled row.
        picked_rounds: Pool rows picked per round.
        query: Current query batch.
        overlays: Extra overlays.
        ids: Image id per pool row.
        indices: Pool rows to draw.
        titles: Panel titles.
        marker_size: Base marker size.

    Returns:
        A figure with ternary subplots.
    """
    t = np.asarray(teacher_probs, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 3 or len(classes) != 3:
        raise ValueError(f"figures: the ternary view needs exactly 3 classes, got probs {t.shape}, {len(classes)} names")
    panels = [_Panel("ternary", t)]
    s = None
    if student_probs is not None:
        s = np.asarray(student_probs, dtype=np.float64)
        if s.shape != t.shape:
            raise ValueError(f"figures: student_probs {s.shape} and teacher_probs {t.shape} differ in shape")
        panels.append(_Panel("ternary", s))
    return _pair_figure(
        panels, list(titles)[: len(panels)], classes, n=t.shape[0], color_by=color_by, labeled=labeled, y=y,
        teacher_probs=t, student_probs=s, overlays=[*round_overlays(picked_rounds, query), *overlays], ids=ids,
        indices=indices, gl=False, marker_size=marker_size,
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

