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

from activekd_core import projection
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
    "layout_failed",
    "layout_wait",
]

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


def pca_layouts(state: PoolState, params: LayoutParams) -> tuple[Layout, Layout | None]:
    """Teacher and student PCA layouts, computed at once (no student before round 1)."""
    t = projection.compute_layout(state.teacher, params)
    s = projection.compute_layout(state.student, params) if state.student is not None else None
    return t, s


def umap_layouts(job: LayoutJob, state: PoolState, params: LayoutParams,
                 retry: bool = False) -> tuple[Layout, Layout | None]:
    """Teacher and student UMAP layouts: from the disk cache, else pending (a PCA stand-in) while
    ``job`` computes them.

    A new student is first placed on last round's map (when the worker still holds that
    fit), so the page shows it at once while the refit computes.
    """
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
