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
import os
import threading
import uuid
from pathlib import Path

import streamlit as st

from activekd_core.display_text import MESSAGE_MAX, NAME_MAX, check_name, md
from activekd_core.image_view import BytesCache, ZoomWindow
from activekd_core.project import Project, ProjectError, open_demo
from activekd_core.view_models import session as vm
from pages._pages_folder import leave_pages_folder_mode

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


# ---- where the session is, kept in the URL (reload, bookmark, shared link) ------------------

URL_PROJECT, URL_DEMO, URL_ANNOTATOR = "project", "demo", "annotator"


def adopt_url_state() -> str | None:
    """Take the open project and the annotator from the URL when this session has none yet.

    Called first on every run (``app.py``), so a reload or a bookmark returns to the same
    project as the same annotator. A project folder from the URL is opened only when it is
    one this server's user opened or created before (:func:`activekd_core.recent.is_known`):
    a link cannot make the app open an arbitrary folder.

    Returns:
        A message to show when the URL named a project that was not opened, else None.
    """
    params = st.query_params
    problem = None
    if pinned_folder() is None and not st.session_state.get(KEY_FOLDER) and not st.session_state.get(KEY_DEMO):
        folder, demo = params.get(URL_PROJECT), params.get(URL_DEMO)
        if folder:
            if vm.is_known_project(activekd_home(), folder):
                st.session_state[KEY_FOLDER] = str(Path(folder).resolve())
            else:
                problem = ("The link names a project folder this app has not opened before; open it on the "
                           "Project page if you trust it.")
        elif demo in DEMOS:
            st.session_state[KEY_DEMO] = demo
    if not auth_configured() and KEY_ANNOTATOR not in st.session_state:
        name = params.get(URL_ANNOTATOR)
        if name:
            try:
                st.session_state[KEY_ANNOTATOR] = check_name(name, "annotator name")
            except ValueError:
                pass
    sync_url()
    return problem


def sync_url() -> None:
    """Write this session's project and annotator into the URL's query parameters."""
    params = st.query_params
    wanted: dict[str, str] = {}
    if pinned_folder() is None:
        if st.session_state.get(KEY_FOLDER):
            wanted[URL_PROJECT] = str(st.session_state[KEY_FOLDER])
        else:
            wanted[URL_DEMO] = str(st.session_state.get(KEY_DEMO) or DEFAULT_DEMO)
    if not auth_configured() and st.session_state.get(KEY_ANNOTATOR):
        wanted[URL_ANNOTATOR] = str(st.session_state[KEY_ANNOTATOR])
    for key in (URL_PROJECT, URL_DEMO, URL_ANNOTATOR):
        value = wanted.get(key)
        if value is None:
            if key in params:
                del params[key]
        elif params.get(key) != value:
            params[key] = value


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
    if not vm.needs_reopen(project):
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
        bar.progress(min(1.0, done / total) if total else 0.0, text=f"{md(message)} {done}/{total}".strip())

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
    vm.remember_project(activekd_home(), folder.resolve())
    forget_page_state()
    sync_url()
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
    sync_url()
    return current_project()


def forget_page_state() -> None:
    """Drop per-project page state (focus, zoom, ...) after switching projects."""
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and (key.startswith("lbl_") or key == "prj_keys"):
            del st.session_state[key]


def use_worker_process() -> bool:
    """Train in a worker process (default) or a thread (``ACTIVEKD_TRAIN_IN_THREAD=1``, e.g. tests)."""
    return os.environ.get("ACTIVEKD_TRAIN_IN_THREAD", "").strip() not in ("1", "true", "yes")


def auth_configured() -> bool:
    """Whether the server runs with Streamlit's login (an ``[auth]`` section in its secrets)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all: single-user mode
        return False


def signed_in_user() -> str | None:
    """The signed-in user's e-mail (else name, else subject) when login is configured, else None."""
    if not auth_configured() or not getattr(st.user, "is_logged_in", False):
        return None
    for claim in ("email", "name", "preferred_username", "sub"):
        value = st.user.get(claim)
        if value:
            return str(value)[:NAME_MAX]
    return None


def default_annotator() -> str:
    """``$ACTIVEKD_ANNOTATOR``, else the operating-system user, else "expert"."""
    import getpass

    env = os.environ.get("ACTIVEKD_ANNOTATOR", "").strip()
    if env:
        return env[:NAME_MAX]
    try:
        return getpass.getuser()[:NAME_MAX] or "expert"
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "expert"


def annotator() -> str:
    """Who is labeling (recorded with every event).

    With login configured it is the signed-in user and cannot be typed; otherwise
    (single-user mode) the name set on the Project page, kept in the URL, defaulting to
    :func:`default_annotator`.
    """
    if auth_configured():
        return signed_in_user() or "(not signed in)"
    return str(st.session_state.get(KEY_ANNOTATOR) or default_annotator())


def session_id() -> str:
    """A stable id for this browser session (recorded with events; scopes undo)."""
    if KEY_SESSION not in st.session_state:
        st.session_state[KEY_SESSION] = uuid.uuid4().hex[:12]
    return str(st.session_state[KEY_SESSION])


def image_path(project: Project, image_id: str) -> Path:
    """The file of ``image_id``, refused unless it lies inside the project's image root
    (checked afresh on every call, see :func:`activekd_core.view_models.session.image_path`).

    Raises:
        activekd_core.paths.PathOutsideRoot: If the id escapes the image root.
        FileNotFoundError: If the file is gone.
    """
    return vm.image_path(project, image_id)


IMAGE_CACHE_MB_DEFAULT = 256


@st.cache_resource(show_spinner=False)
def image_bytes_cache() -> BytesCache:
    """PNG bytes of thumbnails and zoomed views, shared by all sessions, bounded in bytes
    (``$ACTIVEKD_IMAGE_CACHE_MB``, default 256 MB)."""
    raw = os.environ.get("ACTIVEKD_IMAGE_CACHE_MB", "").strip()
    megabytes = int(raw) if raw.isdigit() and int(raw) > 0 else IMAGE_CACHE_MB_DEFAULT
    return BytesCache(megabytes << 20)


def thumbnail(project: Project, image_id: str, box: int = 256) -> bytes:
    """PNG bytes of ``image_id`` fitted into ``box`` pixels (0 = full resolution), cached by file
    identity in the server's image cache (see :func:`activekd_core.view_models.session.thumbnail_png`).

    Raises:
        activekd_core.paths.PathOutsideRoot: If the file escapes the image root.
        FileNotFoundError: If the file is gone.
        activekd_core.images.ImageLoadError: If it cannot be decoded (or was swapped for a
            link out of the root between the check and the decode).
    """
    return vm.thumbnail_png(project, image_id, box, image_bytes_cache())


def zoom_png(project: Project, image_id: str, zoom: float,
             center: tuple[float, float]) -> tuple[bytes, ZoomWindow, tuple[int, int]]:
    """PNG bytes of the part of ``image_id`` a ``zoom`` x view shows around ``center``, that
    window, and the image's upright ``(width, height)`` (only the visible window is
    resampled, see :func:`activekd_core.view_models.session.zoom_png`)."""
    return vm.zoom_png(project, image_id, zoom, center, image_bytes_cache())


def show_project_error(exc: BaseException) -> None:
    """Show why the project could not be opened, with a pointer to the Project page."""
    st.error(f"Cannot open the project: {md(exc, MESSAGE_MAX)}")
    st.info("Choose or create a project on the **Project** page.")


def strategy_score_label(name: str) -> str:
    """What a strategy's per-pick score means (e.g. "distance to nearest labeled"), or "score"."""
    return vm.strategy_score_label(name)


@st.cache_data(show_spinner=False, max_entries=64)
def _teacher_top(_project: Project, folder: str, batch_key: str, ids: tuple[str, ...]) -> dict[str, tuple[str, float]]:
    return vm.teacher_top(_project, ids)  # never refits on the server: the teacher as of its last pass


def teacher_suggestions(project: Project, batch_key: str, ids: tuple[str, ...]) -> dict[str, tuple[str, float]]:
    """Image id -> (teacher's top class, its probability) from the teacher's cached probabilities.

    Empty when the teacher has not been run on this pool yet (nothing is computed here).
    """
    return _teacher_top(project, str(project.folder), batch_key, ids)


leave_pages_folder_mode()
