"""Review page: see and correct any earlier decision, one image or many at once.

A paged grid over the whole pool with filters (state, class, annotator, round, predicted
class, teacher-student disagreement, confidence range) and sorting, all computed by
:func:`activekd_core.review_state.review_page` through the project facade. Each card can be
relabeled (one event); each image's history (who, when, what) is one click away. Bulk
actions (label as a class, send to the labeling queue, clear) apply to the cards ticked on
this page or to every matching image, and always ask for a confirmation that states the
count. Skipped and unsure images can be sent back to the Label page as a revisit queue.

User text (ids, class and annotator names) is shown with text elements, never as Markdown.
"""

from __future__ import annotations

import streamlit as st

from activekd_core.display_text import MESSAGE_MAX, md, short_time
from activekd_core.project import Project, ProjectError
from activekd_core.review_state import SORTS, STATES, ReviewFilter
from pages._session import annotator, current_project, session_id, show_project_error, thumbnail

K_PREFIX = "rev_"
K_PAGE = K_PREFIX + "page"
K_PENDING = K_PREFIX + "pending"
K_NOTICE = K_PREFIX + "notice"
K_HISTORY = K_PREFIX + "history"
PER_ROW = 6
THUMB = 220


def _filter_widgets(project: Project) -> tuple[ReviewFilter, int]:
    """The filter row; returns the filter and the page size."""
    classes = project.classes
    annotators, rounds = project.review_choices()
    with st.container(border=True):
        a, b, c, d = st.columns(4)
        states = a.multiselect("State", STATES, key=K_PREFIX + "states")
        labels = b.multiselect("Human label", classes, key=K_PREFIX + "classes")
        who = c.multiselect("Annotator", annotators, key=K_PREFIX + "annotators")
        rnds = d.multiselect("Round", rounds, key=K_PREFIX + "rounds")
        e, f, g, h = st.columns(4)
        predicted = e.multiselect("Predicted class", classes, key=K_PREFIX + "predicted",
                                  help="The student's prediction once a round exists, else the teacher's.")
        conf = f.slider("Confidence", 0.0, 1.0, (0.0, 1.0), 0.05, key=K_PREFIX + "conf",
                        help="Max probability of the model that predicts.")
        sort = g.selectbox("Sort", list(SORTS), format_func=lambda k: SORTS[k], key=K_PREFIX + "sort")
        per_page = h.selectbox("Per page", [12, 24, 48, 96], index=1, key=K_PREFIX + "per_page")
        disagree = st.checkbox("Only where teacher and student disagree", key=K_PREFIX + "disagree")
    flt = ReviewFilter(states=tuple(states), classes=tuple(labels), annotators=tuple(who), rounds=tuple(rnds),
                       predicted=tuple(predicted), disagreement=disagree, confidence=(float(conf[0]), float(conf[1])),
                       sort=sort)
    return flt, int(per_page)


def _relabel(project: Project, image_id: str, widget_key: str) -> None:
    choice = st.session_state.get(widget_key)
    if not choice:
        return
    try:
        project.label(image_id, choice, annotator=annotator(), session=session_id())
        st.session_state[K_NOTICE] = ("success", f"Relabeled {image_id[:120]} as {choice[:80]}")
    except (ProjectError, ValueError) as exc:
        st.session_state[K_NOTICE] = ("error", f"Not saved: {exc}")
    st.session_state[widget_key] = None


def _card(project: Project, row, selected: set[str]) -> None:
    with st.container(border=True):
        try:
            st.image(thumbnail(project, row.id, THUMB), width="stretch")
        except (OSError, ValueError) as exc:
            st.text(f"cannot show: {str(exc)[:120]}")
        st.text(row.id[:120])
        state = row.state + (" · audit" if row.audit else "")
        if row.label:
            state += f" · {row.label}"
        st.text(state[:160])
        if row.annotator:
            st.text(f"by {row.annotator[:60]}, round {row.round if row.round is not None else '-'}")
        preds = []
        if row.teacher_pred:
            preds.append(f"teacher: {row.teacher_pred}")
        if row.student_pred:
            preds.append(f"student: {row.student_pred}")
        if preds:
            st.text(" · ".join(preds)[:160] + (f" ({row.confidence:.2f})" if row.confidence is not None else ""))
        key = f"{K_PREFIX}relabel_{row.row}"
        st.selectbox("Relabel", project.classes, index=None, key=key, placeholder="relabel as...",
                     label_visibility="collapsed", on_change=_relabel, args=(project, row.id, key))
        tick = st.checkbox("select", key=f"{K_PREFIX}sel_{row.row}", value=row.id in selected)
        if tick:
            selected.add(row.id)
        else:
            selected.discard(row.id)
        if st.button("History", key=f"{K_PREFIX}hist_{row.row}"):
            st.session_state[K_HISTORY] = row.id


def _history(project: Project) -> None:
    image_id = st.session_state.get(K_HISTORY)
    if not image_id:
        return
    with st.container(border=True):
        st.subheader("History")
        st.text(image_id[:200])
        events = project.image_history(image_id)
        if not events:
            st.text("No decisions recorded for this image.")
        else:
            st.dataframe(
                [{"when": short_time(e.time), "who": e.annotator, "what": e.event,
                  "class": e.class_name or "", "round": e.round, "reverts event": e.undoes, "event": e.id}
                 for e in events],
                hide_index=True, width="stretch",
            )
        if st.button("Close history", key=K_PREFIX + "hist_close"):
            st.session_state.pop(K_HISTORY, None)
            st.rerun()


def _apply(project: Project, action: str, ids: list[str], cls: str | None) -> str:
    if action == "label":
        n = project.bulk_label(ids, cls or "", annotator=annotator(), session=session_id())
        return f"Labeled {n} image(s) as {cls}."
    if action == "clear":
        n = project.bulk_clear(ids, annotator=annotator(), session=session_id())
        return f"Cleared {n} image(s): they are unlabeled again (history kept)."
    view = project.queue_images(ids, reason="sent from Review")
    return f"Queued {view.total} image(s); open the Label page to label them."


def _bulk(project: Project, matching: list[str], selected: set[str]) -> None:
    st.subheader("Bulk actions")
    a, b, c = st.columns(3)
    target = a.radio("Apply to", ["ticked on this page", "every matching image"], key=K_PREFIX + "target")
    action = b.radio("Action", ["label", "queue", "clear"], key=K_PREFIX + "action",
                     format_func={"label": "label as a class", "queue": "send to the labeling queue",
                                  "clear": "clear (back to unlabeled)"}.get)
    cls = c.selectbox("Class", project.classes, key=K_PREFIX + "bulk_class") if action == "label" else None
    ids = [i for i in matching if i in selected] if target.startswith("ticked") else list(matching)
    if st.button(f"Apply to {len(ids)} image(s)...", key=K_PREFIX + "bulk_go", disabled=not ids):
        st.session_state[K_PENDING] = (action, ids, cls)
    pending = st.session_state.get(K_PENDING)
    if pending:
        p_action, p_ids, p_cls = pending
        what = {"label": f"label {len(p_ids)} image(s) as {p_cls}", "queue": f"send {len(p_ids)} image(s) to the queue",
                "clear": f"clear {len(p_ids)} image(s)"}[p_action]
        st.warning(f"Confirm: {md(what)}?", icon=":material/warning:")
        yes, no = st.columns(2)
        if yes.button(f"Yes, {md(what)}", key=K_PREFIX + "bulk_yes", type="primary"):
            st.session_state.pop(K_PENDING, None)
            try:
                st.session_state[K_NOTICE] = ("success", _apply(project, p_action, p_ids, p_cls))
            except (ProjectError, ValueError) as exc:
                st.session_state[K_NOTICE] = ("error", f"Nothing changed: {exc}")
            st.rerun()
        if no.button("Cancel", key=K_PREFIX + "bulk_no"):
            st.session_state.pop(K_PENDING, None)
            st.rerun()


def main() -> None:
    st.title("Review")
    try:
        project = current_project()
    except Exception as exc:  # noqa: BLE001 - shown, the Project page lets the user fix it
        show_project_error(exc)
        return
    notice = st.session_state.pop(K_NOTICE, None)
    if notice:  # notices hold ids and class names: shown literally
        (st.success if notice[0] == "success" else st.error)(md(notice[1], MESSAGE_MAX))
    revisit = project.revisit_ids()
    if revisit and st.button(f"Revisit the {len(revisit)} skipped and unsure image(s) on the Label page",
                             key=K_PREFIX + "revisit"):
        project.queue_revisit()
        st.switch_page("pages/label.py")
    flt, per_page = _filter_widgets(project)
    page_no = int(st.session_state.get(K_PAGE, 0))
    result = project.review(flt, page=page_no, per_page=per_page)
    which = {"student": "the active student", "teacher": "the teacher", "": "no model yet"}[result.model]
    st.caption(f"{result.total} image(s) match · confidence and predicted class from {which}")
    nav_a, nav_b, nav_c = st.columns([1, 2, 1])
    if nav_a.button("Previous", key=K_PREFIX + "prev", disabled=result.page == 0):
        st.session_state[K_PAGE] = result.page - 1
        st.rerun()
    nav_b.caption(f"Page {result.page + 1} of {result.pages}")
    if nav_c.button("Next", key=K_PREFIX + "next", disabled=result.page >= result.pages - 1):
        st.session_state[K_PAGE] = result.page + 1
        st.rerun()
    selected: set[str] = st.session_state.setdefault(K_PREFIX + "selected", set())
    for start in range(0, len(result.rows), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, row in zip(cols, result.rows[start : start + PER_ROW]):
            with col:
                _card(project, row, selected)
    _history(project)
    _bulk(project, result.matching_ids, selected)


main()
