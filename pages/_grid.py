"""The Label page's compact card: the image takes most of the card, the controls one short row.

A compact card holds the image, one line with the image id and its decision, one line
with the position, the teacher's suggestion and the score (the full "why this image"
sentence in its tooltip), a wrapping row of class buttons (each name shown literally, cut
to one line, with its key in front and the whole name in the tooltip) and small skip,
unsure and zoom controls. Button keys and callbacks are the classic card's, so clicks,
keys and focus behave the same in both layouts (``pages/label.py`` draws the classic card).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from activekd_core.display_text import MESSAGE_MAX, code, md
from activekd_core.project import Project
from activekd_core.view_models.label import CLASS_LABEL_MAX, class_button_help, key_hint_css
from pages._session import thumbnail

ROW = "lbl_cbtns_"  # key prefix of a card's class-button row
SIDE = "lbl_cside_"  # key prefix of a card's skip/unsure/zoom row


def compact_style(classes: Sequence[str], keys: Sequence[str]) -> None:
    """The compact cards' style: tight spacing, short buttons, each class button's key in front
    (not where the class name is its key already, e.g. digits named "0".."9")."""
    shown = ["" if key.lower() == name.strip().lower() else key for name, key in zip(classes, keys)]
    hints = key_hint_css(f'[class*="st-key-{ROW}"]', shown)
    basis = "2.25rem" if max((len(c) for c in classes), default=0) <= 2 else "3rem"  # "0".."9": 5 a row
    st.html(  # style only: Streamlit puts it out of the layout (no empty row above the grid)
        f"""<style>
        [class*="st-key-lbl_card_"] {{ gap: 0.35rem; padding: 0.5rem; }}
        [class*="st-key-{ROW}"], [class*="st-key-{SIDE}"] {{ gap: 0.2rem; }}
        [class*="st-key-{ROW}"] > div {{ flex: 1 1 {basis}; min-width: 0; }}
        [class*="st-key-{ROW}"] button {{ min-height: 2rem; padding: 0 0.25rem; }}
        [class*="st-key-{ROW}"] button p::before {{ opacity: 0.6; margin-right: 0.2em; font-size: 0.85em; }}
        [class*="st-key-{SIDE}"] {{ flex-wrap: nowrap; }}
        [class*="st-key-{SIDE}"] > div:first-child {{ flex: 1 1 auto; min-width: 0; }}
        [class*="st-key-{SIDE}"] button {{ min-height: 1.5rem; padding: 0 0.2rem; }}
        {hints}
        </style>"""
    )


def compact_card(project: Project, image_id: str, pos: int, *, classes: Sequence[str], keys: Sequence[str],
                 ids: list[str], event, key: str, detail: str, why: str, box: int,
                 act: Callable[..., None], zoom: Callable[..., None], disabled: bool = False) -> None:
    """Draw one compact card.

    Args:
        project: The open project (the image is read through its confined reader).
        image_id: The image on this card.
        pos: Its position in the batch (0-based).
        classes: Class names in display order; ``keys``: the key of each of the first ten.
        ids: Every image id on screen, in order (passed on to ``act``).
        event: The image's latest decision, or None.
        key: The batch's widget key (buttons are ``lbl_{key}_{pos}_c{k}``, ``..._skip``, ...).
        detail: The one-line caption (position, decision, teacher, score; Markdown); ``why``: its tooltip.
        box: Thumbnail size in pixels.
        act: ``act(action, image_id, pos, ids, class_name=None)``, the page's label/skip/unsure callback.
        zoom: ``zoom(pos, True)``, opens the focus mode on this image.
        disabled: Draw the decision buttons disabled (a finished batch shown while the next
            one is prepared).
    """
    decided = event.event if event is not None else None
    with st.container(border=True, key=f"lbl_card_{pos}"):
        try:
            st.image(thumbnail(project, image_id, box), width="stretch", output_format="PNG")
        except Exception as exc:  # outside the root, removed, unreadable: say so, keep the page
            st.error(f"Cannot show {code(image_id)}: {md(exc, MESSAGE_MAX)}")
        with st.container(horizontal=True, vertical_alignment="center", key=f"{SIDE}{pos}"):
            st.caption(code(image_id), wrap=False)
            st.button("", key=f"lbl_{key}_{pos}_skip", on_click=act, args=("skip", image_id, pos, ids),
                      type="primary" if decided == "skip" else "tertiary", icon=":material/skip_next:",
                      help="Skip this image (key S when focused)", disabled=disabled)
            st.button("", key=f"lbl_{key}_{pos}_unsure", on_click=act, args=("unsure", image_id, pos, ids),
                      type="primary" if decided == "unsure" else "tertiary", icon=":material/help:", disabled=disabled,
                      help="Mark this image unsure (key U when focused)")
            st.button("", key=f"lbl_{key}_{pos}_zoom", on_click=zoom, args=(pos, True), type="tertiary",
                      icon=":material/zoom_in:", help="Open this image in the focus mode (key F when focused)")
        st.caption(detail, help=why, wrap=False)
        with st.container(horizontal=True, key=f"{ROW}{pos}"):
            for k, name in enumerate(classes):
                chosen = decided == "label" and event.class_name == name
                st.button(md(name, CLASS_LABEL_MAX), key=f"lbl_{key}_{pos}_c{k}",
                          type="primary" if chosen else "secondary", on_click=act,
                          args=("label", image_id, pos, ids, name), width="stretch", wrap=False, disabled=disabled,
                          help=class_button_help(name, keys[k] if k < len(keys) else None))
