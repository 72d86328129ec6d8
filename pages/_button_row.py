"""A card's rows of buttons (its classes; skip, unsure and zoom): one Streamlit custom
component (``st.components.v2``) a row.

Why not ``st.button``: a new grid mounts every card's buttons at once (130 at ten classes),
each a React tree with its Markdown label and tooltip, and the browser needs ~0.9-1.5 ms a
button; that alone kept the batch turnover at 100k images 1.7-1.8x slower
(``bench/button_rows.py``, bench/README.md). A row here is plain ``<button>`` elements drawn
by a few lines of our own JavaScript: ~0.2 ms a button.

What it keeps from the buttons it replaces:

* **No misattribution.** A row's key names the batch and the card
  (``lbl_batch-7_3_classes``), as the buttons' keys did: a click on a card of a grid the
  server has already replaced reaches no registered widget and is dropped. The click sends
  the value of the button the user saw (a class name, "skip", ...), and the callback acts
  only on a value that is one of this row's.
* **Literal text.** Labels reach the page as JSON data and are written with ``textContent``
  and ``title``: never Markdown, never HTML. Each is bounded (:func:`visible`).
* **Keyboard and screen readers.** Real buttons (Tab, Enter, Space); a chosen one has
  ``aria-pressed="true"``; each button's ``title`` says what it does, with its key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import streamlit as st

from activekd_core.display_text import visible
from activekd_core.view_models.label import CLASS_LABEL_MAX, class_button_title

COMPONENT = "activekd_button_row"

_JS = """
export default function (component) {
  const { parentElement, data, setTriggerValue } = component;
  let row = parentElement.querySelector('.akd-row');
  if (!row) {
    row = document.createElement('div');
    parentElement.appendChild(row);
  }
  row.className = 'akd-row akd-' + data.variant + (data.focused ? ' akd-focused' : '');
  row.style.setProperty('--akd-per-row', String(data.per_row || 1));
  const n = data.values.length;
  while (row.children.length > n) row.lastChild.remove();
  for (let k = 0; k < n; k++) {
    let b = row.children[k];
    if (!b) {
      b = document.createElement('button');
      b.type = 'button';
      b.appendChild(document.createElement('span')).className = 'akd-key';
      b.appendChild(document.createElement('span')).className = 'akd-name';
      b.addEventListener('click', () => {
        if (!b.disabled) setTriggerValue('pick', b.__akdValue);
      });
      row.appendChild(b);
    }
    b.__akdValue = data.values[k];
    b.dataset.k = String(k);
    b.firstChild.textContent = data.hints[k];
    b.lastChild.textContent = data.labels[k];
    b.title = data.titles[k];
    b.setAttribute('aria-pressed', data.pressed[k] ? 'true' : 'false');
    b.disabled = !!data.disabled[k];
  }
}
"""

_CSS = """
.akd-row { display: flex; flex-wrap: wrap; gap: 0.25rem; width: 100%; }
.akd-row > button {
  flex: 1 1 calc(100% / var(--akd-per-row) - 0.25rem); min-width: 0; min-height: 2.5rem;
  padding: 0.25rem 0.5rem; font: inherit; font-size: 0.95rem; line-height: 1.4; cursor: pointer;
  color: inherit; background: #ffffff; border: 1px solid rgba(49, 51, 63, 0.2); border-radius: 0.5rem;
  overflow-wrap: anywhere;
}
.akd-row > button:hover:not(:disabled) { border-color: #1f6feb; color: #1f6feb; }
.akd-row > button:focus-visible { outline: 2px solid #1f6feb; outline-offset: 1px; }
.akd-row > button[aria-pressed="true"] { background: #1f6feb; border-color: #1f6feb; color: #ffffff; }
.akd-row > button:disabled { cursor: not-allowed; opacity: 0.55; }
.akd-row .akd-key { opacity: 0.6; margin-right: 0.25em; font-size: 0.85em; }
.akd-row .akd-key:empty { display: none; }
.akd-compact { gap: 0.2rem; }
.akd-compact > button {
  flex: 1 1 3rem; min-height: 2rem; padding: 0 0.25rem; font-size: 0.875rem;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
}
.akd-actions { gap: 0.15rem; flex-wrap: nowrap; justify-content: flex-end; }
.akd-actions > button {
  flex: 0 0 auto; min-height: 1.5rem; padding: 0 0.35rem; font-size: 0.75rem; white-space: nowrap;
  border-color: transparent; background: transparent;
}
"""

# No css= here: Streamlit would add a <style> copy to every row (20 a grid), and a new grid's
# 20 style sheets cost the browser a restyle of the whole page; row_style() draws it once.
_ROW = st.components.v2.component(COMPONENT, js=_JS, isolate_styles=False)


def row_style() -> None:
    """The rows' style sheet, once per page (before or after the rows; it never changes, so the
    browser parses it once), and the focus outline of the card whose row is marked focused."""
    st.html(f"""<style>{_CSS}
[class*="st-key-lbl_card_"]:has(.akd-focused) {{ outline: 3px solid #1c83e1; outline-offset: 2px; border-radius: 0.5rem; }}
</style>""")


@dataclass(frozen=True)
class RowButton:
    """One button of a row.

    Attributes:
        value: What a click sends back (a class name, "skip", ...); unique in its row.
        label: The text shown (bounded by the row).
        title: The tooltip (plain text).
        hint: A short key shown in front of the label, or "".
        pressed: Shown chosen (``aria-pressed``).
        disabled: Shown disabled; a click sends nothing.
    """

    value: str
    label: str
    title: str = ""
    hint: str = ""
    pressed: bool = False
    disabled: bool = False


def button_row(key: str, buttons: Sequence[RowButton], on_pick: Callable[[str], None], *,
               variant: str = "compact", per_row: int = 1, label_limit: int | None = None,
               focused: bool = False) -> None:
    """Draw one row of buttons.

    Args:
        key: The row's widget key; name the batch and the card in it, so that a click on a
            card of a replaced grid is dropped.
        buttons: The buttons, in order.
        on_pick: Called with the clicked button's value, in the click's callback (before the
            rerun draws the page); only with the value of an enabled button of this row.
        variant: "compact" (one short line a button, cut with an ellipsis), "wide" (whole
            labels, wrapped, ``per_row`` a line) or "actions" (small, text-only).
        per_row: Buttons a line for "wide".
        label_limit: Longest label shown (characters); None: the display default.
        focused: Mark the row focused: :func:`row_style` outlines the card holding it.
    """
    data = {
        "values": [b.value for b in buttons],
        "labels": [visible(b.label, label_limit) if label_limit else visible(b.label) for b in buttons],
        "titles": [visible(b.title) for b in buttons],
        "hints": [visible(b.hint, 3) for b in buttons],
        "pressed": [b.pressed for b in buttons],
        "disabled": [b.disabled for b in buttons],
        "variant": variant,
        "per_row": per_row,
        "focused": focused,
    }
    enabled = {b.value for b in buttons if not b.disabled}

    def picked() -> None:
        value = (st.session_state.get(key) or {}).get("pick")
        if isinstance(value, str) and value in enabled:
            on_pick(value)

    _ROW(key=key, data=data, on_pick_change=picked, width="content" if variant == "actions" else "stretch")


def class_row(key: str, classes: Sequence[str], keys: Sequence[str], chosen: str | None,
              on_pick: Callable[[str], None], *, disabled: bool = False, compact: bool = True,
              per_row: int = 1, focused: bool = False) -> None:
    """A card's class buttons: each class name, its key in front, the whole name and key in its tooltip.

    Args:
        key: The row's widget key (see :func:`button_row`).
        classes: Class names in display order.
        keys: The keyboard key of each of the first classes. A key equal to its class name
            (digits named "0".."9") is not repeated in front of it.
        chosen: The class this image is labeled as, shown pressed; None for none.
        on_pick: Called with the clicked class name (one of ``classes``).
        disabled: Draw the buttons disabled (a finished grid kept on screen).
        compact: Cut names to one line (:data:`CLASS_LABEL_MAX` characters at most); False:
            whole names, wrapped, ``per_row`` a line.
        per_row: Buttons a line when not ``compact``.
        focused: This card holds the keyboard focus (outlined by :func:`row_style`).
    """
    buttons = []
    for k, name in enumerate(classes):
        shortcut = keys[k] if k < len(keys) else None
        hint = shortcut if shortcut and shortcut.lower() != name.strip().lower() else ""
        buttons.append(RowButton(name, name, class_button_title(name, shortcut), hint, name == chosen, disabled))
    button_row(key, buttons, on_pick, variant="compact" if compact else "wide", per_row=per_row,
               label_limit=CLASS_LABEL_MAX if compact else None, focused=focused)


def action_row(key: str, decided: str | None, on_decide: Callable[[str], None], on_zoom: Callable[[], None], *,
               disabled: bool = False) -> None:
    """A card's skip, unsure and zoom buttons (zoom stays enabled on a finished grid).

    Args:
        key: The row's widget key (see :func:`button_row`).
        decided: The image's latest decision ("skip", "unsure" show pressed), or None.
        on_decide: Called with "skip" or "unsure".
        on_zoom: Called for "zoom".
        disabled: Disable skip and unsure (a finished grid kept on screen).
    """
    button_row(key, [
        RowButton("skip", "Skip", "Skip this image (key S when focused)", pressed=decided == "skip",
                  disabled=disabled),
        RowButton("unsure", "Unsure", "Mark this image unsure (key U when focused)", pressed=decided == "unsure",
                  disabled=disabled),
        RowButton("zoom", "Zoom", "Open this image in the focus mode (key F when focused)"),
    ], lambda value: on_zoom() if value == "zoom" else on_decide(value), variant="actions")
