"""The Label page's compact card: the image takes most of the card, the controls one short row.

A compact card holds the image and one panel (``pages._card_panel``): a line with the image
id and small skip, unsure and zoom buttons, a line with the position, the decision, the
teacher's suggestion and the score (the full "why this image" sentence in its tooltip), and
a wrapping row of class buttons (each name shown literally, cut to one line, with its key in
front and the whole name in its tooltip). Keys and callbacks are the classic card's, so
clicks, keys and focus behave the same in both layouts (``pages/label.py`` draws the
classic card).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from activekd_core.display_text import MESSAGE_MAX, code, md
from activekd_core.project import Project
from activekd_core.view_models.label import Segment
from pages._card_panel import Code, Text, action_buttons, class_buttons, panel
from pages._session import thumbnail


def compact_style() -> None:
    """The compact cards' style: tight spacing."""
    st.html(  # style only: Streamlit puts it out of the layout (no empty row above the grid)
        """<style>[class*="st-key-lbl_card_"] { gap: 0.35rem; padding: 0.5rem; }</style>"""
    )


def compact_card(project: Project, image_id: str, pos: int, *, classes: Sequence[str], keys: Sequence[str],
                 ids: list[str], event, key: str, detail: Sequence[Segment], why: str, box: int,
                 act: Callable[..., None], zoom: Callable[..., None], disabled: bool = False,
                 focused: bool = False) -> None:
    """Draw one compact card.

    Args:
        project: The open project (the image is read through its confined reader).
        image_id: The image on this card.
        pos: Its position in the batch (0-based).
        classes: Class names in display order; ``keys``: the key of each of the first ten.
        ids: Every image id on screen, in order (passed on to ``act``).
        event: The image's latest decision, or None.
        key: The batch's widget key (the card's panel is ``lbl_{key}_{pos}_card``).
        detail: The one-line text (position, decision, teacher, score; plain-text segments);
            ``why``: its tooltip (plain text).
        box: Thumbnail size in pixels.
        act: ``act(action, image_id, pos, ids, class_name=None)``, the page's label/skip/unsure callback.
        zoom: ``zoom(pos, True)``, opens the focus mode on this image.
        disabled: Draw the decision buttons disabled (a finished batch shown while the next
            one is prepared).
        focused: This card holds the keyboard focus (outlined).
    """
    decided = event.event if event is not None else None
    with st.container(border=True, key=f"lbl_card_{pos}"):
        try:
            st.image(thumbnail(project, image_id, box), width="stretch", output_format="PNG")
        except Exception as exc:  # outside the root, removed, unreadable: say so, keep the page
            st.error(f"Cannot show {code(image_id)}: {md(exc, MESSAGE_MAX)}")
        chosen = event.class_name if decided == "label" else None
        panel(f"lbl_{key}_{pos}_card", [
            [Code(image_id), action_buttons(decided, lambda action: act(action, image_id, pos, ids),
                                            lambda: zoom(pos, True), disabled=disabled)],
            [Text(detail, why)],
            [class_buttons(classes, keys, chosen, lambda name: act("label", image_id, pos, ids, name),
                           disabled=disabled)],
        ], focused=focused)
