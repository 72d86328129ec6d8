"""The focus-mode viewer in a project: per-user views kept apart from the project's recipe, saving
the recipe invalidates the image caches through their keys, and the Label page shows the
controls for a DICOM item and not for a PNG (AppTest).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from activekd_core.display_recipe import DisplayRecipe  # noqa: E402
from activekd_core.image_view import BytesCache  # noqa: E402
from activekd_core.project import Project  # noqa: E402
from activekd_core.view_models import session  # noqa: E402
from activekd_core.viewer import ViewerSettings  # noqa: E402
from button_rows import act, batch_key, card_ids  # noqa: E402
from test_viewer import ct_bands, linear, write_ct  # noqa: E402

CLASSES = [("scan", "a scan"), ("photo", "a photo")]
TRAIN = {"steps": 4, "batch_labeled": 8, "batch_unlabeled": 8, "image_size": 16, "device": "cpu", "width": 8}


def make_project(tmp_path: Path) -> Project:
    root = tmp_path / "images"
    root.mkdir()
    write_ct(root / "ct.dcm", ct_bands())
    Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "x.png")
    data = np.stack([np.full((16, 16), 1000 * (k + 1), np.uint16) for k in range(4)], axis=2)
    tifffile.imwrite(root / "s.tif", data, photometric="minisblack", planarconfig="contig")
    return Project.create(tmp_path / "proj", root, CLASSES, teacher_spec={"kind": "standin"},
                          student_arch="small_cnn", batch_size=3, strategy="random", train=TRAIN,
                          recipe=DisplayRecipe(window="ct_soft_tissue"))


def grey_at(png: bytes, y: int, x: int) -> int:
    with Image.open(io.BytesIO(png)) as img:
        return int(np.asarray(img.convert("RGB"))[y, x, 0])


def test_user_view_is_per_annotator_and_leaves_the_recipe(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    try:
        assert session.viewer_info(project, "x.png") is None  # a PNG only zooms
        info = session.viewer_info(project, "ct.dcm")
        assert info.kind == session.GREY and info.default_window == (40.0, 400.0)
        group = session.viewer_group(info)
        bands = session.viewer_info(project, "s.tif")
        assert bands.kind == session.BANDS and session.viewer_group(bands) != group
        before = project.recipe
        session.save_viewer_settings(project, "ada", group, ViewerSettings(-600, 1500))
        assert session.viewer_settings(project, "ada", group) == ViewerSettings(-600, 1500)
        assert session.viewer_settings(project, "bob", group) is None  # another annotator keeps the project's view
        assert project.recipe == before
        with Project.open(project.folder) as again:
            assert again.recipe == before
            assert session.viewer_settings(again, "ada", group) == ViewerSettings(-600, 1500)
        cache = BytesCache(1 << 20)
        lung, window, size = session.viewer_png(project, "ct.dcm", ViewerSettings(-600, 1500), 1.0, (0.5, 0.5), cache)
        assert size == (20, 30) and window.whole and grey_at(lung, 0, 0) == linear(40, -600, 1500)
        again_png, window2, size2 = session.viewer_png(project, "ct.dcm", ViewerSettings(-600, 1500), 1.0, (0.5, 0.5),
                                                       cache)
        assert again_png == lung and (window2, size2) == (window, size)  # from the cache, same geometry
        session.save_viewer_settings(project, "ada", group, None)
        assert session.viewer_settings(project, "ada", group) is None
    finally:
        project.close()


def test_saving_the_project_recipe_changes_every_cache_key(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    try:
        cache = BytesCache(1 << 22)
        thumb = session.thumbnail_png(project, "ct.dcm", 30, cache)
        view, _, _ = session.viewer_png(project, "ct.dcm", ViewerSettings(), 1.0, (0.5, 0.5), cache)
        assert grey_at(thumb, 0, 0) == 128 and grey_at(view, 0, 0) == 128  # soft tissue: 40 HU mid-grey
        fingerprint = project.pool().fingerprint()
        info = session.viewer_info(project, "ct.dcm")
        lung = ViewerSettings(-600, 1500).project_recipe(project.recipe, info)
        session.save_project_recipe(project, lung)
        assert project.recipe.window == "ct_lung" and project.pool().recipe == project.recipe
        assert project.pool().fingerprint() != fingerprint  # pixel cache and teacher features follow the pool key
        # The same cache answers with new pixels: the recipe's key is part of the thumbnail and view keys.
        assert grey_at(session.thumbnail_png(project, "ct.dcm", 30, cache), 0, 0) == linear(40, -600, 1500)
        view2, _, _ = session.viewer_png(project, "ct.dcm", ViewerSettings(), 1.0, (0.5, 0.5), cache)
        assert grey_at(view2, 0, 0) == linear(40, -600, 1500)
        with Project.open(project.folder) as again:
            assert again.recipe == lung  # written into the project settings
        with pytest.raises(ValueError, match="frames"):
            session.save_project_recipe(project, DisplayRecipe(frames="each"))
    finally:
        project.close()


def test_label_page_shows_viewer_controls_for_dicom_not_for_png(tmp_path: Path, monkeypatch) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    project = make_project(tmp_path)
    try:
        project.next_batch()
    finally:
        project.close()
    monkeypatch.setenv("ACTIVEKD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ACTIVEKD_PROJECT", str(tmp_path / "proj"))
    monkeypatch.setenv("ACTIVEKD_ANNOTATOR", "ada")
    st.cache_resource.clear()
    st.cache_data.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
        assert not at.exception, [e.message for e in at.exception]
        ids = card_ids(at)
        assert sorted(ids) == ["ct.dcm", "s.tif", "x.png"]
        key = batch_key(at)

        def focus(image_id: str) -> AppTest:
            if at.session_state["lbl_focus_mode"] if "lbl_focus_mode" in at.session_state else False:
                at.button(key="lbl_fm_back").click().run()
            act(at, f"{key}_{ids.index(image_id)}", "zoom")
            assert not at.exception, [e.message for e in at.exception]
            return at

        slider_keys = lambda: {s.key for s in at.slider}  # noqa: E731
        focus("ct.dcm")
        assert {"lbl_vw_dicom-grey_center", "lbl_vw_dicom-grey_width"} <= slider_keys()
        assert at.selectbox(key="lbl_vw_dicom-grey_preset") is not None
        assert at.slider(key="lbl_vw_dicom-grey_center").value == 40  # the project's soft-tissue window
        at.selectbox(key="lbl_vw_dicom-grey_preset").set_value("ct_lung").run()
        assert not at.exception, [e.message for e in at.exception]
        assert (at.slider(key="lbl_vw_dicom-grey_center").value, at.slider(key="lbl_vw_dicom-grey_width").value) \
            == (-600, 1500)
        with Project.open(tmp_path / "proj") as again:
            assert again.recipe.window == "ct_soft_tissue"  # the user's view only
            assert session.viewer_settings(again, "ada", "dicom-grey") == ViewerSettings(-600, 1500)
        focus("x.png")
        assert not any(k and k.startswith("lbl_vw_") for k in slider_keys())
        assert not any(b.key and b.key.startswith("lbl_vw_") for b in at.button)
        focus("s.tif")
        assert {n.key for n in at.number_input} >= {"lbl_vw_raster-bands_r", "lbl_vw_raster-bands_g",
                                                     "lbl_vw_raster-bands_b"}
        focus("ct.dcm")
        at.button(key="lbl_vw_dicom-grey_save").click().run()
        assert not at.exception, [e.message for e in at.exception]
        with Project.open(tmp_path / "proj") as again:
            assert again.recipe.window == "ct_lung"  # saved on purpose
            assert session.viewer_settings(again, "ada", "dicom-grey") is None
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()
