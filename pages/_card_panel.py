"""A card's texts and rows of buttons (its classes; skip, unsure and zoom) as one Streamlit
custom component (``st.components.v2``) a card.

Why not ``st.button`` and ``st.caption``: a new grid mounts every card's widgets at once, each
a React tree with its Markdown label and tooltip, and the browser needs ~0.9-1.5 ms a button;
that alone kept the batch turnover at 100k images 1.7-1.8x slower (``bench/button_rows.py``,
bench/README.md). One button row a component took that to ~0.2 ms a button; one panel a
card (its id, decision line and both rows) also takes the card's other elements out (7
elements a compact card -> 3). A panel is plain ``<div>``, ``<code>``, ``<span>`` and
``<button>`` elements written by a few lines of our own JavaScript, updated in place on the
next run (a button the keyboard focused stays focused).

What it keeps from the widgets it replaces:

* **No misattribution.** A panel's key names the batch and the card
  (``lbl_batch-7_3_card``): a click on a card of a grid the server has already replaced
  reaches no registered widget and is dropped. A click sends the value of the button the
  user saw (a class name, "skip", ...) as its row's event ("classes", "actions"), and the
  callback acts only on an enabled value of that row.
* **Literal text.** Texts and labels reach the page as JSON data and are written with
  ``textContent`` and ``title``: never Markdown, never HTML. Each is bounded (:func:`visible`).
* **Keyboard and screen readers.** Real buttons (Tab, Enter, Space); a chosen one has
  ``aria-pressed="true"``; each button's ``title`` says what it does, with its key.

In the page a row is ``.st-key-<panel key> .akd-<row name> button[data-k="<index>"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from activekd_core.display_text import visible
from activekd_core.view_models.label import CLASS_LABEL_MAX, Segment, class_button_title

COMPONENT = "activekd_card_panel"
CLASSES, ACTIONS = "classes", "actions"  # the rows' names: their events and CSS classes

_JS = """
function child(parent, k, kind, tag) {
  let el = parent.children[k];
  if (!el || el.__akdKind !== kind) {
    const fresh = document.createElement(tag);
    fresh.__akdKind = kind;
    if (el) el.replaceWith(fresh); else parent.appendChild(fresh);
    el = fresh;
  }
  return el;
}

function trim(parent, n) {
  while (parent.children.length > n) parent.lastChild.remove();
}

function fillRow(row, item, send) {
  row.className = 'akd-row akd-' + item.variant + ' akd-' + item.row;
  row.style.setProperty('--akd-per-row', String(item.per_row || 1));
  const n = item.values.length;
  trim(row, n);
  for (let k = 0; k < n; k++) {
    let b = row.children[k];
    if (!b) {
      b = document.createElement('button');
      b.type = 'button';
      b.appendChild(document.createElement('span')).className = 'akd-key';
      b.appendChild(document.createElement('span')).className = 'akd-name';
      b.addEventListener('click', () => {
        if (!b.disabled) send(b.__akdEvent, b.__akdValue);
      });
      row.appendChild(b);
    }
    b.__akdEvent = item.row;
    b.__akdValue = item.values[k];
    b.dataset.k = String(k);
    b.firstChild.textContent = item.hints[k];
    b.lastChild.textContent = item.labels[k];
    b.title = item.titles[k];
    b.setAttribute('aria-pressed', item.pressed[k] ? 'true' : 'false');
    b.disabled = !!item.disabled[k];
  }
}

function fillText(span, item) {
  span.className = 'akd-text';
  span.title = item.title || '';
  trim(span, item.text.length);
  item.text.forEach(([text, style], k) => {
    const part = span.children[k] || span.appendChild(document.createElement('span'));
    part.className = style ? 'akd-' + style : '';
    part.textContent = text;
  });
}

export default function (component) {
  const { parentElement, data, setTriggerValue } = component;
  let root = parentElement.querySelector(':scope > .akd-panel');
  if (!root) {
    root = document.createElement('div');
    parentElement.appendChild(root);
  }
  root.className = 'akd-panel' + (data.focused ? ' akd-focused' : '');
  trim(root, data.lines.length);
  data.lines.forEach((items, i) => {
    const line = child(root, i, 'line', 'div');
    line.className = 'akd-line';
    trim(line, items.length);
    items.forEach((item, j) => {
      if (item.row !== undefined) fillRow(child(line, j, 'row', 'div'), item, setTriggerValue);
      else if (item.code !== undefined) {
        const el = child(line, j, 'code', 'code');
        el.className = 'akd-id';
        el.textContent = item.code;
        el.title = item.code;
      } else fillText(child(line, j, 'text', 'span'), item);
    });
  });
}
"""

_CSS = """
.akd-panel { display: flex; flex-direction: column; gap: 0.35rem; width: 100%; }
.akd-line { display: flex; align-items: center; gap: 0.25rem; min-width: 0; }
.akd-id {
  flex: 1 1 auto; min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
  font-size: 0.8rem; padding: 0.1em 0.25em; border-radius: 0.25rem; background: rgba(49, 51, 63, 0.06);
}
.akd-text {
  min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
  font-size: 0.875rem; color: rgba(49, 51, 63, 0.65);
}
.akd-text .akd-strong { font-weight: 600; }
.akd-text .akd-focus { color: #1c83e1; }
.akd-row { display: flex; flex-wrap: wrap; gap: 0.25rem; flex: 1 1 auto; min-width: 0; }
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
.akd-small { gap: 0.15rem; flex: 0 0 auto; flex-wrap: nowrap; justify-content: flex-end; margin-left: auto; }
.akd-small > button {
  flex: 0 0 auto; min-height: 1.5rem; padding: 0 0.35rem; font-size: 0.75rem; white-space: nowrap;
  border-color: transparent; background: transparent;
}
"""

# No css= here: Streamlit would add a <style> copy to every panel (10 a grid), and a new grid's
# style sheets cost the browser a restyle of the whole page; panel_style() draws it once.
_PANEL = st.components.v2.component(COMPONENT, js=_JS, isolate_styles=False)


def panel_style() -> None:
    """The panels' style sheet, once per page (it never changes, so the browser parses it once),
    and the focus outline of the card whose panel is marked focused."""
    st.html(f"""<style>{_CSS}
[class*="st-key-lbl_card_"]:has(.akd-focused) {{
  outline: 3px solid #1c83e1; outline-offset: 2px; border-radius: 0.5rem;
}}
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


@dataclass(frozen=True)
class ButtonRow:
    """A row of buttons in a panel.

    Attributes:
        name: The row's event and CSS class ("classes", "actions"); unique in its panel.
        buttons: The buttons, in order.
        on_pick: Called with the clicked button's value, in the click's callback (before the
            rerun draws the page); only with the value of an enabled button of this row.
        variant: "compact" (one short line a button, cut with an ellipsis), "wide" (whole
            labels, wrapped, ``per_row`` a line) or "small" (small, text-only).
        per_row: Buttons a line for "wide".
        label_limit: Longest label shown (characters); None: the display default.
    """

    name: str
    buttons: Sequence[RowButton]
    on_pick: Callable[[str], None] = field(compare=False)
    variant: str = "compact"
    per_row: int = 1
    label_limit: int | None = None

    def data(self) -> dict[str, Any]:
        """The row as the page's JSON data (texts bounded)."""
        limit = self.label_limit
        return {
            "row": self.name,
            "values": [b.value for b in self.buttons],
            "labels": [visible(b.label, limit) if limit else visible(b.label) for b in self.buttons],
            "titles": [visible(b.title) for b in self.buttons],
            "hints": [visible(b.hint, 3) for b in self.buttons],
            "pressed": [b.pressed for b in self.buttons],
            "disabled": [b.disabled for b in self.buttons],
            "variant": self.variant,
            "per_row": self.per_row,
        }


@dataclass(frozen=True)
class Code:
    """An image id in a code font, cut to the line's width (whole in its tooltip)."""

    text: str


@dataclass(frozen=True)
class Text:
    """A line of styled plain-text segments (see ``view_models.label.Segment``), cut to one line, with a tooltip."""

    segments: Sequence[Segment]
    title: str = ""


Item = ButtonRow | Code | Text


def panel(key: str, lines: Sequence[Sequence[Item]], *, focused: bool = False) -> None:
    """Draw one card's panel: ``lines`` top to bottom, each a row of items.

    Args:
        key: The panel's widget key; name the batch and the card in it, so that a click on a
            card of a replaced grid is dropped.
        lines: Each line's items (texts and button rows), left to right.
        focused: Mark the panel focused: :func:`panel_style` outlines the card holding it.
    """
    data_lines: list[list[dict[str, Any]]] = []
    callbacks: dict[str, Callable[[], None]] = {}
    for items in lines:
        out = []
        for item in items:
            if isinstance(item, ButtonRow):
                out.append(item.data())
                callbacks[f"on_{item.name}_change"] = _pick_handler(key, item)
            elif isinstance(item, Code):
                out.append({"code": visible(item.text)})
            else:
                out.append({"text": [[visible(text), style] for text, style in item.segments],
                            "title": visible(item.title)})
        data_lines.append(out)
    _PANEL(key=key, data={"lines": data_lines, "focused": focused}, width="stretch", **callbacks)


def _pick_handler(key: str, row: ButtonRow) -> Callable[[], None]:
    enabled = {b.value for b in row.buttons if not b.disabled}

    def picked() -> None:
        value = (st.session_state.get(key) or {}).get(row.name)
        if isinstance(value, str) and value in enabled:
            row.on_pick(value)

    return picked


def class_buttons(classes: Sequence[str], keys: Sequence[str], chosen: str | None, on_pick: Callable[[str], None],
                  *, disabled: bool = False, compact: bool = True, per_row: int = 1) -> ButtonRow:
    """A card's class buttons: each class name, its key in front, the whole name and key in its tooltip.

    Args:
        classes: Class names in display order.
        keys: The keyboard key of each of the first classes. A key equal to its class name
            (digits named "0".."9") is not repeated in front of it.
        chosen: The class this image is labeled as, shown pressed; None for none.
        on_pick: Called with the clicked class name (one of ``classes``).
        disabled: Draw the buttons disabled (a finished grid kept on screen).
        compact: Cut names to one line (:data:`CLASS_LABEL_MAX` characters at most); False:
            whole names, wrapped, ``per_row`` a line.
        per_row: Buttons a line when not ``compact``.
    """
    buttons = []
    for k, name in enumerate(classes):
        shortcut = keys[k] if k < len(keys) else None
        hint = shortcut if shortcut and shortcut.lower() != name.strip().lower() else ""
        buttons.append(RowButton(name, name, class_button_title(name, shortcut), hint, name == chosen, disabled))
    return ButtonRow(CLASSES, buttons, on_pick, "compact" if compact else "wide", per_row,
                     CLASS_LABEL_MAX if compact else None)


def action_buttons(decided: str | None, on_decide: Callable[[str], None], on_zoom: Callable[[], None], *,
                   disabled: bool = False) -> ButtonRow:
    """A card's skip, unsure and zoom buttons (zoom stays enabled on a finished grid).

    Args:
        decided: The image's latest decision ("skip", "unsure" show pressed), or None.
        on_decide: Called with "skip" or "unsure".
        on_zoom: Called for "zoom".
        disabled: Disable skip and unsure (a finished grid kept on screen).
    """
    return ButtonRow(ACTIONS, [
        RowButton("skip", "Skip", "Skip this image (key S when focused)", pressed=decided == "skip",
                  disabled=disabled),
        RowButton("unsure", "Unsure", "Mark this image unsure (key U when focused)", pressed=decided == "unsure",
                  disabled=disabled),
        RowButton("zoom", "Zoom", "Open this image in the focus mode (key F when focused)"),
    ], lambda value: on_zoom() if value == "zoom" else on_decide(value), "small")
