"""Label page flow: retrain now, retrain automatically after every batch, the batch in progress kept."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from activekd_core.project import Project
from test_app_pages import APP, _batch_key, _card_ids, demo_images, home  # noqa: F401 (fixtures)
from button_rows import pick  # noqa: E402


def _wait_train(home) -> None:
    with Project.open(home / "projects" / "textile") as project:
        job = project.jobs().latest("train")
        assert job is not None
        assert project.jobs().wait(job.id, timeout=120).state == "done"


def test_retrain_now_and_automatic_retrain_after_a_batch(home) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    key = _batch_key(at)
    assert not [b for b in at.button if b.key == "lbl_retrain"]  # no label yet: nothing to train on
    pick(at, f"{key}_0", 0)
    retrain = next(b for b in at.button if b.key == "lbl_retrain")
    assert "1 new label" in retrain.label
    retrain.click().run()
    assert not at.exception, [e.message for e in at.exception]
    _wait_train(home)
    with Project.open(home / "projects" / "textile") as project:
        assert project.active_round() is not None and project.new_labels_since_model() == 0
        # the batch was in progress: the retrain did not pull it away
        assert project.current_batch().batch.id == int(key.split("-")[1])
    at.run()
    at.toggle(key="lbl_auto_retrain").set_value(True).run()
    for pos in range(1, 10):
        pick(at, f"{key}_{pos}", pos % 3)
        assert not at.exception, [e.message for e in at.exception]
    with Project.open(home / "projects" / "textile") as project:
        assert project.auto_retrain
        rounds = [j for j in project.jobs().history("train")]
        assert len(rounds) == 2  # the completed batch started the second round by itself
    _wait_train(home)
    with Project.open(home / "projects" / "textile") as project:
        assert project.active_round().n_labeled == 10
