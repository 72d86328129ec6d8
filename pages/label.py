"""Label page: the current query batch as a grid, one click (or one key) per label.

Every action runs in a button callback, i.e. the event is committed to the project's
database before the page reruns. A rerun reads the open batch and the image states
from the store and the thumbnails from a cache: nothing heavy is recomputed on a click.
While a batch is labeled the next one is prepared in a worker process, so the next grid
appears at once when the last image is done; without a prepared batch the next one is
selected then (with progress).

Cards come in two layouts, a per-annotator preference: compact (``pages._grid``, the
default: the image dominates the card) and classic (drawn here).

Keyboard (Streamlit's native button shortcuts; ``R`` and ``C`` belong to Streamlit):
``1``-``9`` (``0`` for a tenth class) label the focused image, ``S`` skips, ``U`` marks
it unsure, ``Z`` undoes the latest event, ``←``/``→`` or ``K``/``J`` move the focus,
``F`` toggles the single-image focus mode.
"""

from __future__ import annotations

import os
import time

import streamlit as st

from activekd_core.display_text import MESSAGE_MAX, code, md
from activekd_core.project import PARTIAL_SPACE, QUEUE_STRATEGIES, REVISIT, BatchView, Project
from activekd_core.view_models.label import (
    JobBusy,
    card_detail,
    failed_selection,
    image_states,
    partial_batch_caption,
    pick_reason,
    state_segments,
    training_job,
)
from pages._card_panel import action_buttons, class_buttons, panel, panel_style
from pages._grid import compact_card, compact_style
from pages._rare import collapse_notes, labels_per_round_table
from pages._session import (
    annotator,
    current_project,
    session_id,
    show_project_error,
    strategy_score_label,
    teacher_suggestions,
    thumbnail,
    use_worker_process,
)
from pages._viewer import focus_image

SELECT_POLL_SECONDS = 0.5  # how often the page polls a running batch selection
GRID_BOX = 320  # thumbnail size in pixels (images are shown at column width)

K_FOCUS = "lbl_focus"
K_BATCH = "lbl_batch_key"
K_ZOOM = "lbl_zoom"
K_PAN_X = "lbl_pan_x"
K_PAN_Y = "lbl_pan_y"
ZOOMS = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0]
K_FOCUS_MODE = "lbl_focus_mode"
K_SHOW_TEACHER = "lbl_show_teacher"
K_COLS = "lbl_cols"
K_COMPACT = "lbl_compact"
K_ROUND_TABLE = "lbl_round_table"  # the open state of the labels-per-round expander
PER_ROW_CHOICES = [2, 3, 4, 5, 6]
K_SOURCE = "lbl_source"
K_NOTICE = "lbl_notice"
K_RETRY = "lbl_retry_select"
K_STOP = "lbl_stop"
K_T0 = "lbl_action_t0"
K_LAST_MS = "lbl_last_action_ms"


# ---- the items on screen ---------------------------------------------------------------------


def _audit_items(project: Project) -> tuple[int, list[tuple[str, float | None]]]:
    """``(chunk number, items)`` of the audit chunk to label now (see ``Project.audit_chunk``)."""
    chunk, ids = project.audit_chunk()
    return chunk, [(i, None) for i in ids]


def _batch(project: Project) -> tuple[BatchView | None, bool]:
    """``(batch to show, waiting)``: the open batch; when it is complete, the next one.

    The next batch was normally prepared while this one was labeled and opens at once.
    When it is not ready yet, it is selected (or its preparation finishes) in the
    background and the finished batch stays on screen read-only (``waiting`` True) while a
    fragment polls the selection and reruns the page when it ends: the grid never empties.
    None when no batch was ever opened (the first selection runs) or nothing is left.

    The wait's progress (or error) goes into a container drawn on every run, so the
    elements below it keep their places when it appears or goes: the frontend replaces
    each card in place instead of shifting the whole page by one element.
    """
    slot = st.container()
    view = project.current_batch() or _finished_on_screen(project)
    if view is not None and not view.complete:
        project.start_prefetch(view, thumb_box=GRID_BOX)  # once per batch, with the next grid's thumbnails
        return view, False
    if view is not None and view.batch.strategy not in QUEUE_STRATEGIES:
        _auto_retrain(project)
    promoted = project.promote_prefetched()  # prepared while this batch was labeled: no wait
    if promoted is not None:
        return promoted, False
    _, candidates = project.candidate_rows()
    if candidates.size == 0:
        return None, False
    latest = failed_selection(project)
    with slot:
        if latest is not None and not st.session_state.pop(K_RETRY, False):
            first_line = latest.error.splitlines()[0] if latest.error else "no message"
            st.error(f"Selecting the next batch failed: {md(first_line, MESSAGE_MAX)}")
            st.button("Try again", key="lbl_retry_select",
                      on_click=lambda: st.session_state.__setitem__(K_RETRY, True))
        else:
            project.start_next_batch()  # a worker process, unless a selection (or the late prefetch) already runs
            _selection_progress(project)
    if view is None:
        st.session_state[K_STOP] = True
        return None, False
    return view, True


def _finished_on_screen(project: Project) -> BatchView | None:
    """The batch this session last showed, when it is complete and no batch is open.

    A round that ends while the next batch is being selected closes the finished batch
    (the next one must come from the new student); the grid keeps showing it, read-only,
    until the selection opens the next one.
    """
    shown = st.session_state.get(K_BATCH)
    if not isinstance(shown, str) or not shown.startswith("batch-"):
        return None
    try:
        view = project.batch_view(int(shown.removeprefix("batch-")))
    except ValueError:
        return None
    return view if view is not None and view.complete else None


@st.fragment(run_every=SELECT_POLL_SECONDS)
def _selection_progress(project: Project) -> None:
    running = project.batch_job()
    if running is None:
        st.rerun()  # the batch is stored (or the job failed): redraw the whole page
    text = f"Next batch being prepared with {md(project.strategy)}... {running.elapsed:.0f} s"
    if running.message:
        text += f" · {md(running.message, MESSAGE_MAX)}"
    st.progress(running.fraction, text=text)
    st.caption("The finished batch stays on screen until the next one opens; the other pages stay usable.")


def _items(project: Project, source: str
           ) -> tuple[str, list[tuple[str, float | None]], str, BatchView | None, bool]:
    """``(key, [(image id, score)], strategy name, open batch or None, read-only)`` of what is on screen.

    Read-only: the finished batch, shown while the next one is prepared.
    """
    if source == "audit":
        chunk, items = _audit_items(project)
        return f"audit-{chunk}", items, "audit", None, False
    view, waiting = _batch(project)
    if view is None:
        return "none", [], project.strategy, None, False
    items = [(it.image_id, it.score) for it in view.batch.items]
    return f"batch-{view.batch.id}", items, view.batch.strategy, view, waiting


# ---- actions (button callbacks: they run before the rerun draws the page) --------------------


def _next_open(ids: list[str], states: dict, start: int) -> int:
    """The first position after ``start`` (wrapping) whose image has no state, else ``start``."""
    n = len(ids)
    for step in range(1, n + 1):
        pos = (start + step) % n
        if states.get(ids[pos]) is None:
            return pos
    return start


def _act(action: str, image_id: str, pos: int, ids: list[str], class_name: str | None = None) -> None:
    st.session_state[K_T0] = (time.perf_counter(), time.thread_time())
    project = current_project()
    kw = {"annotator": annotator(), "session": session_id()}
    try:
        if action == "label":
            assert class_name is not None
            project.label(image_id, class_name, **kw)
        elif action == "skip":
            project.skip(image_id, **kw)
        elif action == "unsure":
            project.unsure(image_id, **kw)
    except Exception as exc:  # e.g. the image or class vanished; never lose the message
        st.session_state[K_NOTICE] = f"Not saved: {exc}"
        return
    st.session_state[K_FOCUS] = _next_open(ids, image_states(project, ids), pos)


def _act_focused(action: str, ids: list[str], class_name: str | None = None) -> None:
    if not ids:
        return
    pos = min(int(st.session_state.get(K_FOCUS, 0)), len(ids) - 1)
    _act(action, ids[pos], pos, ids, class_name)


def _undo(ids: list[str]) -> None:
    project = current_project()
    undone = project.undo(annotator=annotator(), session=session_id(), image_ids=ids)  # only what is on screen
    if undone is None:
        st.session_state[K_NOTICE] = "Nothing to undo."
        return
    what = undone.class_name if undone.event == "label" else undone.event
    st.session_state[K_NOTICE] = f"Undone: {what} on {undone.image_id}"
    if undone.image_id in ids:
        st.session_state[K_FOCUS] = ids.index(undone.image_id)


def _move(delta: int, n: int) -> None:
    if n:
        st.session_state[K_FOCUS] = (int(st.session_state.get(K_FOCUS, 0)) + delta) % n


def _set_focus(pos: int, focus_mode: bool = False) -> None:
    st.session_state[K_FOCUS] = pos
    if focus_mode:
        st.session_state[K_FOCUS_MODE] = True


def _toggle_focus_mode() -> None:
    st.session_state[K_FOCUS_MODE] = not st.session_state.get(K_FOCUS_MODE, False)


# ---- drawing ----------------------------------------------------------------------------------


def _state_text(event) -> str:  # the decision as Markdown: its plain-text segments escaped, the class in bold
    return "".join(f"**{md(t)}**" if style else md(t) for t, style in state_segments(event))


def _why(strategy: str, score: float | None, pos: int) -> str:  # plain text
    return pick_reason(strategy, score, pos, strategy_score_label(strategy))


def _class_buttons(classes: list[str], keys: list[str], image_id: str, pos: int, ids: list[str], event,
                   key: str, disabled: bool = False, focused: bool = False) -> None:
    """The classic card's (and focus mode's) buttons: whole class names, wrapped; skip, unsure, zoom."""
    longest = max(len(c) for c in classes)
    per_row = 5 if longest <= 3 else (2 if longest <= 7 else 1)  # full names, never truncated
    decided = event.event if event is not None else None
    chosen = event.class_name if decided == "label" else None
    panel(f"lbl_{key}_{pos}_card", [
        [class_buttons(classes, keys, chosen, lambda name: _act("label", image_id, pos, ids, name),
                       disabled=disabled, compact=False, per_row=per_row)],
        [action_buttons(decided, lambda action: _act(action, image_id, pos, ids), lambda: _set_focus(pos, True),
                        disabled=disabled)]], focused=focused)


def _card(project: Project, classes: list[str], keys: list[str], image_id: str, score: float | None, pos: int,
          ids: list[str], event, key: str, strategy: str, suggestions: dict | None, focused: bool,
          disabled: bool = False) -> None:
    with st.container(border=True, key=f"lbl_card_{pos}"):
        head = f"**#{pos + 1}**" + (" · :blue[focused]" if focused else "")
        st.markdown(head)
        try:
            st.image(thumbnail(project, image_id, GRID_BOX), width="stretch", output_format="PNG")
        except Exception as exc:  # outside the root, removed, unreadable: say so, keep the page
            st.error(f"Cannot show {code(image_id)}: {md(exc, MESSAGE_MAX)}")
        st.caption(f"{code(image_id)} — {_state_text(event)}")
        if suggestions is not None and image_id in suggestions:
            cls, p = suggestions[image_id]
            st.caption(f"Teacher suggests **{md(cls)}** ({100 * p:.0f}%)")
        with st.popover("Why this image?", width="stretch"):
            st.text(_why(strategy, score, pos))
        _class_buttons(classes, keys, image_id, pos, ids, event, key, disabled, focused)


def _compact_card(project: Project, classes: list[str], keys: list[str], image_id: str, score: float | None,
                  pos: int, ids: list[str], event, key: str, strategy: str, suggestions: dict | None,
                  focused: bool, disabled: bool = False) -> None:
    """The card of ``pages._grid``: the image dominates, the controls take one short row."""
    suggestion = suggestions.get(image_id) if suggestions is not None else None
    detail = card_detail(pos, focused, event, strategy, score, suggestion)
    compact_card(project, image_id, pos, classes=classes, keys=keys, ids=ids, event=event, key=key, detail=detail,
                 why=_why(strategy, score, pos), box=GRID_BOX, act=_act, zoom=_set_focus, disabled=disabled,
                 focused=focused)


def _keyboard_bar(classes: list[str], keys: list[str], ids: list[str], disabled: bool = False) -> None:
    """Buttons acting on the focused image, each with a keyboard shortcut (``disabled``: the
    finished batch shown while the next one is prepared takes no decision and no undo)."""
    with st.container(key="lbl_keys", horizontal=True):
        for k, (name, shortcut) in enumerate(zip(classes, keys)):
            # no tooltip: its text named the focused card, so all ten redrew on every label
            st.button(md(name), key=f"lbl_key_c{k}", shortcut=shortcut, on_click=_act_focused, disabled=disabled,
                      args=("label", ids, name))
        st.button("Skip", key="lbl_key_skip", shortcut="S", on_click=_act_focused, args=("skip", ids),
                  disabled=disabled)
        st.button("Unsure", key="lbl_key_unsure", shortcut="U", on_click=_act_focused, args=("unsure", ids),
                  disabled=disabled)
        st.button("Undo", key="lbl_key_undo", shortcut="Z", on_click=_undo, args=(ids,), icon=":material/undo:",
                  disabled=disabled)
        st.button("Prev", key="lbl_key_prev", shortcut="Left", on_click=_move, args=(-1, len(ids)))
        st.button("Next", key="lbl_key_next", shortcut="Right", on_click=_move, args=(1, len(ids)))
        st.button("Focus mode", key="lbl_key_focus", shortcut="F", on_click=_toggle_focus_mode)
    # J/K duplicates of Next/Prev, kept off screen (a button holds one shortcut)
    with st.container(key="lbl_hidden_keys"):
        st.button("Next (J)", key="lbl_key_j", shortcut="J", on_click=_move, args=(1, len(ids)))
        st.button("Prev (K)", key="lbl_key_k", shortcut="K", on_click=_move, args=(-1, len(ids)))


K_SCROLLED = "lbl_scrolled_focus"


def _scroll_to_focus(key: str, focus: int) -> None:
    """Bring the focused card into view when the focus moved (keys can move it below the fold).

    Our own fixed script (no user text), run in the page: it scrolls only as far as needed.
    """
    if st.session_state.get(K_SCROLLED) == (key, focus):
        return
    first = st.session_state.get(K_SCROLLED) is None or st.session_state[K_SCROLLED][0] != key
    st.session_state[K_SCROLLED] = (key, focus)
    if first:
        return  # a new batch: keep the page where it opens
    st.html(
        "<script>(function(){const el=document.querySelector('.st-key-lbl_card_%d');"
        "if(el){el.scrollIntoView({block:'nearest',behavior:'smooth'});}})();</script>" % int(focus),
        unsafe_allow_javascript=True,
    )


def _style() -> None:
    """The page's style sheets. They never change from one run to the next (the focused card's
    outline follows a marker on its card panel), so the browser parses them once, not per label."""
    st.html(  # style only: Streamlit puts it out of the layout (no empty row above the grid)
        """<style>
        .st-key-lbl_hidden_keys { position: absolute; left: -10000px; height: 0; overflow: hidden; }
        [data-testid="stMainBlockContainer"] { padding-top: 3.5rem; }
        </style>"""
    )
    panel_style()


def _focus_view(project: Project, image_id: str, score: float | None, pos: int, ids: list[str], event,
                key: str, strategy: str, suggestions: dict | None, disabled: bool = False) -> None:
    """One image with zoom and pan, for careful work.

    Only the visible window is rendered, at most the viewport's size, whatever the zoom
    (``pages._session.zoom_png``): zooming a large photo never builds the whole enlarged image.
    """
    left, right = st.columns([3, 1])
    with right:
        zoom = st.select_slider("Zoom", options=ZOOMS, key=K_ZOOM, format_func=lambda z: f"{z:g}x",
                                on_change=_save_pref, args=(project, K_ZOOM))
        pan = (st.session_state.setdefault(K_PAN_X, 50) / 100, st.session_state.setdefault(K_PAN_Y, 50) / 100)
        try:
            data, window, (w, h) = focus_image(project, image_id, zoom, pan)  # + viewer controls for DICOM/TIFF
        except Exception as exc:  # outside the root, removed, unreadable: say so, keep the page
            data, window, (w, h) = None, None, (0, 0)
            st.error(f"Cannot show {code(image_id)}: {md(exc, MESSAGE_MAX)}")
        if window is not None and not window.whole:
            st.slider("Pan left-right (%)", 0, 100, step=5, key=K_PAN_X)
            st.slider("Pan up-down (%)", 0, 100, step=5, key=K_PAN_Y)
        st.caption(f"{code(image_id)} · {w}×{h} px · {_state_text(event)}")
        if suggestions is not None and image_id in suggestions:
            cls, p = suggestions[image_id]
            st.caption(f"Teacher suggests **{md(cls)}** ({100 * p:.0f}%)")
        st.caption(md(_why(strategy, score, pos)))
        _class_buttons(project.classes, project.class_keys(), image_id, pos, ids, event, key + "_fm", disabled)
        st.button("Back to the grid", key="lbl_fm_back", on_click=_toggle_focus_mode)
    if data is not None:
        with left:
            x0, y0, x1, y1 = window.box
            st.image(data, width=window.size[0], output_format="PNG",
                     caption=f"pixels {x0}-{x1} × {y0}-{y1} at {zoom:g}x")


def _undecodable_notice(project: Project) -> None:
    """Say which images the active round left out because they could not be decoded (names shown literally)."""
    left_out = project.undecodable_images()
    if left_out:
        with st.expander(f"{len(left_out)} image(s) could not be decoded and were left out of training and "
                         "selection; restore them and retrain to use them", icon=":material/warning:"):
            st.text("\n".join(f"{image_id}: {reason}" for image_id, reason in left_out))


def main() -> None:
    """Draw the Label page."""
    st.title("Label")
    try:
        project = current_project()
    except Exception as exc:
        show_project_error(exc)
        return

    _undecodable_notice(project)
    audit_done, audit_total = project.audit_progress()
    if audit_done < audit_total:
        source = st.segmented_control("Images", ["query batch", "audit set"], default="query batch", key=K_SOURCE)
    else:
        source = "query batch"
    key, items, strategy, view, read_only = _items(project, "audit" if source == "audit set" else "batch")
    if K_NOTICE in st.session_state:
        st.toast(md(st.session_state.pop(K_NOTICE), MESSAGE_MAX))  # notices quote names: plain text
    if st.session_state.pop(K_STOP, False):
        _counts(project)
        return
    if not items:
        st.success("Nothing left to label here: every image is labeled, skipped, unsure or in the audit set.")
        _counts(project)
        return
    ids = [i for i, _ in items]
    states = image_states(project, ids)
    if st.session_state.get(K_BATCH) != key:  # a new batch (or a new session): focus its first open image
        st.session_state[K_BATCH] = key
        st.session_state[K_FOCUS] = _next_open(ids, states, len(ids) - 1)
    focus = min(int(st.session_state.get(K_FOCUS, 0)), len(ids) - 1)
    done = sum(1 for s in states.values() if s is not None)

    top = st.columns([3, 2, 1, 2])
    if source == "audit set":  # counts up over the whole audit set; labeled images stay in place
        audit_done, audit_total = project.audit_progress()
        top[0].progress(audit_done / max(1, audit_total),
                        text=f"{audit_done}/{audit_total} audit images labeled · {done}/{len(ids)} in this chunk")
    else:
        top[0].progress(done / len(ids), text=f"{done}/{len(ids)} done in this batch · strategy **{md(strategy)}**")
    if view is not None:
        _batch_origin(project, view)
    _seed_view_prefs(project)
    show_teacher = top[1].toggle("Show teacher suggestion", key=K_SHOW_TEACHER, on_change=_save_pref,
                                 args=(project, K_SHOW_TEACHER),
                                 help="Hidden by default to avoid anchoring on the teacher's guess.")
    compact = top[1].toggle("Compact cards", key=K_COMPACT, on_change=_save_pref, args=(project, K_COMPACT),
                            help="The image takes most of each card; the class buttons form one short row "
                                 "(each class's key in front, its whole name in the tooltip).")
    n_cols = top[2].selectbox("Per row", PER_ROW_CHOICES, key=K_COLS, on_change=_save_pref, args=(project, K_COLS))
    keys = project.class_keys()
    top[3].caption(f"Keys {', '.join(keys)} label the focused image, S skip, U unsure, Z undo, "
                   "←/→ or J/K move, F focus mode")
    _counts(project)
    collapse_notes(project)
    # drawn only while open: changing with every label, it cost the browser ~0.1 s a click
    per_round = st.expander("Labels found per class per round", key=K_ROUND_TABLE, on_change="rerun")
    if per_round.open:
        with per_round:
            labels_per_round_table(project)
    suggestions = None
    if show_teacher:
        try:
            suggestions = teacher_suggestions(project, key, tuple(ids))
        except Exception as exc:
            st.warning(f"Teacher suggestion unavailable: {md(exc, MESSAGE_MAX)}")
        else:
            if not suggestions:
                st.caption("The teacher has not scored this pool yet; its suggestions appear after its first pass "
                           "(selecting a batch or opening Teacher bias runs it).")

    classes = project.classes
    _keyboard_bar(classes, keys, ids, read_only)
    _style()
    if st.session_state.get(K_FOCUS_MODE):
        image_id, score = items[focus]
        _focus_view(project, image_id, score, focus, ids, states[image_id], key, strategy, suggestions, read_only)
        return
    if compact:
        compact_style()
    for start in range(0, len(items), n_cols):
        cols = st.columns(n_cols)
        for j, (image_id, score) in enumerate(items[start:start + n_cols]):
            pos = start + j
            with cols[j]:
                if compact:
                    _compact_card(project, classes, keys, image_id, score, pos, ids, states[image_id], key, strategy,
                                  suggestions, pos == focus, read_only)
                else:
                    _card(project, classes, keys, image_id, score, pos, ids, states[image_id], key, strategy,
                          suggestions, pos == focus, read_only)
    _scroll_to_focus(key, focus)  # after the cards, so the focused one exists in the page
    _timing()


# Label page settings remembered per annotator and project (Streamlit forgets a widget's state
# in any run that does not draw it, e.g. while the next batch was selected): widget key -> default.
VIEW_PREFS = {K_SHOW_TEACHER: False, K_COLS: 4, K_ZOOM: 1.0, K_COMPACT: True}


def _seed_view_prefs(project: Project) -> None:
    """Put the annotator's stored Label page settings into any widget state Streamlit dropped."""
    missing = [k for k in VIEW_PREFS if k not in st.session_state]
    if not missing:
        return
    stored = project.view_prefs(annotator())
    for k in missing:
        value = stored.get(k, VIEW_PREFS[k])
        if (k == K_COLS and value not in PER_ROW_CHOICES or k == K_ZOOM and value not in ZOOMS
                or k in (K_SHOW_TEACHER, K_COMPACT) and not isinstance(value, bool)):
            value = VIEW_PREFS[k]
        st.session_state[k] = value


def _save_pref(project: Project, key: str) -> None:
    project.set_view_pref(annotator(), key, st.session_state.get(key))


def _retrain(project: Project) -> None:
    """Start a round from the Label page: the batch being labeled here stays on screen."""
    try:
        project.start_retrain(process=use_worker_process(), keep_batch_in_progress=True)
        st.session_state[K_NOTICE] = "Training started in the background; the next batches use the new student."
    except JobBusy:
        st.session_state[K_NOTICE] = "Already training."
    except Exception as exc:  # noqa: BLE001 - e.g. no label yet: said, labels untouched
        st.session_state[K_NOTICE] = f"Could not start training: {exc}"


def _set_auto_retrain(project: Project) -> None:
    project.auto_retrain = bool(st.session_state.get("lbl_auto_retrain"))


def _auto_retrain(project: Project) -> None:
    """A batch was just completed: start a round when the project asks for it and nothing trains."""
    if project.auto_retrain and project.new_labels_since_model() > 0 and training_job(project) is None:
        _retrain(project)


def _batch_origin(project: Project, view: BatchView) -> None:
    """Which model chose the open batch ``view``, and the queue and retrain controls."""
    batch = view.batch
    if batch.strategy in QUEUE_STRATEGIES:
        what = "skipped and unsure images sent back" if batch.strategy == REVISIT else "a queue chosen by hand"
        left, right = st.columns([4, 1])
        left.caption(f"This is {what} ({view.done}/{view.total} decided); it stays until every image has a "
                     "decision or you dismiss it.")
        right.button("Dismiss this queue", key="lbl_dismiss_queue", on_click=project.dismiss_queue)
        return
    model = f"the student of round {batch.round}" if batch.round else "the teacher (no student trained yet)"
    origin, a, b = st.columns([2.6, 1.2, 2.2], vertical_alignment="center")  # one row: the grid starts higher
    origin.caption(f"Chosen by {md(batch.strategy)} on {model} ({md(batch.space)}).")
    partial = partial_batch_caption(project, batch.id) if batch.space.endswith(PARTIAL_SPACE) else None
    if partial:
        st.caption(partial)
    fresh = project.new_labels_since_model()
    training = training_job(project)
    if training is not None:
        a.caption(f"Training in the background: {training.fraction:.0%}")
    elif fresh > 0:
        a.button(f"Retrain now ({fresh} new label{'s' if fresh != 1 else ''})", key="lbl_retrain",
                 on_click=_retrain, args=(project,),
                 help="Trains a new student in the background; you keep labeling meanwhile.")
    b.toggle("Retrain automatically after every batch", key="lbl_auto_retrain", value=project.auto_retrain,
             on_change=_set_auto_retrain, args=(project,),
             help="The batches after a retrain are chosen by the newest student once it lands.")
    counts = project.counts()  # cached on the newest event: no pool scan per click
    n_revisit = counts["skipped"] + counts["unsure"]
    if n_revisit:
        st.button(f"Revisit {n_revisit} skipped or unsure image(s)", key="lbl_revisit",
                  on_click=project.queue_revisit,
                  help="Opens them as a queue in place of this batch; this batch is selected again afterwards.")


def _timing() -> None:
    """Server time of the last action: from the click's callback to the end of the redraw.

    Shown only with ``ACTIVEKD_SHOW_TIMINGS=1`` (benchmarks, browser tests): a developer's
    number, not something an expert needs while labeling. Wall time includes waiting for a
    CPU on a busy machine; CPU time is what this session's script thread itself used.
    """
    if os.environ.get("ACTIVEKD_SHOW_TIMINGS", "").strip() not in ("1", "true", "yes"):
        st.session_state.pop(K_T0, None)
        return
    t0 = st.session_state.pop(K_T0, None)
    if t0 is not None:
        st.session_state[K_LAST_MS] = (1000 * (time.perf_counter() - t0[0]), 1000 * (time.thread_time() - t0[1]))
    if K_LAST_MS in st.session_state:
        wall, cpu = st.session_state[K_LAST_MS]
        st.caption(f"Last action saved and page redrawn in {wall:.0f} ms (server side; {cpu:.0f} ms CPU).",
                   help="From the button's callback (the database commit) to the end of this page's script run.")


def _counts(project: Project) -> None:
    counts = project.counts()
    per_class = " · ".join(f"{md(name)}: **{n}**" for name, n in counts["per_class"].items())
    st.caption(f"Labeled per class: {per_class} — skipped {counts['skipped']}, unsure {counts['unsure']}, "
               f"unlabeled {counts['unlabeled']} of {counts['total']}"
               + (f", audit set {counts['audit']}" if counts["audit"] else ""))


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests may import them
    main()
