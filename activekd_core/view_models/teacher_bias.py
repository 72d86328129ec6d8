"""The Teacher-bias page's view model (no Streamlit): which labels to evaluate on, the teacher's
and the active student's probabilities, the bias report and the prompt workshop's starting point.

Every metric is computed by :mod:`activekd_core.bias` (re-exported here: :func:`bias_report`,
:func:`compare_teachers`, :func:`confidence_vs_correctness` and their report types).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from activekd_core.bias import (
    BiasReport,
    ClassificationReport,
    TeacherComparison,
    bias_report,
    compare_teachers,
    confidence_vs_correctness,
)
from activekd_core.project import ProjectError
from activekd_core.teachers.base import FittableTeacher, zero_shot_of

if TYPE_CHECKING:
    from activekd_core.project import Project

__all__ = [
    "BiasReport",
    "ClassificationReport",
    "TeacherComparison",
    "bias_report",
    "compare_teachers",
    "confidence_vs_correctness",
    "LABEL_SETS",
    "Labels",
    "StudentProbs",
    "TeacherReading",
    "PromptWorkshop",
    "human_labels",
    "student_probs",
    "teacher_fittable",
    "read_teacher",
    "prompt_workshop",
]

LABEL_SETS = {
    "all": "all human labels",
    "audit": "audit set only (random sample: unbiased)",
    "train": "training labels only (picked by active learning)",
}


@dataclass
class Labels:
    """Human labels to evaluate on.

    Attributes:
        rows: Pool rows.
        y: Class index per row.
        which: Key of ``LABEL_SETS``.
    """

    rows: np.ndarray
    y: np.ndarray
    which: str


@dataclass(frozen=True)
class StudentProbs:
    """The active student's probabilities over the pool.

    Attributes:
        round_id: The active round's id (None before round 1 or when unreadable).
        probs: ``(N, C)`` probabilities, or None.
        problem: Why an active round's outputs could not be read, or None.
    """

    round_id: int | None
    probs: np.ndarray | None
    problem: str | None = None


@dataclass(frozen=True)
class TeacherReading:
    """The teacher's probabilities over the pool and what it says about itself then.

    Attributes:
        probs: ``(N, C)`` float32 probabilities.
        description: Its ``describe()`` record after producing them (a fitted teacher says
            what it was fitted on), empty if it has none.
    """

    probs: np.ndarray
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The teacher's display name (its kind when it has none)."""
        return str(self.description.get("display_name", self.description.get("kind", "?")))


@dataclass(frozen=True)
class PromptWorkshop:
    """The prompt workshop's starting point: the CLIP teacher's current prompts.

    Attributes:
        clip: Whether the teacher reads text prompts (zero-shot or few-shot CLIP).
        teacher_name: The teacher's display name (said when it is not CLIP).
        random_weights: Whether the CLIP model has random weights (prompts then mean little).
        templates: The template set's name, or ``"custom"`` for the teacher's own list.
        custom_templates: The custom templates, one per line (a one-line default otherwise).
        class_prompts: Class name -> its own prompts, one per line ("" where none).
    """

    clip: bool
    teacher_name: str
    random_weights: bool = False
    templates: str = "simple"
    custom_templates: str = "a photo of a {}."
    class_prompts: dict[str, str] = field(default_factory=dict)


def human_labels(project: Project, which: str) -> Labels:
    """Current human labels of the chosen set, as pool rows (see :meth:`Project.human_labels`)."""
    rows, y = project.human_labels(which)
    return Labels(rows, y, which)


def student_probs(project: Project) -> StudentProbs:
    """The active round's id and its student probabilities (None before round 1)."""
    active = project.active_round()
    if active is None:
        return StudentProbs(None, None)
    try:
        return StudentProbs(active.id, np.asarray(project.student_outputs(active.id)[0], dtype=np.float32))
    except ProjectError as exc:
        return StudentProbs(None, None, str(exc))


def teacher_fittable(project: Project) -> bool:
    """Whether the project's teacher learns from the labels (few-shot CLIP, the stand-in).

    Raises:
        Exception: Whatever building the teacher raises (e.g. CLIP weights missing offline;
            the message says how to supply them).
    """
    return isinstance(project.teacher(), FittableTeacher)


def read_teacher(project: Project, fit: bool) -> TeacherReading:
    """The teacher's probabilities over the pool (``fit``: fitted on the current labels), then its description."""
    probs = np.asarray(project.teacher_probs(fit=fit), dtype=np.float32)
    teacher = project.teacher()
    return TeacherReading(probs, teacher.describe())


def _prompt_lines(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else "\n".join(str(v) for v in value)


def prompt_workshop(project: Project) -> PromptWorkshop:
    """The CLIP teacher's current templates and class prompts (``clip=False`` for another teacher)."""
    teacher = project.teacher()
    zs = zero_shot_of(teacher)
    if zs is None:
        info = teacher.describe()
        return PromptWorkshop(False, str(info.get("display_name", info.get("kind", "not CLIP"))))
    desc = teacher.describe()
    random_weights = bool(desc.get("random_weights") or desc.get("zero_shot", {}).get("random_weights"))
    cur_t = zs.templates
    return PromptWorkshop(
        clip=True,
        teacher_name=str(desc.get("display_name", desc.get("kind", "?"))),
        random_weights=random_weights,
        templates="custom" if isinstance(cur_t, list) else (cur_t or "simple"),
        custom_templates="\n".join(cur_t) if isinstance(cur_t, list) else "a photo of a {}.",
        class_prompts={c: _prompt_lines(zs.class_prompts.get(c)) for c in project.classes},
    )
