"""The project folders this user opened or created, kept in ``<home>/recent_projects.json``.

A link (the app keeps the open project in its URL) may name any folder; the app opens one
from a link only when it is listed here or lies under ``<home>/projects`` (the demos), so
a crafted link cannot make it open, scan and serve a folder the user never chose.
"""

from __future__ import annotations

import json
from pathlib import Path

from activekd_core.atomic import atomic_write_text

__all__ = ["RECENT_FILE", "MAX_RECENT", "remember", "recent", "is_known"]

RECENT_FILE = "recent_projects.json"
MAX_RECENT = 50


def _file(home: Path | str) -> Path:
    return Path(home) / RECENT_FILE


def recent(home: Path | str) -> list[str]:
    """Remembered project folders, newest first (a damaged or missing file reads as empty)."""
    try:
        data = json.loads(_file(home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(f) for f in data if isinstance(f, str)][:MAX_RECENT] if isinstance(data, list) else []


def remember(home: Path | str, folder: Path | str) -> None:
    """Put ``folder`` (resolved) first in the list, keeping at most :data:`MAX_RECENT` (atomic write)."""
    entry = str(Path(folder).resolve())
    items = [entry] + [f for f in recent(home) if f != entry]
    atomic_write_text(_file(home), json.dumps(items[:MAX_RECENT], indent=1))


def is_known(home: Path | str, folder: Path | str) -> bool:
    """Whether ``folder`` holds a project and was opened before (or lies under ``<home>/projects``)."""
    try:
        path = Path(folder).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    if not (path / "project.db").is_file():
        return False
    demos = (Path(home).expanduser() / "projects").resolve()
    if path.is_relative_to(demos):
        return True
    return str(path) in recent(home)
