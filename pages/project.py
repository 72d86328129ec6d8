"""Project page: open or switch projects, create one, import labels, scan report, export.

All checks of a new project's settings are done by
:meth:`activekd_core.project.Project.create` (nothing is written when one fails); this
page collects the inputs, rejects obviously incomplete class tables early with a
message, and shows the core's messages verbatim.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from activekd_core.display_recipe import WINDOW_PRESETS, DisplayRecipe, RecipeError, parse_bands
from activekd_core.display_text import MESSAGE_MAX, NAME_MAX, check_name, code, md, short_time, visible
from activekd_core.project import DEFAULT_STRATEGY, Project, ProjectError
from activekd_core.view_models.project_page import (
    StoreError,
    class_names_problem,
    clip_weights_reason,
    export_downloads,
    recommended_student,
    strategy_descriptions,
    student_arches,
    teacher_name,
    weights_note,
)
from pages._session import (
    DEMOS,
    KEY_ANNOTATOR,
    annotator,
    auth_configured,
    current_demo,
    current_project,
    open_demo_project,
    open_project_folder,
    pinned_folder,
    show_project_error,
    sync_url,
)

TEACHER_KINDS = {
    f"{teacher_name('standin')}: no weights needed": "standin",
    teacher_name("clip_zero_shot"): "clip_zero_shot",
    f"{teacher_name('clip_few_shot')}, refit on your labels": "clip_few_shot",
    f"{teacher_name('precomputed')} (a file)": "precomputed",
}
K_MSG = "prj_msg"
K_ANNOTATOR_ERR = "prj_annotator_error"


# ---- helpers (no algorithm: they only shape inputs for the core) ------------------------------


def class_table_problems(table: pd.DataFrame) -> tuple[list[tuple[str, str]], list[str]]:
    """Read the class editor's table; return ``(classes, problems)``.

    Rows whose name and prompt are both empty are ignored (the editor's spare rows);
    blank names with a prompt, duplicates and fewer than two classes are problems.
    """
    rows: list[tuple[str, str]] = []
    problems: list[str] = []
    for i, rec in enumerate(table.to_dict("records"), start=1):
        name = "" if pd.isna(rec.get("name")) else str(rec.get("name")).strip()
        prompt = "" if pd.isna(rec.get("prompt")) else str(rec.get("prompt")).strip()
        if not name and not prompt:
            continue
        if not name:
            problems.append(f"row {i}: the class name is blank (prompt {prompt!r})")
            continue
        rows.append((name, prompt))
    problem = class_names_problem([n for n, _ in rows])
    if problem is not None:
        problems.append(problem)
    return rows, problems


def _is_count_problem(problem: str) -> bool:
    """Whether a class-table problem is only "too few classes" (shown on submit, not while typing)."""
    return problem.startswith(("only one class", "no classes given"))


# ---- sections ---------------------------------------------------------------------------------


def _open_section() -> None:
    st.subheader("Open a project")
    if pinned_folder() is not None:
        st.info(f"This server is pinned to {code(pinned_folder())} (ACTIVEKD_PROJECT); restart without it to switch.")
        return
    cols = st.columns(len(DEMOS) + 1)
    for col, name in zip(cols, DEMOS):
        if col.button(f"Demo: {name}", key=f"prj_demo_{name}", width="stretch",
                      type="primary" if current_demo() == name else "secondary"):
            try:
                with st.spinner(f"Opening the {name} demo (created on first use)..."):
                    open_demo_project(name)
                st.session_state[K_MSG] = f"Opened the {name} demo."
                st.rerun()
            except Exception as exc:
                st.error(f"Cannot open the {name} demo: {md(exc, MESSAGE_MAX)}")
    with st.form("prj_open"):
        folder = st.text_input("Existing project folder", key="prj_open_folder", placeholder="/path/to/project")
        if st.form_submit_button("Open"):
            if not folder.strip():
                st.error("Enter a project folder.")
            else:
                try:
                    open_project_folder(folder.strip())
                    st.session_state[K_MSG] = f"Opened {code(folder.strip())}."
                    st.rerun()
                except Exception as exc:
                    st.error(f"Cannot open {code(folder.strip())}: {md(exc, MESSAGE_MAX)}")


def _teacher_spec(kind: str, prefix: str = "prj_") -> tuple[dict | None, list[str]]:
    """Teacher inputs for ``kind`` (widget keys start with ``prefix``); returns ``(spec or None, problems)``."""
    problems: list[str] = []
    if kind == "standin":
        st.caption("Not CLIP: a small model fitted on your labels (uniform before the first label). "
                   "Use it when no CLIP weights are available on this machine.")
        return {"kind": "standin"}, problems
    if kind in ("clip_zero_shot", "clip_few_shot"):
        a, b = st.columns(2)
        model = a.text_input("CLIP model", value="ViT-B-32", key=prefix + "clip_model",
                             help="An open_clip model name, hf-hub:org/repo or local-dir:/folder")
        pretrained = b.text_input("Pretrained tag or local checkpoint", value="openai", key=prefix + "clip_pretrained",
                                  help="e.g. openai, laion2b_s34b_b79k, or /path/to/open_clip_model.safetensors")
        reason = clip_weights_reason(model, pretrained)
        if reason:
            st.warning(f"CLIP weights not available: {md(reason, MESSAGE_MAX)}\n\n"
                       "Choose the offline stand-in teacher, or supply a local checkpoint.")
            problems.append(f"CLIP weights not available for {model} / {pretrained}")
        else:
            st.caption("Weights found locally.")
        return {"kind": kind, "model_name": model, "pretrained": pretrained or None}, problems
    path = st.text_input("Probabilities file (.npy/.csv/.npz)", key=prefix + "pre_path")
    value_kind = st.radio("Values are", ["probs", "logits"], horizontal=True, key=prefix + "pre_kind")
    ids_path = st.text_input("Image ids file (optional; one id per line, pool order otherwise)", key=prefix + "pre_ids")
    if not path.strip():
        problems.append("enter the precomputed file's path")
        return None, problems
    spec = {"kind": "precomputed", "path": path.strip(), "value_kind": value_kind}
    if ids_path.strip():
        spec["ids_path"] = ids_path.strip()
    return spec, problems


def _create_section() -> None:
    st.subheader("Create a project")
    if pinned_folder() is not None:
        st.info("This server is pinned to one project (ACTIVEKD_PROJECT).")
        return
    folder = st.text_input("New project folder", key="prj_new_folder", placeholder="/path/to/new-project")
    image_root = st.text_input("Image folder (scanned recursively)", key="prj_new_images",
                               placeholder="/path/to/images")
    if image_root.strip():
        root = Path(image_root.strip()).expanduser()
        if not root.exists():
            st.error(f"Image folder not found: {code(root)}")
        elif not root.is_dir():
            st.error(f"Not a folder: {code(root)}")
    st.write("Classes (name and the text prompt the CLIP teacher reads):")
    table = st.data_editor(
        pd.DataFrame({"name": ["", ""], "prompt": ["", ""]}),
        num_rows="dynamic", key="prj_new_classes", width="stretch",
        column_config={"name": st.column_config.TextColumn("Class name", required=False),
                       "prompt": st.column_config.TextColumn("Prompt (e.g. 'a photo of a scratch')")},
    )
    classes, class_problems = class_table_problems(table)
    # While typing, only what is wrong with the rows written so far; "add a second class" waits
    # for "Create project" (it used to appear as an error as soon as the first name was typed).
    for p in class_problems:
        if not _is_count_problem(p):
            st.error(f"Classes: {md(p, MESSAGE_MAX)}")
    if len(classes) < 2:
        st.caption("Add at least two classes.")
    kind_label = st.selectbox("Teacher", list(TEACHER_KINDS), key="prj_new_teacher")
    spec, teacher_problems = _teacher_spec(TEACHER_KINDS[kind_label])
    a, b, c = st.columns(3)
    arches = student_arches()
    rec_arch, rec_size = recommended_student()
    arch = a.selectbox("Student backbone", arches, index=arches.index(rec_arch) if rec_arch in arches else 0,
                       key="prj_new_arch", help="Default: the paper's ImageNet-pretrained ResNet-18 at 224 px on a "
                       "GPU; the pretrained MobileNetV3-Small at a smaller size on a CPU.")
    size = a.number_input("Student input size (px)", min_value=16, max_value=512, value=rec_size, step=16,
                          key="prj_new_size", help="Small local details need more pixels; larger is slower.")
    pretrained = arch != "small_cnn" and a.checkbox("ImageNet-pretrained", value=True, key="prj_new_pretrained",
                                                    help="Off: the backbone starts from random weights.")
    if pretrained:
        a.caption(weights_note(arch))
    batch_size = b.number_input("Batch size per round", min_value=1, max_value=1000, value=10, key="prj_new_bs")
    strategies = strategy_descriptions()
    names = list(strategies)
    strategy = c.selectbox("Strategy", names, index=names.index(DEFAULT_STRATEGY) if DEFAULT_STRATEGY in names else 0,
                           key="prj_new_strategy", help="\n".join(f"{k}: {v}" for k, v in strategies.items()))
    recipe, recipe_problems = _recipe_inputs()
    if st.button("Create project", key="prj_create", type="primary"):
        problems = list(class_problems) + list(teacher_problems) + recipe_problems
        if not folder.strip():
            problems.append("enter a project folder")
        if not image_root.strip():
            problems.append("enter an image folder")
        if folder.strip():
            try:
                check_name(Path(folder.strip()).name, "project folder name")
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            st.error("Not created: " + md("; ".join(problems), MESSAGE_MAX))
            return
        try:
            with st.spinner("Scanning images and checking the teacher..."):
                train = {"image_size": int(size), "pretrained": bool(pretrained)}
                project = Project.create(folder.strip(), image_root.strip(), classes, spec, arch, int(batch_size),
                                         strategy, train=train, recipe=recipe)
            report = project.scan_report()
            project.close()
            open_project_folder(folder.strip())
            st.session_state[K_MSG] = (f"Created {code(folder.strip())}: {report.n_images} images, "
                                       f"{len(report.skipped)} skipped (see the scan report).")
            st.rerun()
        except (ProjectError, StoreError, ValueError) as exc:
            st.error(f"Not created: {md(exc, MESSAGE_MAX)}")


WINDOW_CHOICES = {"The file's own window (VOI LUT / WindowCenter, WindowWidth)": "auto",
                  **{p.label: p.name for p in WINDOW_PRESETS.values()}}
FRAME_CHOICES = {"Middle frame (one image per file)": "middle", "Every frame (one image per frame)": "each"}
BANDS_HELP = "1-based band numbers, e.g. 4, 3, 2 for Sentinel-2 true colour; blank: the first three bands"


def _recipe_inputs() -> tuple[DisplayRecipe, list[str]]:
    """The display recipe for DICOM and multi-band images, and what is wrong with the inputs."""
    with st.expander("DICOM, multi-band images and large scenes"):
        st.caption("How DICOM and 16-bit/multi-band TIFF images become what you, the teacher and the student see.")
        a, b = st.columns(2)
        window = a.selectbox("DICOM window", list(WINDOW_CHOICES), key="prj_new_window")
        frames = b.selectbox("Multi-frame DICOM", list(FRAME_CHOICES), key="prj_new_frames")
        bands_text = st.text_input("Bands shown as red, green, blue (1-based; blank: the first three)",
                                   key="prj_new_bands", max_chars=40, placeholder="4, 3, 2 (Sentinel-2 true colour)")
        c, d = st.columns(2)
        chip = c.number_input("Chip size for large scenes (px; 0: keep every image whole)", min_value=0,
                              max_value=65536, value=0, step=256, key="prj_new_chip",
                              help="Each TIFF is cut into square chips of this side, each chip an image read "
                                   "on demand (never copied). Scenes too large to decode at once need chips.")
        overlap = d.number_input("Chip overlap (px)", min_value=0, max_value=65535, value=0, step=16,
                                 key="prj_new_overlap", disabled=not chip,
                                 help="Pixels neighbouring chips share; smaller than the chip size.")
    problems = []
    if chip and overlap >= chip:
        problems.append(f"the chip overlap ({int(overlap)} px) must be smaller than the chip size ({int(chip)} px)")
    try:
        recipe = DisplayRecipe(window=WINDOW_CHOICES[window], frames=FRAME_CHOICES[frames],
                               bands=parse_bands(bands_text), chip_size=int(chip) or None,
                               chip_overlap=int(overlap) if chip else 0) if not problems else DisplayRecipe()
    except RecipeError as exc:
        problems.append(str(exc))
        recipe = DisplayRecipe()
    for p in problems:
        st.error(f"Display recipe: {md(p, MESSAGE_MAX)}")
    return recipe, [f"display recipe: {p}" for p in problems]


def _recipe_section(project: Project) -> None:
    """Change the project's display recipe (window, bands, stretch); every change is kept in its history."""
    with st.expander("Display recipe (DICOM window, bands, stretch)"):
        try:
            current = project.recipe
        except ProjectError as exc:
            st.error(md(exc, MESSAGE_MAX))
            return
        st.caption("What you, the teacher and the student see. A change re-reads every image with the new recipe "
                   "(caches are keyed by it); labels, rounds and students stay. Frames and chips are fixed at "
                   f"creation (frames: {md(current.frames)}, chips: "
                   f"{md(f'{current.chip_size} px, overlap {current.chip_overlap}' if current.chip_size else 'none')}).")
        windows = list(WINDOW_CHOICES)
        names = list(WINDOW_CHOICES.values())
        if current.window not in names:  # a manual window saved from focus mode
            windows.append(f"Manual {current.window_center:g}/{current.window_width:g}")
            names.append(current.window)
        a, b = st.columns(2)
        window = a.selectbox("DICOM window", windows, index=names.index(current.window), key="prj_rcp_window")
        bands_text = b.text_input("Bands shown as red, green, blue", key="prj_rcp_bands", max_chars=40,
                                  value=", ".join(str(x) for x in current.bands or ()), help=BANDS_HELP)
        c, d = st.columns(2)
        low = c.number_input("Stretch: low percentile", min_value=0.0, max_value=100.0, step=0.5,
                             value=float(current.percentiles[0]), key="prj_rcp_low")
        high = d.number_input("Stretch: high percentile", min_value=0.0, max_value=100.0, step=0.5,
                              value=float(current.percentiles[1]), key="prj_rcp_high")
        if st.button("Use this recipe", key="prj_rcp_go"):
            try:
                new = replace(current, window=names[windows.index(window)], bands=parse_bands(bands_text),
                              percentiles=(float(low), float(high)))
                with st.spinner("Checking the images and computing the pool's stretch..."):
                    stored = project.set_display_recipe(new, note={"source": "Project page"})
                st.success("Display recipe saved." if stored != current else "That is the recipe in use already.")
            except (RecipeError, ProjectError) as exc:
                st.error(f"Recipe not changed: {md(exc, MESSAGE_MAX)}")
        history = project.display_recipe_history()
        if history:
            st.caption(f"{len(history)} earlier change(s), newest last:")
            st.dataframe([{"when": short_time(h.get("time")), "how": visible(str(h.get("source", "")), NAME_MAX),
                           "window": visible((h.get("after") or {}).get("window"), NAME_MAX),
                           "bands": visible((h.get("after") or {}).get("bands"), NAME_MAX)} for h in history[-20:]],
                         hide_index=True, width="stretch")


def _current_section(project: Project) -> None:
    st.subheader(md(project.name))
    counts = project.counts()
    cfg = project.config
    st.caption(f"Folder {code(project.folder)} · images {code(project.image_root)} · {counts['total']} images · "
               f"{len(project.classes)} classes · teacher **{md(teacher_name(cfg['teacher_spec'].get('kind')))}** · "
               f"student **{md(cfg.get('student_arch'))}** @ {(cfg.get('train') or {}).get('image_size', 32)} px · "
               f"batch **{project.batch_size}** · strategy **{md(project.strategy)}**")
    try:
        est = project.round_estimate()
        when = f"about {est.seconds / 60:.1f} min ({md(est.source)})" if est.seconds is not None else \
            "time not measured yet (Train page)"
        st.caption(f"Next training round: {est.steps:,} steps for {est.n_labeled} labels, {when}.")
    except Exception as exc:  # noqa: BLE001 - torch missing or broken settings: the page still works
        st.caption(f"Next round estimate unavailable: {md(exc, MESSAGE_MAX)}")
    _keys_input(project)
    _teacher_section(project)
    _recipe_section(project)
    if auth_configured():
        st.text_input("Annotator (your sign-in; recorded with every label)", value=annotator(), disabled=True,
                      key="prj_annotator_locked")
        return
    if "prj_annotator_input" not in st.session_state:  # (re)drawn: show the current name
        st.session_state["prj_annotator_input"] = annotator()[:NAME_MAX]
    st.text_input("Annotator (recorded with every label)", key="prj_annotator_input", on_change=_set_annotator,
                  max_chars=NAME_MAX,
                  help="Single-user mode (no login configured): the name is kept in this page's URL.")
    problem = st.session_state.pop(K_ANNOTATOR_ERR, None)
    if problem:
        st.error(f"Annotator not changed: {md(problem, MESSAGE_MAX)}")


def _teacher_section(project: Project) -> None:
    """Change the project's teacher; every change is kept in the teacher history."""
    with st.expander("Change the teacher"):
        current = project.config["teacher_spec"].get("kind")
        kinds = list(TEACHER_KINDS)
        index = next((i for i, k in enumerate(kinds) if TEACHER_KINDS[k] == current), 0)
        label = st.selectbox("Teacher", kinds, index=index, key="prj_chg_teacher")
        spec, problems = _teacher_spec(TEACHER_KINDS[label], prefix="prj_chg_")
        if st.button("Use this teacher", key="prj_chg_go", disabled=spec is None or bool(problems)):
            try:
                project.change_teacher(spec or {}, note={"source": "Project page"})
                st.success(f"The teacher is now {md(teacher_name(spec.get('kind')))}; its probabilities are "
                           "recomputed on the next selection (caches are keyed by the teacher).")
            except ProjectError as exc:
                st.error(f"Teacher not changed: {md(exc, MESSAGE_MAX)}")
        history = project.teacher_history()
        if history:
            st.caption(f"{len(history)} earlier change(s), newest last:")
            st.dataframe([{"when": short_time(h.get("time")), "how": h.get("source", ""),
                           "before": teacher_name((h.get("before") or {}).get("kind")),
                           "after": teacher_name((h.get("after") or {}).get("kind"))} for h in history],
                         hide_index=True, width="stretch")


def _keys_input(project: Project) -> None:
    """The label key of each class (Label page shortcuts), one character per class."""
    if "prj_keys" not in st.session_state:
        st.session_state["prj_keys"] = " ".join(project.class_keys())
    st.text_input("Label keys, one per class in order (empty: the defaults)", key="prj_keys",
                  on_change=_set_keys, args=(project,), max_chars=40,
                  help="Letters or digits; S, U, Z, J, K, F, R and C are taken by the Label page and Streamlit.")
    problem = st.session_state.pop("prj_keys_error", None)
    if problem:
        st.error(md(problem, MESSAGE_MAX))


def _set_keys(project: Project) -> None:
    try:
        keys = project.set_class_keys(str(st.session_state.get("prj_keys") or ""))
    except ProjectError as exc:
        st.session_state["prj_keys_error"] = str(exc)
        keys = project.class_keys()
    st.session_state["prj_keys"] = " ".join(keys)


def _set_annotator() -> None:
    # copied to a non-widget key: Streamlit drops a widget's state on pages that do not draw it
    raw = str(st.session_state.get("prj_annotator_input") or "")
    if not raw.strip():
        return
    try:
        st.session_state[KEY_ANNOTATOR] = check_name(raw, "annotator name")
    except ValueError as exc:  # too long, or invisible characters: keep the previous name
        st.session_state[K_ANNOTATOR_ERR] = str(exc)
        st.session_state["prj_annotator_input"] = annotator()
        return
    sync_url()


def _scan_section(project: Project) -> None:
    report = project.scan_report()
    with st.expander(f"Scan report: {report.n_images} usable images, {len(report.skipped)} skipped",
                     expanded=bool(report.skipped) and len(report.skipped) < 50):
        if report.skipped:
            skipped = [(visible(f), visible(r, MESSAGE_MAX)) for f, r in report.skipped]
            st.dataframe(pd.DataFrame(skipped, columns=["file", "reason"]), hide_index=True,
                         width="stretch")
        else:
            st.write("No file was skipped.")


def _import_uploaded(up, suffix: str, reader) -> None:
    """Write an uploaded file to a temporary file, import it with ``reader(path)``, report per row."""
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as fh:
        fh.write(up.getvalue())
        tmp = Path(fh.name)
    try:
        result = reader(tmp)
        st.success(f"Imported {len(result.labels)} labels.")
        if result.problems:
            st.warning(f"{len(result.problems)} row(s) skipped or worth a look:")
            st.dataframe(pd.DataFrame([(p.row, visible(p.value), visible(p.reason, MESSAGE_MAX))
                                       for p in result.problems],
                                      columns=["row", "value", "reason"]), hide_index=True)
    except Exception as exc:  # noqa: BLE001 - shown, nothing was written
        st.error(f"Nothing imported: {md(exc, MESSAGE_MAX)}")
    finally:
        tmp.unlink(missing_ok=True)


def _import_section(project: Project) -> None:
    st.subheader("Import labels")
    up = st.file_uploader("Labels CSV (columns id/path/filename and label/class)", type=["csv"], key="prj_import_csv")
    ls_up = st.file_uploader("Label Studio JSON export (tasks with annotations)", type=["json"], key="prj_import_ls")
    a, b, c = st.columns(3)
    who = f"import:{annotator()}"
    if a.button("Import the CSV", key="prj_import_csv_go", disabled=up is None):
        _import_uploaded(up, ".csv", lambda path: project.import_labels_csv(path, annotator=who))
    if c.button("Import the Label Studio export", key="prj_import_ls_go", disabled=ls_up is None):
        _import_uploaded(ls_up, ".json", lambda path: project.import_label_studio(path, annotator=who))
    if b.button("Import from class sub-folders", key="prj_import_dirs",
                help="Label each image by its first folder name when it matches a class."):
        try:
            n, unknown = project.import_labels_subfolders(annotator=f"import:{annotator()}")
            st.success(f"Imported {n} labels from sub-folder names.")
            if unknown:
                st.warning("Folders not matching a class (not imported): "
                           + md(", ".join(f"{k} ({v})" for k, v in sorted(unknown.items())), MESSAGE_MAX))
        except Exception as exc:
            st.error(f"Nothing imported: {md(exc, MESSAGE_MAX)}")


def _export_key(project: Project, name: str) -> str:
    """Session key of an export's file list, per project: downloads always belong to the open project."""
    return f"prj_exp_{name}:{project.folder}"


def _offer_downloads(project: Project, col, name: str) -> None:
    for file_name, data in export_downloads(project, st.session_state.get(_export_key(project, name), [])):
        col.download_button(f"Download {file_name}", data, file_name=file_name, key=f"prj_dl_{file_name}",
                            width="stretch")


def _run_export(project: Project, col, name: str, action, what: str) -> None:
    try:
        rep = action()
    except Exception as exc:  # noqa: BLE001 - shown, the page stays usable
        col.error(f"Export failed: {md(exc, MESSAGE_MAX)}")
        return
    st.session_state[_export_key(project, name)] = [str(f) for f in (rep.files or [rep.dest])]
    skipped = f"; {len(rep.skipped)} skipped" if rep.skipped else ""
    col.success(f"{rep.count} {what} written to {code(rep.dest)}{skipped}")


def _export_section(project: Project) -> None:
    st.subheader("Export")
    st.caption(f"Files are written into {code(project.path('exports'))}. Predictions: one row per image with "
               "its state, label, and the teacher's and the active student's probabilities and predicted class.")
    exports = [
        ("csv", "Labels CSV", lambda: project.export_labels("csv"), "labels"),
        ("json", "Labels JSON", lambda: project.export_labels("json"), "labels"),
        ("pred_csv", "Predictions CSV", lambda: project.export_predictions("csv"), "rows"),
        ("pred_parquet", "Predictions Parquet", lambda: project.export_predictions("parquet"), "rows"),
        ("label_studio", "Label Studio tasks", lambda: project.export_label_studio(), "tasks"),
        ("hf", "HF dataset folder", lambda: project.export_hf_dataset(
            project.path("exports", f"hf_dataset_{time.strftime('%Y%m%d-%H%M%S')}")), "images"),
        ("tree", "ImageFolder tree", lambda: project.export_imagefolder(), "images"),
    ]
    cols = st.columns(4)
    for j, (name, label, action, what) in enumerate(exports):
        col = cols[j % 4]
        if col.button(label, key=f"prj_exp_{name}", width="stretch"):
            _run_export(project, col, name, action, what)
        if name not in ("hf", "tree"):
            _offer_downloads(project, col, name)
    col = cols[len(exports) % 4]
    if col.button("Trained student", key="prj_exp_student", width="stretch",
                  disabled=project.active_round() is None, help="safetensors + TorchScript (+ ONNX when installed)"):
        with st.spinner("Exporting the student..."):
            _run_export(project, col, "student", project.export_student, "file(s)")
    _offer_downloads(project, col, "student")


def main() -> None:
    """Draw the Project page."""
    st.title("Project")
    msg = st.session_state.pop(K_MSG, None)
    if msg:
        st.success(msg)
    try:
        project = current_project()
    except Exception as exc:
        show_project_error(exc)
        project = None
    if project is not None:
        _current_section(project)
        _scan_section(project)
    _open_section()
    # Its open state is tracked by the server: an untracked expander was drawn anew, closed, by the
    # rerun that each edit of the class table triggers (Tab or Enter), hiding the table mid-typing.
    with st.expander("Create a project", expanded=project is None, key="prj_create_open", on_change="rerun"):
        _create_section()
    if project is not None:
        _import_section(project)
        _export_section(project)


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests may import them
    main()
