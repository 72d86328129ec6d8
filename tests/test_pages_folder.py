"""The one Streamlit patch the ``pages/`` folder name forces (``pages._pages_folder``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.runtime.pages_manager import PagesManager

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the app folder, as app.py puts it
from pages._pages_folder import leave_pages_folder_mode  # noqa: E402


def test_a_deep_link_into_a_fresh_server_leaves_the_pages_folder_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # what Streamlit decides before the first run when that run is ``pages/train.py`` itself
    monkeypatch.setattr(PagesManager, "uses_pages_directory", True)
    assert leave_pages_folder_mode() is True  # outside a script run: no rerun to ask for
    assert PagesManager.uses_pages_directory is False
    assert leave_pages_folder_mode() is False  # once off, every later page import leaves it alone
