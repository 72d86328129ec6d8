"""The append-only label history: label/skip/unsure events, exact undo, and the current state per image.

Undo, exactly: ``undo(annotator, image_id=None, session=None)`` appends an ``undo`` event
that points (``undoes``) at that annotator's most recent event that is not an undo and has
not been undone yet (restricted to ``image_id`` when given). With a ``session`` (every
browser session passes its own id) only events recorded by that same session qualify:
two sessions of one annotator (everyone defaults to "expert") never undo each other's
work. Repeated undos walk back that history. An image's current state is its latest
non-undo event that has not been undone (last write wins across annotators); if none is
left the image is unlabeled. Undoing an event that another annotator has since
overwritten changes nothing visible: the later event stays current. Undo of an undo
(redo) is not offered.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from activekd_core.store.catalog import StoreCatalog
from activekd_core.store.current_state import CurrentState
from activekd_core.store.records import LabelEvent, StoreError, event_from_row, utc_now

# LabelHistory.current(): above this many new events, re-read the whole view instead of patching.
_INCREMENTAL_LIMIT = 2000


class LabelHistory(StoreCatalog):
    """Writes to and reads of the label history (needs the catalog to check images and classes)."""

    # ---- labels --------------------------------------------------------------------

    def add_event(
        self,
        image_id: str,
        event: str,
        class_name: str | None = None,
        *,
        annotator: str = "expert",
        session: str | None = None,
        round: int | None = None,
        strategy: str | None = None,
    ) -> int:
        """Append one label/skip/unsure event and commit it before returning.

        ``round`` and ``strategy`` default to the latest completed round and the strategy
        of the open batch holding the image (if any).

        Returns:
            The new event's id.

        Raises:
            StoreError: For an unknown image or class, a missing/extra class, or ``undo``
                (use :meth:`undo`).
        """
        if event not in ("label", "skip", "unsure"):
            raise StoreError(f"unknown event {event!r}: use 'label', 'skip' or 'unsure' (undo has its own method)")
        if (event == "label") != (class_name is not None):
            raise StoreError("a 'label' event needs a class; 'skip' and 'unsure' take none")
        if not annotator or not str(annotator).strip():
            raise StoreError("annotator must be a non-blank name")
        with self.transaction() as c:
            if not c.execute("SELECT 1 FROM images WHERE id = ? AND readable = 1", (image_id,)).fetchone():
                raise StoreError(f"{self.path}: unknown or unreadable image id {image_id!r}")
            if class_name is not None:
                row = c.execute("SELECT name FROM classes WHERE name = ?", (class_name,)).fetchone()
                if not row:
                    raise StoreError(f"{self.path}: unknown class {class_name!r}; classes are {self.class_names()}")
                class_name = row[0]
            if round is None:
                round = _latest_done_round(c)
            if strategy is None:
                hit = c.execute(
                    "SELECT b.strategy FROM batch_items i JOIN query_batches b ON b.id = i.batch_id "
                    "WHERE i.image_id = ? ORDER BY b.id DESC LIMIT 1",
                    (image_id,),
                ).fetchone()
                strategy = hit[0] if hit else None
            cur = c.execute(
                "INSERT INTO label_events(image_id, event, class_name, annotator, session, time, round, strategy) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (image_id, event, class_name, annotator, session, utc_now(), round, strategy),
            )
            return int(cur.lastrowid)

    def label(self, image_id: str, class_name: str, **kw: Any) -> int:
        """Label ``image_id`` as ``class_name``; see :meth:`add_event`."""
        return self.add_event(image_id, "label", class_name, **kw)

    def skip(self, image_id: str, **kw: Any) -> int:
        """Mark ``image_id`` as skipped; see :meth:`add_event`."""
        return self.add_event(image_id, "skip", **kw)

    def unsure(self, image_id: str, **kw: Any) -> int:
        """Mark ``image_id`` as unsure; see :meth:`add_event`."""
        return self.add_event(image_id, "unsure", **kw)

    def undo(self, annotator: str = "expert", image_id: str | None = None, *, session: str | None = None,
             image_ids: Sequence[str] | None = None) -> LabelEvent | None:
        """Revert ``annotator``'s latest not-yet-undone event (on ``image_id`` if given).

        Args:
            annotator: Whose events may be undone.
            image_id: Only events on this image.
            session: Only events recorded by this session (a browser session's id); None
                (the command line, scripts) considers the annotator's events from anywhere.
            image_ids: Only events on these images (e.g. the ones on screen: Z never
                reverts a decision the expert can no longer see).

        Returns:
            The event that was undone, or None when there was nothing to undo.
        """
        with self.transaction() as c:
            sql = "SELECT * FROM effective_events WHERE annotator = ?"
            params: list[Any] = [annotator]
            if image_id is not None:
                sql += " AND image_id = ?"
                params.append(image_id)
            if session is not None:
                sql += " AND session = ?"
                params.append(session)
            if image_ids is not None:
                wanted = list(dict.fromkeys(image_ids))
                if not wanted:
                    return None
                sql += f" AND image_id IN ({','.join('?' * len(wanted))})"
                params.extend(wanted)
            target = c.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
            if target is None:
                return None
            c.execute(
                "INSERT INTO label_events(image_id, event, annotator, session, time, round, strategy, undoes) "
                "VALUES (?, 'undo', ?, ?, ?, ?, ?, ?)",
                (target["image_id"], annotator, session, utc_now(), target["round"], target["strategy"], target["id"]),
            )
            return event_from_row(target)

    def add_labels(
        self, labels: Iterable[tuple[str, str]], *, annotator: str, strategy: str = "import", session: str | None = None
    ) -> int:
        """Append many label events in one transaction (imports, bulk labels); returns the count.

        Raises:
            StoreError: Before writing anything, if an image or class is unknown.
        """
        labels = list(labels)
        with self.transaction() as c:
            ids = {r[0] for r in c.execute("SELECT id FROM images WHERE readable = 1")}
            names = {r[0].casefold(): r[0] for r in c.execute("SELECT name FROM classes")}
            bad_ids = sorted({i for i, _ in labels if i not in ids})
            bad_cls = sorted({n for _, n in labels if str(n).casefold() not in names})
            if bad_ids or bad_cls:
                raise StoreError(
                    f"{self.path}: nothing imported: unknown image ids {bad_ids[:5]}{'...' if len(bad_ids) > 5 else ''} "
                    f"unknown classes {bad_cls[:5]}"
                )
            rnd, now = _latest_done_round(c), utc_now()
            c.executemany(
                "INSERT INTO label_events(image_id, event, class_name, annotator, session, time, round, strategy) "
                "VALUES (?, 'label', ?, ?, ?, ?, ?, ?)",
                [(i, names[str(n).casefold()], annotator, session, now, rnd, strategy) for i, n in labels],
            )
        return len(labels)

    def clear(self, image_ids: Iterable[str], *, annotator: str, session: str | None = None) -> int:
        """Return images to unlabeled: undo every effective event on each, in one transaction.

        The history keeps everything (one ``undo`` row per reverted event, recorded as
        ``annotator``'s); an image without a current state is left as it is.

        Returns:
            The number of images whose state changed.
        """
        if not annotator or not str(annotator).strip():
            raise StoreError("annotator must be a non-blank name")
        changed = 0
        with self.transaction() as c:
            now = utc_now()
            for image_id in dict.fromkeys(image_ids):
                targets = c.execute(
                    "SELECT id, round, strategy FROM effective_events WHERE image_id = ? ORDER BY id DESC", (image_id,)
                ).fetchall()
                c.executemany(
                    "INSERT INTO label_events(image_id, event, annotator, session, time, round, strategy, undoes) "
                    "VALUES (?, 'undo', ?, ?, ?, ?, ?, ?)",
                    [(image_id, annotator, session, now, t["round"], t["strategy"], t["id"]) for t in targets],
                )
                changed += bool(targets)
        return changed

    def events(self, image_id: str | None = None, *, since_id: int = 0) -> list[LabelEvent]:
        """The label history in order (all images, or one)."""
        if image_id is None:
            rows = self._query("SELECT * FROM label_events WHERE id > ? ORDER BY id", (since_id,))
        else:
            rows = self._query("SELECT * FROM label_events WHERE image_id = ? AND id > ? ORDER BY id", (image_id, since_id))
        return [event_from_row(r) for r in rows]

    def event_ids(self) -> set[int]:
        """Ids of every stored event (for audits and crash tests)."""
        return {int(r[0]) for r in self._query("SELECT id FROM label_events")}

    def newest_event_id(self) -> int:
        """Id of the newest label event (0 when there is none); changes with every label/undo.

        The history is append-only and writers are serialised, so an unchanged id means an
        unchanged labeling state: use it as a cache key.
        """
        return int(self._query("SELECT max(id) FROM label_events")[0][0] or 0)

    def current(self) -> Mapping[str, LabelEvent]:
        """The current state per image that has one: image id -> its effective latest event.

        Returns a read-only snapshot (a :class:`~activekd_core.store.current_state.CurrentView`):
        it does not change when labels are added later; call again for the new state. Copy
        it (``dict(...)``) to modify it.

        Cached on the newest event id and updated incrementally (see :meth:`_current_state`):
        a call after a few new events costs O(those events), not O(images with a state).
        """
        return self._current_state().view()

    def current_counts(self, exclude: Iterable[str] = ()) -> tuple[dict[str, int], dict[str, int]]:
        """``(images per state, labeled images per class)`` of one current state, in O(classes + excluded).

        The first dict has the keys ``label``, ``skip`` and ``unsure``; the second every
        class (zeros included). Both come from the counts kept with the cached current
        state (see :meth:`_current_state`), so they agree with each other and with
        :meth:`current` as of the same event.

        Args:
            exclude: Image ids left out of both counts (e.g. the audit set).
        """
        cs = self._current_state()
        states = {kind: cs.states.get(kind, 0) for kind in ("label", "skip", "unsure")}
        per_class = {n: cs.per_class.get(n, 0) for n in self.class_names()}
        for image_id in set(exclude):
            ev = cs.get(image_id)
            if ev is not None:
                states[ev.event] -= 1
                if ev.event == "label" and ev.class_name in per_class:
                    per_class[ev.class_name] -= 1
        return states, per_class

    def _current_state(self) -> CurrentState:
        """The cached :class:`CurrentState`, brought up to the newest event.

        The history is append-only (an undo row carries the image id of the event it
        undoes), so only the images named by events newer than the cached id can have
        changed; each one's state is re-read with :meth:`current_state`'s query and applied
        to the cached state, which keeps its per-state and per-class counts with it. Events
        from any connection or process are seen. A long run of new events (e.g. an import)
        is read back in full instead.
        """
        with self._lock:
            cache = self._current_cache
            if cache is not None:
                new = self._query(
                    "SELECT id, image_id FROM label_events WHERE id > ? ORDER BY id LIMIT ?",
                    (cache.seen, _INCREMENTAL_LIMIT + 1),
                )
                if not new:
                    return cache
                if len(new) <= _INCREMENTAL_LIMIT:
                    # Events committed after this query have larger ids than ``newest`` and are
                    # picked up next time, so a state read here that already includes one stays exact.
                    changes = {image_id: self.current_state(image_id) for image_id in dict.fromkeys(r[1] for r in new)}
                    self._current_cache = cache.apply(int(new[-1][0]), changes)
                    return self._current_cache
            newest = self.newest_event_id()  # read before the view: later events are re-read next time
            rows = self._query("SELECT * FROM current_labels ORDER BY id")
            self._current_cache = CurrentState.from_events(newest, (event_from_row(r) for r in rows))
            return self._current_cache

    def current_state(self, image_id: str) -> LabelEvent | None:
        """The current state of one image, or None when unlabeled."""
        rows = self._query(
            "SELECT * FROM effective_events WHERE image_id = ? ORDER BY id DESC LIMIT 1",
            (image_id,),
        )
        return event_from_row(rows[0]) if rows else None

    def current_labels(self) -> dict[str, str]:
        """Image id -> class name, for images whose current state is a label."""
        return {i: e.class_name for i, e in self.current().items() if e.is_label}

    def class_counts(self) -> dict[str, int]:
        """Current number of labeled images per class (all classes, zeros included; O(classes))."""
        return self.current_counts()[1]


def _latest_done_round(c: sqlite3.Connection) -> int:
    row = c.execute("SELECT max(id) FROM rounds WHERE status = 'done'").fetchone()
    return int(row[0]) if row and row[0] is not None else 0
