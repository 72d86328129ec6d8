"""Oracle simulation of active learning with knowledge distillation (the PCoreSet protocol).

Protocol (Kang et al., 2025), on a dataset whose every image has a known label:

1. Split once (stratified, ``split_seed``): a held-out **test** split (``test_frac``);
   with the stand-in teacher also a disjoint **reference** split (``reference_frac``)
   that the teacher is fit on; the rest is the **pool** the learner draws from.
2. The teacher predicts probabilities for the pool and the test split once. Default:
   the offline stand-in teacher (a linear probe over fixed pixel features fit on the
   reference split; **not CLIP**, and labelled so in every output); or a CLIP
   zero-shot teacher from local weights; or probabilities precomputed in a file.
3. For each seed: start with **one random labeled image per class** (the same start for
   every strategy of that seed). For each round ``r = 0 .. rounds-1``: train a fresh
   DHO student on the labels so far (``kd=True``) or a CE-only student (``kd=False``),
   measure top-1 **test accuracy**, then (except after the last round) let the strategy
   pick ``budget = number of classes`` new images from the pool, using the student's
   combined probabilities (``pcoreset``, ``entropy``...) or pooled features
   (``coreset``); the oracle reveals their true labels.
   Round ``r`` therefore has ``C * (r + 1)`` labels.

The student's training seed depends only on (seed, round), so strategies differ only by
the images they picked; round 0 is trained once per (seed, kd) and shared.

Outputs in ``out``: ``results.csv`` (one row per strategy, kd, seed, round; written as
it goes), ``picks.jsonl`` (the image ids each strategy picked after each round, with
their scores), ``skipped.csv`` (every file left out, with the reason; also printed by the
command line), ``config.json`` (settings and teacher provenance), ``summary.txt`` (mean ±
std per strategy per round) and ``accuracy.html`` (plotly; ``accuracy.png`` too when
kaleido is installed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from activekd_core import metrics
from activekd_core.csv_safe import SafeDictWriter
from activekd_core.progress import ProgressFn
from activekd_core.simulation_config import PRESETS, LogFn, SimulationConfig, SimulationError, resolve_student
from activekd_core.simulation_data import (
    LabeledData,
    Splits,
    default_data_dir,
    imbalance_pool,
    initial_labels,
    load_dataset,
    make_splits,
    random_start,
    rare_class_counts,
    report_skipped,
)
from activekd_core.simulation_report import (
    RESULT_COLUMNS,
    class_columns,
    format_duration,
    parse_seeds,
    read_results,
    rows_imbalanced,
    summary_table,
    write_plot,
)
from activekd_core.simulation_teacher import build_teacher_probs, few_shot_refit, teacher_label, view_bank
from activekd_core.training import TrainConfig, predict_student, train_round

__all__ = [
    "PRESETS",
    "RESULT_COLUMNS",
    "LabeledData",
    "LogFn",
    "ProgressFn",
    "SimulationConfig",
    "SimulationError",
    "Splits",
    "build_teacher_probs",
    "default_data_dir",
    "format_duration",
    "imbalance_pool",
    "initial_labels",
    "load_dataset",
    "make_splits",
    "parse_seeds",
    "random_start",
    "rare_class_counts",
    "read_results",
    "report_skipped",
    "resolve_student",
    "rows_imbalanced",
    "run_simulation",
    "summary_table",
    "write_plot",
]


def _check_strategies(names: Sequence[str]) -> None:
    from activekd_core.selection import STRATEGIES

    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise SimulationError(f"unknown strategies {unknown}; available: {', '.join(sorted(STRATEGIES))}")


def run_simulation(
    config: SimulationConfig,
    log: LogFn | None = None,
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """Run the oracle simulation described in the module notes.

    Args:
        config: Settings.
        log: One-line status messages (round results, phases).
        progress: Training progress ``(step, total, message)`` of the current round.

    Returns:
        The result rows (also written to ``config.out / "results.csv"``).

    Raises:
        SimulationError: Bad settings or data.
    """
    from activekd_core.selection import select

    say = log or (lambda _m: None)
    if config.rounds < 1:
        raise SimulationError(f"rounds must be >= 1, got {config.rounds}")
    if not config.seeds:
        raise SimulationError("need at least one seed")
    if not config.strategies:
        raise SimulationError("need at least one strategy")
    _check_strategies(config.strategies)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
    is_digits = config.dataset == "digits"
    arch, size, pretrained = resolve_student(config)
    flip = (not is_digits) if config.flip is None else config.flip

    data = load_dataset(config.dataset, size, data_dir, say)
    report_skipped(data, out, say)
    ref_frac = config.reference_frac if config.teacher == "standin" else 0.0
    splits = make_splits(data.y, config.test_frac, ref_frac, config.split_seed)
    majority = -1
    if config.imbalance is not None:
        if config.majority is None:
            majority = int(np.bincount(data.y[splits.pool]).argmax())
        elif config.majority in data.classes:
            majority = data.classes.index(config.majority)
        else:
            raise SimulationError(f"--majority {config.majority!r} is not a class of {data.name}: {data.classes}")
        splits.pool = imbalance_pool(splits.pool, data.y, config.imbalance, majority, config.split_seed)
        shares = np.bincount(data.y[splits.pool], minlength=len(data.classes)) / len(splits.pool)
        say(f"imbalanced pool: {', '.join(f'{n} {100 * v:.1f}%' for n, v in zip(data.classes, shares))}")
    start_mode = ("random" if config.imbalance is not None else "per_class") if config.start == "auto" else config.start
    if start_mode not in ("random", "per_class"):
        raise SimulationError(f"start must be auto, random or per_class, got {config.start!r}")
    options = ";".join(
        o
        for o in (
            f"imbalance={config.imbalance}" if config.imbalance is not None else "",
            f"start={start_mode}",
            "ce_class_weight" if config.ce_class_weight else "",
            f"teacher_logit_adjust={config.teacher_logit_adjust}" if config.teacher_logit_adjust else "",
        )
        if o
    )
    holder: dict[str, Any] = {}
    teacher_all, teacher_desc = build_teacher_probs(config, data, splits, say, holder)
    teacher_name = teacher_label(teacher_desc)
    if pretrained:  # fail before the first round, with where to put the file
        from activekd_core.student import resolve_pretrained_file

        resolve_pretrained_file(arch, download=config.download_weights)
    c = len(data.classes)
    boxes_pool, views_pool = view_bank(config, data, splits, holder.get("teacher"), teacher_desc, size, flip,
                                        data_dir, say)
    pool_px = np.ascontiguousarray(data.pixels[splits.pool])
    test_px = np.ascontiguousarray(data.pixels[splits.test])
    y_pool, y_test = data.y[splits.pool], data.y[splits.test]
    t_pool = np.ascontiguousarray(teacher_all[splits.pool])
    teacher_acc = float((teacher_all[splits.test].argmax(1) == y_test).mean())
    few_shot = few_shot_refit(holder, data, splits, say) if config.teacher == "clip_few_shot" else None
    if config.clap_refit not in ("after", "before"):
        raise SimulationError(f"clap_refit must be 'after' or 'before', got {config.clap_refit!r}")
    round_teacher_acc = teacher_acc
    teacher_bacc = metrics.balanced_accuracy(y_test, teacher_all[splits.test].argmax(1))
    say(
        f"{data.name}: {c} classes, pool {len(splits.pool):,}, test {len(splits.test):,}, "
        f"reference {len(splits.reference):,}; teacher = {teacher_name}, test accuracy {teacher_acc:.1%}"
    )
    (out / "config.json").write_text(
        json.dumps(
            {
                "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
                "image_size": size,
                "arch": arch,
                "pretrained": pretrained,
                "flip": flip,
                "views": 0 if boxes_pool is None else int(boxes_pool.shape[1]),
                "classes": data.classes,
                "split_sizes": {"pool": len(splits.pool), "test": len(splits.test), "reference": len(splits.reference)},
                "teacher": teacher_desc,
                "teacher_label": teacher_name,
                "teacher_test_accuracy": teacher_acc,
                "teacher_test_balanced_accuracy": teacher_bacc,
                "pool_class_counts": np.bincount(y_pool, minlength=c).tolist(),
                "majority_class": data.classes[majority] if majority >= 0 else None,
                "start": start_mode,
            },
            indent=2,
            default=str,
        ),
        encoding="utf-8",
    )

    rows: list[dict[str, Any]] = []
    csv_path = out / "results.csv"
    picks_handle = open(out / "picks.jsonl", "w", encoding="utf-8")
    with picks_handle, open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = SafeDictWriter(handle, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        for kd in config.kd_modes:
            for seed in config.seeds:
                cache: dict[tuple[int, tuple[int, ...]], tuple[dict[str, Any], np.ndarray, np.ndarray]] = {}
                if start_mode == "random":
                    start_labels = random_start(len(y_pool), c, seed)
                else:
                    start_labels = initial_labels(y_pool, c, seed)
                for strategy in config.strategies:
                    labeled = start_labels.copy()
                    prev_labeled = np.empty(0, dtype=np.int64)  # round 0: the zero-shot teacher ("after")
                    for rnd in range(config.rounds):
                        key = (rnd, tuple(sorted(labeled.tolist())))
                        tag = f"[{'KD' if kd else 'CE'} seed {seed} {strategy} round {rnd + 1}/{config.rounds} · {len(labeled)} labels]"
                        probs = feats = None  # the last round selects nothing, so needs neither
                        if few_shot is not None:  # CLAP refit on this round's or the previous round's labels
                            t_pool, round_teacher_acc = few_shot(labeled if config.clap_refit == "before" else prev_labeled)
                        if key in cache:
                            res_metrics, probs, feats = cache[key]
                            acc = res_metrics["accuracy"]
                            test_pred = res_metrics["test_pred"]
                        else:
                            tcfg = TrainConfig(
                                arch=arch,
                                pretrained=pretrained,
                                download_weights=config.download_weights,
                                image_size=size,
                                steps=config.steps,
                                step_rule=config.step_rule,
                                epochs=config.epochs,
                                max_steps=config.max_steps,
                                steps_per_pool=config.steps_per_pool,
                                min_steps=config.min_steps,
                                batch_labeled=config.batch_labeled,
                                batch_unlabeled=config.batch_unlabeled,
                                kd=kd,
                                seed=seed * 1000 + rnd,
                                device=config.device,
                                num_workers=config.num_workers,
                                num_classes=c,
                                flip=flip,
                                ce_class_weight=config.ce_class_weight,
                                teacher_logit_adjust=config.teacher_logit_adjust,
                            )
                            prog = (lambda d, t, m, tag=tag: progress(d, t, f"{tag} {m}")) if progress else None
                            t_round = (views_pool if boxes_pool is not None else t_pool) if kd else None
                            res = train_round(pool_px, labeled, y_pool[labeled], t_round, tcfg, progress=prog,
                                              view_boxes=boxes_pool)
                            test_probs, _ = predict_student(res.model, test_px)
                            test_pred = test_probs.argmax(1)
                            acc = float((test_pred == y_test).mean())
                            if rnd < config.rounds - 1:  # the last round selects nothing
                                probs, feats = predict_student(res.model, pool_px)
                            res_metrics = dict(res.metrics, accuracy=acc, test_pred=test_pred)
                            if rnd == 0:
                                cache[key] = (res_metrics, probs, feats)
                        select_seconds = 0.0
                        if rnd < config.rounds - 1:
                            t0 = time.perf_counter()
                            # Chosen on the round-r student's pool outputs (probs: pcoreset, entropy...;
                            # features: coreset); `random` ignores both.
                            sel = select(
                                strategy,
                                probs=probs,
                                features=feats,
                                labeled=labeled,
                                labeled_y=y_pool[labeled],  # the oracle's TRUE labels (class_balanced)
                                k=c,
                                rng=np.random.default_rng([seed, 1 + rnd]),
                            )
                            select_seconds = time.perf_counter() - t0
                            picked = np.asarray(sel.indices, dtype=np.int64)
                            if len(np.intersect1d(picked, labeled)):
                                raise SimulationError(f"strategy {strategy} returned already labeled images")
                            next_labeled = np.concatenate([labeled, picked])
                            record = {
                                "strategy": strategy,
                                "kd": kd,
                                "seed": seed,
                                "round": rnd,
                                "picked_ids": [data.ids[splits.pool[i]] for i in picked],
                                "scores": [float(v) for v in np.asarray(sel.scores, dtype=np.float64)],
                            }
                            picks_handle.write(json.dumps(record) + "\n")
                            picks_handle.flush()
                        row = {
                            "dataset": data.name,
                            "strategy": strategy,
                            "kd": kd,
                            "seed": seed,
                            "round": rnd,
                            "n_labeled": int(len(labeled)),
                            "accuracy": round(acc, 6),
                            "teacher_accuracy": round(round_teacher_acc, 6),
                            "train_seconds": round(float(res_metrics["seconds"]), 3),
                            "select_seconds": round(select_seconds, 4),
                            "steps": res_metrics["steps"],
                            "final_loss": round(float(res_metrics["final_loss"]), 5),
                            "teacher": teacher_name,
                            "arch": arch,
                            "image_size": size,
                            "student_init": res_metrics.get("init", ""),
                            "views": res_metrics.get("views", 0),
                            **class_columns(y_test, test_pred, y_pool[labeled], c, majority),
                            "options": options,
                        }
                        rows.append(row)
                        writer.writerow(row)
                        handle.flush()
                        say(
                            f"{tag} test accuracy {acc:.1%}, balanced {row['balanced_accuracy']:.1%} "
                            f"(train {res_metrics['seconds']:.1f}s)"
                        )
                        if rnd < config.rounds - 1:
                            prev_labeled, labeled = labeled, next_labeled
    imbalanced = metrics.is_imbalanced(np.bincount(y_pool, minlength=c)) or metrics.is_imbalanced(
        np.bincount(y_test, minlength=c)
    )
    summary = summary_table(rows, imbalanced=imbalanced)
    (out / "summary.txt").write_text(
        f"teacher: {teacher_name} (test accuracy {teacher_acc:.1%}, balanced accuracy {teacher_bacc:.1%})\n{summary}\n",
        encoding="utf-8",
    )
    plot_metric = "balanced_accuracy" if imbalanced else "accuracy"
    write_plot(
        rows,
        out,
        title=f"{data.name}: test {metrics.METRIC_LABELS[plot_metric]} vs labels (teacher: {teacher_name})",
        metric=plot_metric,
    )
    return rows
