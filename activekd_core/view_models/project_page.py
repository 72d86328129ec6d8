"""The Project page's view model (no Streamlit): the choices a new project offers and the checks
of its inputs that the page shows while the user types.

Every check here only answers early; :meth:`activekd_core.project.Project.create` checks
everything again and writes nothing when one fails. :class:`StoreError` is re-exported for
the page's "not created" answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from activekd_core.store import StoreError, validate_class_names
from activekd_core.teachers.base import teacher_name

if TYPE_CHECKING:
    from activekd_core.project import Project

__all__ = [
    "StoreError",
    "teacher_name",
    "class_names_problem",
    "clip_weights_reason",
    "strategy_descriptions",
    "student_arches",
    "recommended_student",
    "weights_note",
    "export_downloads",
]


def class_names_problem(names: Sequence[str]) -> str | None:
    """What is wrong with these class names (duplicates, blanks, fewer than two), or None."""
    try:
        validate_class_names(list(names))
    except StoreError as exc:
        return str(exc)
    return None


def clip_weights_reason(model_name: str, pretrained: str) -> str | None:
    """None when the CLIP weights can be loaded offline, else why not and how to supply them."""
    try:
        from activekd_core.teachers.clip_zero_shot import resolve_weights  # open_clip: imported when asked

        resolve_weights(model_name, pretrained or None)
    except Exception as exc:  # noqa: BLE001 - the reason is the answer
        return str(exc)
    return None


def strategy_descriptions() -> dict[str, str]:
    """Selection strategy name -> what it does, in registry order."""
    from activekd_core.selection import STRATEGIES  # the strategies load scikit-learn: only when asked

    return {name: getattr(s, "description", "") for name, s in STRATEGIES.items()}


def student_arches() -> list[str]:
    """The student backbones a project can train."""
    from activekd_core.student import ARCHES  # torch: imported when asked

    return list(ARCHES)


def recommended_student() -> tuple[str, int]:
    """The default backbone and input size for this machine's training device."""
    from activekd_core.devices import pick_device
    from activekd_core.student import recommended_student as recommended

    return recommended(pick_device("auto").type)


def weights_note(arch: str) -> str:
    """Where the pretrained file of ``arch`` is, or where to put it."""
    from activekd_core.student import imagenet_cache_path

    try:
        path = imagenet_cache_path(arch)
    except ValueError as exc:
        return f"Pretrained weights unavailable: {exc}"
    if path.is_file():
        return f"ImageNet weights found: `{path}`"
    return f"ImageNet weights missing: copy torchvision's file to `{path}` (creation will say so)."


def export_downloads(project: Project, files: Sequence[str]) -> list[tuple[str, bytes]]:
    """``(file name, bytes)`` of each listed export file that still lies in the project's exports folder.

    A path outside that folder (or gone since the export) is left out: a download always
    belongs to the open project.
    """
    exports = project.path("exports").resolve()
    out = []
    for f in files:
        path = Path(f)
        if path.is_file() and path.resolve().is_relative_to(exports):
            out.append((path.name, path.read_bytes()))
    return out
