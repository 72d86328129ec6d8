"""The Label page's compact card: the image takes most of the card, the controls one short row.

A compact card holds the image, one line with the image id and its decision, one line
with the position, the teacher's suggestion and the score (the full "why this image"
sentence in its tooltip), a wrapping row of class buttons (``pages._button_row``: each name
shown literally, cut to one line, with its key in front and the whole name in its tooltip)
and small skip, unsure and zoom buttons. Keys and callbacks are the classic card's, so
clicks, keys and focus behave the same in both layouts (``pages/label.py`` draws the
classic card).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from activekd_core.display_text import MESSAGE_MAX, code, md
from activekd_core.project import Project
from pages._button_row import action_row, class_row
from pages._session import thumbnail

SIDE = "lbl_cside_"  # key prefix of a card's skip/unsure/zoom row


def compact_style() -> None:
    """The compact cards' style: tight spacing; the image id and the skip, unsure and zoom row share a line."""
    st.html(  # style only: Streamlit puts it out of the layout (no empty row above the grid)
        f"""<style>
        [class*="st-key-lbl_card_"] {{ gap: 0.35rem; padding: 0.5rem; }}
        [class*="st-key-{SIDE}"] {{ gap: 0.2rem; flex-wrap: nowrap; }}
        [class*="st-key-{SIDE}"] > div:first-child {{ flex: 1 1 auto; min-width: 0; }}
        </style>"""
    )


def compact_card(project: Project, image_id: str, pos: int, *, classes: Sequence[str], keys: Sequence[str],
                 ids: list[str], event, key: str, detail: str, why: str, box: int,
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
        key: The batch's widget key (the card's rows are ``lbl_{key}_{pos}_classes`` and
            ``lbl_{key}_{pos}_actions``).
        detail: The one-line caption (position, decision, teacher, score; Markdown); ``why``: its tooltip.
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
        with st.container(horizontal=True, vertical_alignment="center", key=f"{SIDE}{pos}"):
            st.caption(code(image_id), wrap=False)
            action_row(f"lbl_{key}_{pos}_actions", decided, lambda action: act(action, image_id, pos, ids),
                       lambda: zoom(pos, True), disabled=disabled)
        st.caption(detail, help=why, wrap=False)
        chosen = event.class_name if decided == "label" else None
        class_row(f"lbl_{key}_{pos}_classes", classes, keys, chosen,
                  lambda name: act("label", image_id, pos, ids, name), disabled=disabled, focused=focused)
