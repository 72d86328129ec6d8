"""Plotly figure builders for the Teacher-bias page (no Streamlit here).

Confusion matrices, reliability, priors, entropy, confidence vs correctness and the prompt
workshop's before/after comparison. Class names are user text: every one goes through
:func:`activekd_core.display_text.plotly_text` (shown literally).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from activekd_core.bias import ClassificationReport, TeacherComparison
from activekd_core.display_text import plotly_text

__all__ = [
    "confusion_heatmap",
    "reliability_figure",
    "priors_figure",
    "entropy_histogram_figure",
    "confidence_correctness_figure",
    "comparison_figure",
]


def confusion_heatmap(report: ClassificationReport, *, normalized: bool = True, title: str | None = None) -> go.Figure:
    """Confusion heatmap: rows = human label, columns = prediction; cells show counts and row shares.

    Args:
        report: Output of ``bias.classification_report``.
        normalized: Colour by row share (else by count).
        title: Figure title.
    """
    cm, cmn = report.confusion, report.confusion_normalized
    text = [[f"{cm[i, j]}<br>{cmn[i, j]:.0%}" for j in range(cm.shape[1])] for i in range(cm.shape[0])]
    fig = go.Figure(
        go.Heatmap(
            z=cmn if normalized else cm,
            x=[plotly_text(c) for c in report.classes],
            y=[plotly_text(c) for c in report.classes],
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalized else None,
            hovertemplate="human %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title or f"Accuracy {report.accuracy:.1%} on {report.n} labeled images",
        xaxis_title="predicted",
        yaxis_title="human label",
        yaxis={"autorange": "reversed"},
    )
    return fig


def reliability_figure(bins: pd.DataFrame, *, ece: float | None = None, title: str = "Reliability") -> go.Figure:
    """Reliability diagram: accuracy per confidence bin vs the diagonal, counts in hover.

    Args:
        bins: Output of ``bias.reliability_bins``.
        ece: Expected calibration error for the title.
        title: Figure title prefix.
    """
    centres = (bins["bin_lower"] + bins["bin_upper"]) / 2
    width = float((bins["bin_upper"] - bins["bin_lower"]).iloc[0]) if len(bins) else 0.1
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=centres, y=bins["accuracy"], width=width * 0.95, name="accuracy",
            customdata=np.stack([bins["count"], bins["confidence"]], axis=1),
            hovertemplate="confidence bin %{x:.2f}<br>accuracy %{y:.2f}<br>mean conf %{customdata[1]:.2f}"
            "<br>%{customdata[0]} images<extra></extra>",
        )
    )
    fig.add_trace(go.Scatter(x=centres, y=bins["confidence"], mode="markers", name="mean confidence"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dash"}))
    fig.update_layout(
        title=title if ece is None else f"{title} (ECE {ece:.3f})",
        xaxis={"title": "confidence", "range": [0, 1]},
        yaxis={"title": "accuracy", "range": [0, 1]},
    )
    return fig


def priors_figure(priors: pd.DataFrame, *, title: str = "Predicted vs human class shares") -> go.Figure:
    """Grouped bars: the model's predicted-class share over the pool vs the human label share.

    Args:
        priors: Output of ``bias.priors``.
        title: Figure title.
    """
    fig = go.Figure()
    names = [plotly_text(c) for c in priors["class"]]
    fig.add_trace(go.Bar(x=names, y=priors["predicted_share"], name="predicted (whole pool)",
                         customdata=priors["predicted_count"], hovertemplate="%{x}: %{y:.1%} (%{customdata})<extra></extra>"))
    fig.add_trace(go.Bar(x=names, y=priors["human_share"], name="human labels",
                         customdata=priors["human_count"], hovertemplate="%{x}: %{y:.1%} (%{customdata})<extra></extra>"))
    fig.update_layout(barmode="group", title=title, yaxis={"title": "share", "tickformat": ".0%"})
    return fig


def entropy_histogram_figure(hist: pd.DataFrame, *, title: str = "Teacher entropy (normalised)") -> go.Figure:
    """Histogram of normalised entropy over the pool, with labeled correct/wrong counts if present.

    Args:
        hist: Output of ``bias.entropy_histogram``.
        title: Figure title.
    """
    centres = (hist["bin_lower"] + hist["bin_upper"]) / 2
    width = float((hist["bin_upper"] - hist["bin_lower"]).iloc[0]) if len(hist) else 0.05
    fig = go.Figure(go.Bar(x=centres, y=hist["count"], width=width, name="pool", marker_color="#9ecae1"))
    for col, colour in (("labeled_correct", "#2ca02c"), ("labeled_wrong", "#d62728")):
        if col in hist:
            fig.add_trace(go.Bar(x=centres, y=hist[col], width=width * 0.5, name=col.replace("_", " "), marker_color=colour))
    fig.update_layout(barmode="overlay", title=title, xaxis={"title": "entropy / log C", "range": [0, 1]},
                      yaxis_title="images")
    return fig


def confidence_correctness_figure(df: pd.DataFrame, *, title: str = "Confidence vs correctness") -> go.Figure:
    """Box plots with all points of confidence for correct and wrong labeled predictions.

    Args:
        df: Output of ``bias.confidence_vs_correctness``; ``customdata`` = pool rows.
        title: Figure title.
    """
    fig = go.Figure()
    for ok, name, colour in ((True, "correct", "#2ca02c"), (False, "wrong", "#d62728")):
        part = df[df["correct"] == ok]
        fig.add_trace(
            go.Box(
                y=part["confidence"], name=name, boxpoints="all", jitter=0.4, pointpos=0, marker_color=colour,
                customdata=part["index"].to_numpy(), hovertext=[f"#{i}: human {plotly_text(h)}, predicted {plotly_text(p)}" for i, h, p in
                                                                zip(part["index"], part["human"], part["predicted"])],
            )
        )
    fig.update_layout(title=title, yaxis={"title": "confidence", "range": [0, 1.02]}, showlegend=False)
    return fig



def comparison_figure(cmp: TeacherComparison, *, metric: str = "recall", title: str | None = None) -> go.Figure:
    """Per-class before/after bars of a teacher change (prompt workshop).

    Args:
        cmp: Output of ``bias.compare_teachers``.
        metric: ``"precision"``, ``"recall"``, ``"f1"`` or ``"predicted_share"``.
        title: Figure title.
    """
    if f"{metric}_before" not in cmp.per_class:
        raise ValueError(f"figures: unknown comparison metric {metric!r}")
    pc = cmp.per_class
    names = [plotly_text(c) for c in pc["class"]]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=pc[f"{metric}_before"], name="before"))
    fig.add_trace(go.Bar(x=names, y=pc[f"{metric}_after"], name="after"))
    if metric == "predicted_share":
        fig.add_trace(go.Scatter(x=names, y=pc["human_share"], mode="markers", name="human share",
                                 marker={"symbol": "line-ew-open", "size": 24, "line": {"width": 3}}))
    fig.update_layout(barmode="group", title=title or f"{metric} per class, before vs after")
    return fig
