"""AppTest access to the Label page's card panels (``pages._card_panel``, a custom component):
each card's class row and its skip/unsure/zoom row, named as if each were its own widget
(``lbl_batch-3_0_classes``, ``lbl_batch-3_0_actions``: the panel ``lbl_batch-3_0_card``'s
rows), and the panel's text lines.

AppTest has no element type for ``st.components.v2`` components, so a click is sent the way
the browser sends it: the row's trigger (its event, "classes" or "actions", with the value
of the button shown) in the widget states of the next run. Chromium tests click the real
buttons instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from streamlit.components.v2.bidi_component.main import _make_trigger_id
from streamlit.testing.v1 import AppTest


PANEL_SUFFIX = "_card"


@dataclass(frozen=True)
class ButtonRow:
    """What one row shows: values, labels, key hints, tooltips, pressed and disabled buttons, focus
    (the panel's), and the panel element and event that a click on it goes to."""

    key: str
    element_id: str
    event: str
    values: list[str]
    labels: list[str]
    hints: list[str]
    titles: list[str]
    pressed: list[bool]
    disabled: list[bool]
    focused: bool

    @property
    def chosen(self) -> list[str]:
        """The values shown pressed."""
        return [v for v, p in zip(self.values, self.pressed) if p]


def panels(at: AppTest) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every card panel of the last run: widget key (``lbl_batch-3_0_card``) -> (element id, data)."""
    out = {}
    for el in at.get("bidi_component"):
        proto = el.proto
        if proto.component_name != "activekd_card_panel":
            continue
        out[proto.id.split("-", 2)[2]] = (proto.id, json.loads(proto.json))  # "$$ID-<hash>-<user key>"
    return out


def card_ids(at: AppTest) -> list[str]:
    """The image ids the compact cards' panels show, in card order ([] for classic cards)."""
    found = []
    for key, (_element_id, data) in panels(at).items():
        code = next((item["code"] for line in data["lines"] for item in line if "code" in item), None)
        if code is not None:
            found.append((int(key.removesuffix(PANEL_SUFFIX).rsplit("_", 1)[1]), code))
    return [code for _pos, code in sorted(found)]


def button_rows(at: AppTest) -> dict[str, ButtonRow]:
    """Every button row of the last run, by its panel's key with the row's name for "_card"
    (``lbl_batch-3_0_classes``)."""
    rows = {}
    for key, (element_id, data) in panels(at).items():
        for item in (item for line in data["lines"] for item in line if "row" in item):
            name = f"{key.removesuffix(PANEL_SUFFIX)}_{item['row']}"
            rows[name] = ButtonRow(name, element_id, item["row"], item["values"], item["labels"], item["hints"],
                                   item["titles"], item["pressed"], item["disabled"], bool(data["focused"]))
    return rows


def panel_texts(at: AppTest, card: str) -> list[str]:
    """The text lines of ``card``'s panel (``lbl_batch-3_0``) as shown: the image id, then each
    line of segments joined (``#1 · focused · labeled cat by ada``)."""
    key = card + PANEL_SUFFIX
    every = panels(at)
    if key not in every:
        raise KeyError(f"no panel {key!r} on the page; panels: {sorted(every)}")
    out = []
    for item in (item for line in every[key][1]["lines"] for item in line):
        if "code" in item:
            out.append(item["code"])
        elif "text" in item:
            out.append("".join(text for text, _style in item["text"]))
    return out


def class_rows(at: AppTest) -> dict[str, ButtonRow]:
    """The class rows of the last run, by widget key."""
    return {k: r for k, r in button_rows(at).items() if k.endswith("_classes")}


def class_row(at: AppTest, card: str) -> ButtonRow:
    """The class row of ``card`` (``f"{batch_key}_{pos}"``, e.g. ``lbl_batch-3_0``)."""
    return card_row(at, card, "classes")


def actions_row(at: AppTest, card: str) -> ButtonRow:
    """The skip/unsure/zoom row of ``card``."""
    return card_row(at, card, "actions")


def card_row(at: AppTest, card: str, row: str) -> ButtonRow:
    """The ``row`` ("classes" or "actions") of ``card``."""
    rows = button_rows(at)
    key = f"{card}_{row}"
    if key not in rows:
        raise KeyError(f"no button row {key!r} on the page; rows: {sorted(rows)}")
    return rows[key]


def pick(at: AppTest, card: str, k: int | str, *, row: str = "classes", timeout: float | None = None) -> AppTest:
    """Click button ``k`` (an index into the row, or a value sent as is) of ``card``'s ``row``, and run."""
    target = card_row(at, card, row)
    return send(at, target, target.values[k] if isinstance(k, int) else k, timeout=timeout)


def send(at: AppTest, target: ButtonRow, value: str, *, timeout: float | None = None) -> AppTest:
    """Send a click on ``value`` of ``target`` (a row of this or of an earlier run, as a page
    that has not yet drawn the newest run would), and run."""
    states = at._tree.get_widget_states()
    trigger = states.widgets.add()
    trigger.id = _make_trigger_id(target.element_id, "events")
    trigger.json_trigger_value = json.dumps([{"event": target.event, "value": value}])
    return at._run(states, timeout=timeout)


def act(at: AppTest, card: str, action: str) -> AppTest:
    """Click "skip", "unsure" or "zoom" on ``card``, and run."""
    return pick(at, card, action, row="actions")


def batch_key(at: AppTest) -> str:
    """The open grid's widget key prefix (``lbl_batch-3``), from its first card's class row."""
    keys = sorted(class_rows(at))
    if not keys:
        raise KeyError("no class row on the page")
    return keys[0].rsplit("_", 2)[0]
