"""ActiveKD Studio: ``streamlit run app.py``.

With no project chosen the built-in textile demo opens, ready to label. The pages:
Label, Train, Explore, Teacher bias (when installed) and Project (open, create, import,
export). All work goes through :mod:`activekd_core`; pages hold no algorithm.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `pages._session` and `activekd_core` import from the app folder
    sys.path.insert(0, str(HERE))


def _refuse_foreign_connections() -> None:
    """Serve nothing to a browser on another site or at a host name this server does not have.

    Runs first on every script run of every page (before any widget exists, so no callback
    of this session can run either). Streamlit's own checks (``server.allowedHosts``,
    ``server.enableCORS``) refuse most of these before the WebSocket opens; this closes
    what they leave open (see :mod:`activekd_core.web_access`).
    """
    from activekd_core.web_access import refusal

    why = refusal(st.context.headers, st.get_option("server.allowedHosts"),
                  st.get_option("server.corsAllowedOrigins"))
    if why is not None:
        st.text(f"Refused: {why}. Open ActiveKD Studio at its own address (README, Security).")
        st.stop()


_refuse_foreign_connections()
# An emoji icon: Streamlit turns it into a data: URL. A ":material/...:" page icon would make
# every browser fetch the favicon from fonts.gstatic.com (nothing may leave this machine).
st.set_page_config(page_title="ActiveKD Studio", page_icon="🏷️", layout="wide")


def _pages() -> list:
    pages = [
        st.Page("pages/label.py", title="Label", icon=":material/label:", default=True),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    ]
    optional = [("pages/explore.py", "Explore", ":material/scatter_plot:"),
                ("pages/teacher_bias.py", "Teacher bias", ":material/balance:")]
    for path, title, icon in optional:
        if os.path.exists(HERE / path):
            pages.append(st.Page(path, title=title, icon=icon))
    pages.append(st.Page("pages/review.py", title="Review", icon=":material/fact_check:"))
    pages.append(st.Page("pages/project.py", title="Project", icon=":material/folder_open:"))
    return pages


def _login_gate() -> None:
    """With Streamlit's login configured, nothing but a sign-in screen until the user signs in."""
    from pages._session import auth_configured

    if not auth_configured() or st.user.is_logged_in:
        return
    st.title("ActiveKD Studio")
    st.write("This server requires you to sign in; every label is recorded under your account.")
    st.button("Sign in", key="akd_login", type="primary", on_click=st.login)
    st.stop()


def _sidebar(box) -> None:
    """Who labels and the open project's counts, drawn after the page so they include its changes."""
    from activekd_core.display_text import MESSAGE_MAX, md
    from pages._session import annotator, auth_configured, current_project

    if auth_configured():
        box.text(f"Signed in as {annotator()}")
        box.button("Sign out", key="akd_logout", on_click=st.logout)
    else:
        box.caption("Single-user mode: no login is configured; set the annotator on the Project page.")
    try:
        project = current_project()
    except Exception as exc:  # shown on every page; the Project page lets the user fix it
        box.error(f"No project open: {md(exc, MESSAGE_MAX)}")
        return
    box.markdown(f"**{md(project.name)}**")
    counts = project.counts()
    box.caption(f"{counts['labeled']}/{counts['total']} labeled · annotator: {md(annotator())}")


def _restore_from_url() -> None:
    from pages._session import adopt_url_state

    problem = adopt_url_state()
    if problem:
        st.warning(problem)


# st.navigation first: it ends Streamlit's pages-folder mode before pages._session is imported
# (which would otherwise rerun the script once, see pages._session._leave_pages_folder_mode).
nav = st.navigation(_pages())
_login_gate()
_restore_from_url()
_sidebar_box = st.sidebar.container()
try:
    nav.run()
finally:  # after the page, so counts include what it just did (an import, a label)
    _sidebar(_sidebar_box)
