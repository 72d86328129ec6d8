"""The cached current state per image and its counts, updated by label events in O(changes).

:class:`CurrentState` is an immutable value: the state of every image that has one (its
effective latest event) as of one label event id, with the number of images per state
(label/skip/unsure) and per labeled class kept beside it. :meth:`CurrentState.apply`
returns the state after a few images changed without copying the whole map: the changes
sit in a small overlay over a shared, never-mutated base dict, and the overlay is folded
into a new base only once it has grown past :data:`COMPACT_AT` entries (one full copy per
that many changes) or when something iterates the whole state. :class:`CurrentView` is
the read-only mapping handed out; a view never changes after it was made, so callers can
hold it while labels are added.
"""

from __future__ import annotations

from collections.abc import Iterable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from activekd_core.store.records import LabelEvent

# Overlay entries (changed images) kept before they are folded into a new base dict.
COMPACT_AT = 4096


class CurrentView(Mapping[str, LabelEvent]):
    """Read-only image id -> current event of one :class:`CurrentState` (a snapshot: never changes).

    Lookups (``get``, ``[]``, ``in``) cost two dict lookups. Iterating (``keys``,
    ``values``, ``items``, ``dict(view)``) walks one plain dict: the state's overlay is
    folded into its base the first time anything iterates it (one copy, then shared).
    """

    __slots__ = ("_state",)

    def __init__(self, state: CurrentState) -> None:
        self._state = state

    def __getitem__(self, image_id: str) -> LabelEvent:
        ev = self._state.get(image_id)
        if ev is None:
            raise KeyError(image_id)
        return ev

    def get(self, image_id: str, default: Any = None) -> Any:  # the hot path: no KeyError machinery
        """The current event of ``image_id``, or ``default`` when it has none."""
        ev = self._state.get(image_id)
        return default if ev is None else ev

    def __contains__(self, image_id: object) -> bool:
        return isinstance(image_id, str) and self._state.get(image_id) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.merged())

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        return self._state.merged().keys()

    def values(self) -> ValuesView[LabelEvent]:  # type: ignore[override]
        return self._state.merged().values()

    def items(self) -> ItemsView[str, LabelEvent]:  # type: ignore[override]
        return self._state.merged().items()

    def __len__(self) -> int:
        return len(self._state)

    def __repr__(self) -> str:
        return f"CurrentView({len(self)} images)"


class CurrentState:
    """The current state per image as of label event ``seen``, with its per-state and per-class counts.

    Attributes:
        seen: The newest label event id this state includes.
        states: Images per current event kind (``label``, ``skip``, ``unsure``).
        per_class: Images whose current state is a label, per class name (classes without
            a label are absent).
    """

    __slots__ = ("seen", "states", "per_class", "_base", "_patch", "_len")

    def __init__(self, seen: int, base: dict[str, LabelEvent], patch: dict[str, LabelEvent | None], size: int,
                 states: dict[str, int], per_class: dict[str, int]) -> None:
        self.seen = seen
        self._base = base
        self._patch = patch
        self._len = size
        self.states = states
        self.per_class = per_class

    @classmethod
    def from_events(cls, seen: int, events: Iterable[LabelEvent]) -> CurrentState:
        """Build the state (and count it) from every image's current event, in one pass."""
        base: dict[str, LabelEvent] = {}
        states = {"label": 0, "skip": 0, "unsure": 0}
        per_class: dict[str, int] = {}
        for ev in events:
            base[ev.image_id] = ev
        for ev in base.values():
            states[ev.event] = states.get(ev.event, 0) + 1
            if ev.event == "label" and ev.class_name is not None:
                per_class[ev.class_name] = per_class.get(ev.class_name, 0) + 1
        return cls(seen, base, {}, len(base), states, per_class)

    def view(self) -> CurrentView:
        """The read-only mapping of this state (never changes afterwards)."""
        return CurrentView(self)

    def __len__(self) -> int:
        return self._len

    def get(self, image_id: str) -> LabelEvent | None:
        """The current event of one image, or None."""
        patch = self._patch
        if patch and image_id in patch:
            return patch[image_id]
        return self._base.get(image_id)

    def merged(self) -> dict[str, LabelEvent]:
        """The whole state as one plain dict (do not modify it): the overlay folded into a copy
        of the base once, which then becomes this state's base (same content, so views of
        this state are unaffected)."""
        if self._patch:
            self._base = _folded(self._base, self._patch)
            self._patch = {}
        return self._base

    def apply(self, seen: int, changes: Mapping[str, LabelEvent | None]) -> CurrentState:
        """The state after the images in ``changes`` got a new current event (None: none any more).

        Costs O(changes + overlay size); this state is left as it was.
        """
        patch = dict(self._patch)
        states = dict(self.states)
        per_class = dict(self.per_class)
        size = self._len
        for image_id, new in changes.items():
            old = self.get(image_id)
            if old is not None:
                size -= 1
                states[old.event] -= 1
                if old.event == "label" and old.class_name is not None:
                    per_class[old.class_name] -= 1
                    if not per_class[old.class_name]:
                        del per_class[old.class_name]
            if new is not None:
                size += 1
                states[new.event] = states.get(new.event, 0) + 1
                if new.event == "label" and new.class_name is not None:
                    per_class[new.class_name] = per_class.get(new.class_name, 0) + 1
            patch[image_id] = new
        base = self._base
        if len(patch) > COMPACT_AT:
            base, patch = _folded(base, patch), {}
        return CurrentState(seen, base, patch, size, states, per_class)


def _folded(base: dict[str, LabelEvent], patch: Mapping[str, LabelEvent | None]) -> dict[str, LabelEvent]:
    """A new dict: ``base`` with ``patch`` applied (None removes an image); ``base`` is not changed."""
    out = dict(base)
    for image_id, ev in patch.items():
        if ev is None:
            out.pop(image_id, None)
        else:
            out[image_id] = ev
    return out
