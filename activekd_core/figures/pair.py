"""The two-panel scatter machinery shared by the Explore page's maps and simplex plots (no Streamlit).

Holds the overlays (round picks, current query, strategy previews, the linked selection), the
hover text and colour categories per point, and :func:`pair_figure`, which draws teacher | student
panels of the same pool rows with the same encodings. Every point trace carries ``customdata`` =
pool row index, and a highlighted selection is drawn on every panel (plotly ``selectedpoints``
plus an outlined overlay), so a selection made on one panel shows on the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from activekd_core.display_text import plotly_text
from activekd_core.figures.common import UNLABELED, class_colors

__all__ = [
    "ColorBy",
    "GL_THRESHOLD",
    "Overlay",
    "Panel",
    "SELECTED_NAME",
    "hover_texts",
    "highlight_positions",
    "pair_figure",
    "point_categories",
    "round_overlays",
    "strategy_overlays",
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


SELECTED_NAME = "selected"
SELECTED_COLOR = "#ff7f0e"
UNSELECTED_OPACITY = 0.25  # points outside a highlighted selection fade on every panel


@dataclass
class Panel:
    """One panel of a pair: teacher or student coordinates for every pool row.

    Attributes:
        kind: ``"xy"`` (a 2-D layout) or ``"ternary"`` (the 3-class simplex).
        coords: ``(N, 2)`` for xy, ``(N, 3)`` probabilities for ternary.
    """

    kind: Literal["xy", "ternary"]
    coords: np.ndarray


def _trace(panel: Panel, idx: np.ndarray, gl: bool, **kw: Any) -> go.BaseTraceType:
    if panel.kind == "ternary":
        c = panel.coords[idx]
        return go.Scatterternary(a=c[:, 0], b=c[:, 1], c=c[:, 2], mode="markers", **kw)
    cls = go.Scattergl if gl else go.Scatter
    return cls(x=panel.coords[idx, 0], y=panel.coords[idx, 1], mode="markers", **kw)


def highlight_positions(trace_rows: npt.ArrayLike, highlight: npt.ArrayLike) -> np.ndarray:
    """Positions within a trace (its ``selectedpoints``) of the highlighted pool rows it draws.

    A trace draws a subset of pool rows in its own order (a colour category of the displayed,
    possibly subsampled, rows), so plotly's point numbers are not pool rows; this maps one to
    the other through the trace's ``customdata``.

    Args:
        trace_rows: The pool row of each point of the trace, in trace order.
        highlight: Highlighted pool rows (any order; rows the trace does not draw are ignored).

    Returns:
        Sorted int64 positions ``i`` with ``trace_rows[i]`` in ``highlight``.
    """
    return np.flatnonzero(np.isin(_idx(trace_rows), _idx(highlight))).astype(np.int64)


def pair_figure(
    panels: Sequence[Panel],
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
    highlight: npt.ArrayLike | None = None,
    horizontal_spacing: float = 0.08,
) -> go.Figure:
    """Teacher | student panels of the same pool rows with shared encodings.

    Args:
        panels: One :class:`Panel` per column (all of one kind).
        titles: Panel titles (plain text or escaped HTML).
        classes: Class names (raw; escaped here).
        n: Pool size.
        color_by: ``"human"``, ``"teacher"`` or ``"student"``.
        labeled: Labeled pool rows.
        y: Class index per labeled row.
        teacher_probs: ``(N, C)`` for hover and ``color_by="teacher"``.
        student_probs: ``(N, C)`` for hover and ``color_by="student"``.
        overlays: Overlays drawn on every panel (always drawn, even outside ``indices``).
        ids: Image id per pool row.
        indices: Pool rows to draw (default: all).
        gl: Force WebGL traces on/off (default: on above 3,000 points).
        marker_size: Base marker size.
        highlight: Pool rows selected on any panel or chart: outlined on every panel (drawn even
            when subsampled out) and, through ``selectedpoints``, the other points fade.
        horizontal_spacing: Gap between panels as a fraction of the figure width.

    Returns:
        The figure; every trace's ``customdata`` holds pool rows and ``meta`` says its role
        (``points``, ``overlay`` or ``selected``), category and panel.
    """
    shown = np.arange(n, dtype=np.int64) if indices is None else _idx(indices)
    if shown.size and (shown.min() < 0 or shown.max() >= n):
        raise ValueError(f"figures: indices out of range [0, {n})")
    hl = np.unique(_idx(highlight))
    if hl.size and (hl.min() < 0 or hl.max() >= n):
        raise ValueError(f"figures: highlight has rows out of range [0, {n})")
    overlays = list(overlays)
    if hl.size:
        overlays.append(Overlay(SELECTED_NAME, hl, "circle-open", SELECTED_COLOR, marker_size + 8))
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
                        horizontal_spacing=horizontal_spacing)
    for col, panel in enumerate(panels, start=1):
        for cat in order:
            sel = shown[cats[shown] == cat]
            if sel.size == 0:
                continue
            extra: dict[str, Any] = {}
            if hl.size:  # the same rows are marked selected on every panel
                extra = {"selectedpoints": highlight_positions(sel, hl),
                         "unselected": {"marker": {"opacity": UNSELECTED_OPACITY}}}
            fig.add_trace(
                _trace(
                    panel, sel, use_gl,
                    name=cat, legendgroup=cat, showlegend=col == 1,
                    marker={"color": colors[cat], "size": marker_size, "opacity": 0.5 if cat == UNLABELED else 0.85},
                    customdata=sel, hovertext=texts[sel], hoverinfo="text",
                    meta={"role": "points", "category": cat, "panel": col - 1}, **extra,
                ),
                row=1, col=col,
            )
        for ov in overlays:
            text = texts[ov.indices]
            if ov.text is not None:
                text = np.asarray([f"{t}<br>{e}" for t, e in zip(text, ov.text)], dtype=object)
            role = "selected" if ov.name == SELECTED_NAME and hl.size and ov.indices is hl else "overlay"
            fig.add_trace(
                _trace(
                    panel, ov.indices, use_gl,
                    name=ov.name, legendgroup=ov.name, showlegend=col == 1,
                    marker={"symbol": ov.symbol, "size": ov.size, "color": ov.color,
                            "line": {"width": 3 if role == "selected" else 2, "color": ov.color}},
                    customdata=ov.indices, hovertext=text, hoverinfo="text",
                    meta={"role": role, "category": ov.name, "panel": col - 1},
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
    return fig
