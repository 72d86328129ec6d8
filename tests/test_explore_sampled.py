"""Large pools on the Explore page: layouts fitted on a seeded sample, the drawn rows only, and the
page saying so. Tested on small pools with the size threshold lowered (never at 1M)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from activekd_core import projection_sample
from activekd_core.explore_state import PoolState, coverage_inputs, display_rows
from activekd_core.figures import explore as figs
from activekd_core.layout_worker import LayoutJob
from activekd_core.projection import LayoutParams, display_subset, pca_layout
from activekd_core.view_models.explore import pca_layouts, umap_layouts

N = 3000
FIT = 400


def _state(n: int = N, *, sampled: bool = True) -> PoolState:
    rng = np.random.default_rng(3)
    labeled = np.array([5, 17, 2500, 2999])
    return PoolState(
        ids=[f"img/{i:05d}.png" for i in range(n)], classes=["a", "b", "c", "d"],
        teacher=rng.dirichlet(np.ones(4) * 0.5, n).astype(np.float32), student=None,
        student_round=None, student_features=None, human_rows=labeled, human_y=np.array([0, 1, 2, 3]),
        seed_rows=labeled, candidates=np.setdiff1d(np.arange(n), labeled), picked_rounds={1: np.array([17, 2500])},
        query=np.array([1234, 2222]), label_round=np.zeros(4, dtype=np.int64),
        fit_rows=projection_sample.fit_rows(n, FIT) if sampled else None,
    )


def test_fit_rows_are_a_seeded_sample_and_small_pools_use_every_row() -> None:
    a, b = projection_sample.fit_rows(N, FIT), projection_sample.fit_rows(N, FIT)
    assert np.array_equal(a, b) and a.size == FIT and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, projection_sample.fit_rows(N, FIT, seed=1))
    assert np.array_equal(projection_sample.fit_rows(300, FIT), np.arange(300))


def test_drawn_rows_of_a_large_pool_are_the_sample_plus_every_labeled_picked_and_queried_image() -> None:
    state = _state()
    sub = display_rows(state, 200, highlight=np.array([77]))
    drawn = set(sub.indices.tolist())
    keep = {5, 17, 2500, 2999, 1234, 2222, 77}
    assert keep <= drawn and sub.subsampled and sub.n_total == N
    assert drawn - keep <= set(state.fit_rows.tolist())  # random points come from the fit sample
    assert len(drawn) == 200
    assert "200 of 3,000 images shown" in sub.caption()
    # without a sample the old sampler is unchanged (same rows as before this change)
    assert np.array_equal(display_subset(N, 200, keep=sorted(keep)).indices,
                          display_rows(_state(sampled=False), 200, highlight=np.array([77])).indices)


def test_large_pool_pca_is_fitted_on_the_sample_and_covers_the_drawn_rows_only() -> None:
    state = _state()
    rows = display_rows(state, 200).indices
    t, s = pca_layouts(state, LayoutParams(method="pca"), rows)
    assert s is None and t.coords.shape == (N, 2)
    assert np.all(np.isfinite(t.coords[rows])) and np.isnan(np.delete(t.coords, rows, axis=0)).all()
    assert f"fitted on {FIT} of 3,000 images" in t.note
    # the same axes as a PCA fitted on the sample itself (up to sign)
    ref = pca_layout(state.teacher[state.fit_rows])
    pos = np.searchsorted(state.fit_rows, np.intersect1d(rows, state.fit_rows))
    got = t.coords[state.fit_rows[pos]]
    for k in range(2):
        assert min(np.abs(got[:, k] - ref[pos, k]).max(), np.abs(got[:, k] + ref[pos, k]).max()) < 1e-4
    # a small pool keeps today's exact layout over every row
    small, _ = pca_layouts(_state(sampled=False), LayoutParams(method="pca"), rows)
    assert np.allclose(small.coords, pca_layout(_state(sampled=False).teacher))


def test_coverage_of_a_large_pool_is_measured_over_the_sample_plus_labeled_rows() -> None:
    state = _state()
    labeled, spaces, names = coverage_inputs(state)
    rows = np.union1d(state.fit_rows, state.seed_rows)
    assert spaces["teacher"].shape == (rows.size, 4)
    assert np.array_equal(rows[labeled[0]], state.seed_rows)


def test_a_subsampled_figure_is_built_over_drawn_rows_and_keeps_pool_rows_in_customdata(monkeypatch) -> None:
    state = _state()
    rows = display_rows(state, 200).indices
    xy = np.random.default_rng(0).normal(size=(N, 2)).astype(np.float32)
    kw = dict(color_by="teacher", labeled=state.human_rows, y=state.human_y, teacher_probs=state.teacher,
              picked_rounds=state.picked_rounds, query=state.query, ids=state.ids, indices=rows,
              highlight=np.array([17, int(rows[50])]))
    compact = figs.scatter_pair(xy, xy * 2, state.classes, **kw)
    monkeypatch.setattr(figs, "COMPACT_FRACTION", 0.0)  # force the whole-pool path
    full = figs.scatter_pair(xy, xy * 2, state.classes, **kw)
    assert len(compact.data) == len(full.data)
    for a, b in zip(compact.data, full.data):
        assert a.name == b.name and np.array_equal(np.asarray(a.customdata), np.asarray(b.customdata))
        assert np.allclose(np.asarray(a.x, dtype=float), np.asarray(b.x, dtype=float))
        assert list(a.hovertext) == list(b.hovertext)
        assert (a.selectedpoints is None) == (b.selectedpoints is None)
        assert a.selectedpoints is None or np.array_equal(np.asarray(a.selectedpoints), np.asarray(b.selectedpoints))
    assert any(a.selectedpoints is not None and len(a.selectedpoints) for a in compact.data)


def test_umap_memory_estimate_refuses_what_does_not_fit() -> None:
    assert projection_sample.check_umap_memory(50_000, 10, available=64 * 2**30) > 0
    with pytest.raises(projection_sample.UmapTooLarge, match="1,000,000 points"):
        projection_sample.check_umap_memory(1_000_000, 10, available=8 * 2**30)


@pytest.mark.slow
def test_large_pool_umap_is_fitted_on_the_sample_and_places_labeled_rows_by_transform(tmp_path: Path) -> None:
    state = _state()
    rows = display_rows(state, 200).indices
    params = LayoutParams(method="umap", n_neighbors=10)
    with LayoutJob(tmp_path, warm_metrics=()) as job:
        t, _ = umap_layouts(job, state, params, rows=rows)
        assert t.pending and "computing" in t.note and np.all(np.isfinite(t.coords[rows]))  # sampled PCA meanwhile
        assert job.wait(t.key, timeout=600) is not None, job.status(t.key)
        t2, _ = umap_layouts(job, state, params, rows=rows)
    assert not t2.pending and t2.method_used == "umap-sample" and t2.key == t.key
    assert np.all(np.isfinite(t2.coords[rows])) and np.isnan(np.delete(t2.coords, rows, axis=0)[:, 0]).sum() > 0
    outside = np.setdiff1d(rows, state.fit_rows)
    assert outside.size and t2.meta["n_placed"] == outside.size and t2.meta["n_fit"] == FIT
    assert f"UMAP fitted on {FIT} of 3,000 images" in t2.note and "nearest sampled neighbours" in t2.note
    fit = job.cache.load(t.key)
    assert fit is not None and fit.n == FIT  # the worker laid out the sample only


def test_rows_outside_the_sample_land_next_to_their_nearest_sampled_neighbours() -> None:
    fit_p = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    fit_xy = np.array([[-10.0, 0.0], [10.0, 0.0], [0.0, 5.0]], dtype=np.float32)
    new = np.array([[0.99, 0.01], [0.02, 0.98]], dtype=np.float32)
    xy = projection_sample.place_by_neighbours(fit_p, fit_xy, new, k=1)
    assert np.allclose(xy, [[-10.0, 0.0], [10.0, 0.0]])
    both = projection_sample.place_by_neighbours(fit_p, fit_xy, new[:1], k=2)
    assert -10.0 < both[0, 0] < -4.0  # weighted towards the nearer neighbour


def test_explore_page_on_a_pool_above_the_threshold_says_it_fitted_on_a_sample(tmp_path: Path, monkeypatch) -> None:
    import json as _json

    from streamlit.testing.v1 import AppTest

    from activekd_core.project import open_demo

    project = open_demo("textile", base_dir=tmp_path, per_class=4)
    n = len(project.pool().ids)
    monkeypatch.setattr(projection_sample, "LARGE_POOL", 5)
    monkeypatch.setattr(projection_sample, "FIT_SAMPLE", 6)
    monkeypatch.setenv("ACTIVEKD_PROJECT", str(project.folder))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "explore.py"), default_timeout=120)
    at.session_state["exp_method"] = "PCA"
    at.run()
    assert not at.exception and not at.error, [e.message for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    assert f"layouts fitted on 6 of {n} images (seeded sample)" in captions
    assert f"PCA fitted on 6 of {n} images" in captions
    charts = [_json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    scatter = next(c for c in charts if any(t.get("meta", {}).get("role") == "points" for t in c["data"]))
    drawn: list[int] = []
    for t in scatter["data"]:
        if t.get("meta", {}).get("role") == "points":
            cd = t["customdata"]
            if isinstance(cd, dict):  # plotly's base64 typed array
                cd = np.frombuffer(base64.b64decode(cd["bdata"]), dtype=np.dtype(cd["dtype"]))
            drawn += [int(r) for r in np.asarray(cd).reshape(-1)]
    assert sorted(drawn) == list(range(n))  # every image drawn once per panel, customdata = pool rows
    project.close()


def test_a_subsampled_simplex_is_built_over_drawn_rows_and_keeps_pool_rows_in_customdata(monkeypatch) -> None:
    state = _state()
    p3 = np.random.default_rng(4).dirichlet(np.ones(3), N).astype(np.float32)
    rows = display_rows(state, 150).indices
    kw = dict(color_by="human", labeled=state.human_rows, y=state.human_y % 3, picked_rounds=state.picked_rounds,
              query=state.query, ids=state.ids, indices=rows, highlight=np.array([int(rows[10])]))
    compact = figs.ternary_pair(p3, p3[::-1].copy(), ["a", "b", "c"], **kw)
    monkeypatch.setattr(figs, "COMPACT_FRACTION", 0.0)
    full = figs.ternary_pair(p3, p3[::-1].copy(), ["a", "b", "c"], **kw)
    assert len(compact.data) == len(full.data)
    for a, b in zip(compact.data, full.data):
        assert a.name == b.name
        if b.customdata is not None:
            assert np.array_equal(np.asarray(a.customdata), np.asarray(b.customdata))
            assert np.allclose(np.asarray(a.a, dtype=float), np.asarray(b.a, dtype=float))
