"""Teacher bias: can the teacher be trusted, and where is it wrong?

Every metric is computed by :mod:`activekd_core.bias` (scikit-learn where it has them) and
drawn by :mod:`activekd_core.figures.teacher_bias`; this script only wires widgets to them.

* Accuracy: on human-labeled images, the teacher's confusion matrix (counts and
  row-normalised), per-class precision/recall/F1 and accuracy with a Wilson interval; the
  same for the latest student, and where the two disagree.
* Priors: the teacher's predicted-class distribution over the whole pool next to the human
  label distribution.
* Calibration: reliability diagram with ECE, teacher entropy histogram, confidence vs
  correctness.
* Galleries: the teacher's most confident mistakes; the images where teacher and student
  disagree most.
* Prompt workshop (CLIP teachers): edit class prompts or the template set, re-score the cached
  image features with the new text prototypes (a text pass only), compare every metric before
  vs after (:func:`activekd_core.bias.compare_teachers`), keep (recorded as new teacher
  provenance) or discard.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from activekd_core.display_text import MESSAGE_MAX, md, visible
from activekd_core.figures import teacher_bias as figs
from activekd_core.project import Project, ProjectError
from activekd_core.view_models.teacher_bias import (
    LABEL_SETS,
    BiasReport,
    ClassificationReport,
    Labels,
    bias_report,
    compare_teachers,
    confidence_vs_correctness,
    human_labels,
    prompt_workshop,
    read_teacher,
    student_probs,
    teacher_fittable,
)
from pages._session import current_project, show_project_error, thumbnail

KEY_PREFIX = "tb_"
KEY_CANDIDATE = KEY_PREFIX + "candidate"
GALLERY = 12
TEMPLATE_CHOICES = ("single", "simple", "openai", "custom")


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:.1%}"  # NaN check without numpy


def _accuracy_metric(col: Any, who: str, rep: ClassificationReport) -> None:
    lo, hi = rep.accuracy_interval
    col.metric(f"{who} accuracy", _pct(rep.accuracy),
               help=f"{rep.correct} of {rep.n} labeled images; {rep.confidence:.0%} Wilson interval "
                    f"[{_pct(lo)}, {_pct(hi)}]")
    col.caption(f"{rep.correct}/{rep.n} correct · {rep.confidence:.0%} interval [{_pct(lo)}, {_pct(hi)}] · "
                f"macro F1 {rep.macro_f1:.3f}" if rep.n else "no labeled image")
    if rep.n:
        blo, bhi = rep.balanced_interval
        col.metric(f"{who} balanced accuracy", _pct(rep.balanced_accuracy),
                   help="Mean recall over the labeled classes: a model that answers the majority class for "
                        f"everything scores 1/C here, whatever the majority's share. {rep.confidence:.0%} "
                        f"bootstrap interval [{_pct(blo)}, {_pct(bhi)}]")
        col.caption(f"balanced accuracy {rep.confidence:.0%} bootstrap interval [{_pct(blo)}, {_pct(bhi)}]")


def _gallery(project: Project, ids: list[str], df: pd.DataFrame, caption: Any, key: str) -> None:
    if df is None or df.empty:
        st.caption("Nothing to show.")
        return
    cols = st.columns(6)
    for j, row in enumerate(df.head(GALLERY).itertuples(index=False)):
        image_id = ids[int(row.index)]
        with cols[j % 6]:
            try:
                st.image(thumbnail(project, image_id, 160), caption=f"{md(image_id)} · {caption(row)}")
            except Exception as exc:  # a file removed since the scan
                st.warning(f"{md(image_id)}: {md(exc, MESSAGE_MAX)}")
    st.dataframe(df.assign(image=[visible(ids[int(i)]) for i in df["index"]]), hide_index=True, key=key)


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


def accuracy_section(project: Project, rep: BiasReport, ids: list[str]) -> None:
    """Confusion matrices, per-class scores and teacher/student disagreement."""
    c1, c2, c3 = st.columns(3)
    _accuracy_metric(c1, "Teacher", rep.teacher)
    if rep.student is not None:
        _accuracy_metric(c2, "Student", rep.student)
    c3.metric("Teacher ECE", "n/a" if rep.ece != rep.ece else f"{rep.ece:.3f}",
              help="Expected calibration error of the teacher on the labeled images.")
    models = [("Teacher", rep.teacher)] + ([("Student", rep.student)] if rep.student is not None else [])
    for who, r in models:
        st.markdown(f"#### {who}")
        a, b = st.columns(2)
        a.plotly_chart(figs.confusion_heatmap(r, normalized=False, title=f"{who}: counts"), key=f"{KEY_PREFIX}cm_{who}")
        b.plotly_chart(figs.confusion_heatmap(r, normalized=True, title=f"{who}: row-normalised (recall per class)"),
                       key=f"{KEY_PREFIX}cmn_{who}")
        st.dataframe(r.per_class, hide_index=True, key=f"{KEY_PREFIX}pc_{who}",
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in ("precision", "recall", "f1")})
    if rep.disagreement_counts is not None:
        st.markdown("#### Where teacher and student disagree (labeled images)")
        d = rep.disagreement_counts
        cols = st.columns(5)
        for col, (k, label) in zip(cols, [("both_right", "both right"), ("only_teacher_right", "only teacher right"),
                                          ("only_student_right", "only student right"),
                                          ("both_wrong_same", "both wrong, same class"),
                                          ("both_wrong_different", "both wrong, different")]):
            col.metric(label, d[k])
        if rep.disagreements is not None and not rep.disagreements.empty:
            st.dataframe(rep.disagreements.assign(image=[visible(ids[int(i)]) for i in rep.disagreements["index"]]),
                         hide_index=True, key=KEY_PREFIX + "disagree_table")


def priors_section(rep: BiasReport) -> None:
    """Predicted-class shares over the pool vs human label shares."""
    st.plotly_chart(figs.priors_figure(rep.priors), key=KEY_PREFIX + "priors")
    pr = rep.priors
    if int(pr["human_count"].sum()) > 0:
        over = pr.loc[pr["difference"].idxmax()]
        under = pr.loc[pr["difference"].idxmin()]
        st.caption(f"The teacher over-predicts **{md(over['class'])}** most ({over['difference']:+.1%} of the pool vs "
                   f"the human share) and under-predicts **{md(under['class'])}** most ({under['difference']:+.1%}). "
                   "Human shares come from the chosen labels (actively picked labels are not a random sample; "
                   "the audit set is).")
    st.dataframe(pr, hide_index=True, key=KEY_PREFIX + "priors_table")


def calibration_section(rep: BiasReport, teacher: np.ndarray, labels: Labels, classes: list[str]) -> None:
    """Reliability diagram, entropy histogram, confidence vs correctness."""
    a, b = st.columns(2)
    a.plotly_chart(figs.reliability_figure(rep.reliability, ece=rep.ece, title="Teacher reliability"),
                   key=KEY_PREFIX + "reliability")
    b.plotly_chart(figs.entropy_histogram_figure(rep.entropy), key=KEY_PREFIX + "entropy")
    if rep.student_ece is not None:
        st.caption(f"Student ECE on the same images: {rep.student_ece:.3f}. Mean normalised teacher entropy over "
                   f"the pool: {rep.mean_entropy:.3f}.")
    if labels.rows.size:
        cvc = confidence_vs_correctness(teacher, labels.y, labels.rows, classes)
        st.plotly_chart(figs.confidence_correctness_figure(cvc), key=KEY_PREFIX + "confidence")


def galleries_section(project: Project, rep: BiasReport, ids: list[str]) -> None:
    """Most confident teacher mistakes; largest teacher/student disagreement."""
    st.markdown("#### The teacher's most confident mistakes")
    _gallery(project, ids, rep.mistakes,
             lambda r: f"human {md(r.human)} · teacher {md(r.predicted)} {r.confidence:.2f}", KEY_PREFIX + "mistakes")
    st.markdown("#### Largest teacher/student disagreement (whole pool, total variation)")
    if rep.most_disagreeing is None:
        st.caption("No student yet: train a round first.")
    else:
        _gallery(project, ids, rep.most_disagreeing,
                 lambda r: f"teacher {md(r.teacher)} {r.teacher_confidence:.2f} · student {md(r.student)} "
                           f"{r.student_confidence:.2f} · TV {r.score:.2f}", KEY_PREFIX + "disagreeing")


# ---------------------------------------------------------------------------------------------
# Prompt workshop
# ---------------------------------------------------------------------------------------------


def workshop_section(project: Project, teacher_before: np.ndarray, labels: Labels, fit: bool) -> None:
    """Edit prompts, recompute from cached features, compare, keep or discard."""
    ws = prompt_workshop(project)
    classes = project.classes
    if not ws.clip:
        st.info(f"This project's teacher is **{md(ws.teacher_name)}**: it does "
                "not read text prompts, so editing them here would change nothing. With a CLIP teacher (zero-shot "
                "or few-shot, chosen on the Project page) this workshop re-scores the cached image features with "
                "new prompts in seconds and compares every metric before and after.")
        return
    if ws.random_weights:
        st.warning("This CLIP model has random weights (not a trained CLIP): prompts change its predictions, "
                   "but not in a meaningful way.")
    st.caption("Each class's prototype is the mean text embedding of every template filled with the class name "
               "plus its own prompts ('{}' in a prompt is replaced by the class name).")
    with st.form(KEY_PREFIX + "workshop_form"):
        tset = st.selectbox("Template set", TEMPLATE_CHOICES, index=TEMPLATE_CHOICES.index(ws.templates),
                            key=KEY_PREFIX + "ws_templates")
        custom = st.text_area("Custom templates (one per line, each with {})",
                              value=ws.custom_templates,
                              key=KEY_PREFIX + "ws_custom")
        prompts: dict[str, list[str]] = {}
        cols = st.columns(min(3, len(classes)))
        for i, c in enumerate(classes):
            text = cols[i % len(cols)].text_area(f"Prompts for '{md(c)}' (one per line)",
                                                 value=ws.class_prompts.get(c, ""),
                                                 key=f"{KEY_PREFIX}ws_prompt_{i}")
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if lines:
                prompts[c] = lines
        submitted = st.form_submit_button("Recompute teacher with these prompts", type="primary")
    if submitted:
        templates: str | list[str] = tset if tset != "custom" else [ln.strip() for ln in custom.splitlines()
                                                                      if ln.strip()]
        try:
            with st.spinner("Text pass on the cached image features..."):
                after = project.candidate_teacher_probs(prompts, templates, fit=fit)
            cmp = compare_teachers(teacher_before, after, labels.y, labels.rows, classes)
        except (ValueError, ProjectError) as exc:
            st.error(f"Cannot use these prompts: {md(exc, MESSAGE_MAX)}")
        else:
            st.session_state[KEY_CANDIDATE] = {
                "class_prompts": prompts, "templates": templates, "after": after,
                "before_key": hash(teacher_before.tobytes()), "labels": LABEL_SETS[labels.which],
                "summary": {r.metric: [r.before, r.after] for r in cmp.summary.itertuples()},
            }
    cand = st.session_state.get(KEY_CANDIDATE)
    if cand is None:
        return
    if cand["before_key"] != hash(teacher_before.tobytes()):
        st.info("The teacher or labels changed since the candidate was computed: recompute it.")
        st.session_state.pop(KEY_CANDIDATE, None)
        return
    cmp = compare_teachers(teacher_before, cand["after"], labels.y, labels.rows, classes)
    st.markdown("#### Before vs after")
    st.caption(f"{cmp.changed.size} of {teacher_before.shape[0]} pool images change their predicted class.")
    st.dataframe(cmp.summary, hide_index=True, key=KEY_PREFIX + "ws_summary",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("before", "after", "delta")})
    a, b = st.columns(2)
    a.plotly_chart(figs.comparison_figure(cmp, metric="recall"), key=KEY_PREFIX + "ws_recall")
    b.plotly_chart(figs.comparison_figure(cmp, metric="predicted_share"), key=KEY_PREFIX + "ws_share")
    a.plotly_chart(figs.confusion_heatmap(cmp.before.teacher, title="Before: row-normalised"), key=KEY_PREFIX + "ws_cm_b")
    b.plotly_chart(figs.confusion_heatmap(cmp.after.teacher, title="After: row-normalised"), key=KEY_PREFIX + "ws_cm_a")
    a.plotly_chart(figs.reliability_figure(cmp.before.reliability, ece=cmp.before.ece, title="Before"),
                   key=KEY_PREFIX + "ws_rel_b")
    b.plotly_chart(figs.reliability_figure(cmp.after.reliability, ece=cmp.after.ece, title="After"),
                   key=KEY_PREFIX + "ws_rel_a")
    k1, k2 = st.columns(2)
    if k1.button("Keep: make these prompts the project's teacher", key=KEY_PREFIX + "ws_keep", type="primary"):
        project.adopt_teacher_prompts(cand["class_prompts"], cand["templates"],
                                      note={"labels": cand["labels"], "summary": cand["summary"]})
        st.session_state.pop(KEY_CANDIDATE, None)
        st.success("Kept. The new prompts are the teacher's provenance from now on (the next round distils from it).")
        st.rerun()
    if k2.button("Discard", key=KEY_PREFIX + "ws_discard"):
        st.session_state.pop(KEY_CANDIDATE, None)
        st.rerun()


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


def render(project: Project) -> None:
    """Draw the Teacher-bias page for ``project``."""
    st.title("Teacher bias")
    classes = project.classes
    ids = project.pool().ids
    c1, c2 = st.columns([2, 1])
    which = c1.radio("Evaluate on", list(LABEL_SETS), format_func=LABEL_SETS.get, horizontal=True,
                     key=KEY_PREFIX + "labels")
    try:
        fittable = teacher_fittable(project)
        fit = c2.checkbox("Teacher fitted on the current labels", value=True, disabled=not fittable,
                          key=KEY_PREFIX + "fit",
                          help="Few-shot and stand-in teachers learn from the labels; unticked shows them before "
                               "any fit (zero-shot for CLIP, uniform for the stand-in).")
        with st.spinner("Reading teacher predictions..."):
            reading = read_teacher(project, fit and fittable)
        teacher = reading.probs
    except Exception as exc:  # e.g. CLIP weights missing offline: the message says how to supply them
        st.error(f"Cannot read the teacher's predictions: {type(exc).__name__}: {md(exc, MESSAGE_MAX)}")
        return
    st.caption(f"Teacher: {md(reading.name)}")
    if fittable and fit and which != "audit":
        st.caption("This teacher was fitted on the training labels, so its scores on them are in-sample "
                   "(optimistic); the audit set gives an honest estimate.")
    labels = human_labels(project, which)
    student_view = student_probs(project)
    if student_view.problem is not None:
        st.warning(md(student_view.problem, MESSAGE_MAX))
    round_id, student = student_view.round_id, student_view.probs
    if labels.rows.size == 0:
        st.info("No human label in this set yet: the metrics need labeled images. Priors and entropy "
                "below use the whole pool.")
    rep = bias_report(teacher, labels.y, labels.rows, classes, student_probs=student)
    if round_id is not None:
        st.caption(f"Student: round {round_id} (the active model).")
    tabs = st.tabs(["Accuracy", "Priors", "Calibration", "Galleries", "Prompt workshop"])
    with tabs[0]:
        accuracy_section(project, rep, ids)
    with tabs[1]:
        priors_section(rep)
    with tabs[2]:
        calibration_section(rep, teacher, labels, classes)
    with tabs[3]:
        galleries_section(project, rep, ids)
    with tabs[4]:
        workshop_section(project, teacher, labels, fit and fittable)


try:
    _project = current_project()
except Exception as exc:  # no project open: the Project page fixes it
    show_project_error(exc)
else:
    render(_project)
