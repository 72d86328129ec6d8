"""Polish a new user noticed (issue 12), checked through the pages with AppTest.

No developer timing on the Label page; a cancelled training round is information (once
worded, no "cancelled: cancelled:"); the round table shows readable start times and no
"None" loss. The sidebar's counts after a label or an import are checked in Chromium
(``tests/test_browser_label_layout.py``): AppTest keeps the sidebar of a first run only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from streamlit.testing.v1 import AppTest  # noqa: E402

from activekd_core.progress import Cancelled  # noqa: E402
from activekd_core.project import Project  # noqa: E402
from test_app_pages import APP, _app, _batch_key, demo_images, home  # noqa: E402,F401
from button_rows import pick  # noqa: E402


def _texts(at: AppTest) -> list[str]:
    """Every text element of the page (markdown, captions, alerts) as Streamlit received it."""
    out = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "text"):
        out += [str(getattr(e, "value", "") or "") for e in at.get(kind)]
    return out


def test_label_page_shows_no_developer_timing(home: Path) -> None:
    at = _app()
    pick(at, f"{_batch_key(at)}_0", 0)
    assert not at.exception, [e.message for e in at.exception]
    assert not any("redrawn in" in t or " ms " in t for t in _texts(at))


def test_a_cancelled_round_is_information_and_its_row_reads_well(home: Path) -> None:
    def stopped(progress, cancel):
        raise Cancelled("stopped by the user")

    with Project.open(home / "projects" / "textile") as project:
        jobs = project.jobs()
        assert jobs.wait(jobs.start_thread("train", stopped), timeout=30).state == "cancelled"
        round_id = project.store.start_round("random", "teacher", picks=[], teacher={"kind": "standin"},
                                             n_labeled=0)
        project.store.finish_round(round_id, "cancelled", error="TrainingCancelled: training cancelled")
    at = _app()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("was cancelled" in i.value for i in at.info)
    assert not any("cancelled: cancelled" in t or "cancelled: stopped" in t for t in _texts(at))
    (table,) = [d.value for d in at.dataframe if "final loss" in d.value.columns]
    row = table.iloc[0]
    assert row["final loss"] == "—"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row["started"]), row["started"]
