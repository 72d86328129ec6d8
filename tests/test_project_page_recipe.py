"""The Project page's display recipe controls (streamlit.testing.v1.AppTest).

Changing an open project's recipe (window, bands, stretch) goes through
``Project.set_display_recipe`` and shows up in its history; the create form's chip size
and overlap are checked before anything is written and make a chipped project.
"""

from __future__ import annotations

import numpy as np
import tifffile
from test_app_pages import _app, demo_images, home  # noqa: F401 (fixtures)

from activekd_core.project import Project


def test_recipe_section_changes_the_open_projects_recipe(home):  # noqa: F811
    at = _app()
    at.switch_page("pages/project.py").run()
    window = at.selectbox(key="prj_rcp_window")
    lung = next(o for o in window.options if "-600/1500" in o)
    window.set_value(lung).run()
    at.text_input(key="prj_rcp_bands").input("4, 3").run()
    at.button(key="prj_rcp_go").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Recipe not changed" in e.value and "1 or 3 band numbers" in e.value for e in at.error)
    with Project.open(home / "projects" / "textile") as project:
        assert project.recipe.window == "auto" and project.display_recipe_history() == []
    at.text_input(key="prj_rcp_bands").input("").run()
    at.number_input(key="prj_rcp_low").set_value(5.0).run()
    at.button(key="prj_rcp_go").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Display recipe saved" in s.value for s in at.success)
    with Project.open(home / "projects" / "textile") as project:
        assert project.recipe.window == "ct_lung" and project.recipe.percentiles == (5.0, 98.0)
        history = project.display_recipe_history()
        assert len(history) == 1 and history[0]["source"] == "Project page"
    shown = [d.value for d in at.dataframe if "window" in d.value.columns]
    assert len(shown) == 1 and list(shown[0]["window"]) == ["ct_lung"]


def test_create_form_checks_chip_size_and_overlap_and_makes_chips(home, tmp_path):  # noqa: F811
    images = tmp_path / "scenes"
    images.mkdir()
    scene = np.arange(100 * 80 * 4, dtype=np.uint16).reshape(100, 80, 4)
    tifffile.imwrite(images / "scene.tif", scene, photometric="minisblack", planarconfig="contig")
    at = _app()
    at.switch_page("pages/project.py").run()
    at.text_input(key="prj_new_folder").input(str(tmp_path / "chipped")).run()
    at.text_input(key="prj_new_images").input(str(images)).run()
    at.number_input(key="prj_new_chip").set_value(8).run()
    assert any("size must be between 16 and 65536, got 8" in e.value for e in at.error)
    at.number_input(key="prj_new_chip").set_value(64).run()
    at.number_input(key="prj_new_overlap").set_value(64).run()
    assert any("overlap (64 px) must be smaller than the chip size (64 px)" in e.value for e in at.error)
    at.button(key="prj_create").click().run()
    assert any("Not created" in e.value and "chip overlap" in e.value for e in at.error)
    assert not (tmp_path / "chipped").exists()
    at.number_input(key="prj_new_overlap").set_value(16).run()
    assert not any("Display recipe" in e.value for e in at.error)
    at.button(key="prj_create").click().run()
    errors = " ".join(e.value for e in at.error)
    assert "Not created" in errors and "no classes given" in errors and "chip" not in errors
