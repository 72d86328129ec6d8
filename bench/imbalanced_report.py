"""Markdown tables for imbalanced-pool simulations (bench/REPRODUCTION.md, section Imbalanced pools).

Reads one or more ``simulate`` output folders (``results.csv``) and prints, per folder:

* rare-class labels found after each round (labels of every class but the pool's
  majority class), mean ± std over seeds, per strategy;
* final-round balanced accuracy, accuracy and macro-F1 (mean ± std);
* a paired comparison of each strategy with ``random`` (Wilcoxon signed-rank,
  ``scipy.stats.wilcoxon``, two-sided): on the final round (pairs = seeds) and over
  every round after round 0 (pairs = seed × round; these pairs are not independent,
  so read that p-value as descriptive).

With ``--option DIR`` (repeatable), each such folder (a run with one option on, e.g.
``--ce-class-weight``) is compared with the FIRST folder (the paper's settings), strategy
by strategy, paired by (seed, round).

Usage::

    python bench/imbalanced_report.py RUN_DIR [RUN_DIR ...] [--option OPTION_RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activekd_core.simulation import read_results  # noqa: E402


def _ms(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    a = np.asarray(values, dtype=float) * scale
    if a.size == 0:
        return "—"
    sd = a.std(ddof=1) if a.size > 1 else 0.0
    return f"{a.mean():.{digits}f} ± {sd:.{digits}f}"


def _wilcoxon(a: list[float], b: list[float]) -> str:
    d = np.asarray(a) - np.asarray(b)
    if d.size == 0 or np.allclose(d, 0):
        return "n/a (no difference)"
    try:
        p = wilcoxon(a, b, zero_method="zsplit").pvalue
    except ValueError as exc:
        return f"n/a ({exc})"
    return f"{p:.3f}"


def report(folder: Path) -> str:
    """The markdown section of one simulation folder."""
    rows = read_results(folder / "results.csv")
    by: dict[tuple[str, int, int], dict] = {}
    for r in rows:
        by[(r["strategy"], int(r["seed"]), int(r["round"]))] = r
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    rounds = sorted({int(r["round"]) for r in rows})
    seeds = sorted({int(r["seed"]) for r in rows})
    last = rounds[-1]
    labels = {int(r["round"]): int(r["n_labeled"]) for r in rows}
    out = [f"### `{folder.name}` ({rows[0].get('options', '')}; teacher: {rows[0].get('teacher', '')})", ""]
    out.append("Rare-class labels found (every class but the majority), mean ± std over "
               f"{len(seeds)} seeds:")
    out.append("")
    out.append("| round | labels | " + " | ".join(strategies) + " |")
    out.append("|---|---|" + "---|" * len(strategies))
    for rnd in rounds:
        cells = [_ms([float(by[(s, sd, rnd)]["rare_labels"]) for sd in seeds if (s, sd, rnd) in by]) for s in strategies]
        out.append(f"| {rnd} | {labels[rnd]} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Classes with at least one label (of " + str(len(str(rows[0]["labels_per_class"]).split(";")))
               + "), mean over seeds:")
    out.append("")
    out.append("| round | " + " | ".join(strategies) + " |")
    out.append("|---|" + "---|" * len(strategies))
    for rnd in rounds:
        cells = []
        for s in strategies:
            found = [sum(int(v) > 0 for v in str(by[(s, sd, rnd)]["labels_per_class"]).split(";"))
                     for sd in seeds if (s, sd, rnd) in by]
            cells.append(f"{np.mean(found):.1f}" if found else "—")
        out.append(f"| {rnd} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(f"Round {last} ({labels[last]} labels), test metrics in %, mean ± std:")
    out.append("")
    out.append("| strategy | balanced accuracy | accuracy | macro-F1 | rare labels | Wilcoxon p vs random: "
               "final bal. acc (n=seeds) | all rounds bal. acc | all rounds rare labels |")
    out.append("|---|---|---|---|---|---|---|---|")
    for s in strategies:
        fin = [by[(s, sd, last)] for sd in seeds if (s, sd, last) in by]
        cells = [_ms([r[k] for r in fin], 100) for k in ("balanced_accuracy", "accuracy", "macro_f1")]
        cells.append(_ms([float(r["rare_labels"]) for r in fin]))
        if s == "random" or "random" not in strategies:
            cells += ["—", "—", "—"]
        else:
            pairs = [(sd, rnd) for sd in seeds for rnd in rounds if rnd > 0 and (s, sd, rnd) in by and ("random", sd, rnd) in by]
            fin_pairs = [sd for sd in seeds if (s, sd, last) in by and ("random", sd, last) in by]
            cells.append(_wilcoxon([by[(s, sd, last)]["balanced_accuracy"] for sd in fin_pairs],
                                   [by[("random", sd, last)]["balanced_accuracy"] for sd in fin_pairs]))
            cells.append(_wilcoxon([by[(s, *k)]["balanced_accuracy"] for k in pairs],
                                   [by[("random", *k)]["balanced_accuracy"] for k in pairs]))
            cells.append(_wilcoxon([float(by[(s, *k)]["rare_labels"]) for k in pairs],
                                   [float(by[("random", *k)]["rare_labels"]) for k in pairs]))
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    per_class = defaultdict(list)
    for s in strategies:
        for sd in seeds:
            if (s, sd, last) in by:
                per_class[s].append([float(v) for v in str(by[(s, sd, last)]["recall_per_class"]).split(";")])
    out.append("")
    out.append(f"Per-class test recall at round {last} (mean over seeds, class order of the dataset):")
    out.append("")
    for s in strategies:
        if not per_class[s]:
            continue
        out.append(f"- {s}: " + ", ".join(f"{100 * v:.0f}%" for v in np.mean(per_class[s], axis=0)))
    return "\n".join(out) + "\n"


def compare(base: Path, option: Path) -> str:
    """Each strategy of ``option`` against the same strategy in ``base``, paired by (seed, round)."""
    a = {(r["strategy"], int(r["seed"]), int(r["round"])): r for r in read_results(base / "results.csv")}
    b = {(r["strategy"], int(r["seed"]), int(r["round"])): r for r in read_results(option / "results.csv")}
    opts = next(iter(b.values()))["options"]
    out = [f"#### `{option.name}` ({opts}) vs `{base.name}`", "",
           "| strategy | metric | paper settings | with the option | Wilcoxon p final (n=seeds) | all rounds > 0 |",
           "|---|---|---|---|---|---|"]
    for s in dict.fromkeys(k[0] for k in b):
        keys = [k for k in b if k[0] == s and k in a]
        if not keys:
            continue
        last = max(k[2] for k in keys)
        fin = [k for k in keys if k[2] == last]
        later = [k for k in keys if k[2] > 0]
        for metric, scale in (("balanced_accuracy", 100), ("accuracy", 100), ("macro_f1", 100), ("rare_labels", 1)):
            out.append(
                f"| {s} | {metrics_label(metric)} (round {last}) | {_ms([float(a[k][metric]) for k in fin], scale)} | "
                f"{_ms([float(b[k][metric]) for k in fin], scale)} | "
                f"{_wilcoxon([float(b[k][metric]) for k in fin], [float(a[k][metric]) for k in fin])} | "
                f"{_wilcoxon([float(b[k][metric]) for k in later], [float(a[k][metric]) for k in later])} |"
            )
    return "\n".join(out) + "\n"


def metrics_label(metric: str) -> str:
    """Human name of a results.csv metric column."""
    return {"balanced_accuracy": "balanced accuracy %", "accuracy": "accuracy %", "macro_f1": "macro-F1 %",
            "rare_labels": "rare labels"}[metric]


def main() -> None:
    """Print the report of every folder given, then the option comparisons."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--option", action="append", type=Path, default=[], help="a run with one option on")
    args = parser.parse_args()
    for folder in args.folders:
        print(report(folder))
    for folder in args.option:
        print(compare(args.folders[0], folder))


if __name__ == "__main__":
    main()
