"""The Explore page's view model (no Streamlit): the pool's arrays, the 2-D layouts, the selection
demo's strategies, the coverage curve and the selection linked across the charts.

The arrays come from :mod:`activekd_core.explore_state` (re-exported here); layouts from
:mod:`activekd_core.projection`: PCA at once, UMAP from a warm background worker
(:class:`LayoutJob`, one per project layout cache, owned by the page's server-wide cache)
with its results on disk; coverage from :mod:`activekd_core.coverage`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from activekd_core import projection, projection_sample
from activekd_core.coverage import GreedyTrace, coverage_curve
from activekd_core.explore_state import (
    LinkedSelection,
    PoolState,
    coverage_inputs,
    display_rows,
    greedy_steps,
    read_pool_state,
    selection_space_probs,
)
from activekd_core.layout_worker import LayoutJob
from activekd_core.projection import Layout, LayoutParams, display_subset

if TYPE_CHECKING:
    from activekd_core.project import Project

__all__ = [
    "PoolState",
    "LinkedSelection",
    "display_rows",
    "read_pool_state",
    "selection_space_probs",
    "greedy_steps",
    "coverage_inputs",
    "coverage_curve",
    "GreedyTrace",
    "Layout",
    "LayoutJob",
    "LayoutParams",
    "LayoutWait",
    "display_subset",
    "DEMO_STRATEGIES",
    "demo_strategies",
    "layout_cache_dir",
    "make_layout_job",
    "pca_layouts",
    "umap_layouts",
    "sample_note",
    "sampling_help",
    "layout_failed",
    "layout_wait",
]

def sampling_help() -> str:
    """What the page's help says about layouts of large pools (from the thresholds in force)."""
    return (f"layouts use every image up to {projection_sample.LARGE_POOL:,} images; larger pools are laid "
            f"out from a seeded sample of {projection_sample.FIT_SAMPLE:,}")


DEMO_STRATEGIES = ("pcoreset", "entropy", "random", "coreset")  # what the selection demo offers, in order


@dataclass(frozen=True)
class LayoutWait:
    """Layouts still computing in the background.

    Attributes:
        elapsed: Seconds the longest-running one has computed so far.
        warm: Whether the worker has compiled UMAP already (else that adds about a minute).
    """

    elapsed: float
    warm: bool


def demo_strategies() -> list[str]:
    """The strategies of :data:`DEMO_STRATEGIES` that this build registers, in that order."""
    from activekd_core.selection import STRATEGIES  # the strategies load scikit-learn: only when asked

    return [s for s in DEMO_STRATEGIES if s in STRATEGIES]


def layout_cache_dir(project: Project) -> str:
    """The project's on-disk layout cache (one UMAP worker per cache)."""
    return str(project.path("cache", "layouts"))


def make_layout_job(cache_dir: str) -> LayoutJob:
    """The UMAP worker for ``cache_dir``, not started yet.

    It starts with the first layout missing from the disk cache (not before: its numba
    warm-up costs about a minute of CPU) and then stays warm for later requests.
    """
    return LayoutJob(cache_dir, warm_metrics=("euclidean",), threads=1, start=False)


def _spread(state: PoolState, parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``(N, 2)`` float32 coordinates, NaN except at the given ``(rows, coords)`` parts."""
    out = np.full((state.n, 2), np.nan, dtype=np.float32)
    for rows, coords in parts:
        out[rows] = coords
    return out


def sample_note(state: PoolState, method: str) -> str:
    """What a large pool's layout was fitted on, for the page."""
    n_fit = 0 if state.fit_rows is None else int(state.fit_rows.size)
    return f"{method} fitted on {n_fit:,} of {state.n:,} images (seeded sample); drawn points only"


def _sampled_pca(state: PoolState, probs: np.ndarray, params: LayoutParams, rows: np.ndarray,
                 *, key: str | None = None, pending: bool = False, note: str = "") -> Layout:
    """A large pool's PCA: fitted on its fit rows, applied to ``rows`` only."""
    assert state.fit_rows is not None
    fit_p = projection_sample.rows_of(probs, state.fit_rows)
    pca = projection_sample.SampledPca.fit(fit_p, params.metric, seed=params.seed)
    coords = _spread(state, [(rows, pca.transform(projection_sample.rows_of(probs, rows)))])
    return Layout(coords, params, key or projection.layout_key(fit_p, params.as_pca()), "pca", pending=pending,
                  note=note or sample_note(state, "PCA"), meta={"n_fit": int(state.fit_rows.size)})


def pca_layouts(state: PoolState, params: LayoutParams, rows: np.ndarray | None = None) -> tuple[Layout, Layout | None]:
    """Teacher and student PCA layouts, computed at once (no student before round 1).

    For a large pool (``state.sampled``) PCA is fitted on the fit rows and only ``rows`` (the
    drawn ones) get coordinates; the others are NaN.
    """
    if state.sampled:
        drawn = np.asarray(state.fit_rows if rows is None else rows, dtype=np.int64)
        t = _sampled_pca(state, state.teacher, params, drawn)
        return t, None if state.student is None else _sampled_pca(state, state.student, params, drawn)
    t = projection.compute_layout(state.teacher, params)
    s = projection.compute_layout(state.student, params) if state.student is not None else None
    return t, s


def _sampled_umap(job: LayoutJob, state: PoolState, probs: np.ndarray, params: LayoutParams, rows: np.ndarray,
                  group: str, retry: bool) -> Layout:
    """A large pool's UMAP: fitted on the fit rows in the worker (cached on disk under the key of
    that sample); the other drawn rows placed on it here by their nearest fit rows. A sampled PCA
    stand-in while the fit computes or after it failed."""
    assert state.fit_rows is not None
    fit_p = projection_sample.rows_of(probs, state.fit_rows)
    fit = job.request(fit_p, params, group=group, retry=retry)
    if fit.pending:
        status = job.status(fit.key)
        failed = status is not None and status.state == "failed"
        note = f"UMAP failed: {status.error}" if failed and status is not None else (
            sample_note(state, "UMAP") + ": computing; PCA shown meanwhile")
        return _sampled_pca(state, probs, params, rows, key=fit.key, pending=True, note=note)
    extra = np.setdiff1d(rows, state.fit_rows)
    placed = projection_sample.place_by_neighbours(fit_p, fit.coords, projection_sample.rows_of(probs, extra),
                                                   metric=params.metric, k=params.n_neighbors)
    coords = _spread(state, [(state.fit_rows, fit.coords), (extra, placed)])
    note = sample_note(state, "UMAP") + (f"; {extra.size:,} labeled/picked images outside the sample placed by "
                                         "their nearest sampled neighbours" if extra.size else "")
    return Layout(coords, params, fit.key, "umap-sample", from_cache=fit.from_cache, note=note,
                  meta=dict(fit.meta, n_fit=int(state.fit_rows.size), n_placed=int(extra.size)))


def umap_layouts(job: LayoutJob, state: PoolState, params: LayoutParams,
                 retry: bool = False, rows: np.ndarray | None = None) -> tuple[Layout, Layout | None]:
    """Teacher and student UMAP layouts: from the disk cache, else pending (a PCA stand-in) while
    ``job`` computes them.

    A new student is first placed on last round's map (when the worker still holds that
    fit), so the page shows it at once while the refit computes. A large pool
    (``state.sampled``) gets UMAP fitted on its fit rows with the drawn ``rows`` outside them
    placed by their nearest fit rows: coordinates for the fit rows and ``rows`` only.
    """
    if state.sampled:
        drawn = np.asarray(state.fit_rows if rows is None else rows, dtype=np.int64)
        t = _sampled_umap(job, state, state.teacher, params, drawn, "teacher", retry)
        s_ = None if state.student is None else _sampled_umap(job, state, state.student, params, drawn,
                                                             "student", retry)
        return t, s_
    s = None
    if state.student is not None:
        s = job.cache.load(projection.layout_key(state.student, params))
        if s is None and len(state.rounds) >= 2:
            prev = job.cache.load(projection.layout_key(state.rounds[-2][1], params))
            if prev is not None and prev.method_used == "umap":
                tr = job.request_transform(state.student, prev, group="student-transform")
                if not tr.pending:
                    s = tr
    t = job.request(state.teacher, params, group="teacher", retry=retry)
    if state.student is not None:
        fit = job.request(state.student, params, group="student", retry=retry)
        if s is None or not fit.pending:
            s = fit
    return t, s


def layout_failed(job: LayoutJob, layout: Layout) -> bool:
    """True when the background UMAP of ``layout`` failed (the PCA stand-in stays; no polling)."""
    status = job.status(layout.key)
    return status is not None and status.state == "failed"


def layout_wait(job: LayoutJob, keys: tuple[str, ...]) -> LayoutWait | None:
    """How long the pending layouts ``keys`` have computed, or None once each is on disk or failed."""
    waiting = []
    for key in keys:
        if job.cache.load(key) is not None:
            continue
        status = job.status(key)
        if status is not None and status.state in ("failed", "superseded"):
            continue
        waiting.append(status)
    if not waiting:
        return None
    return LayoutWait(max((w.elapsed() for w in waiting if w is not None), default=0.0), job.is_warm)
