"""Who labels and where: the project and annotator survive a reload (URL), login mode, links.

Page behaviour through AppTest (query parameters, secrets and the signed-in user are the
AppTest's own); the database is checked through a separate connection.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from activekd_core import recent  # noqa: E402
from activekd_core.store import Store  # noqa: E402
from test_app_pages import APP, _batch_key, demo_images, home  # noqa: E402,F401 (fixtures)
from button_rows import pick  # noqa: E402

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "c",
        "client_secret": "s", "server_metadata_url": "http://localhost:1/.well-known/openid-configuration"}


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_recent_projects_list(tmp_path: Path) -> None:
    proj = tmp_path / "p"
    proj.mkdir()
    assert not recent.is_known(tmp_path, proj)  # no project.db
    (proj / "project.db").write_bytes(b"")
    assert not recent.is_known(tmp_path, proj)  # never opened here
    recent.remember(tmp_path, proj)
    assert recent.is_known(tmp_path, proj) and recent.recent(tmp_path) == [str(proj.resolve())]
    demo = tmp_path / "projects" / "textile"
    demo.mkdir(parents=True)
    (demo / "project.db").write_bytes(b"")
    assert recent.is_known(tmp_path, demo)  # the app's own demo folder
    (tmp_path / recent.RECENT_FILE).write_text("{not json")
    assert recent.recent(tmp_path) == [] and not recent.is_known(tmp_path, proj)


def test_reload_keeps_project_and_annotator(home: Path) -> None:
    at = _run(AppTest.from_file(APP, default_timeout=60))
    assert at.query_params.get("demo") == ["textile"] or at.query_params.get("demo") == "textile"
    at.switch_page("pages/project.py")
    _run(at)
    at.text_input(key="prj_annotator_input").input("dr. ada")
    _run(at)
    assert at.query_params["annotator"] in ("dr. ada", ["dr. ada"])
    # a reload is a new session with the same URL
    again = AppTest.from_file(APP, default_timeout=60)
    again.query_params = {"demo": "textile", "annotator": "dr. ada"}
    _run(again)
    pick(again, f"{_batch_key(again)}_0", 0)
    _run(again)
    with Store.open(home / "projects" / "textile" / "project.db") as db:
        assert [e.annotator for e in db.events()] == ["dr. ada"]


def test_default_annotator_is_the_os_user_and_names_are_checked(home: Path) -> None:
    at = _run(AppTest.from_file(APP, default_timeout=60))
    assert any("Single-user mode" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/project.py")
    _run(at)
    assert at.text_input(key="prj_annotator_input").value == getpass.getuser()
    at.text_input(key="prj_annotator_input").input("evil\u202ename")
    _run(at)
    assert any("invisible or control" in e.value for e in at.error)
    assert "annotator" not in at.query_params  # nothing was accepted


def test_link_to_an_unknown_folder_is_not_opened(home: Path, tmp_path: Path) -> None:
    from activekd_core.project import open_demo

    stranger = tmp_path / "elsewhere"
    with open_demo("digits", base_dir=stranger, per_class=2):
        pass
    folder = stranger / "projects" / "digits"
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params = {"project": str(folder)}
    _run(at)
    assert any("has not opened before" in w.value for w in at.warning)
    assert at.query_params.get("demo") in ("textile", ["textile"])  # the default demo, not the linked folder
    recent.remember(home, folder)  # once the user opened it, the same link works
    at2 = AppTest.from_file(APP, default_timeout=60)
    at2.query_params = {"project": str(folder)}
    _run(at2)
    assert not at2.warning and any("digits" in m.value for m in at2.sidebar.markdown)


def test_login_mode_signed_in_user_is_the_annotator(home: Path) -> None:
    pytest.importorskip("authlib")
    signed_out = AppTest.from_file(APP, default_timeout=60)
    signed_out.secrets["auth"] = AUTH
    signed_out.user = {"is_logged_in": False}
    _run(signed_out)
    assert signed_out.button(key="akd_login") is not None
    assert not [b for b in signed_out.button if b.key and b.key.startswith("lbl_")]  # no app content
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "email": "ada@example.org", "name": "Ada"}
    _run(at)
    assert any("Signed in as ada@example.org" in t.value for t in at.sidebar.text)
    pick(at, f"{_batch_key(at)}_0", 0)
    _run(at)
    at.switch_page("pages/project.py")
    _run(at)
    locked = at.text_input(key="prj_annotator_locked")
    assert locked.disabled and locked.value == "ada@example.org"
    assert "annotator" not in at.query_params  # the sign-in decides, not the URL
    with Store.open(home / "projects" / "textile" / "project.db") as db:
        assert [e.annotator for e in db.events()] == ["ada@example.org"]
    st.cache_resource.clear()
