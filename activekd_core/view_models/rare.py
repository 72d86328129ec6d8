"""What the rare-class notes of the Label and Train pages show beyond the project's own numbers
(:meth:`~activekd_core.project.Project.collapse_warnings`,
:meth:`~activekd_core.project.Project.labels_per_round`): the collapse check's thresholds."""

from __future__ import annotations

from activekd_core.collapse import EVERYTHING_SHARE, NOTHING_SHARE

__all__ = ["EVERYTHING_SHARE", "NOTHING_SHARE"]
