"""The one Streamlit patch the ``pages/`` folder name forces (imported by :mod:`pages._session`)."""

from __future__ import annotations

import streamlit as st


def leave_pages_folder_mode() -> bool:
    """Make a deep link into a fresh server (e.g. ``/train``) run ``app.py``'s navigation.

    Returns:
        True when the flag was switched off here (a rerun through ``app.py`` follows when a
        script run is in progress), False when there was nothing to do.
    """
    # Why: Streamlit decides per server process, before the first run, that an app with a
    # ``pages/`` folder next to its main script is an old-style multipage app; only
    # ``st.navigation`` in ``app.py`` switches that off. If the very first run is a deep link,
    # Streamlit runs ``pages/<page>.py`` directly, ``app.py`` never runs and the sidebar lists
    # every file of the folder. The product's layout fixes the folder's name, so every page
    # switches the flag off here (through ``pages._session``) and reruns through ``app.py``.
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a future Streamlit without the flag: nothing to do
        return False
    if not getattr(PagesManager, "uses_pages_directory", None):
        return False
    PagesManager.uses_pages_directory = False
    if st.runtime.exists():
        st.rerun()
    return True
