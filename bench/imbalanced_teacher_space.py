"""Diagnostic: rare-class finding in the TEACHER's probability space, with no student.

Builds the same imbalanced pool and stand-in teacher as ``simulate --imbalance`` and
prints: the teacher's predicted shares, balanced accuracy and calibration (ECE) on the
pool; per class its recall, precision and mean probability of the true class; the L2
distance of majority and rare images to the majority corner of the simplex; and the rare
labels each strategy finds per round when it selects on the teacher's fixed
probabilities (``C`` picks per round from ``C`` random starting labels, 3 seeds).
Selection only, no training: a few seconds on one CPU core.

Usage::

    python bench/imbalanced_teacher_space.py textile 0.9 [--rounds 5]
    python bench/imbalanced_teacher_space.py digits 0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activekd_core import bias, metrics  # noqa: E402
from activekd_core.selection import select  # noqa: E402
from activekd_core.simulation import (  # noqa: E402
    SimulationConfig,
    build_teacher_probs,
    default_data_dir,
    imbalance_pool,
    load_dataset,
    make_splits,
    random_start,
)


def main() -> None:
    """Print the diagnostic for one dataset and majority share."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["digits", "textile"])
    parser.add_argument("share", type=float, help="majority share of the pool, as simulate --imbalance")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    data_dir = default_data_dir()
    size = 16 if args.dataset == "digits" else 32
    data = load_dataset(args.dataset, size, data_dir)
    splits = make_splits(data.y, 0.2, 0.02, 0)
    major = int(np.bincount(data.y[splits.pool]).argmax())
    splits.pool = imbalance_pool(splits.pool, data.y, args.share, major, 0)
    cfg = SimulationConfig(dataset=args.dataset, out=Path("."), data_dir=data_dir)
    teacher, _ = build_teacher_probs(cfg, data, splits)
    y, p = data.y[splits.pool], teacher[splits.pool]
    c, rare = len(data.classes), data.y[splits.pool] != major
    pred = p.argmax(1)
    print(f"pool {len(y)}, rare share {rare.mean():.3f}, majority class {data.classes[major]!r}")
    print("teacher predicted shares", np.round(np.bincount(pred, minlength=c) / len(y), 3).tolist(),
          f"balanced accuracy {metrics.balanced_accuracy(y, pred):.3f}",
          f"ECE {bias.expected_calibration_error(p, y, np.arange(len(y))):.3f}")
    for k in range(c):
        own = y == k
        prec = np.mean(y[pred == k] == k) if (pred == k).any() else float("nan")
        print(f"  {data.classes[k]!r}: recall {np.mean(pred[own] == k):.2f}, precision {prec:.2f}, "
              f"mean p(true class) {p[own, k].mean():.2f}")
    corner = np.linalg.norm(p - np.eye(c)[major], axis=1)
    print(f"median L2 distance to the majority corner: majority images {np.median(corner[~rare]):.3f}, "
          f"rare images {np.median(corner[rare]):.3f}")
    for strategy in ("random", "pcoreset", "entropy", "badge"):
        found, last = [], []
        for seed in range(args.seeds):
            labeled = random_start(len(y), c, seed)
            row = [int(rare[labeled].sum())]
            for rnd in range(args.rounds):
                sel = select(strategy, probs=p, features=p, labeled=labeled, k=c, rng=np.random.default_rng([seed, 1 + rnd]))
                labeled = np.concatenate([labeled, np.asarray(sel.indices)])
                row.append(int(rare[labeled].sum()))
            found.append(row)
            last.append(np.bincount(y[labeled], minlength=c).tolist())
        print(f"{strategy:9s} rare labels per round (mean over seeds): {np.mean(found, axis=0).round(2).tolist()}; "
              f"labels per class at the end, per seed: {last}")


if __name__ == "__main__":
    main()
