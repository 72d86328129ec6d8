"""The pool-wide percentile stretch of a project's rasters, computed once and stored in its recipe.

A recipe with ``stretch="percentile"`` (or ``"auto"`` on 16-bit/float data) maps each band's
low/high percentile to 0..255. Computed per image, two neighbouring chips of one scene
would get different colours; so a project computes the limits once, on a sample of its
pool, and stores them in ``DisplayRecipe.band_ranges``.

:func:`pool_band_ranges` picks the sample: :func:`survey_rasters` looks at the headers
of up to ``max_files`` pool files, in an order drawn with the seed, opened confined to the
image root, and keeps the TIFFs that need the raster reader
(``image_formats.needs_raster_reader``; with ``stretch="auto"`` 8-bit rasters are left
out, they are not stretched); one item (the whole raster or one of its chips) of each of
the first ``max_items`` of them is read by
:func:`activekd_core.raster_display.compute_band_ranges`. :func:`with_pool_band_ranges`
returns the recipe with those ranges stored.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from typing import BinaryIO

import numpy as np

from activekd_core import image_formats
from activekd_core.display_recipe import DisplayRecipe
from activekd_core.image_items import ItemRef
from activekd_core.image_open import ImageLoadError, open_image_file
from activekd_core.image_pool import ImagePool
from activekd_core.raster_display import compute_band_ranges
from activekd_core.raster_header import inspect_raster

MAX_SAMPLE_ITEMS = 32  # raster items read for the stretch
MAX_SAMPLE_FILES = 4096  # files whose header is looked at to find them


def uses_band_ranges(recipe: DisplayRecipe) -> bool:
    """Whether the recipe's stretch can use stored band ranges (``"percentile"`` or ``"auto"``)."""
    return recipe.stretch in ("percentile", "auto")


def survey_rasters(
    pool: ImagePool, recipe: DisplayRecipe, *, max_files: int = MAX_SAMPLE_FILES, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Look at the headers of up to ``max_files`` pool files (in an order drawn with ``seed``).

    Returns:
        ``(file ids of the rasters the recipe stretches, in that order, problems)``: a
        problem is ``"<file id>: <reason>"`` for a TIFF the recipe cannot show (e.g. a band
        it names is missing), at most five of them.
    """
    files = list(dict.fromkeys(pool.item_ref(image_id).file_id for image_id in pool.ids))
    order = np.random.default_rng(seed).permutation(len(files))[:max_files]
    stretched: list[str] = []
    problems: list[str] = []
    for index in order:
        file_id = files[int(index)]
        try:
            with open_image_file(pool.root, file_id) as fh:
                if image_formats.sniff_format(fh, file_id) != "tiff":
                    continue
                fh.seek(0)
                info = inspect_raster(fh, recipe, name=file_id)
        except ImageLoadError as exc:
            if len(problems) < 5:
                problems.append(f"{file_id}: {exc}")
            continue
        except (OSError, ValueError):
            continue
        if image_formats.needs_raster_reader(info, recipe) and not (
            recipe.stretch == "auto" and info.dtype in ("uint8", "bool")
        ):
            stretched.append(file_id)
    return stretched, problems


def pool_band_ranges(
    pool: ImagePool,
    recipe: DisplayRecipe,
    *,
    max_items: int = MAX_SAMPLE_ITEMS,
    max_files: int = MAX_SAMPLE_FILES,
    seed: int = 0,
) -> tuple[tuple[int, float, float], ...]:
    """Per-band ``(band, low, high)`` at the recipe's percentiles over a sample of the pool's rasters.

    Args:
        pool: The project's pool (its root confines every open).
        recipe: Bands, percentiles, nodata and stretch to use.
        max_items: Most raster items read (one per file).
        max_files: Most files whose header is inspected to find rasters.
        seed: Seed of the sample (the same pool and seed give the same ranges).

    Returns:
        The ranges by band; empty when the pool has no raster that is stretched.
    """
    stretched, _problems = survey_rasters(pool, recipe, max_files=max_files, seed=seed)
    refs_of: dict[str, list[ItemRef]] = {}
    for image_id in pool.ids:
        ref = pool.item_ref(image_id)
        refs_of.setdefault(ref.file_id, []).append(ref)
    rng = np.random.default_rng(seed)
    picked = [refs_of[f][int(rng.integers(len(refs_of[f])))] for f in stretched[:max_items]]
    if not picked:
        return ()
    with ExitStack() as stack:
        samples: list[tuple[BinaryIO, tuple[int, int, int, int] | None]] = []
        for ref in picked:
            try:
                fh = stack.enter_context(open_image_file(pool.root, ref.file_id))
            except (OSError, ValueError):
                continue
            samples.append((fh, ref.window))
        return compute_band_ranges(samples, recipe, max_items=max_items, seed=seed)


def with_pool_band_ranges(recipe: DisplayRecipe, pool: ImagePool, *, seed: int = 0) -> DisplayRecipe:
    """The recipe with its ``band_ranges`` computed on the pool (none when its stretch uses none)."""
    if not uses_band_ranges(recipe):
        return replace(recipe, band_ranges=())
    return replace(recipe, band_ranges=pool_band_ranges(pool, replace(recipe, band_ranges=()), seed=seed))
