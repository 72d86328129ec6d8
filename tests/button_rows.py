"""AppTest access to the Label page's button rows (``pages._button_row``, a custom component):
each card's class row (``..._classes``) and its skip/unsure/zoom row (``..._actions``).

AppTest has no element type for ``st.components.v2`` components, so a click is sent the way
the browser sends it: the row's trigger ("pick", the value of the button shown) in the
widget states of the next run. Chromium tests click the real buttons instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from streamlit.components.v2.bidi_component.main import _make_trigger_id
from streamlit.testing.v1 import AppTest


@dataclass(frozen=True)
class ButtonRow:
    """What one row shows: values, labels, key hints, tooltips, pressed and disabled buttons, focus."""

    key: str
    element_id: str
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


def button_rows(at: AppTest) -> dict[str, ButtonRow]:
    """Every button row of the last run, by widget key (``lbl_batch-3_0_classes``)."""
    rows = {}
    for el in at.get("bidi_component"):
        proto = el.proto
        if proto.component_name != "activekd_button_row":
            continue
        key = proto.id.split("-", 2)[2]  # "$$ID-<hash>-<user key>"
        data: dict[str, Any] = json.loads(proto.json)
        rows[key] = ButtonRow(key, proto.id, data["values"], data["labels"], data["hints"], data["titles"],
                              data["pressed"], data["disabled"], bool(data["focused"]))
    return rows


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
    trigger.json_trigger_value = json.dumps([{"event": "pick", "value": value}])
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
