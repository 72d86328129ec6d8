"""The cached current state per image and its counts, updated by label events in O(changes).

:class:`CurrentState` is an immutable value: the state of every image that has one (its
effective latest event) as of one label event id, with the number of images per state
(label/skip/unsure) and per labeled class kept beside it. :meth:`CurrentState.apply`
returns the state after a few images changed without copying the whole map: the changes
sit in a small overlay over a shared, never-mutated base dict, and the overlay is folded
into a new base only once it has grown past :data:`COMPACT_AT` entries (one full copy per
that many changes). :class:`CurrentView` is the read-only mapping handed out; a view never
changes after it was made, so callers can hold it while labels are added.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from activekd_core.store.records import LabelEvent

# Overlay entries (changed images) kept before they are folded into a new base dict.
COMPACT_AT = 4096
_GONE: Any = None  # an overlay value meaning "this image has no state any more"


class CurrentView(Mapping[str, LabelEvent]):
    """Read-only image id -> current event: a shared base dict under an overlay of later changes."""

    __slots__ = ("_base", "_patch", "_len")

    def __init__(self, base: dict[str, LabelEvent], patch: dict[str, LabelEvent | None], size: int) -> None:
        self._base = base
        self._patch = patch
        self._len = size

    def __getitem__(self, image_id: str) -> LabelEvent:
        if image_id in self._patch:
            ev = self._patch[image_id]
            if ev is _GONE:
                raise KeyError(image_id)
            return ev
        return self._base[image_id]

    def get(self, image_id: str, default: Any = None) -> Any:  # the hot path: two dict lookups
        """The current event of ``image_id``, or ``default`` when it has none."""
        patch = self._patch
        if image_id in patch:
            ev = patch[image_id]
            return default if ev is _GONE else ev
        return self._base.get(image_id, default)

    def __contains__(self, image_id: object) -> bool:
        patch = self._patch
        if image_id in patch:
            return patch[image_id] is not _GONE  # type: ignore[index]
        return image_id in self._base

    def __iter__(self) -> Iterator[str]:
        patch = self._patch
        if not patch:
            return iter(self._base)
        return self._iter_patched()

    def _iter_patched(self) -> Iterator[str]:
        patch = self._patch
        for image_id in self._base:
            if image_id not in patch:
                yield image_id
        for image_id, ev in patch.items():
            if ev is not _GONE:
                yield image_id

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"CurrentView({self._len} images)"


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
        return CurrentView(self._base, self._patch, self._len)

    def get(self, image_id: str) -> LabelEvent | None:
        """The current event of one image, or None."""
        if image_id in self._patch:
            return self._patch[image_id]
        return self._base.get(image_id)

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
            base = dict(base)
            for image_id, ev in patch.items():
                if ev is None:
                    base.pop(image_id, None)
                else:
                    base[image_id] = ev
            patch = {}
        return CurrentState(seen, base, patch, size, states, per_class)
