"""The 3-class probability simplex (ternary plot), teacher | student, with readable vertex labels.

Plotly writes each ternary axis title at a vertex: the a-axis title centred above the top
vertex, the b- and c-axis titles centred just outside the bottom-left and bottom-right vertices.
A long class name there runs off the figure or into the other panel, and the subplot title sits
on top of the a-axis title. So the vertex labels are bounded (:data:`VERTEX_MAX` characters, an
ellipsis where cut, escaped), the full name shows on hover over a marker at each vertex, and the
margins, the gap between the panels and the subplot titles' offset are sized from the labels
(:func:`vertex_room`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go

from activekd_core.display_text import NAME_MAX, plotly_text, visible
from activekd_core.figures.common import class_colors
from activekd_core.figures.pair import ColorBy, Overlay, Panel, pair_figure, round_overlays

__all__ = ["VERTEX_MAX", "VERTEX_FONT", "MIN_WIDTH", "VertexRoom", "vertex_label", "vertex_room", "ternary_pair"]

VERTEX_MAX = 18  # characters of a class name written at a vertex (the full name is in the hover)
VERTEX_FONT = 12  # px, vertex labels
TICK_FONT = 9  # px, the 0.2 ... 0.8 tick labels along the edges
CHAR_WIDTH = 0.7  # upper bound of a character's width in font sizes (wide letters, the ellipsis)
PAD = 16  # px between a label and the figure's edge, the other panel or the subplot title
MIN_WIDTH = 640  # px: the narrowest figure the panel gap is sized for (Streamlit's centred layout is wider)


@dataclass(frozen=True)
class VertexRoom:
    """Room (px) the vertex labels need around each triangle.

    Attributes:
        side: Left and right margin: half the widest bottom label plus padding.
        gap: Gap between the two panels: the left panel's c label and the right one's b label.
        top: Top margin: subplot title above the a label.
        bottom: Bottom margin: the b and c labels below the bottom vertices.
        title_shift: How far (px) the subplot titles are raised above their default place so
            they clear the a label.
    """

    side: int
    gap: int
    top: int
    bottom: int
    title_shift: int


def vertex_label(name: object) -> str:
    """The class name as written at a vertex: at most :data:`VERTEX_MAX` characters, escaped."""
    return plotly_text(name, VERTEX_MAX)


def _label_width(name: object) -> float:
    return CHAR_WIDTH * VERTEX_FONT * len(visible(name, VERTEX_MAX))


def vertex_room(classes: Sequence[str]) -> VertexRoom:
    """Margins and gaps (px) that fit the vertex labels of ``classes`` (class 0 at the top)."""
    half = max(_label_width(c) for c in classes[1:3]) / 2
    a_height = VERTEX_FONT + TICK_FONT + PAD  # the a label stands on the top vertex's tick labels
    title_shift = math.ceil(a_height)
    return VertexRoom(
        side=math.ceil(half + PAD),
        gap=math.ceil(2 * half + 2 * TICK_FONT + PAD),
        top=math.ceil(title_shift + 2 * VERTEX_FONT + PAD),
        bottom=math.ceil(VERTEX_FONT + 2 * TICK_FONT + PAD),
        title_shift=title_shift,
    )


def _vertex_markers(fig: go.Figure, classes: Sequence[str], n_panels: int) -> None:
    """A marker at each vertex of each panel whose hover gives the class's full (escaped) name."""
    shown = [plotly_text(c) for c in classes]
    colors = class_colors(shown)
    full = [f"class {i + 1} of 3:<br>{plotly_text(c, NAME_MAX)}" for i, c in enumerate(classes)]
    corners = np.eye(3)
    for col in range(1, n_panels + 1):
        fig.add_trace(
            go.Scatterternary(
                a=corners[:, 0], b=corners[:, 1], c=corners[:, 2], mode="markers",
                marker={"symbol": "triangle-up", "size": 11, "color": [colors[s] for s in shown],
                        "line": {"width": 1, "color": "#333333"}},
                hovertext=full, hoverinfo="text", showlegend=False, name="vertices", cliponaxis=False,
                meta={"role": "vertex", "category": "vertices", "panel": col - 1},
            ),
            row=1, col=col,
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
    highlight: npt.ArrayLike | None = None,
) -> go.Figure:
    """The 3-class probability simplex itself (no projection), teacher | student.

    Axis a = class 0 (top vertex), b = class 1 (bottom left), c = class 2 (bottom right). Same
    encodings and ``customdata`` as ``scatter_pair``; vertex labels bounded and escaped, with the
    margins and panel gap of :func:`vertex_room`.

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
        highlight: Pool rows selected on any chart, outlined on both panels.

    Returns:
        A figure with ternary subplots.
    """
    t = np.asarray(teacher_probs, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 3 or len(classes) != 3:
        raise ValueError(f"figures: the ternary view needs exactly 3 classes, got probs {t.shape}, {len(classes)} names")
    panels = [Panel("ternary", t)]
    s = None
    if student_probs is not None:
        s = np.asarray(student_probs, dtype=np.float64)
        if s.shape != t.shape:
            raise ValueError(f"figures: student_probs {s.shape} and teacher_probs {t.shape} differ in shape")
        panels.append(Panel("ternary", s))
    room = vertex_room(classes)
    fig = pair_figure(
        panels, list(titles)[: len(panels)], classes, n=t.shape[0], color_by=color_by, labeled=labeled, y=y,
        teacher_probs=t, student_probs=s, overlays=[*round_overlays(picked_rounds, query), *overlays], ids=ids,
        indices=indices, gl=False, marker_size=marker_size, highlight=highlight,
        horizontal_spacing=min(0.45, room.gap / MIN_WIDTH),
    )
    _vertex_markers(fig, classes, len(panels))
    title_font = {"size": VERTEX_FONT}
    tick_font = {"size": TICK_FONT}
    axes = {f"ternary{'' if i == 0 else i + 1}": {
        f"{ax}axis": {"title": {"text": vertex_label(classes[j]), "font": title_font}, "tickfont": tick_font}
        for j, ax in enumerate("abc")
    } for i in range(len(panels))}
    fig.update_layout(margin={"l": room.side, "r": room.side, "t": room.top, "b": room.bottom},
                      # below the panels, not beside them: a legend of long names would squeeze the triangles
                      legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0},
                      **axes)
    fig.update_annotations(yshift=room.title_shift)  # the subplot titles, above the top vertex's label
    return fig
