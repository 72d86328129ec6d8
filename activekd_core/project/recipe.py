"""Changing an existing project's display recipe (window, bands, stretch), with its history.

What the page shows, what the teacher encodes and what the student trains on all come
from the project's :class:`~activekd_core.display_recipe.DisplayRecipe`. Changing it
invalidates those caches through their keys, never by deleting files: the pool fingerprint
includes the recipe's key, and the pixel cache (student inputs), the teachers' feature and
probability caches and the page thumbnails are all named by it; the project only forgets
its in-memory pool and teacher so the next read builds them with the new recipe.

The frame mode and the chip size/overlap are fixed at creation: they decide which items
the pool holds (and the ids labels are stored under), so they cannot be changed here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from activekd_core.display_recipe import DisplayRecipe, RecipeError
from activekd_core.pool_stretch import survey_rasters, uses_band_ranges, with_pool_band_ranges
from activekd_core.project.context import ProjectContext, ProjectError
from activekd_core.project.teacher_probs import TeacherProbs
from activekd_core.store import utc_now

RECIPE_HISTORY_SETTING = "display_recipe_history"
ITEM_FIELDS = ("frames", "chip_size", "chip_overlap")  # fixed at creation: they make the pool's items
STRETCH_INPUTS = ("bands", "stretch", "percentiles", "nodata")  # what stored band ranges depend on
MAX_HISTORY = 500


def recipe_history(ctx: ProjectContext) -> list[dict[str, Any]]:
    """Every display recipe change, oldest first: ``{"time", "before", "after", ...note}``."""
    history = ctx.store.get_setting(RECIPE_HISTORY_SETTING)
    return list(history) if isinstance(history, list) else []


def set_display_recipe(ctx: ProjectContext, teacher: TeacherProbs, recipe: DisplayRecipe | dict[str, Any], *,
                       note: dict[str, Any] | None = None) -> DisplayRecipe:
    """Make ``recipe`` the project's display recipe; returns the recipe stored.

    The recipe is validated (a dict goes through :meth:`DisplayRecipe.from_dict`) and
    checked against the pool's rasters (a band it names must exist). Band ranges for the
    percentile stretch are recomputed on a sample of the pool when the bands, stretch,
    percentiles or nodata changed, or when none are stored; ranges the caller set
    explicitly (different from the stored ones) are kept. The new settings and the history
    entry are written in one transaction; then the in-memory pool and teacher are dropped,
    so every later read (thumbnails, teacher features and probabilities, the student's
    pixel cache) uses caches keyed by the new recipe. Storing the recipe already in use
    changes nothing and adds no history entry.

    Args:
        ctx: The project.
        teacher: The project's teacher part (its built teacher is forgotten).
        recipe: The new recipe.
        note: Extra JSON-serialisable fields for the history entry (e.g. ``{"source": "focus mode"}``).

    Raises:
        ProjectError: When the recipe is invalid, changes the frame mode or chips, or names
            bands a raster of the pool does not have (the message says which file).
    """
    if isinstance(recipe, dict):
        try:
            recipe = DisplayRecipe.from_dict(recipe)
        except RecipeError as exc:
            raise ProjectError(f"display recipe not changed: {exc}") from exc
    if not isinstance(recipe, DisplayRecipe):
        raise ProjectError(f"display recipe not changed: need a DisplayRecipe, got {type(recipe).__name__}")
    with ctx.lock:
        current = ctx.recipe
        fixed = [f for f in ITEM_FIELDS if getattr(recipe, f) != getattr(current, f)]
        if fixed:
            raise ProjectError(f"display recipe not changed: {', '.join(fixed)} decide which images the project holds "
                               "and are fixed at creation; create a new project to change them")
        pool = ctx.pool()
        _stretched, problems = survey_rasters(pool, recipe, seed=ctx.seed)
        if problems:
            raise ProjectError("display recipe not changed: it cannot show " + "; ".join(problems))
        recipe = _with_band_ranges(recipe, current, ctx)
        if recipe == current:
            return current
        config = {**ctx.config, "display_recipe": recipe.to_dict()}
        entry = {"time": utc_now(), "before": current.to_dict(), "after": recipe.to_dict(), **(note or {})}
        history = (recipe_history(ctx) + [entry])[-MAX_HISTORY:]
        ctx.store.set_settings({"project": config, RECIPE_HISTORY_SETTING: history})
        ctx.config = config
        ctx._pool = None  # rebuilt with the new recipe: a new fingerprint, so new cache keys
        teacher.reset()
        return recipe


def _with_band_ranges(recipe: DisplayRecipe, current: DisplayRecipe, ctx: ProjectContext) -> DisplayRecipe:
    """``recipe`` with the band ranges it should store (see :func:`set_display_recipe`)."""
    if not uses_band_ranges(recipe):
        return replace(recipe, band_ranges=())
    if recipe.band_ranges and recipe.band_ranges != current.band_ranges:
        return recipe  # set on purpose by the caller
    same_inputs = all(getattr(recipe, f) == getattr(current, f) for f in STRETCH_INPUTS)
    if same_inputs and current.band_ranges:
        return replace(recipe, band_ranges=current.band_ranges)
    return with_pool_band_ranges(recipe, ctx.pool(), seed=ctx.seed)
