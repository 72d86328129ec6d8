"""Project page: open or switch projects, create one, import labels, scan report, export.

All checks of a new project's settings are done by
:meth:`activekd_core.project.Project.create` (nothing is written when one fails); this
page collects the inputs, rejects obviously incomplete class tables early with a
message, and shows the core's messages verbatim.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from activekd_core.display_recipe import WINDOW_PRESETS, DisplayRecipe, RecipeError, parse_bands
from activekd_core.display_text import MESSAGE_MAX, NAME_MAX, check_name, code, md, visible
from activekd_core.project import DEFAULT_STRATEGY, Project, ProjectError
from activekd_core.store import StoreError, validate_class_names
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
    "Offline stand-in (no weights needed)": "standin",
    "CLIP zero-shot": "clip_zero_shot",
    "CLIP few-shot (CLAP, refit on your labels)": "clip_few_shot",
    "Precomputed probabilities file": "precomputed",
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
    try:
        validate_class_names([n for n, _ in rows])
    except StoreError as exc:
        problems.append(str(exc))
    return rows, problems


def clip_weights_reason(model_name: str, pretrained: str) -> str | None:
    """None when the CLIP weights can be loaded offline, else why not and how to supply them."""
    try:
        from activekd_core.teachers.clip_zero_shot import resolve_weights
    except ImportError as exc:
        return f"open_clip is not installed ({exc})"
    try:
        resolve_weights(model_name, pretrained or None)
    except Exception as exc:
        return str(exc)
    return None


def _strategies() -> dict[str, str]:
    try:
        from activekd_core.selection import STRATEGIES

        return {name: getattr(s, "description", "") for name, s in STRATEGIES.items()}
    except ImportError:
        return {DEFAULT_STRATEGY: "PCoreSet (k-center on the student's probability vectors)"}


def _arches() -> list[str]:
    try:
        from activekd_core.student import ARCHES

        return list(ARCHES)
    except ImportError:
        return ["small_cnn"]


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


def _teacher_spec(kind: str) -> tuple[dict | None, list[str]]:
    """Teacher inputs for ``kind``; returns ``(spec or None, problems)``."""
    problems: list[str] = []
    if kind == "standin":
        st.caption("Not CLIP: a small model fitted on your labels (uniform before the first label). "
                   "Use it when no CLIP weights are available on this machine.")
        return {"kind": "standin"}, problems
    if kind in ("clip_zero_shot", "clip_few_shot"):
        a, b = st.columns(2)
        model = a.text_input("CLIP model", value="ViT-B-32", key="prj_clip_model",
                             help="An open_clip model name, hf-hub:org/repo or local-dir:/folder")
        pretrained = b.text_input("Pretrained tag or local checkpoint", value="openai", key="prj_clip_pretrained",
                                  help="e.g. openai, laion2b_s34b_b79k, or /path/to/open_clip_model.safetensors")
        reason = clip_weights_reason(model, pretrained)
        if reason:
            st.warning(f"CLIP weights not available: {md(reason, MESSAGE_MAX)}\n\n"
                       "Choose the offline stand-in teacher, or supply a local checkpoint.")
            problems.append(f"CLIP weights not available for {model} / {pretrained}")
        else:
            st.caption("Weights found locally.")
        return {"kind": kind, "model_name": model, "pretrained": pretrained or None}, problems
    path = st.text_input("Probabilities file (.npy/.csv/.npz)", key="prj_pre_path")
    value_kind = st.radio("Values are", ["probs", "logits"], horizontal=True, key="prj_pre_kind")
    ids_path = st.text_input("Image ids file (optional; one id per line, pool order otherwise)", key="prj_pre_ids")
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
    if classes or len(class_problems) > 1:  # the user has started filling the table
        for p in class_problems:
            st.error(f"Classes: {md(p, MESSAGE_MAX)}")
    else:
        st.caption("Add at least two classes.")
    kind_label = st.selectbox("Teacher", list(TEACHER_KINDS), key="prj_new_teacher")
    spec, teacher_problems = _teacher_spec(TEACHER_KINDS[kind_label])
    a, b, c = st.columns(3)
    arches = _arches()
    arch = a.selectbox("Student backbone", arches, index=arches.index("small_cnn") if "small_cnn" in arches else 0,
                       key="prj_new_arch")
    batch_size = b.number_input("Batch size per round", min_value=1, max_value=1000, value=10, key="prj_new_bs")
    strategies = _strategies()
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
                project = Project.create(folder.strip(), image_root.strip(), classes, spec, arch, int(batch_size),
                                         strategy, recipe=recipe)
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


def _recipe_inputs() -> tuple[DisplayRecipe, list[str]]:
    """The display recipe for DICOM and multi-band images, and what is wrong with the inputs."""
    with st.expander("DICOM and multi-band images"):
        st.caption("How DICOM and 16-bit/multi-band TIFF images become what you, the teacher and the student see.")
        a, b = st.columns(2)
        window = a.selectbox("DICOM window", list(WINDOW_CHOICES), key="prj_new_window")
        frames = b.selectbox("Multi-frame DICOM", list(FRAME_CHOICES), key="prj_new_frames")
        bands_text = st.text_input("Bands shown as red, green, blue (1-based; blank: the first three)",
                                   key="prj_new_bands", max_chars=40, placeholder="4, 3, 2 (Sentinel-2 true colour)")
    try:
        return DisplayRecipe(window=WINDOW_CHOICES[window], frames=FRAME_CHOICES[frames],
                             bands=parse_bands(bands_text)), []
    except RecipeError as exc:
        st.error(f"Display recipe: {md(exc, MESSAGE_MAX)}")
        return DisplayRecipe(), [f"display recipe: {exc}"]


def _current_section(project: Project) -> None:
    st.subheader(md(project.name))
    counts = project.counts()
    cfg = project.config
    st.caption(f"Folder {code(project.folder)} · images {code(project.image_root)} · {counts['total']} images · "
               f"{len(project.classes)} classes · teacher **{md(cfg['teacher_spec'].get('kind'))}** · "
               f"student **{md(cfg.get('student_arch'))}** · batch **{project.batch_size}** · "
               f"strategy **{md(project.strategy)}**")
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


def _import_section(project: Project) -> None:
    st.subheader("Import labels")
    up = st.file_uploader("Labels CSV (columns id/path/filename and label/class)", type=["csv"], key="prj_import_csv")
    a, b = st.columns(2)
    if a.button("Import the CSV", key="prj_import_csv_go", disabled=up is None):
        with tempfile.NamedTemporaryFile(suffix=".csv", delete=False) as fh:
            fh.write(up.getvalue())
            tmp = Path(fh.name)
        try:
            result = project.import_labels_csv(tmp, annotator=f"import:{annotator()}")
            st.success(f"Imported {len(result.labels)} labels.")
            if result.problems:
                st.warning(f"{len(result.problems)} row(s) skipped or worth a look:")
                st.dataframe(pd.DataFrame([(p.row, visible(p.value), visible(p.reason, MESSAGE_MAX))
                                           for p in result.problems],
                                          columns=["row", "value", "reason"]), hide_index=True)
        except Exception as exc:
            st.error(f"Nothing imported: {md(exc, MESSAGE_MAX)}")
        finally:
            tmp.unlink(missing_ok=True)
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


def _export_section(project: Project) -> None:
    st.subheader("Export")
    st.caption(f"Files are written into {code(project.path('exports'))}.")
    a, b, c, d = st.columns(4)
    for col, fmt in ((a, "csv"), (b, "json")):
        if col.button(f"Labels as {fmt.upper()}", key=f"prj_exp_{fmt}", width="stretch"):
            try:
                rep = project.export_labels(fmt)
                st.session_state[f"prj_exp_file_{fmt}"] = str(rep.dest)
                st.success(f"{rep.count} labels written to {code(rep.dest)}")
            except Exception as exc:
                st.error(f"Export failed: {md(exc, MESSAGE_MAX)}")
        path = st.session_state.get(f"prj_exp_file_{fmt}")
        if path and Path(path).is_file():
            col.download_button(f"Download labels.{fmt}", Path(path).read_bytes(), file_name=f"labels.{fmt}",
                                key=f"prj_dl_{fmt}", width="stretch")
    if c.button("ImageFolder tree", key="prj_exp_tree", width="stretch"):
        try:
            rep = project.export_imagefolder()
            st.success(f"{rep.count} images written to {code(rep.dest)}"
                       + (f"; {len(rep.skipped)} skipped" if rep.skipped else ""))
        except Exception as exc:
            st.error(f"Export failed: {md(exc, MESSAGE_MAX)}")
    if d.button("Trained student", key="prj_exp_student", width="stretch",
                disabled=project.active_round() is None, help="safetensors + TorchScript (+ ONNX when installed)"):
        try:
            with st.spinner("Exporting the student..."):
                rep = project.export_student()
            st.session_state["prj_exp_student_files"] = [str(f) for f in rep.files]
            st.success(f"Student written to {code(rep.dest)}")
        except Exception as exc:
            st.error(f"Export failed: {md(exc, MESSAGE_MAX)}")
    for f in st.session_state.get("prj_exp_student_files", []):
        p = Path(f)
        if p.is_file() and p.suffix in (".safetensors", ".pt", ".onnx", ".json"):
            d.download_button(f"Download {p.name}", p.read_bytes(), file_name=p.name, key=f"prj_dl_{p.name}",
                              width="stretch")


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
    with st.expander("Create a project", expanded=project is None):
        _create_section()
    if project is not None:
        _import_section(project)
        _export_section(project)


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests may import them
    main()
