"""The simulation's results: the CSV columns, reading them back, the summary table and the plot.

Also the small formatting helpers of the command line (:func:`parse_seeds`,
:func:`format_duration`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from activekd_core import metrics
from activekd_core.simulation_config import SimulationError
from activekd_core.simulation_data import rare_class_counts

__all__ = [
    "RESULT_COLUMNS",
    "class_columns",
    "format_duration",
    "parse_seeds",
    "read_results",
    "rows_imbalanced",
    "summary_table",
    "write_plot",
]

RESULT_COLUMNS = [
    "dataset",
    "strategy",
    "kd",
    "seed",
    "round",
    "n_labeled",
    "accuracy",
    "teacher_accuracy",
    "train_seconds",
    "select_seconds",
    "steps",
    "final_loss",
    "teacher",
    "arch",
    "image_size",
    "student_init",
    "views",
    "balanced_accuracy",
    "macro_f1",
    "recall_per_class",
    "labels_per_class",
    "rare_labels",
    "options",
]


def class_columns(
    y_test: np.ndarray, test_pred: np.ndarray, y_labeled: np.ndarray, c: int, majority: int
) -> dict[str, Any]:
    """Imbalance-aware columns of a result row (per-class lists are ``;``-joined)."""
    recall = metrics.per_class_recall(y_test, test_pred, c)
    found = rare_class_counts(y_labeled, c)
    rare = int(found.sum() - found[majority]) if majority >= 0 else ""
    return {
        "balanced_accuracy": round(metrics.balanced_accuracy(y_test, test_pred), 6),
        "macro_f1": round(metrics.macro_f1(y_test, test_pred), 6),
        "recall_per_class": ";".join("" if np.isnan(v) else f"{v:.4f}" for v in recall),
        "labels_per_class": ";".join(str(int(v)) for v in found),
        "rare_labels": rare,
    }


def read_results(path: Path) -> list[dict[str, Any]]:
    """Read a ``results.csv`` back with typed values (kd as bool, ints, floats).

    Raises:
        SimulationError: Missing file or columns.
    """
    path = Path(path)
    if not path.is_file():
        raise SimulationError(f"{path}: results file not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("strategy", "kd", "seed", "round", "n_labeled", "accuracy") if c not in (reader.fieldnames or [])]
        if missing:
            raise SimulationError(f"{path}: missing columns {missing}")
        rows = []
        for raw in reader:
            row: dict[str, Any] = dict(raw)
            row["kd"] = str(raw["kd"]).strip().lower() in ("true", "1", "yes")
            for key in ("seed", "round", "n_labeled", "steps", "image_size", "rare_labels"):
                if raw.get(key) not in (None, ""):
                    row[key] = int(raw[key])
            for key in ("accuracy", "teacher_accuracy", "train_seconds", "select_seconds", "final_loss",
                        "balanced_accuracy", "macro_f1"):
                if raw.get(key) not in (None, ""):
                    row[key] = float(raw[key])
            rows.append(row)
    return rows


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _table(sub: Sequence[dict[str, Any]], strategies: list[str], rounds: list[int], cell: Callable[[list[dict[str, Any]]], str]) -> str:
    head = ["round", "labels"] + strategies
    lines = [[str(x) for x in head]]
    for rnd in rounds:
        cells = [str(rnd), str(next(int(r["n_labeled"]) for r in sub if int(r["round"]) == rnd))]
        for s in strategies:
            cells.append(cell([r for r in sub if r["strategy"] == s and int(r["round"]) == rnd]))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines)


def _has(rows: Sequence[dict[str, Any]], key: str) -> bool:
    return bool(rows) and all(r.get(key) not in (None, "") for r in rows)


def rows_imbalanced(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether a results table came from an imbalanced pool (its ``options`` name ``imbalance=``)."""
    return any("imbalance=" in str(r.get("options", "")) for r in rows)


def summary_table(rows: Sequence[dict[str, Any]], *, imbalanced: bool | None = None) -> str:
    """Mean ± std per round (rows) and strategy (columns), one block per KD mode, and a ranking.

    Args:
        rows: Result rows (``results.csv``).
        imbalanced: Whether the classes are imbalanced (pool or test split); None: inferred
            from the rows' ``options``. When True and the rows carry ``balanced_accuracy``, the
            table shows and ranks by balanced accuracy and adds the rare-class labels found per
            round; otherwise it shows and ranks by accuracy. The ranking line says which
            metric ranks.
    """
    imbalanced = rows_imbalanced(rows) if imbalanced is None else imbalanced
    metric = "balanced_accuracy" if imbalanced and _has(rows, "balanced_accuracy") else "accuracy"
    label = metrics.METRIC_LABELS[metric]
    blocks = []
    for kd in sorted({bool(r["kd"]) for r in rows}, reverse=True):
        sub = [r for r in rows if bool(r["kd"]) == kd]
        strategies = list(dict.fromkeys(r["strategy"] for r in sub))
        rounds = sorted({int(r["round"]) for r in sub})
        n_seeds = len({r["seed"] for r in sub})

        def pct(cell_rows: list[dict[str, Any]], key: str = metric) -> str:
            if not cell_rows:
                return "-"
            m, sd = _mean_std([float(r[key]) * 100 for r in cell_rows])
            return f"{m:5.1f} ± {sd:4.1f}"

        mode = "KD (DHO student distilled from the teacher)" if kd else "no KD (CE-only student)"
        text = f"{mode}: test {label} %, mean ± std over {n_seeds} seed(s)\n{_table(sub, strategies, rounds, pct)}"
        if imbalanced and _has(sub, "rare_labels"):
            def rare(cell_rows: list[dict[str, Any]]) -> str:
                if not cell_rows:
                    return "-"
                m, sd = _mean_std([float(r["rare_labels"]) for r in cell_rows])
                return f"{m:4.1f} ± {sd:3.1f}"

            text += f"\n\nrare-class labels found (all classes but the majority), mean ± std\n{_table(sub, strategies, rounds, rare)}"
        last = rounds[-1]
        final = {}
        for s in strategies:
            cell_rows = [r for r in sub if r["strategy"] == s and int(r["round"]) == last]
            if cell_rows:
                final[s] = (_mean_std([float(r[metric]) * 100 for r in cell_rows])[0], cell_rows)
        order = sorted(final, key=lambda s: -final[s][0])
        others = [k for k in metrics.METRIC_NAMES if k != metric and _has(sub, k)]
        parts = []
        for s in order:
            extra = ", ".join(f"{metrics.METRIC_LABELS[k]} {pct(final[s][1], k).strip()}" for k in others)
            parts.append(f"{s} {final[s][0]:.1f}" + (f" ({extra})" if extra else ""))
        why = " (classes are imbalanced)" if metric == "balanced_accuracy" else ""
        text += f"\n\nranked by {label}{why} at round {last}: " + "; ".join(parts)
        blocks.append(text)
    return "\n\n".join(blocks)


def write_plot(
    rows: Sequence[dict[str, Any]], out: Path, title: str = "test accuracy vs labels", metric: str = "accuracy"
) -> list[Path]:
    """Plot a metric vs number of labels (mean ± std) to ``accuracy.html`` (+ PNG with kaleido).

    Args:
        rows: Result rows.
        out: Output folder.
        title: Plot title.
        metric: ``"accuracy"`` or ``"balanced_accuracy"`` (imbalanced classes) or ``"macro_f1"``.

    Returns:
        The files written.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    keys = list(dict.fromkeys((r["strategy"], bool(r["kd"])) for r in rows))
    for strategy, kd in keys:
        sub = [r for r in rows if r["strategy"] == strategy and bool(r["kd"]) == kd]
        xs = sorted({int(r["n_labeled"]) for r in sub})
        stats = [_mean_std([float(r[metric]) * 100 for r in sub if int(r["n_labeled"]) == x]) for x in xs]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[m for m, _ in stats],
                error_y={"type": "data", "array": [s for _, s in stats], "visible": True},
                mode="lines+markers",
                name=f"{strategy} ({'KD' if kd else 'no KD'})",
                line={"dash": "solid" if kd else "dot"},
            )
        )
    fig.update_layout(title=title, xaxis_title="labeled images", yaxis_title=f"test {metrics.METRIC_LABELS[metric]} (%)",
                      template="plotly_white")
    written = [out / "accuracy.html"]
    fig.write_html(str(written[0]), include_plotlyjs=True, full_html=True)
    try:
        import kaleido  # noqa: F401

        fig.write_image(str(out / "accuracy.png"))
        written.append(out / "accuracy.png")
    except Exception:  # kaleido missing or without a browser: HTML only
        pass
    return written


def parse_seeds(text: str) -> list[int]:
    """``"3"`` -> ``[0, 1, 2]``; ``"0,5,7"`` -> ``[0, 5, 7]``."""
    text = text.strip()
    if "," in text:
        return [int(s) for s in text.split(",") if s.strip()]
    n = int(text)
    if n < 1:
        raise SimulationError(f"--seeds must be >= 1, got {n}")
    return list(range(n))


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``."""
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
