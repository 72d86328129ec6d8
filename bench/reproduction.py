"""Tables for bench/REPRODUCTION.md from simulate's results.csv files.

For each results file: test accuracy (%) mean +- std over seeds per round and strategy,
and PCoreSet paired against every other strategy over the same (seed, round) cells
(round 0 left out: every strategy shares it): wins / ties / losses and a two-sided
Wilcoxon signed-rank p-value (scipy; zero differences dropped, the "wilcox" rule).

    python bench/reproduction.py runs/digits/results.csv [more results.csv ...]
    python bench/reproduction.py --paired NEW.csv OLD.csv   # NEW minus OLD on shared cells

Prints Markdown.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activekd_core.simulation import read_results  # noqa: E402


def mean_std_table(rows: list[dict], kd: bool) -> str:
    """Markdown table: round, labels, one ``mean ± std`` column per strategy."""
    sub = [r for r in rows if r["kd"] == kd]
    if not sub:
        return ""
    strategies = list(dict.fromkeys(r["strategy"] for r in sub))
    rounds = sorted({r["round"] for r in sub})
    lines = ["| round | labels | " + " | ".join(strategies) + " |", "|---" * (len(strategies) + 2) + "|"]
    for rnd in rounds:
        labels = next(r["n_labeled"] for r in sub if r["round"] == rnd)
        cells = []
        for s in strategies:
            acc = [100 * r["accuracy"] for r in sub if r["strategy"] == s and r["round"] == rnd]
            if not acc:
                cells.append("–")
            else:
                sd = float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0
                cells.append(f"{np.mean(acc):.1f} ± {sd:.1f} (n={len(acc)})")
        lines.append(f"| {rnd} | {labels} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(rows: list[dict], kd: bool, target: str = "pcoreset") -> str:
    """Markdown table: PCoreSet vs each baseline over shared (seed, round >= 1) cells."""
    acc: dict[str, dict[tuple[int, int], float]] = defaultdict(dict)
    for r in rows:
        if r["kd"] == kd and r["round"] >= 1:
            acc[r["strategy"]][(r["seed"], r["round"])] = r["accuracy"]
    if target not in acc:
        return ""
    lines = ["| baseline | pairs | wins / ties / losses | mean diff (pts) | Wilcoxon p |", "|---|---|---|---|---|"]
    for base in acc:
        if base == target:
            continue
        keys = sorted(set(acc[target]) & set(acc[base]))
        if not keys:
            continue
        d = np.array([acc[target][k] - acc[base][k] for k in keys]) * 100
        wins, ties, losses = int((d > 1e-9).sum()), int((np.abs(d) <= 1e-9).sum()), int((d < -1e-9).sum())
        p = float(wilcoxon(d, zero_method="wilcox").pvalue) if (np.abs(d) > 1e-9).sum() >= 1 else float("nan")
        lines.append(f"| {base} | {len(keys)} | {wins} / {ties} / {losses} | {d.mean():+.2f} | {p:.3g} |")
    return "\n".join(lines)


def kd_gain_table(rows: list[dict]) -> str:
    """Markdown table: KD minus no-KD per strategy over shared (seed, round) cells."""
    by: dict[tuple[str, bool], dict[tuple[int, int], float]] = defaultdict(dict)
    for r in rows:
        by[(r["strategy"], r["kd"])][(r["seed"], r["round"])] = r["accuracy"]
    lines = ["| strategy | pairs | KD better / tie / worse | mean gain (pts) | Wilcoxon p |", "|---|---|---|---|---|"]
    found = False
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        keys = sorted(set(by[(strategy, True)]) & set(by[(strategy, False)]))
        if not keys:
            continue
        found = True
        d = np.array([by[(strategy, True)][k] - by[(strategy, False)][k] for k in keys]) * 100
        p = float(wilcoxon(d).pvalue) if (np.abs(d) > 1e-9).sum() >= 1 else float("nan")
        lines.append(f"| {strategy} | {len(keys)} | {int((d > 0).sum())} / {int((d == 0).sum())} / {int((d < 0).sum())} "
                     f"| {d.mean():+.2f} | {p:.3g} |")
    return "\n".join(lines) if found else ""


def paired_files(new: list[dict], old: list[dict]) -> str:
    """Markdown table: ``new`` minus ``old`` accuracy on shared (strategy, kd, seed, round) cells."""
    def index(rows: list[dict]) -> dict[tuple, float]:
        return {(r["strategy"], r["kd"], r["seed"], r["round"]): r["accuracy"] for r in rows}

    a, b = index(new), index(old)
    lines = ["| strategy | pairs | better / tie / worse | mean diff (pts) | Wilcoxon p |", "|---|---|---|---|---|"]
    for strategy in list(dict.fromkeys(k[0] for k in a)) + [None]:
        keys = sorted(k for k in a if k in b and (strategy is None or k[0] == strategy))
        if not keys:
            continue
        d = np.array([a[k] - b[k] for k in keys]) * 100
        p = float(wilcoxon(d).pvalue) if (np.abs(d) > 1e-9).sum() >= 1 else float("nan")
        lines.append(f"| {strategy or 'all'} | {len(keys)} | {int((d > 0).sum())} / {int((d == 0).sum())} / "
                     f"{int((d < 0).sum())} | {d.mean():+.2f} | {p:.3g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the Markdown tables for every results file given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.csv files (or their folders)")
    parser.add_argument("--paired", action="store_true", help="two files: the first minus the second, cell by cell")
    args = parser.parse_args(argv)
    if args.paired:
        if len(args.results) != 2:
            parser.error("--paired takes exactly two results files")
        print(paired_files(read_results(args.results[0]), read_results(args.results[1])))
        return 0
    rows_all: list[dict] = []
    for path in args.results:
        path = path / "results.csv" if path.is_dir() else path
        rows = read_results(path)
        rows_all.extend(rows)
        print(f"### {path}\n")
        for kd in (True, False):
            table = mean_std_table(rows, kd)
            if table:
                print(f"{'KD' if kd else 'no KD (CE only)'}: test accuracy %, mean ± std over seeds\n\n{table}\n")
                paired = paired_table(rows, kd)
                if paired:
                    print(f"PCoreSet vs each baseline ({'KD' if kd else 'no KD'}), rounds >= 1:\n\n{paired}\n")
    gain = kd_gain_table(rows_all)
    if gain:
        print(f"### KD vs no KD (all files, matching dataset, seed and round)\n\n{gain}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
