"""The pages' view models, on a small real project without Streamlit."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from activekd_core.image_view import BytesCache
from activekd_core.paths import PathOutsideRoot
from activekd_core.project import Project
from activekd_core.view_models import explore, label, project_page, session, teacher_bias, train

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40)}
TRAIN = {"steps": 4, "batch_labeled": 8, "batch_unlabeled": 8, "image_size": 16, "device": "cpu", "width": 8}


@pytest.fixture
def project(tmp_path: Path):
    root = tmp_path / "images"
    for name, color in COLORS.items():
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20, 12), tuple(c + 3 * i for c in color)).save(root / name / f"{i}.png")
    p = Project.create(tmp_path / "proj", root, [(n, "") for n in COLORS], teacher_spec={"kind": "standin"},
                       student_arch="small_cnn", batch_size=4, strategy="random", train=TRAIN)
    yield p
    p.close()


# ---- session ---------------------------------------------------------------------------------


def test_thumbnails_are_confined_to_the_image_root_and_cached_by_file_identity(project: Project) -> None:
    cache = BytesCache(1 << 20)
    assert session.image_path(project, "red/0.png") == (project.image_root / "red" / "0.png").resolve()
    for bad in ("../proj/project.db", "/etc/passwd"):
        with pytest.raises(PathOutsideRoot):
            session.thumbnail_png(project, bad, 64, cache)
    first = session.thumbnail_png(project, "red/0.png", 10, cache)
    with Image.open(io.BytesIO(first)) as im:
        assert im.size == (10, 6)  # 20 x 12 shrunk to fit 10 (kept in proportion)
    held = cache.nbytes
    assert session.thumbnail_png(project, "red/0.png", 10, cache) == first and cache.nbytes == held
    Image.new("RGB", (20, 12), (0, 0, 255)).save(project.image_root / "red" / "0.png")  # the file changed
    assert session.thumbnail_png(project, "red/0.png", 10, cache) != first


def test_zoom_window_of_a_plain_image(project: Project) -> None:
    data, window, size = session.zoom_png(project, "green/1.png", 1.0, (0.5, 0.5), BytesCache(1 << 20))
    assert size == (20, 12) and window.whole and data[:4] == b"\x89PNG"


def test_a_project_whose_database_was_removed_must_be_reopened(project: Project) -> None:
    assert not session.needs_reopen(project)
    (project.folder / "project.db").unlink()
    assert session.needs_reopen(project)


def test_only_remembered_project_folders_are_known(project: Project, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert not session.is_known_project(home, project.folder)  # a link alone cannot open it
    session.remember_project(home, project.folder)
    assert session.is_known_project(home, project.folder)
    assert not session.is_known_project(home, project.image_root)  # remembered or not, no project there


def test_strategy_score_label() -> None:
    assert session.strategy_score_label("pcoreset") not in ("", "score")
    assert session.strategy_score_label("no such strategy") == "score"


def test_teacher_suggestions_only_from_the_teachers_last_pass(project: Project) -> None:
    ids = project.pool().ids[:3]
    assert session.teacher_top(project, ids) == {}  # nothing computed on the server
    probs = project.teacher_probs()
    top = session.teacher_top(project, ids)
    row_of = project.row_of()
    assert {i: top[i][0] for i in ids} == {i: project.classes[int(np.argmax(probs[row_of[i]]))] for i in ids}


# ---- Label -----------------------------------------------------------------------------------


def test_image_states_follow_the_latest_decision(project: Project) -> None:
    a, b, c = project.pool().ids[:3]
    project.label(a, "red")
    project.skip(b)
    states = label.image_states(project, [a, b, c])
    assert states[a].class_name == "red" and states[b].event == "skip" and states[c] is None
    project.undo(image_id=a)
    assert label.image_states(project, [a])[a] is None


def test_a_failed_selection_is_reported_with_its_error(project: Project) -> None:
    assert project.batch_job() is None and label.failed_selection(project) is None

    def broken(progress, cancel):
        raise RuntimeError("no features yet\nsecond line")

    job = project.jobs().start_thread("select", broken)
    project.jobs().wait(job, timeout=30)
    failed = label.failed_selection(project)
    assert failed is not None and failed.id == job and failed.state == "failed" and "no features yet" in failed.error
    assert project.batch_job() is None and label.training_job(project) is None


# ---- Train -----------------------------------------------------------------------------------


def test_round_history_and_training_status(project: Project) -> None:
    history = train.round_history(project)
    assert history.rows == [] and history.recover_error is None
    assert train.training_status(project) == train.TrainingStatus(None, None)
    for image_id in project.pool().ids[:6]:
        project.label(image_id, image_id.split("/")[0])
    job = project.start_retrain(process=False)
    project.jobs().wait(job, timeout=120)
    status = train.training_status(project)
    assert status.running is None and status.latest.id == job and status.latest.state == "done"
    history = train.round_history(project)
    assert [(r["round"], r["status"], r["labels"]) for r in history.rows] == [(1, "done", 6)]
    assert history.rows[0]["student audit acc"] == "—" and not history.audit_scored  # no audit set yet


def test_audit_set_state(project: Project) -> None:
    assert not train.has_audit_set(project)
    size = train.default_audit_size(project)
    assert 1 <= size <= len(project.pool())
    project.create_audit_set(size)
    assert train.has_audit_set(project)


def test_durations_read_as_minutes_and_seconds() -> None:
    assert [train.fmt_seconds(s) for s in (None, 4.4, 65, 600)] == ["—", "4s", "1m 05s", "10m 00s"]


def test_device_guess_names_a_device() -> None:
    assert train.device_guess()  # "cpu" here, or why it is unknown: never an exception


# ---- Project page ----------------------------------------------------------------------------


def test_class_names_are_checked_as_creation_checks_them() -> None:
    assert project_page.class_names_problem(["scratch", "hole"]) is None
    assert "duplicate" in project_page.class_names_problem(["scratch", "Scratch"])
    assert project_page.class_names_problem(["only"]).startswith("only one class")


def test_new_project_choices() -> None:
    assert "pcoreset" in project_page.strategy_descriptions()
    arches = project_page.student_arches()
    assert "small_cnn" in arches and project_page.recommended_student()[0] in arches
    assert "unavailable" in project_page.weights_note("small_cnn")  # trained from scratch only
    assert project_page.teacher_name("standin") and project_page.teacher_name("standin") != "standin"


def test_missing_clip_weights_are_explained(tmp_path: Path) -> None:
    reason = project_page.clip_weights_reason("ViT-B-32", str(tmp_path / "missing.safetensors"))
    assert reason and "missing.safetensors" in reason


def test_downloads_only_from_the_projects_exports_folder(project: Project, tmp_path: Path) -> None:
    report = project.export_labels("csv")
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("secret")
    files = [str(f) for f in (report.files or [report.dest])]
    offered = project_page.export_downloads(project, [*files, str(outside), str(tmp_path / "gone.csv")])
    assert [name for name, _ in offered] == [Path(f).name for f in files]
    assert offered[0][1] == Path(files[0]).read_bytes()


# ---- Explore ---------------------------------------------------------------------------------


def test_demo_strategies_and_pca_layouts(project: Project) -> None:
    assert explore.demo_strategies() == list(explore.DEMO_STRATEGIES)
    state = explore.read_pool_state(project)
    t, s = explore.pca_layouts(state, explore.LayoutParams(method="pca"))
    assert t.coords.shape == (len(project.pool()), 2) and s is None  # no student before round 1


def test_layout_wait_until_every_pending_layout_is_stored_or_failed() -> None:
    on_disk = {"done"}
    statuses = {"slow": SimpleNamespace(state="running", elapsed=lambda: 12.0),
                "broken": SimpleNamespace(state="failed", elapsed=lambda: 99.0)}
    job = SimpleNamespace(cache=SimpleNamespace(load=lambda k: object() if k in on_disk else None),
                          status=statuses.get, is_warm=False)
    assert explore.layout_wait(job, ("done", "slow", "broken")) == explore.LayoutWait(12.0, False)
    on_disk.add("slow")
    assert explore.layout_wait(job, ("done", "slow", "broken")) is None
    assert explore.layout_failed(job, SimpleNamespace(key="broken"))
    assert not explore.layout_failed(job, SimpleNamespace(key="slow"))


# ---- Teacher bias ----------------------------------------------------------------------------


def test_teacher_bias_inputs(project: Project) -> None:
    a, b = project.pool().ids[:2]
    project.label(a, "red")
    project.label(b, "green")
    labels = teacher_bias.human_labels(project, "all")
    assert labels.which == "all" and sorted(labels.rows.tolist()) == sorted(project.row_of()[i] for i in (a, b))
    assert teacher_bias.student_probs(project) == teacher_bias.StudentProbs(None, None)
    assert teacher_bias.teacher_fittable(project)
    reading = teacher_bias.read_teacher(project, fit=True)
    assert reading.probs.shape == (len(project.pool()), 2) and reading.probs.dtype == np.float32
    # described after the fit: a fitted teacher says what it was fitted on
    assert reading.name == project.teacher().describe()["display_name"]
    workshop = teacher_bias.prompt_workshop(project)
    assert not workshop.clip and workshop.teacher_name == reading.name


def test_prompt_workshop_starts_from_the_clip_teachers_prompts(project: Project, monkeypatch) -> None:
    class ZeroShot:  # what the page reads of a zero-shot CLIP teacher (its Protocol, teachers.base)
        classes = ["red", "green"]
        templates = ["a {}.", "the {}."]
        class_prompts = {"red": ["a red square", "crimson"]}

        def predict_proba(self, pool, progress=None): ...
        def describe(self): return {"display_name": "CLIP zero-shot"}
        def load(self): ...
        def set_prompts(self, class_prompts=None, templates=None): ...
        def feature_cache(self, pool): ...
        def image_features(self, pool, progress=None, cancel=None): ...
        def image_features_distributed(self, pool, info, progress=None, cancel=None): ...

    class FewShot:  # a few-shot teacher wraps the zero-shot one
        classes = ["red", "green"]
        zero_shot = ZeroShot()

        def predict_proba(self, pool, progress=None): ...
        def describe(self): return {"display_name": "CLIP few-shot", "zero_shot": {"random_weights": True}}

    few_shot = FewShot()
    monkeypatch.setattr(project, "teacher", lambda: few_shot)
    ws = teacher_bias.prompt_workshop(project)
    assert ws.clip and ws.random_weights and ws.teacher_name == "CLIP few-shot"
    assert ws.templates == "custom" and ws.custom_templates == "a {}.\nthe {}."
    assert ws.class_prompts == {"red": "a red square\ncrimson", "green": ""}
