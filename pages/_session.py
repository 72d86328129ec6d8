"""Shared page helpers: which project is open, cached resources, who is labeling.

Every page imports from here (``from pages._session import current_project``) so that
all pages of a browser session work on the same :class:`activekd_core.project.Project`.

Which project is open, in order of precedence:

1. ``ACTIVEKD_PROJECT`` (a project folder) when set in the environment: the server is
   pinned to that project and the Project page cannot switch away from it.
2. The project chosen on the Project page (kept in ``st.session_state``).
3. The built-in textile demo, created on first use under ``$ACTIVEKD_HOME``
   (default ``~/.activekd``) with :func:`activekd_core.project.open_demo`.
   ``ACTIVEKD_DEMO_PER_CLASS`` keeps only that many images per class (tests, quick looks).

Projects are cached with ``st.cache_resource`` (one open :class:`Project` per folder,
shared by all sessions of this server process; the store and project guard their own
state with locks, so sharing across the script threads is safe). Nothing here computes
anything heavy on a rerun: thumbnails are cached by file identity.
"""

from __future__ import annotations

import gc
import io
import os
import threading
import uuid
from pathlib import Path

import streamlit as st

from activekd_core.paths import resolve_inside
from activekd_core.project import Project, ProjectError, open_demo

DEMOS = ("textile", "digits")
DEFAULT_DEMO = "textile"
_OPEN_LOCK = threading.Lock()

# session_state keys (kept in one place so pages do not invent their own spellings)
KEY_FOLDER = "akd_project_folder"
KEY_DEMO = "akd_demo"
KEY_ANNOTATOR = "akd_annotator"
KEY_SESSION = "akd_session_id"


def activekd_home() -> Path:
    """Base folder for demo data and demo projects (``$ACTIVEKD_HOME`` or ``~/.activekd``)."""
    return Path(os.environ.get("ACTIVEKD_HOME") or "~/.activekd").expanduser()


def demo_per_class() -> int | None:
    """Images per class for demo projects (``$ACTIVEKD_DEMO_PER_CLASS``), or None for all.

    Raises:
        ValueError: If the variable is set but is not a positive whole number.
    """
    raw = os.environ.get("ACTIVEKD_DEMO_PER_CLASS", "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ACTIVEKD_DEMO_PER_CLASS must be a positive whole number, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"ACTIVEKD_DEMO_PER_CLASS must be a positive whole number, got {raw!r}")
    return value


def pinned_folder() -> Path | None:
    """The project folder fixed by ``$ACTIVEKD_PROJECT``, or None."""
    raw = os.environ.get("ACTIVEKD_PROJECT", "").strip()
    return Path(raw).expanduser() if raw else None


def demo_folder(name: str) -> Path:
    """Where the demo project ``name`` lives (the layout of :func:`open_demo`)."""
    return activekd_home() / "projects" / name


def current_demo() -> str | None:
    """The demo name when the open project is a demo, else None."""
    if pinned_folder() is not None:
        return None
    if st.session_state.get(KEY_FOLDER):
        return None
    return st.session_state.get(KEY_DEMO) or DEFAULT_DEMO


def project_folder() -> Path:
    """The folder of the project this session works on (see the module docstring)."""
    pinned = pinned_folder()
    if pinned is not None:
        return pinned
    chosen = st.session_state.get(KEY_FOLDER)
    if chosen:
        return Path(chosen)
    return demo_folder(st.session_state.get(KEY_DEMO) or DEFAULT_DEMO)


def _settle(project: Project) -> Project:
    """Move what is loaded so far (modules, the project's pool) out of the garbage collector's sight.

    The long-lived objects of a server (imported libraries, a 100k-image pool) otherwise get
    re-scanned by every full collection, which lands on about one click in ten as a
    100-200 ms pause; frozen objects are never collected but are not garbage either.
    """
    gc.collect()
    gc.freeze()
    return project


@st.cache_resource(show_spinner=False, max_entries=16)
def _open_folder(folder: str) -> Project:
    with _OPEN_LOCK:
        return _settle(Project.open(folder))


@st.cache_resource(show_spinner=False, max_entries=4)
def _open_demo(name: str, home: str, per_class: int | None) -> Project:
    with _OPEN_LOCK:
        return _settle(open_demo(name, base_dir=home, per_class=per_class))


def current_project() -> Project:
    """The open project of this session (cached per folder, shared across sessions).

    A cached project whose ``project.db`` was removed or replaced since it was opened (the
    folder deleted and re-created while the server runs), or through which SQLite reported
    damage, is dropped from the cache and opened again from the file now at that path, so
    no session keeps working on a deleted or broken file.

    Raises:
        ProjectError: If the chosen folder holds no project.
        activekd_core.store.SchemaVersionError: If it was written by a newer version.
        activekd_core.store.DatabaseDamagedError: If the database is damaged (the message
            says how to recover).
    """
    demo = current_demo()
    if demo is not None:
        if not (demo_folder(demo) / "project.db").is_file():
            return _first_open_demo(demo)
        args: tuple = (demo, str(activekd_home()), demo_per_class())
        return _fresh(_open_demo, args)
    return _fresh(_open_folder, (str(project_folder().resolve()),))


def _fresh(opener, args: tuple) -> Project:
    """``opener(*args)`` from the cache, reopened once when its database file is stale or damaged."""
    project = opener(*args)
    if not (project.store.replaced() or project.store.damage):
        return project
    try:
        opener.clear(*args)  # only this entry (the other projects stay open)
    except TypeError:  # a Streamlit without per-argument clearing
        opener.clear()
    if opener is _open_demo and not (demo_folder(args[0]) / "project.db").is_file():
        return _first_open_demo(args[0])
    return opener(*args)


def _first_open_demo(name: str) -> Project:
    """Create the demo project on first use, showing what is being done."""
    status = st.status(f"Preparing the {name} demo project (first start only: writing the images, "
                       "scanning them, selecting the first batch)...", expanded=True)
    bar = status.progress(0.0)

    def progress(done: int, total: int, message: str = "") -> None:
        bar.progress(min(1.0, done / total) if total else 0.0, text=f"{message} {done}/{total}".strip())

    with _OPEN_LOCK:  # created here, outside the cache (elements cannot be drawn from a cached call)
        open_demo(name, base_dir=activekd_home(), per_class=demo_per_class(), progress=progress).close()
    project = _open_demo(name, str(activekd_home()), demo_per_class())
    status.update(label=f"The {name} demo is ready.", state="complete", expanded=False)
    return project


def open_project_folder(folder: Path | str) -> Project:
    """Open an existing project folder and make it this session's project.

    Raises:
        ProjectError: If ``$ACTIVEKD_PROJECT`` pins the server to another project, or the
            folder holds no project.
    """
    folder = Path(folder).expanduser()
    if pinned_folder() is not None:
        raise ProjectError(f"this server is pinned to {pinned_folder()} by ACTIVEKD_PROJECT; "
                           "restart it without that variable to switch projects")
    project = _open_folder(str(folder.resolve()))
    st.session_state[KEY_FOLDER] = str(folder.resolve())
    st.session_state.pop(KEY_DEMO, None)
    forget_page_state()
    return project


def open_demo_project(name: str) -> Project:
    """Switch this session to the built-in demo ``name`` (created on first use).

    Raises:
        ProjectError: If ``$ACTIVEKD_PROJECT`` pins the server, or ``name`` is unknown.
    """
    if name not in DEMOS:
        raise ProjectError(f"unknown demo {name!r}; choose one of {list(DEMOS)}")
    if pinned_folder() is not None:
        raise ProjectError(f"this server is pinned to {pinned_folder()} by ACTIVEKD_PROJECT; "
                           "restart it without that variable to switch projects")
    st.session_state.pop(KEY_FOLDER, None)
    st.session_state[KEY_DEMO] = name
    forget_page_state()
    return current_project()


def forget_page_state() -> None:
    """Drop per-project page state (focus, zoom, ...) after switching projects."""
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith("lbl_"):
            del st.session_state[key]


def annotator() -> str:
    """Who is labeling (recorded with every event); set on the Project page."""
    name = st.session_state.get(KEY_ANNOTATOR) or os.environ.get("ACTIVEKD_ANNOTATOR") or "expert"
    return str(name)


def session_id() -> str:
    """A stable id for this browser session (recorded with events; scopes undo)."""
    if KEY_SESSION not in st.session_state:
        st.session_state[KEY_SESSION] = uuid.uuid4().hex[:12]
    return str(st.session_state[KEY_SESSION])


def image_path(project: Project, image_id: str) -> Path:
    """The file of ``image_id``, refused unless it lies inside the project's image root.

    Checked afresh on every call (never cached: a file may be replaced by a symbolic link
    at any time). Files are read through :func:`activekd_core.images.load_image`, which
    checks again at the moment of opening.

    Raises:
        activekd_core.paths.PathOutsideRoot: If the id escapes the image root.
        FileNotFoundError: If the file is gone.
    """
    return resolve_inside(project.image_root, image_id, must_exist=True)


def image_size(project: Project, image_id: str) -> tuple[int, int]:
    """``(width, height)`` of ``image_id`` from its header, opened confined to the image root.

    Raises:
        activekd_core.paths.PathOutsideRoot: If the file escapes the image root.
        OSError: If it cannot be read.
    """
    from PIL import Image

    from activekd_core.images import open_image_file

    with open_image_file(project.image_root, image_id) as fh, Image.open(fh) as img:
        return img.size


@st.cache_data(show_spinner=False, max_entries=4096)
def _thumbnail_png(root: str, image_id: str, mtime_ns: int, size: int, box: int) -> bytes:
    from activekd_core.images import load_image

    # Opened confined to the root at this moment; decoded at the size the box needs.
    img = load_image(root, image_id, draft_size=box if box > 0 else None)
    if box > 0:
        w, h = img.size
        factor = box // max(w, h)
        if factor >= 2:  # small images (digits are 8x8): whole-number upscale, crisp pixels
            img = img.resize((w * factor, h * factor), resample=0)
        elif max(w, h) > box:
            img.thumbnail((box, box))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def thumbnail(project: Project, image_id: str, box: int = 256) -> bytes:
    """PNG bytes of ``image_id`` fitted into ``box`` pixels (0 = full resolution), cached.

    Large images are shrunk to fit; images at most half of ``box`` are enlarged by a
    whole-number factor with nearest-neighbour sampling (no invented detail).

    The cache key is the root, the id, the file's modification time and size, so a
    changed file is re-read and an unchanged one never is; the id is checked against the
    root on every call, and a decode opens the file confined to the root.

    Raises:
        activekd_core.paths.PathOutsideRoot: If the file escapes the image root.
        FileNotFoundError: If the file is gone.
        activekd_core.images.ImageLoadError: If it cannot be decoded (or was swapped for a
            link out of the root between the check and the decode).
    """
    path = image_path(project, image_id)
    stat = path.stat()
    return _thumbnail_png(str(project.image_root), image_id, stat.st_mtime_ns, stat.st_size, box)


def show_project_error(exc: BaseException) -> None:
    """Show why the project could not be opened, with a pointer to the Project page."""
    st.error(f"Cannot open the project: {exc}")
    st.info("Choose or create a project on the **Project** page.")


@st.cache_resource(show_spinner=False)
def _locks() -> dict[str, threading.Lock]:
    return {}


def batch_lock(folder: str) -> threading.Lock:
    """A lock per project folder, shared by all sessions of this server process.

    Held while a new query batch is selected, so two sessions finishing the same
    batch select one new batch, not two.
    """
    locks = _locks()
    with _OPEN_LOCK:
        return locks.setdefault(folder, threading.Lock())


def strategy_score_label(name: str) -> str:
    """What a strategy's per-pick score means (e.g. "distance to nearest labeled"), or "score"."""
    try:
        from activekd_core.selection import STRATEGIES

        return str(getattr(STRATEGIES[name], "score_label", "") or "score")
    except (ImportError, KeyError):
        return "score"


@st.cache_data(show_spinner=False, max_entries=64)
def _teacher_top(_project: Project, folder: str, batch_key: str, ids: tuple[str, ...]) -> dict[str, tuple[str, float]]:
    probs = _project.cached_teacher_probs()  # never refits on the server: the teacher as of its last pass
    if probs is None:
        return {}
    row_of = _project.row_of()
    classes = _project.classes
    out = {}
    for image_id in ids:
        row = probs[row_of[image_id]]
        k = int(row.argmax())
        out[image_id] = (classes[k], float(row[k]))
    return out


def teacher_suggestions(project: Project, batch_key: str, ids: tuple[str, ...]) -> dict[str, tuple[str, float]]:
    """Image id -> (teacher's top class, its probability) from the teacher's cached probabilities.

    Empty when the teacher has not been run on this pool yet (nothing is computed here).
    """
    return _teacher_top(project, str(project.folder), batch_key, ids)


def _leave_pages_folder_mode() -> None:
    """Make a deep link into a fresh server (e.g. ``/train``) run ``app.py``'s navigation.

    Streamlit decides per server process, before the first run, that an app with a
    ``pages/`` folder next to its main script is an old-style multipage app, and only
    ``st.navigation`` in ``app.py`` switches that off. If the very first run is a deep
    link, Streamlit runs ``pages/<page>.py`` directly, ``app.py`` never runs and the
    sidebar lists every file of the folder. This module is imported by every page, so
    switch the flag off here and rerun through ``app.py``. (Renaming the folder, e.g. to
    ``views/``, would make this unnecessary.)
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a future Streamlit without the flag: nothing to do
        return
    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        if st.runtime.exists():
            st.rerun()


_leave_pages_folder_mode()
