"""Conventions every figure shares: the fixed colour per class and the grey of unlabeled points.

Colours per class are fixed by class index so that all figures (and both pages) agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from plotly.colors import qualitative

UNLABELED = "unlabeled"
UNLABELED_COLOR = "#c4c4c4"


def class_colors(classes: Sequence[str]) -> dict[str, str]:
    """Fixed colour per class (by index), plus grey for ``"unlabeled"``."""
    palette = list(qualitative.Plotly) if len(classes) <= 10 else list(qualitative.Alphabet) + list(qualitative.Dark24)
    colors = {str(c): palette[i % len(palette)] for i, c in enumerate(classes)}
    colors[UNLABELED] = UNLABELED_COLOR
    return colors
