"""Focus-mode viewer controls: window/level for single-channel images, bands and stretch for multi-band ones.

:func:`focus_image` is what the Label page's focus mode calls for its picture: a plain
image (PNG, JPEG...) only zooms (``pages._session.zoom_png``); a DICOM frame or a scientific
TIFF item also gets controls, drawn where it is called (the focus view's side column), and
its visible window is drawn with them
(:func:`activekd_core.view_models.session.viewer_png`: the crop only, at most the viewport).

The view is the annotator's own, kept per project and kind of image in their view
preferences; the project's display recipe (what the grid, the teacher and the student see)
changes only with "Save as project recipe".
"""

from __future__ import annotations

import streamlit as st

from activekd_core.display_recipe import WINDOW_PRESETS, RecipeError, window_presets_for
from activekd_core.display_text import MESSAGE_MAX, md
from activekd_core.image_view import ZoomWindow
from activekd_core.project import Project
from activekd_core.view_models import session as vm
from pages._session import annotator, image_bytes_cache, zoom_png

K_PREFIX = "lbl_vw_"  # every viewer widget key starts so (dropped with the page state on a project switch)
K_NOTICE = "lbl_vw_notice"


def focus_image(project: Project, image_id: str, zoom: float,
                pan: tuple[float, float]) -> tuple[bytes, ZoomWindow, tuple[int, int]]:
    """The focus view's picture of ``image_id`` (PNG bytes, the window shown, the item's size),
    drawing the viewer controls first when the image has any.

    Raises:
        Exception: What reading the image raised (the caller shows it).
    """
    info = vm.viewer_info(project, image_id)
    if info is None or info.kind == vm.FIXED:
        return zoom_png(project, image_id, zoom, pan)
    group = vm.viewer_group(info)
    settings = _controls(project, info, group)
    return vm.viewer_png(project, image_id, settings, zoom, pan, image_bytes_cache())


def _key(group: str, name: str) -> str:
    return f"{K_PREFIX}{group}_{name}"


def _controls(project: Project, info: vm.ViewInfo, group: str) -> vm.ViewerSettings:
    """Draw the controls for ``info``'s kind and return the settings they hold now."""
    _seed(project, info, group)
    current = _settings(info, group)
    with st.expander(f"View: {_describe(current, info)}", icon=":material/contrast:"):
        st.caption("Your own view of these images; the project's recipe (what the grid, the teacher and the "
                   "student see) changes only when you save it.")
        if info.kind == vm.GREY:
            _window_controls(project, info, group)
        else:
            _band_controls(project, info, group)
        settings = _settings(info, group)
        st.button("Back to the project's view", key=_key(group, "reset"), on_click=_reset, args=(project, group),
                  disabled=settings is None, help="Forget your own view of these images.")
        st.button("Save as project recipe", key=_key(group, "save"), on_click=_save_recipe,
                  args=(project, info, group), disabled=settings is None,
                  help="Everyone's grid, the teacher and the student then use this view; caches are rebuilt.")
    if K_NOTICE in st.session_state:
        st.caption(md(st.session_state.pop(K_NOTICE), MESSAGE_MAX))
    return settings or vm.ViewerSettings()


def _describe(settings: vm.ViewerSettings | None, info: vm.ViewInfo) -> str:
    """The expander's title: whose view is shown, and its window or bands."""
    if settings is None:
        return "the project's"
    if settings.window is not None:
        return f"yours, window {settings.window[0]:g}/{settings.window[1]:g}"
    bands = ",".join(str(b) for b in settings.bands or ())
    low, high = settings.percentiles or (0, 100)
    return f"yours, bands {bands}, stretch {low:g}-{high:g} %"


def _seed(project: Project, info: vm.ViewInfo, group: str) -> None:
    """Fill the widget state Streamlit dropped (first view, or runs that did not draw these controls)
    from the annotator's kept view, else from the project's."""
    names = ("on", "center", "width", "r", "g", "b", "pct")
    if all(_key(group, n) in st.session_state for n in names):
        return
    kept = vm.viewer_settings(project, annotator(), group)
    lo, hi = info.value_range
    window = (kept.window if kept is not None else None) or info.default_window or ((lo + hi) / 2, max(1.0, hi - lo))
    bands = (kept.bands if kept is not None else None) or ((1, 2, 3) if info.n_bands >= 3 else (1, 1, 1))
    bands = bands if len(bands) == 3 else bands * 3
    pct = (kept.percentiles if kept is not None else None) or project.recipe.percentiles
    values = {"on": kept is not None, "center": _clamp(window[0], lo, hi, info),
              "width": _clamp(window[1], *_width_range(info), info), "pct": (float(pct[0]), float(pct[1]))}
    values.update({c: min(max(int(b), 1), info.n_bands) for c, b in zip("rgb", bands)})
    for name in names:
        st.session_state.setdefault(_key(group, name), values[name])


def _clamp(value: float, lo: float, hi: float, info: vm.ViewInfo) -> float | int:
    value = min(max(float(value), lo), hi)
    return int(round(value)) if _integral(info) else value


def _integral(info: vm.ViewInfo) -> bool:
    lo, hi = info.value_range
    return float(lo).is_integer() and float(hi).is_integer() and hi - lo >= 100


def _width_range(info: vm.ViewInfo) -> tuple[float, float]:
    """Narrowest and widest window the width slider offers."""
    lo, hi = info.value_range
    if _integral(info):
        return (1, max(2, int(hi - lo)))
    span = hi - lo if hi > lo else 1.0
    return (span / 1000, span)


def _window_controls(project: Project, info: vm.ViewInfo, group: str) -> None:
    lo, hi = info.value_range
    presets = window_presets_for(info.modality) if info.is_dicom else []
    if presets:
        st.selectbox("Window preset", ["—", *(p.name for p in presets)], key=_key(group, "preset"),
                     format_func=lambda n: WINDOW_PRESETS[n].label if n in WINDOW_PRESETS else "choose…",
                     on_change=_apply_preset, args=(project, info, group))
    unit = " (HU)" if info.modality == "CT" else ""
    low_w, high_w = _width_range(info)
    if _integral(info):
        st.slider(f"Window centre{unit}", int(lo), int(hi), step=1, key=_key(group, "center"),
                  on_change=_changed, args=(project, info, group))
        st.slider(f"Window width{unit}", int(low_w), int(high_w), step=1, key=_key(group, "width"),
                  on_change=_changed, args=(project, info, group))
    else:
        hi = hi if hi > lo else lo + 1.0
        st.slider("Window centre", float(lo), float(hi), step=(hi - lo) / 1000, key=_key(group, "center"),
                  on_change=_changed, args=(project, info, group))
        st.slider("Window width", float(low_w), float(high_w), step=low_w, key=_key(group, "width"),
                  on_change=_changed, args=(project, info, group))


def _band_controls(project: Project, info: vm.ViewInfo, group: str) -> None:
    cols = st.columns(3)
    for col, channel in zip(cols, "rgb"):
        col.number_input(f"{channel.upper()} band", 1, info.n_bands, step=1, key=_key(group, channel),
                         on_change=_changed, args=(project, info, group))
    st.slider("Stretch percentiles (%)", 0.0, 100.0, step=0.5, key=_key(group, "pct"),
              on_change=_changed, args=(project, info, group))
    st.caption(f"{info.n_bands} bands; the stretch uses the project's pool ranges for its own percentiles, "
               "else the visible area.")


def _settings(info: vm.ViewInfo, group: str) -> vm.ViewerSettings | None:
    """The user's view now (None: the project's)."""
    if not st.session_state.get(_key(group, "on")):
        return None
    state = st.session_state
    try:
        if info.kind == vm.GREY:
            return vm.ViewerSettings(float(state[_key(group, "center")]), float(state[_key(group, "width")]))
        bands = tuple(int(state[_key(group, c)]) for c in "rgb")
        low, high = state[_key(group, "pct")]
        return vm.ViewerSettings(bands=bands, percentiles=(float(low), float(high)))
    except (RecipeError, KeyError, TypeError, ValueError) as exc:
        state[K_NOTICE] = f"View not applied: {exc}"
        return None


def _changed(project: Project, info: vm.ViewInfo, group: str) -> None:
    """A control moved: the view becomes the user's own and is kept for them."""
    st.session_state[_key(group, "on")] = True
    vm.save_viewer_settings(project, annotator(), group, _settings(info, group))


def _apply_preset(project: Project, info: vm.ViewInfo, group: str) -> None:
    name = st.session_state.get(_key(group, "preset"))
    preset = WINDOW_PRESETS.get(name) if isinstance(name, str) else None
    if preset is None:
        return
    lo, hi = info.value_range
    st.session_state[_key(group, "center")] = _clamp(preset.center, lo, hi, info)
    st.session_state[_key(group, "width")] = _clamp(preset.width, *_width_range(info), info)
    st.session_state[_key(group, "preset")] = "—"
    _changed(project, info, group)


def _reset(project: Project, group: str) -> None:
    """Back to the project's view: the kept view is forgotten and the controls re-seeded."""
    vm.save_viewer_settings(project, annotator(), group, None)
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(_key(group, ""))]:
        del st.session_state[key]


def _save_recipe(project: Project, info: vm.ViewInfo, group: str) -> None:
    settings = _settings(info, group)
    if settings is None:
        return
    try:
        vm.save_project_recipe(project, settings.project_recipe(project.recipe, info))
    except (RecipeError, ValueError) as exc:
        st.session_state[K_NOTICE] = f"Recipe not saved: {exc}"
        return
    _reset(project, group)  # the project's view is now this view
    st.session_state[K_NOTICE] = "Saved as the project's display recipe; thumbnails and caches follow it."
