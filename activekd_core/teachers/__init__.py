"""Teachers: soft labels for every pool image behind one interface.

Kinds (``describe()["kind"]`` and the ``kind`` of a spec):

- ``clip_zero_shot``: :class:`ClipZeroShotTeacher` (open_clip, cached image features);
- ``clip_few_shot``: :class:`ClipFewShotTeacher` (CLAP prototypes on those features);
- ``precomputed``: :class:`PrecomputedTeacher` (probabilities/logits from a file);
- ``standin``: :class:`StandInTeacher`, the offline stand-in (not CLIP).

:func:`make_teacher` builds any of them from a JSON-able spec; every teacher's
``describe()["spec"]`` is such a spec, so a project can store it and rebuild the teacher.
Callers dispatch on the Protocols of :mod:`.base` (``FittableTeacher``,
``ImageFeatureTeacher``; :func:`zero_shot_of` finds the CLIP part of any teacher).

The zero-shot CLIP teacher is composed of :mod:`.weights` (where weights come from),
:mod:`.clip_model` (loading a model), :mod:`.features` (encoding the pool once into the
resumable :mod:`.feature_cache`, sharded under ``torchrun``) and :mod:`.prompts`.

Only :mod:`~activekd_core.teachers.base` and :mod:`~activekd_core.teachers.precomputed` are
imported with this package: the CLIP and stand-in modules pull in torch and open_clip
(seconds of CPU time and much memory to import), which a process using a precomputed teacher (the selection
worker, the Streamlit server) never needs. :func:`make_teacher` imports them in the branch
that builds them, and their public names (``ClipZeroShotTeacher``, ``StandInTeacher``, ...)
are still attributes of this package, imported on first access (PEP 562 ``__getattr__``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from activekd_core.teachers.base import (
    Cancelled,
    FittableTeacher,
    ImageFeatureTeacher,
    ProgressFn,
    Teacher,
    TeacherDataError,
    TeacherUnavailable,
    WrapsZeroShot,
    softmax_rows,
    zero_shot_of,
)
from activekd_core.teachers.precomputed import PrecomputedTeacher

# Public names of the heavy (torch / open_clip) modules -> the module that defines them;
# imported on first attribute access by ``__getattr__`` below.
_LAZY = {
    "ClapConfig": "clip_few_shot",
    "ClipFewShotTeacher": "clip_few_shot",
    "fit_clap_prototypes": "clip_few_shot",
    "ClipZeroShotTeacher": "clip_zero_shot",
    "probs_from_features": "clip_zero_shot",
    "STANDIN_LABEL": "standin",
    "StandInTeacher": "standin",
    "standin_features": "standin",
}


def __getattr__(name: str) -> Any:
    """Import a CLIP / stand-in name on first use (PEP 562), so importing the package stays light.

    Raises:
        AttributeError: For a name this package does not export.
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

KINDS = ("clip_zero_shot", "clip_few_shot", "precomputed", "standin")

_CLIP_KEYS = {
    "model_name",
    "pretrained",
    "class_prompts",
    "templates",
    "logit_scale",
    "feature_dtype",
    "seed",
    "device",
    "batch_size",
    "num_workers",
    "hf_cache_dir",
}


def make_teacher(
    spec: Mapping[str, Any],
    *,
    classes: Sequence[str] | None = None,
    cache_dir: Path | str | None = None,
    device: str | None = None,
) -> Teacher:
    """Build a teacher from a JSON-able spec.

    Args:
        spec: ``{"kind": ..., ...}``; the other keys are the teacher's keyword arguments
            (``clip_few_shot`` also takes ``"clap": {...}`` for :class:`ClapConfig`;
            ``precomputed`` takes ``path``, ``value_kind``, ``ids_path``, ``tolerance``,
            ``temperature``).
        classes: Class names; override/complete ``spec["classes"]``.
        cache_dir: Feature cache root for CLIP teachers (e.g. inside the project folder).
        device: Override the device for CLIP teachers.

    Returns:
        The teacher (CLIP models load lazily, on first use or ``.load()``).

    Raises:
        ValueError: Unknown kind, unknown keys, or no classes.
        TeacherDataError: For ``precomputed``, problems with the file.
    """
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"unknown teacher kind {kind!r}; choose one of {KINDS}")
    cls_names = list(classes) if classes is not None else spec.get("classes")
    spec.pop("classes", None)
    if kind == "precomputed":
        allowed = {"path", "value_kind", "ids_path", "tolerance", "temperature"}
        _check_keys(kind, spec, allowed)
        if "path" not in spec:
            raise ValueError("a precomputed teacher needs 'path'")
        return PrecomputedTeacher(
            spec["path"],
            cls_names,
            kind=spec.get("value_kind", "probs"),
            ids_path=spec.get("ids_path"),
            tolerance=spec.get("tolerance", 1e-3),
            temperature=spec.get("temperature", 1.0),
        )
    if not cls_names:
        raise ValueError(f"a {kind} teacher needs classes")
    if kind == "standin":
        _check_keys(kind, spec, {"temperature", "image_size", "n_components", "C", "smoothing", "seed"})
        from activekd_core.teachers.standin import StandInTeacher

        return StandInTeacher(cls_names, **spec)
    clap = spec.pop("clap", None) if kind == "clip_few_shot" else None
    _check_keys(kind, spec, _CLIP_KEYS)
    if device is not None:
        spec["device"] = device
    from activekd_core.teachers.clip_zero_shot import ClipZeroShotTeacher

    zero_shot = ClipZeroShotTeacher(cls_names, cache_dir=cache_dir, **spec)
    if kind == "clip_zero_shot":
        return zero_shot
    from activekd_core.teachers.clip_few_shot import ClapConfig, ClipFewShotTeacher

    return ClipFewShotTeacher(zero_shot, ClapConfig(**(clap or {})))


def _check_keys(kind: str, spec: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"unknown keys {unknown} for a {kind} teacher; allowed: {sorted(allowed)}")


__all__ = [
    "KINDS",
    "STANDIN_LABEL",
    "Cancelled",
    "ClapConfig",
    "ClipFewShotTeacher",
    "ClipZeroShotTeacher",
    "FittableTeacher",
    "ImageFeatureTeacher",
    "PrecomputedTeacher",
    "ProgressFn",
    "StandInTeacher",
    "Teacher",
    "TeacherDataError",
    "TeacherUnavailable",
    "WrapsZeroShot",
    "fit_clap_prototypes",
    "make_teacher",
    "probs_from_features",
    "softmax_rows",
    "standin_features",
    "zero_shot_of",
]
