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
    pages.append(st.Page("pages/project.py", title="Project", icon=":material/folder_open:"))
    return pages


def _sidebar() -> None:
    from activekd_core.display_text import MESSAGE_MAX, md
    from pages._session import annotator, current_project

    try:
        project = current_project()
    except Exception as exc:  # shown on every page; the Project page lets the user fix it
        st.sidebar.error(f"No project open: {md(exc, MESSAGE_MAX)}")
        return
    st.sidebar.markdown(f"**{md(project.name)}**")
    counts = project.counts()
    st.sidebar.caption(f"{counts['labeled']}/{counts['total']} labeled · annotator: {md(annotator())}")


nav = st.navigation(_pages())
_sidebar()
nav.run()
