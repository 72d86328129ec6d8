"""The simulation's data: a labelled dataset decoded to pixels, its splits and the starting labels.

* :func:`load_dataset`: a demo (``digits``, ``textile``; neutral file names, the truth
  read from the demo's sidecar -- the simulated oracle is one of its two readers, a
  user's label import the other) or a class-folder tree, decoded once (cached) to uint8
  pixels, with every file left out and why (:func:`report_skipped`).
* :func:`make_splits`: stratified, disjoint test / reference / pool splits;
  :func:`imbalance_pool` makes the pool imbalanced on purpose.
* :func:`initial_labels` (one per class, the paper's start) and :func:`random_start`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from activekd_core.csv_safe import write_rows
from activekd_core.simulation_config import LogFn, SimulationError

__all__ = [
    "LabeledData",
    "Splits",
    "default_data_dir",
    "imbalance_pool",
    "initial_labels",
    "load_dataset",
    "make_splits",
    "random_start",
    "rare_class_counts",
    "report_skipped",
]


@dataclass
class LabeledData:
    """Images with ground truth, decoded to pixels.

    Attributes:
        name: Dataset name.
        classes: Class names (column order of every probability array).
        ids: Image ids, row order of ``pixels`` and ``y``.
        y: Ground-truth class index per row.
        pixels: uint8 ``(N, S, S, 3)``.
        root: Image root folder.
        prompts: Class -> CLIP prompt (demo datasets), else None.
        skipped: ``(id, reason)`` of every file left out (unreadable, undecodable, or
            outside any class folder), in id order.
    """

    name: str
    classes: list[str]
    ids: list[str]
    y: npt.NDArray[np.int64]
    pixels: npt.NDArray[np.uint8]
    root: Path
    prompts: dict[str, str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Splits:
    """Row indices of the three disjoint splits of a :class:`LabeledData`."""

    pool: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]
    reference: npt.NDArray[np.int64]


def default_data_dir() -> Path:
    """``$ACTIVEKD_DATA_DIR`` or ``~/.cache/activekd/simulate``: demo images and pixel caches."""
    env = os.environ.get("ACTIVEKD_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "activekd" / "simulate"


def load_dataset(dataset: str, image_size: int, data_dir: Path, log: LogFn | None = None) -> LabeledData:
    """Materialise a demo (or scan a class-folder tree) and decode it to pixels.

    Args:
        dataset: ``"digits"``, ``"textile"`` or a folder with class sub-folders.
        image_size: Pixel side of the decoded images.
        data_dir: Cache folder (demo images and the pixel cache go there).
        log: Receives one-line status messages.

    Raises:
        SimulationError: Unknown dataset, an empty folder, or fewer than 2 classes.
    """
    from activekd_core.images import ImagePool, display_id, scan_images
    from activekd_core.pixel_cache import decode_pool_with_report

    say = log or (lambda _m: None)
    data_dir = Path(data_dir)
    if dataset in ("digits", "textile"):
        from activekd_core.demo_data import materialize_demo

        say(f"materialising the {dataset} demo in {data_dir}")
        demo = materialize_demo(dataset, data_dir)
        root, classes, labels = demo.root, list(demo.classes), dict(demo.labels)  # labels: the sidecar's truth
        prompts: dict[str, str] | None = dict(demo.prompts)
        name = dataset
        unlabelled = "not in the demo's truth file (no label)"
    else:
        from activekd_core.labels_import import labels_from_subfolders

        root = Path(dataset)
        if not root.is_dir():
            raise SimulationError(f"--dataset {dataset!r}: not 'digits', 'textile' or an existing folder")
        pool = scan_images(root)
        labels = labels_from_subfolders(pool)
        classes = sorted(set(labels.values()))
        prompts = None
        name = root.name
        unlabelled = "not inside a class sub-folder (no label)"
    pool = scan_images(root)
    skipped = [(p.id, p.reason) for p in pool.problems]
    skipped += [(display_id(i), unlabelled) for i in pool.ids if i not in labels]
    ids = [i for i in pool.ids if i in labels]
    if not ids:
        raise SimulationError(f"{root}: no labelled images (expected one sub-folder per class)")
    if len(classes) < 2:
        raise SimulationError(f"{root}: need at least 2 classes, found {classes}")
    labelled_pool = ImagePool(root=pool.root, ids=ids, problems=list(pool.problems))
    say(f"decoding {len(ids):,} images to {image_size} px")
    decoded = decode_pool_with_report(labelled_pool, image_size, cache_dir=data_dir / "pixels")
    keep = np.array([row not in decoded.failures for row in range(len(ids))], dtype=bool)
    for row, message in sorted(decoded.failures.items()):
        # The failure text is "<id>: <reason>"; never train or test on the blank row.
        skipped.append((display_id(ids[row]), message.split(": ", 1)[-1]))
    pixels = np.asarray(decoded.pixels)[keep] if not keep.all() else np.asarray(decoded.pixels)
    ids = [i for i, k in zip(ids, keep) if k]
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[labels[i]] for i in ids], dtype=np.int64)
    skipped.sort()
    return LabeledData(name, classes, ids, y, pixels, Path(root), prompts, skipped)


def report_skipped(data: LabeledData, out: Path, say: LogFn) -> Path:
    """Write ``out/skipped.csv`` (``id, reason``; header only when nothing was skipped) and log each file.

    Args:
        data: The loaded dataset.
        out: The simulation's output folder.
        say: Receives one line per skipped file and a count (the CLI prints them on stderr).

    Returns:
        The CSV file written.
    """
    path = out / "skipped.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        write_rows(handle, ["id", "reason"], data.skipped)
    for image_id, reason in data.skipped:
        say(f"skipped {image_id!r}: {reason}")
    if data.skipped:
        say(f"{len(data.skipped)} file(s) skipped; listed in {path}")
    return path


def make_splits(y: npt.NDArray[np.int64], test_frac: float, reference_frac: float, seed: int) -> Splits:
    """Stratified, disjoint test / reference / pool splits (reference may be empty).

    Raises:
        SimulationError: A class has too few images for the splits.
    """
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    counts = np.bincount(y)
    if counts.min() < 3:
        raise SimulationError(f"every class needs at least 3 images for the splits; smallest has {counts.min()}")
    rest, test = train_test_split(rows, test_size=test_frac, stratify=y, random_state=seed)
    reference = np.array([], dtype=np.int64)
    if reference_frac > 0:
        size = reference_frac / (1.0 - test_frac)
        rest, reference = train_test_split(rest, test_size=size, stratify=y[rest], random_state=seed + 1)
    return Splits(np.sort(rest).astype(np.int64), np.sort(test).astype(np.int64), np.sort(reference).astype(np.int64))


def imbalance_pool(
    pool: npt.NDArray[np.int64], y: npt.NDArray[np.int64], share: float, majority: int, seed: int
) -> npt.NDArray[np.int64]:
    """Subsample a pool so that class ``majority`` is ``share`` of it and the rest share equally.

    The majority class keeps every image; each other class keeps
    ``max(3, round(n_major * (1 - share) / share / (C - 1)))`` random images (at least 3,
    at most what it has), so ``share = 0.9`` with 780 majority images and 2 other classes
    keeps 43 of each (5% each).

    Args:
        pool: Row indices of the pool (into ``y``).
        y: Class index per row of the whole dataset.
        share: Majority share in (0, 1).
        majority: Class index of the majority class.
        seed: Seed of the subsampling.

    Returns:
        The kept rows, sorted.

    Raises:
        SimulationError: ``share`` outside (1/C, 1).
    """
    classes = np.unique(y[pool])
    if not (1.0 / len(classes) < share < 1.0):
        raise SimulationError(f"imbalance must be between 1/C = {1 / len(classes):.3f} and 1, got {share}")
    rng = np.random.default_rng([seed, 7])
    n_major = int((y[pool] == majority).sum())
    n_other = max(3, int(round(n_major * (1 - share) / share / (len(classes) - 1))))
    keep = [pool[y[pool] == majority]]
    for c in classes:
        if c == majority:
            continue
        rows = pool[y[pool] == c]
        keep.append(rng.choice(rows, size=min(n_other, len(rows)), replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)


def random_start(n_pool: int, num_classes: int, seed: int) -> np.ndarray:
    """``num_classes`` uniformly random pool positions (a start that does not presume every class is found)."""
    rng = np.random.default_rng([seed, 0])
    return np.sort(rng.choice(n_pool, size=min(num_classes, n_pool), replace=False)).astype(np.int64)


def rare_class_counts(y_labeled: npt.ArrayLike, num_classes: int) -> np.ndarray:
    """Labels per class (``(C,)`` int) of a labeled set."""
    return np.bincount(np.asarray(y_labeled, dtype=np.int64), minlength=num_classes)


def initial_labels(y_pool: npt.NDArray[np.int64], num_classes: int, seed: int) -> np.ndarray:
    """One random pool position per class present in the pool (the paper's start)."""
    rng = np.random.default_rng([seed, 0])
    picks = []
    for c in range(num_classes):
        rows = np.flatnonzero(y_pool == c)
        if len(rows):
            picks.append(int(rng.choice(rows)))
    return np.array(sorted(picks), dtype=np.int64)
