"""Label page: the current query batch as a grid, one click (or one key) per label.

Every action runs in a button callback, i.e. the event is committed to the project's
database before the page reruns. A rerun reads the open batch and the image states
from the store and the thumbnails from a cache: nothing heavy is recomputed on a click.
Only when the batch is complete is the next one selected (with a spinner).

Keyboard (Streamlit's native button shortcuts; ``R`` and ``C`` belong to Streamlit):
``1``-``9`` (``0`` for a tenth class) label the focused image, ``S`` skips, ``U`` marks
it unsure, ``Z`` undoes the latest event, ``←``/``→`` or ``K``/``J`` move the focus,
``F`` toggles the single-image focus mode.
"""

from __future__ import annotations

import time

import streamlit as st

from activekd_core.jobs import JobBusy
from activekd_core.project import BatchView, Project
from pages._rare import collapse_notes, labels_per_round_table
from pages._session import (
    annotator,
    batch_lock,
    current_project,
    image_path,
    session_id,
    show_project_error,
    strategy_score_label,
    teacher_suggestions,
    thumbnail,
)

CLASS_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]


def class_keys(classes: list[str]) -> list[str]:
    """The key of each class (the first ten): its own digit when every class is named by a
    distinct single digit (the digits demo: "0".."9"), else 1-9 then 0 in display order."""
    if all(len(c) == 1 and c.isdigit() for c in classes) and len(set(classes)) == len(classes):
        return list(classes)
    return CLASS_KEYS[: len(classes)]
SELECT_POLL_SECONDS = 0.5  # how often the page polls a running batch selection
GRID_BOX = 320  # thumbnail size in pixels (images are shown at column width)

K_FOCUS = "lbl_focus"
K_BATCH = "lbl_batch_key"
K_ZOOM = "lbl_zoom"
K_FOCUS_MODE = "lbl_focus_mode"
K_SHOW_TEACHER = "lbl_show_teacher"
K_SOURCE = "lbl_source"
K_NOTICE = "lbl_notice"
K_RETRY = "lbl_retry_select"
K_STOP = "lbl_stop"
K_T0 = "lbl_action_t0"
K_LAST_MS = "lbl_last_action_ms"


# ---- the items on screen ---------------------------------------------------------------------


def _audit_items(project: Project) -> list[tuple[str, float | None]]:
    """The next unlabeled audit images (at most one batch), in the audit set's order."""
    labels = project.store.current_labels()
    todo = [i for i in project.store.audit_ids() if i not in labels]
    return [(i, None) for i in todo[: project.batch_size]]


def _start_selection(project: Project) -> None:
    """Start the background selection of the next batch (a worker process) unless one runs already.

    The per-project lock and the jobs table (one running job per kind) make two
    sessions finishing the same batch select one new batch, not two. The running
    job is checked before the open batch is read: a job that finished in between has
    already stored its batch.
    """
    jobs = project.jobs()
    with batch_lock(str(project.folder)):
        if jobs.running("select") is not None:
            return
        view = project.current_batch()
        if view is not None and not view.complete:
            return
        try:
            jobs.start_process("select", "activekd_core.project:select_batch_job", {"folder": str(project.folder)})
        except JobBusy:
            pass


def _batch(project: Project) -> BatchView | None:
    """The open batch; when none is open or it is complete, select the next one in the background.

    Returns None while the selection runs (a fragment polls it and reruns the page when
    it ends) or when nothing is left to query.
    """
    view = project.current_batch()
    if view is not None and not view.complete:
        return view
    _, candidates = project.candidate_rows()
    if candidates.size == 0:
        return None
    latest = project.jobs().latest("select")
    if latest is not None and latest.state in ("failed", "interrupted") and not st.session_state.pop(K_RETRY, False):
        st.error(f"Selecting the next batch failed: {latest.error.splitlines()[0] if latest.error else 'no message'}")
        st.button("Try again", key="lbl_retry_select", on_click=lambda: st.session_state.__setitem__(K_RETRY, True))
        st.session_state[K_STOP] = True
        return None
    _start_selection(project)
    _selection_progress(project)
    st.session_state[K_STOP] = True
    return None


@st.fragment(run_every=SELECT_POLL_SECONDS)
def _selection_progress(project: Project) -> None:
    running = project.jobs().running("select")
    if running is None:
        st.rerun()  # the batch is stored (or the job failed): redraw the whole page
    text = f"Selecting the next batch with {project.strategy}... {running.elapsed:.0f} s"
    if running.message:
        text += f" · {running.message}"
    st.progress(running.fraction, text=text)
    st.caption("The other pages stay usable meanwhile.")


def _items(project: Project, source: str) -> tuple[str, list[tuple[str, float | None]], str]:
    """``(key, [(image id, score)], strategy name)`` of what is on screen."""
    if source == "audit":
        items = _audit_items(project)
        return f"audit-{len(project.store.audit_ids())}", items, "audit"
    view = _batch(project)
    if view is None:
        return "none", [], project.strategy
    return f"batch-{view.batch.id}", [(it.image_id, it.score) for it in view.batch.items], view.batch.strategy


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
    current = project.store.current()
    st.session_state[K_FOCUS] = _next_open(ids, {i: current.get(i) for i in ids}, pos)


def _act_focused(action: str, ids: list[str], class_name: str | None = None) -> None:
    if not ids:
        return
    pos = min(int(st.session_state.get(K_FOCUS, 0)), len(ids) - 1)
    _act(action, ids[pos], pos, ids, class_name)


def _undo(ids: list[str]) -> None:
    project = current_project()
    undone = project.undo(annotator=annotator(), session=session_id())
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


def _state_text(event) -> str:
    if event is None:
        return "not labeled yet"
    if event.event == "label":
        return f"labeled **{event.class_name}** by {event.annotator}"
    return {"skip": "skipped", "unsure": "marked unsure"}.get(event.event, event.event)


def _why(strategy: str, score: float | None, pos: int) -> str:
    if strategy == "audit":
        return "Audit image: a uniform random sample for measuring accuracy (never used to train or select)."
    label = strategy_score_label(strategy)
    if score is None:
        return f"Pick #{pos + 1} of {strategy} (no score recorded)."
    return f"Pick #{pos + 1} of {strategy}. Score {score:.4f}: {label}."


def _class_buttons(classes: list[str], image_id: str, pos: int, ids: list[str], event, key: str) -> None:
    keys = class_keys(classes)
    longest = max(len(c) for c in classes)
    per_row = 5 if longest <= 3 else (2 if longest <= 7 else 1)  # full names, never truncated
    for start in range(0, len(classes), per_row):
        cols = st.columns(per_row, gap="small") if per_row > 1 else [st]
        for j, name in enumerate(classes[start:start + per_row]):
            k = start + j
            chosen = event is not None and event.event == "label" and event.class_name == name
            cols[j].button(
                name, key=f"lbl_{key}_{pos}_c{k}", type="primary" if chosen else "secondary",
                on_click=_act, args=("label", image_id, pos, ids, name), width="stretch", wrap=True,
                help=f"Label as {name}" + (f" (key {keys[k]} when focused)" if k < len(keys) else ""),
            )
    a, b, c = st.columns(3, gap="small")
    a.button("Skip", key=f"lbl_{key}_{pos}_skip", on_click=_act, args=("skip", image_id, pos, ids),
             type="primary" if event is not None and event.event == "skip" else "tertiary")
    b.button("Unsure", key=f"lbl_{key}_{pos}_unsure", on_click=_act, args=("unsure", image_id, pos, ids),
             type="primary" if event is not None and event.event == "unsure" else "tertiary")
    c.button("Zoom", key=f"lbl_{key}_{pos}_zoom", on_click=_set_focus, args=(pos, True), type="tertiary",
             icon=":material/zoom_in:")


def _card(project: Project, classes: list[str], image_id: str, score: float | None, pos: int, ids: list[str],
          event, key: str, strategy: str, suggestions: dict | None, focused: bool) -> None:
    with st.container(border=True, key=f"lbl_card_{pos}"):
        head = f"**#{pos + 1}**" + (" · :blue[focused]" if focused else "")
        st.markdown(head)
        try:
            st.image(thumbnail(project, image_id, GRID_BOX), width="stretch", output_format="PNG")
        except Exception as exc:  # outside the root, removed, unreadable: say so, keep the page
            st.error(f"Cannot show {image_id}: {exc}")
        st.caption(f"`{image_id}` — {_state_text(event)}")
        if suggestions is not None and image_id in suggestions:
            cls, p = suggestions[image_id]
            st.caption(f"Teacher suggests **{cls}** ({100 * p:.0f}%)")
        with st.popover("Why this image?", width="stretch"):
            st.write(_why(strategy, score, pos))
        _class_buttons(classes, image_id, pos, ids, event, key)


def _keyboard_bar(classes: list[str], ids: list[str], focus: int) -> None:
    """Buttons acting on the focused image, each with a keyboard shortcut."""
    with st.container(key="lbl_keys", horizontal=True):
        for k, (name, shortcut) in enumerate(zip(classes, class_keys(classes))):
            st.button(name, key=f"lbl_key_c{k}", shortcut=shortcut, on_click=_act_focused,
                      args=("label", ids, name), help=f"Label the focused image #{focus + 1} as {name}")
        st.button("Skip", key="lbl_key_skip", shortcut="S", on_click=_act_focused, args=("skip", ids))
        st.button("Unsure", key="lbl_key_unsure", shortcut="U", on_click=_act_focused, args=("unsure", ids))
        st.button("Undo", key="lbl_key_undo", shortcut="Z", on_click=_undo, args=(ids,), icon=":material/undo:")
        st.button("Prev", key="lbl_key_prev", shortcut="Left", on_click=_move, args=(-1, len(ids)))
        st.button("Next", key="lbl_key_next", shortcut="Right", on_click=_move, args=(1, len(ids)))
        st.button("Focus mode", key="lbl_key_focus", shortcut="F", on_click=_toggle_focus_mode)
    # J/K duplicates of Next/Prev, kept off screen (a button holds one shortcut)
    with st.container(key="lbl_hidden_keys"):
        st.button("Next (J)", key="lbl_key_j", shortcut="J", on_click=_move, args=(1, len(ids)))
        st.button("Prev (K)", key="lbl_key_k", shortcut="K", on_click=_move, args=(-1, len(ids)))


def _style(focus: int) -> None:
    st.markdown(
        f"""<style>
        .st-key-lbl_card_{focus} {{ outline: 3px solid #1c83e1; outline-offset: 2px; border-radius: 0.5rem; }}
        .st-key-lbl_hidden_keys {{ position: absolute; left: -10000px; height: 0; overflow: hidden; }}
        </style>""",
        unsafe_allow_html=True,
    )


def _focus_view(project: Project, image_id: str, score: float | None, pos: int, ids: list[str], event,
                key: str, strategy: str, suggestions: dict | None) -> None:
    """One image at full resolution with zoom, for careful work."""
    left, right = st.columns([3, 1])
    with right:
        zoom = st.select_slider("Zoom", options=[0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0], value=1.0, key=K_ZOOM,
                                format_func=lambda z: f"{z:g}x")
        path = image_path(project, image_id)
        from PIL import Image

        with Image.open(path) as img:
            w, h = img.size
        st.caption(f"`{image_id}` · {w}×{h} px · {_state_text(event)}")
        if suggestions is not None and image_id in suggestions:
            cls, p = suggestions[image_id]
            st.caption(f"Teacher suggests **{cls}** ({100 * p:.0f}%)")
        st.caption(_why(strategy, score, pos))
        _class_buttons(project.classes, image_id, pos, ids, event, key + "_fm")
        st.button("Back to the grid", key="lbl_fm_back", on_click=_toggle_focus_mode)
    with left:
        box = max(1, round(max(w, h) * zoom))
        st.image(thumbnail(project, image_id, box), width=min(box, 4096), output_format="PNG")


def main() -> None:
    """Draw the Label page."""
    st.title("Label")
    try:
        project = current_project()
    except Exception as exc:
        show_project_error(exc)
        return

    n_audit_left = len(_audit_items(project))
    if n_audit_left:
        source = st.segmented_control("Images", ["query batch", "audit set"], default="query batch", key=K_SOURCE)
    else:
        source = "query batch"
    key, items, strategy = _items(project, "audit" if source == "audit set" else "batch")
    if K_NOTICE in st.session_state:
        st.toast(st.session_state.pop(K_NOTICE))
    if st.session_state.pop(K_STOP, False):
        _counts(project)
        return
    if not items:
        st.success("Nothing left to label here: every image is labeled, skipped, unsure or in the audit set.")
        _counts(project)
        return
    ids = [i for i, _ in items]
    current = project.store.current()
    states = {i: current.get(i) for i in ids}
    if st.session_state.get(K_BATCH) != key:  # a new batch (or a new session): focus its first open image
        st.session_state[K_BATCH] = key
        st.session_state[K_FOCUS] = _next_open(ids, states, len(ids) - 1)
    focus = min(int(st.session_state.get(K_FOCUS, 0)), len(ids) - 1)
    done = sum(1 for s in states.values() if s is not None)

    top = st.columns([3, 2, 1, 2])
    unit = "audit chunk" if source == "audit set" else "batch"
    top[0].progress(done / len(ids), text=f"{done}/{len(ids)} done in this {unit} · strategy **{strategy}**")
    show_teacher = top[1].toggle("Show teacher suggestion", key=K_SHOW_TEACHER, value=False,
                                 help="Hidden by default to avoid anchoring on the teacher's guess.")
    n_cols = top[2].selectbox("Per row", [2, 3, 4, 5, 6], index=2, key="lbl_cols")
    keys = class_keys(project.classes)
    top[3].caption(f"Keys: {keys[0]}-{keys[-1]} label the focused image, S skip, U unsure, Z undo, "
                   "←/→ or J/K move, F focus mode")
    _counts(project)
    collapse_notes(project)
    with st.expander("Labels found per class per round"):
        labels_per_round_table(project)
    suggestions = None
    if show_teacher:
        try:
            suggestions = teacher_suggestions(project, key, tuple(ids))
        except Exception as exc:
            st.warning(f"Teacher suggestion unavailable: {exc}")
        else:
            if not suggestions:
                st.caption("The teacher has not scored this pool yet; its suggestions appear after its first pass "
                           "(selecting a batch or opening Teacher bias runs it).")

    classes = project.classes
    _keyboard_bar(classes, ids, focus)
    _style(focus)
    if st.session_state.get(K_FOCUS_MODE):
        image_id, score = items[focus]
        _focus_view(project, image_id, score, focus, ids, states[image_id], key, strategy, suggestions)
        return
    for start in range(0, len(items), n_cols):
        cols = st.columns(n_cols)
        for j, (image_id, score) in enumerate(items[start:start + n_cols]):
            pos = start + j
            with cols[j]:
                _card(project, classes, image_id, score, pos, ids, states[image_id], key, strategy, suggestions,
                      pos == focus)
    _timing()


def _timing() -> None:
    """Server time of the last action: from the click's callback to the end of the redraw.

    Wall time includes waiting for a CPU on a busy machine; CPU time is what this
    session's script thread itself used.
    """
    t0 = st.session_state.pop(K_T0, None)
    if t0 is not None:
        st.session_state[K_LAST_MS] = (1000 * (time.perf_counter() - t0[0]), 1000 * (time.thread_time() - t0[1]))
    if K_LAST_MS in st.session_state:
        wall, cpu = st.session_state[K_LAST_MS]
        st.caption(f"Last action saved and page redrawn in {wall:.0f} ms (server side; {cpu:.0f} ms CPU).",
                   help="From the button's callback (the database commit) to the end of this page's script run.")


def _counts(project: Project) -> None:
    counts = project.counts()
    per_class = " · ".join(f"{name}: **{n}**" for name, n in counts["per_class"].items())
    st.caption(f"Labeled per class: {per_class} — skipped {counts['skipped']}, unsure {counts['unsure']}, "
               f"unlabeled {counts['unlabeled']} of {counts['total']}"
               + (f", audit set {counts['audit']}" if counts["audit"] else ""))


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests may import them
    main()
