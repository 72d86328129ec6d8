"""Project page exports: every format offered, downloads always of the open project."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from test_app_pages import APP, _batch_key, demo_images, home  # noqa: F401 (fixtures)
from button_rows import pick  # noqa: E402


def test_downloads_belong_to_the_open_project(home) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    pick(at, f"{_batch_key(at)}_0", 0)
    at.switch_page("pages/project.py").run()
    for name in ("csv", "pred_csv", "pred_parquet", "label_studio", "hf"):
        at.button(key=f"prj_exp_{name}").click().run()
        assert not at.exception, [e.message for e in at.exception]
        assert not at.error, [e.value for e in at.error]
    offered = {b.key for b in at.get("download_button")}
    assert {"prj_dl_labels.csv", "prj_dl_predictions.csv", "prj_dl_predictions.parquet",
            "prj_dl_label_studio_tasks.json"} <= offered
    assert list((home / "projects" / "textile" / "exports").glob("hf_dataset_*/dataset_info.json"))
    at.button(key="prj_demo_digits").click().run()  # switch project: the textile files are not offered
    assert not at.exception, [e.message for e in at.exception]
    assert not [b for b in at.get("download_button") if b.key.startswith("prj_dl_")]



def test_class_editor_waits_for_submit_to_ask_for_a_second_class() -> None:
    import pandas as pd

    from pages.project import _is_count_problem, class_table_problems

    classes, problems = class_table_problems(pd.DataFrame({"name": ["scratch", None], "prompt": ["", None]}))
    assert classes == [("scratch", "")] and problems and all(_is_count_problem(p) for p in problems)
    _, problems = class_table_problems(pd.DataFrame({"name": ["scratch", "Scratch"], "prompt": ["", ""]}))
    assert problems and not any(_is_count_problem(p) for p in problems)  # a duplicate shows while typing
