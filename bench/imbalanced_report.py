"""Markdown tables for imbalanced-pool simulations (bench/REPRODUCTION_IMBALANCED.md).

Reads one or more ``simulate`` output folders (``results.csv``) and prints, per folder:

* rare-class labels found after each round (labels of every class but the pool's
  majority class), mean ± std over seeds, per strategy;
* final-round balanced accuracy, accuracy and macro-F1 (mean ± std);
* a paired comparison of each strategy with ``random`` (Wilcoxon signed-rank,
  ``scipy.stats.wilcoxon``, two-sided): on the final round (pairs = seeds) and over
  every round after round 0 (pairs = seed × round; these pairs are not independent,
  so read that p-value as descriptive).

Usage::

    python bench/imbalanced_report.py RUN_DIR [RUN_DIR ...]
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


def main() -> None:
    """Print the report of every folder given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    for folder in args.folders:
        print(report(folder))


if __name__ == "__main__":
    main()
