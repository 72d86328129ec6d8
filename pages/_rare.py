"""Rare-class notes shared by the Label and Train pages: collapse warnings and labels found per class.

Drawing only; the numbers come from :meth:`activekd_core.project.Project.collapse_warnings`
and :meth:`activekd_core.project.Project.labels_per_round`. Class names are user text:
``st.warning`` renders Markdown, so messages are Markdown-escaped first and show literally.
"""

from __future__ import annotations

import streamlit as st

from activekd_core.view_models.rare import EVERYTHING_SHARE, NOTHING_SHARE
from activekd_core.project import Project


def _literal(text: str) -> str:
    """Escape Markdown so a class name is shown as written (no links, no emphasis)."""
    out = []
    for ch in text:
        out.append("\\" + ch if ch in "\\`*_[]#|<>~$:" else ch)
    return "".join(out)


def collapse_notes(project: Project) -> None:
    """One warning per class the teacher or active student predicts for (almost) nothing or everything."""
    try:
        warnings = project.collapse_warnings()
    except Exception as exc:  # a broken cache must not break labeling
        st.caption(f"Collapse check unavailable: {_literal(str(exc))}")
        return
    for w in warnings:
        st.warning(
            _literal(w.text()),
            icon=":material/warning:",
        )
    if warnings:
        st.caption(
            f"Collapse check: a class predicted for at most {100 * NOTHING_SHARE:.1f}% of the pool, or for at least "
            f"{100 * EVERYTHING_SHARE:.0f}%. A collapsed model's accuracy looks like the majority share; judge it "
            "by balanced accuracy. Label the rare classes you can find (Explore: lasso, or search by the teacher's "
            "second choice), or try class-weighted CE / logit-adjusted teacher targets in the project settings."
        )


def labels_per_round_table(project: Project) -> None:
    """Training labels per class at each round (how fast each class is being found)."""
    rows = project.labels_per_round()
    st.dataframe(rows, hide_index=True, width="stretch")
    st.caption("Training labels per class (audit set excluded) when each round was trained, and now. "
               "A class that stays at 0 is one the loop has not found yet.")
