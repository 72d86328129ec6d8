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

from activekd_core.project import DEFAULT_STRATEGY, Project, ProjectError
from activekd_core.store import StoreError, validate_class_names
from pages._session import (
    DEMOS,
    KEY_ANNOTATOR,
    annotator,
    current_demo,
    current_project,
    open_demo_project,
    open_project_folder,
    pinned_folder,
    show_project_error,
)

TEACHER_KINDS = {
    "Offline stand-in (no weights needed)": "standin",
    "CLIP zero-shot": "clip_zero_shot",
    "CLIP few-shot (CLAP, refit on your labels)": "clip_few_shot",
    "Precomputed probabilities file": "precomputed",
}
K_MSG = "prj_msg"


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


def _recommended_student() -> tuple[str, int]:
    """The default backbone and size for this machine's training device."""
    try:
        from activekd_core.devices import pick_device
        from activekd_core.student import recommended_student

        return recommended_student(pick_device("auto").type)
    except ImportError:
        return "small_cnn", 32


def _weights_note(arch: str) -> str:
    """Where the pretrained file is, or where to put it."""
    try:
        from activekd_core.student import imagenet_cache_path

        path = imagenet_cache_path(arch)
    except (ImportError, ValueError) as exc:
        return f"Pretrained weights unavailable: {exc}"
    if path.is_file():
        return f"ImageNet weights found: `{path}`"
    return f"ImageNet weights missing: copy torchvision's file to `{path}` (creation will say so)."


# ---- sections ---------------------------------------------------------------------------------


def _open_section() -> None:
    st.subheader("Open a project")
    if pinned_folder() is not None:
        st.info(f"This server is pinned to {pinned_folder()} (ACTIVEKD_PROJECT); restart without it to switch.")
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
                st.error(f"Cannot open the {name} demo: {exc}")
    with st.form("prj_open"):
        folder = st.text_input("Existing project folder", key="prj_open_folder", placeholder="/path/to/project")
        if st.form_submit_button("Open"):
            if not folder.strip():
                st.error("Enter a project folder.")
            else:
                try:
                    open_project_folder(folder.strip())
                    st.session_state[K_MSG] = f"Opened {folder.strip()}."
                    st.rerun()
                except Exception as exc:
                    st.error(f"Cannot open {folder.strip()}: {exc}")


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
            st.warning(f"CLIP weights not available: {reason}\n\n"
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
            st.error(f"Image folder not found: {root}")
        elif not root.is_dir():
            st.error(f"Not a folder: {root}")
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
            st.error(f"Classes: {p}")
    else:
        st.caption("Add at least two classes.")
    kind_label = st.selectbox("Teacher", list(TEACHER_KINDS), key="prj_new_teacher")
    spec, teacher_problems = _teacher_spec(TEACHER_KINDS[kind_label])
    a, b, c = st.columns(3)
    arches = _arches()
    rec_arch, rec_size = _recommended_student()
    arch = a.selectbox("Student backbone", arches, index=arches.index(rec_arch) if rec_arch in arches else 0,
                       key="prj_new_arch", help="Default: the paper's ImageNet-pretrained ResNet-18 at 224 px on a "
                       "GPU; the pretrained MobileNetV3-Small at a smaller size on a CPU.")
    size = a.number_input("Student input size (px)", min_value=16, max_value=512, value=rec_size, step=16,
                          key="prj_new_size", help="Small local details need more pixels; larger is slower.")
    pretrained = arch != "small_cnn" and a.checkbox("ImageNet-pretrained", value=True, key="prj_new_pretrained",
                                                    help="Off: the backbone starts from random weights.")
    if pretrained:
        a.caption(_weights_note(arch))
    batch_size = b.number_input("Batch size per round", min_value=1, max_value=1000, value=10, key="prj_new_bs")
    strategies = _strategies()
    names = list(strategies)
    strategy = c.selectbox("Strategy", names, index=names.index(DEFAULT_STRATEGY) if DEFAULT_STRATEGY in names else 0,
                           key="prj_new_strategy", help="\n".join(f"{k}: {v}" for k, v in strategies.items()))
    if st.button("Create project", key="prj_create", type="primary"):
        problems = list(class_problems) + list(teacher_problems)
        if not folder.strip():
            problems.append("enter a project folder")
        if not image_root.strip():
            problems.append("enter an image folder")
        if problems:
            st.error("Not created: " + "; ".join(problems))
            return
        try:
            with st.spinner("Scanning images and checking the teacher..."):
                train = {"image_size": int(size), "pretrained": bool(pretrained)}
                project = Project.create(folder.strip(), image_root.strip(), classes, spec, arch, int(batch_size),
                                         strategy, train=train)
            report = project.scan_report()
            project.close()
            open_project_folder(folder.strip())
            st.session_state[K_MSG] = (f"Created {folder.strip()}: {report.n_images} images, "
                                       f"{len(report.skipped)} skipped (see the scan report).")
            st.rerun()
        except (ProjectError, StoreError, ValueError) as exc:
            st.error(f"Not created: {exc}")


def _current_section(project: Project) -> None:
    st.subheader(project.name)
    counts = project.counts()
    cfg = project.config
    st.caption(f"Folder `{project.folder}` · images `{project.image_root}` · {counts['total']} images · "
               f"{len(project.classes)} classes · teacher **{cfg['teacher_spec'].get('kind')}** · "
               f"student **{cfg.get('student_arch')}** @ {(cfg.get('train') or {}).get('image_size', 32)} px · batch **{project.batch_size}** · "
               f"strategy **{project.strategy}**")
    try:
        est = project.round_estimate()
        when = f"about {est.seconds / 60:.1f} min ({est.source})" if est.seconds is not None else \
            "time not measured yet (Train page)"
        st.caption(f"Next training round: {est.steps:,} steps for {est.n_labeled} labels, {when}.")
    except Exception as exc:  # torch missing or broken settings: the page still works
        st.caption(f"Next round estimate unavailable: {exc}")
    st.text_input("Annotator (recorded with every label)", value=annotator(), key="prj_annotator_input",
                  on_change=_set_annotator)


def _set_annotator() -> None:
    # copied to a non-widget key: Streamlit drops a widget's state on pages that do not draw it
    name = str(st.session_state.get("prj_annotator_input") or "").strip()
    if name:
        st.session_state[KEY_ANNOTATOR] = name


def _scan_section(project: Project) -> None:
    report = project.scan_report()
    with st.expander(f"Scan report: {report.n_images} usable images, {len(report.skipped)} skipped",
                     expanded=bool(report.skipped) and len(report.skipped) < 50):
        if report.skipped:
            st.dataframe(pd.DataFrame(report.skipped, columns=["file", "reason"]), hide_index=True,
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
                st.dataframe(pd.DataFrame([(p.row, p.value, p.reason) for p in result.problems],
                                          columns=["row", "value", "reason"]), hide_index=True)
        except Exception as exc:
            st.error(f"Nothing imported: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    if b.button("Import from class sub-folders", key="prj_import_dirs",
                help="Label each image by its first folder name when it matches a class."):
        try:
            n, unknown = project.import_labels_subfolders(annotator=f"import:{annotator()}")
            st.success(f"Imported {n} labels from sub-folder names.")
            if unknown:
                st.warning("Folders not matching a class (not imported): "
                           + ", ".join(f"{k} ({v})" for k, v in sorted(unknown.items())))
        except Exception as exc:
            st.error(f"Nothing imported: {exc}")


def _export_section(project: Project) -> None:
    st.subheader("Export")
    st.caption(f"Files are written into `{project.path('exports')}`.")
    a, b, c, d = st.columns(4)
    for col, fmt in ((a, "csv"), (b, "json")):
        if col.button(f"Labels as {fmt.upper()}", key=f"prj_exp_{fmt}", width="stretch"):
            try:
                rep = project.export_labels(fmt)
                st.session_state[f"prj_exp_file_{fmt}"] = str(rep.dest)
                st.success(f"{rep.count} labels written to {rep.dest}")
            except Exception as exc:
                st.error(f"Export failed: {exc}")
        path = st.session_state.get(f"prj_exp_file_{fmt}")
        if path and Path(path).is_file():
            col.download_button(f"Download labels.{fmt}", Path(path).read_bytes(), file_name=f"labels.{fmt}",
                                key=f"prj_dl_{fmt}", width="stretch")
    if c.button("ImageFolder tree", key="prj_exp_tree", width="stretch"):
        try:
            rep = project.export_imagefolder()
            st.success(f"{rep.count} images written to {rep.dest}"
                       + (f"; {len(rep.skipped)} skipped" if rep.skipped else ""))
        except Exception as exc:
            st.error(f"Export failed: {exc}")
    if d.button("Trained student", key="prj_exp_student", width="stretch",
                disabled=project.active_round() is None, help="safetensors + TorchScript (+ ONNX when installed)"):
        try:
            with st.spinner("Exporting the student..."):
                rep = project.export_student()
            st.session_state["prj_exp_student_files"] = [str(f) for f in rep.files]
            st.success(f"Student written to {rep.dest}")
        except Exception as exc:
            st.error(f"Export failed: {exc}")
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
