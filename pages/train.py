"""Train page: retrain the student in the background, watch it, read the round history.

Training runs as a job of :mod:`activekd_core.jobs` (a worker process by default that
never calls Streamlit); this page only starts it, polls its row in the project database
with a fragment that reruns every second while it runs, and can cancel it. At most one
training job runs per project (the jobs table enforces it), so "Retrain" clicked in two
sessions starts one round. A failed or cancelled round leaves the labels and the
previous model untouched (see :meth:`activekd_core.project.Project.retrain`); its error
is shown here.
"""

from __future__ import annotations


import streamlit as st

from activekd_core.display_text import MESSAGE_MAX, md
from activekd_core.project import Project, ProjectError
from activekd_core.view_models.train import (
    JobBusy,
    cancel_training,
    default_audit_size,
    device_guess,
    fmt_seconds,
    has_audit_set,
    round_history,
    training_status,
)
from pages._rare import collapse_notes, labels_per_round_table
from pages._session import current_project, show_project_error, use_worker_process

POLL_SECONDS = 1.0
K_NOTICE = "trn_notice"


def _use_process() -> bool:
    return use_worker_process()


def _start(project: Project) -> None:
    try:
        job_id = project.start_retrain(process=_use_process())
        st.session_state[K_NOTICE] = ("info", f"Training started (job {job_id}).")
    except JobBusy as exc:
        st.session_state[K_NOTICE] = ("warning", f"Already training: {exc}")
    except Exception as exc:
        st.session_state[K_NOTICE] = ("error", f"Could not start training: {exc}")


@st.cache_data(show_spinner=False)
def _cached_device() -> str:
    return device_guess()


@st.fragment(run_every=POLL_SECONDS)
def _live(folder: str) -> None:
    """Progress of the running (or latest) training job, redrawn every second."""
    project = current_project()
    status = training_status(project)
    running, latest = status.running, status.latest
    if running is not None:
        st.progress(running.fraction, text=md(running.message, MESSAGE_MAX) if running.message else "starting...")
        a, b = st.columns(2)  # the time left is in the progress text, from the training's recent pace
        a.metric("Step", f"{running.step}/{running.total}" if running.total else "—")
        b.metric("Elapsed", fmt_seconds(running.elapsed))
        if running.cancel_requested:
            st.info("Cancel requested: stopping at the next step...")
        elif st.button("Cancel training", key="trn_cancel", icon=":material/stop:"):
            cancel_training(project, running.id)
            st.rerun(scope="fragment")
        st.session_state["trn_was_running"] = True
        return
    if st.session_state.pop("trn_was_running", False):
        st.rerun()  # the job ended: redraw the whole page (history, buttons)
    if latest is None:
        st.caption("No training run yet.")
        return
    if latest.state == "done":
        result = latest.result or {}
        st.success(f"Last run (job {latest.id}) finished in {fmt_seconds(latest.elapsed)}: "
                   f"round {result.get('round', '?')} is the active model.")
    elif latest.state == "cancelled":  # the user's own decision: information, not an error
        st.info(f"Last run (job {latest.id}) was cancelled after {fmt_seconds(latest.elapsed)}. "
                "Labels and the previous model are unchanged.")
    elif latest.state in ("failed", "interrupted"):
        st.error(f"Last run (job {latest.id}) {latest.state}: {md(latest.error or 'no message', MESSAGE_MAX)}. "
                 "Labels and the previous model are unchanged.")


def _history(project: Project) -> None:
    history = round_history(project)  # a round whose process died is shown as interrupted, not running
    if history.recover_error is not None:  # e.g. the database is busy: the history is still worth showing
        st.caption(f"Could not check for interrupted rounds: {history.recover_error}")
    if not history.rows:
        st.caption("No rounds yet: label a few images, then retrain.")
        return
    if history.audit_error is not None:
        st.warning(f"Audit accuracy unavailable: {md(history.audit_error, MESSAGE_MAX)}")
    st.dataframe(history.rows, hide_index=True, width="stretch")
    if history.audit_scored:
        st.caption("Audit accuracy with a 95% Wilson interval; balanced accuracy (mean recall per class: it does "
                   "not reward answering the majority class) and macro-F1 with 95% bootstrap intervals over the "
                   "audit images. Student: each round's model on the audit labels as they are now; teacher: as "
                   "fitted for that round (zero-shot teacher when not recorded).")


def _round_plan(project: Project, disabled: bool) -> None:
    """The next round's steps and estimated time, a measure button and the user's step cap."""
    try:
        est = project.round_estimate()
    except Exception as exc:
        st.warning(f"Round estimate unavailable: {exc}")
        return
    rule = {"reference": f"200 × ⌈{est.n_labeled} labels / 64⌉", "pool": "from the pool size",
            "fixed": "fixed in the settings"}.get(est.rule, est.rule)
    capped = f", capped from {est.steps_uncapped:,}" if est.steps < est.steps_uncapped else ""
    if est.seconds is not None:
        timing = f"estimated **{fmt_seconds(est.seconds)}** ({est.seconds_per_step:.3f} s/step, {est.source})"
    else:
        timing = "time unknown until measured"
    st.caption(f"Next round: **{est.steps:,} steps** ({rule}{capped}); {timing}.")
    if est.seconds is None and st.button("Measure step time", key="trn_measure", disabled=disabled,
                                         help="Times a few training steps on synthetic images (seconds to a minute)."):
        with st.spinner("Timing a few steps..."):
            try:
                project.round_estimate(measure=True)
            except Exception as exc:
                st.session_state[K_NOTICE] = ("error", f"Could not measure: {exc}")
        st.rerun()


def _step_cap(project: Project, disabled: bool) -> None:
    """The user's cap on steps per round, stored in the project's training settings."""
    train = dict(project.config.get("train") or {})
    with st.expander("Cap steps per round"):
        with st.form("trn_cap"):
            cap = st.number_input("Maximum steps per round (0 = no cap, the paper's rule)", min_value=0,
                                  value=int(train.get("max_steps") or 0), step=100)
            if st.form_submit_button("Save", disabled=disabled):
                if cap:
                    train["max_steps"] = int(cap)
                else:
                    train.pop("max_steps", None)
                try:
                    project.update_config(train=train)
                    st.session_state[K_NOTICE] = ("info", f"Step cap {'set to ' + format(int(cap), ',') if cap else 'removed'}.")
                except ProjectError as exc:
                    st.session_state[K_NOTICE] = ("error", str(exc))
                st.rerun()


def _audit_controls(project: Project) -> None:
    if has_audit_set(project):
        done, total = project.audit_progress()
        st.caption(f"Audit set: {done}/{total} labeled (label it on the Label page, 'audit set'). "
                   "Audit images are never used for training or selection.")
        return
    default = default_audit_size(project)
    with st.form("trn_audit"):
        st.write("No audit set yet. An audit set is a random sample you label only to measure accuracy.")
        size = st.number_input("Audit set size", min_value=1, max_value=max(1, len(project.pool())), value=default)
        if st.form_submit_button("Create audit set"):
            try:
                made = project.create_audit_set(int(size))
                st.session_state[K_NOTICE] = ("info", f"Audit set of {len(made)} images created.")
                st.rerun()
            except ProjectError as exc:
                st.error(md(exc, MESSAGE_MAX))


def _rare_class_options(project: Project) -> None:
    """The two imbalance options of the next round (off by default, as in the paper)."""
    train = dict(project.config.get("train") or {})
    with st.expander("Rare-class options (next round)"):
        cw = st.toggle("Class-weighted CE for the CE head", value=bool(train.get("ce_class_weight", False)),
                       key="trn_ce_cw",
                       help="Each labeled image weighs L / (K * n_c): a class with 2 labels pulls as hard as one "
                            "with 40. Off in the paper.")
        tau = st.number_input("Logit-adjusted teacher targets (tau)", min_value=0.0, max_value=2.0, step=0.5,
                              value=float(train.get("teacher_logit_adjust", 0.0)), key="trn_la_tau",
                              help="Subtract tau * log(teacher's mean predicted class distribution) from the "
                                   "teacher's logits before distilling: 1 removes the teacher's prior, 0 (the "
                                   "paper) leaves its soft labels as they are.")
        if cw != bool(train.get("ce_class_weight", False)) or tau != float(train.get("teacher_logit_adjust", 0.0)):
            project.update_config(train={**train, "ce_class_weight": bool(cw), "teacher_logit_adjust": float(tau)})
            st.caption("Saved: the next round uses these options.")


def main() -> None:
    """Draw the Train page."""
    st.title("Train")
    try:
        project = current_project()
    except Exception as exc:
        show_project_error(exc)
        return
    note = st.session_state.pop(K_NOTICE, None)
    if note:
        getattr(st, note[0])(md(note[1], MESSAGE_MAX))  # notices quote job errors: plain text
    labeled, _ = project.training_labels()
    running = training_status(project).running
    cfg = project.config
    st.caption(f"Student **{md(cfg.get('student_arch'))}** · strategy **{md(project.strategy)}** · "
               f"{labeled.size} training labels · device: **{_cached_device()}**")
    st.button("Retrain student", key="trn_start", type="primary", icon=":material/model_training:",
              disabled=running is not None or labeled.size == 0, on_click=_start, args=(project,),
              help="Train a fresh student on every current label (audit set excluded) in the background.")
    if labeled.size == 0:
        st.info("Label at least one image (outside the audit set) before training.")
    else:
        _round_plan(project, disabled=running is not None)
    _live(str(project.folder))
    collapse_notes(project)
    st.subheader("Rounds")
    _history(project)
    st.subheader("Labels found per class")
    labels_per_round_table(project)
    st.subheader("Audit set")
    _audit_controls(project)
    _step_cap(project, disabled=running is not None)
    _rare_class_options(project)


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests may import them
    main()
