"""The simulation's teacher: probabilities for every image, CLAP refits and the view bank.

* :func:`build_teacher_probs`: the offline stand-in (not CLIP), a CLIP zero-shot or
  few-shot (CLAP) teacher from local weights, or probabilities precomputed in a file.
* :func:`few_shot_refit`: refits the CLAP teacher on the oracle's labels as they grow.
* :func:`view_bank`: the pool's fixed augmented views and the teacher's output on each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from activekd_core.simulation_config import LogFn, SimulationConfig, SimulationError
from activekd_core.simulation_data import LabeledData, Splits, default_data_dir
from activekd_core.teachers.base import PixelTeacher, teacher_name

__all__ = ["build_teacher_probs", "few_shot_refit", "teacher_label", "view_bank"]


def build_teacher_probs(
    config: SimulationConfig, data: LabeledData, splits: Splits, log: LogFn | None = None,
    holder: dict[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Teacher probabilities for every row of ``data`` (float32 ``(N, C)``) and its provenance.

    Rows of the reference split are filled too but never used by the learner. When
    ``holder`` is given, the teacher object is left in ``holder["teacher"]`` (for the
    view bank).
    """
    holder = holder if holder is not None else {}
    say = log or (lambda _m: None)
    from activekd_core.images import ImagePool

    if config.teacher == "standin":
        from activekd_core.teachers import StandInTeacher

        teacher = StandInTeacher(data.classes, seed=config.split_seed)
        say(f"fitting the offline stand-in teacher (NOT CLIP) on a reference split of {len(splits.reference)} images")
        teacher.fit_reference(data.pixels[splits.reference], data.y[splits.reference])
        holder["teacher"] = teacher
        chunk = 4096  # copies of read-only memmap chunks: bounded memory, writable arrays for torch
        probs = np.concatenate(
            [teacher.predict_proba_pixels(np.array(data.pixels[s : s + chunk])) for s in range(0, len(data.ids), chunk)]
        )
        return probs.astype(np.float32), teacher.describe()
    if config.teacher in ("clip", "clip_few_shot"):
        from activekd_core.teachers import ClipZeroShotTeacher

        if not config.clip_pretrained:
            raise SimulationError(f"--teacher {config.teacher} needs --clip-pretrained PATH (a local checkpoint file or folder)")
        prompts = data.prompts
        teacher = ClipZeroShotTeacher(
            data.classes,
            model_name=config.clip_model,
            pretrained=config.clip_pretrained,
            class_prompts=prompts,
            cache_dir=Path(config.data_dir or default_data_dir()) / "clip_features",
        )
        say(f"CLIP zero-shot teacher {config.clip_model} ({config.clip_pretrained}) over {len(data.ids):,} images")
        images = ImagePool(root=data.root, ids=list(data.ids))
        probs = teacher.predict_proba(images)
        if config.teacher == "clip_few_shot":
            from activekd_core.teachers import ClipFewShotTeacher

            few = ClipFewShotTeacher(teacher)
            holder["teacher"], holder["images"] = few, images
            return np.asarray(probs, dtype=np.float32), few.describe()
        return np.asarray(probs, dtype=np.float32), teacher.describe()
    if config.teacher == "precomputed":
        from activekd_core.teachers import PrecomputedTeacher

        if config.precomputed is None:
            raise SimulationError("--teacher precomputed needs a FILE")
        teacher = PrecomputedTeacher(config.precomputed, data.classes)
        probs = teacher.predict_proba(ImagePool(root=data.root, ids=list(data.ids)))
        return np.asarray(probs, dtype=np.float32), teacher.describe()
    raise SimulationError(f"unknown teacher {config.teacher!r}; use standin, clip, clip_few_shot or precomputed")


def few_shot_refit(holder: dict[str, Any], data: LabeledData, splits: Splits, say: LogFn
                    ) -> Callable[[np.ndarray], tuple[np.ndarray, float]]:
    """``fit(pool positions) -> (teacher probs on the pool, teacher test accuracy)`` for a CLAP teacher.

    Refits from scratch on the true labels of the given pool positions (no labels: the
    zero-shot teacher) from the cached CLIP features; results are memoised per label set.
    """
    teacher, images = holder["teacher"], holder["images"]
    memo: dict[tuple[int, ...], tuple[np.ndarray, float]] = {}
    y_test = data.y[splits.test]

    def fit(positions: np.ndarray) -> tuple[np.ndarray, float]:
        key = tuple(sorted(int(p) for p in positions))
        if key not in memo:
            rows = splits.pool[np.asarray(key, dtype=np.int64)]
            teacher.fit(images, rows, data.y[rows])
            probs = np.asarray(teacher.predict_proba(images), dtype=np.float32)
            acc = float((probs[splits.test].argmax(1) == y_test).mean())
            say(f"CLAP teacher refit on {len(rows)} labels: test accuracy {acc:.1%}")
            memo[key] = (np.ascontiguousarray(probs[splits.pool]), acc)
        return memo[key]

    return fit


def view_bank(
    config: SimulationConfig, data: LabeledData, splits: Splits, teacher: Any, teacher_desc: dict[str, Any],
    size: int, flip: bool, data_dir: Path, say: LogFn,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The pool's view boxes ``(P, V, 5)`` and the teacher's outputs on them ``(P, V, C)``, or ``(None, None)``.

    Raises:
        SimulationError: Views asked for with a teacher that cannot score them here.
    """
    can = isinstance(teacher, PixelTeacher)
    n_views = 0 if config.views is None else int(config.views)
    if n_views <= 0:
        return None, None
    if not can:
        raise SimulationError(f"--views {n_views}: the {teacher_desc.get('kind')} teacher cannot score augmented views "
                              "here (only the stand-in can); use --views 0")
    from activekd_core.teachers.feature_cache import cache_key
    from activekd_core.views import ViewSpec, image_keys, teacher_view_probs, view_boxes

    spec = ViewSpec(n_views=n_views, flip=flip, seed=config.split_seed)
    ids = [data.ids[i] for i in splits.pool]
    boxes = view_boxes(image_keys(ids), spec)
    say(f"view bank: {n_views} views per image; teacher outputs on {len(ids) * n_views:,} views")
    fields = {"teacher": teacher_desc, "dataset": data.name, "ids": cache_key({"ids": ids}), "spec": spec.as_dict(),
              "pixels": size}
    probs = teacher_view_probs(data.pixels[splits.pool], boxes, teacher.predict_proba_pixels, len(data.classes),
                               cache_root=data_dir / "view_cache", cache_fields=fields)
    return boxes, probs


def teacher_label(describe: dict[str, Any]) -> str:
    """How outputs name the teacher: the stand-in by its one name (the pages' too), which says it is not CLIP."""
    if describe.get("kind") == "standin":
        return teacher_name("standin")
    return str(describe.get("display_name") or describe.get("kind"))
