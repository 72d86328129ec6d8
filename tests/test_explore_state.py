"""The Explore page's arrays, read from a real (small) demo project without Streamlit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from activekd_core.demo_data import truth_for_root
from activekd_core.explore_state import (
    LinkedSelection,
    PoolState,
    coverage_inputs,
    display_rows,
    greedy_steps,
    read_pool_state,
)
from activekd_core.project import open_demo


def test_pool_state_matches_the_project(tmp_path: Path) -> None:
    project = open_demo("textile", base_dir=tmp_path, per_class=4)
    ids = project.pool().ids
    batch = [it.image_id for it in project.current_batch().batch.items]  # type: ignore[union-attr]
    truth = truth_for_root(project.pool().root)
    for image_id in batch[:3]:
        project.label(image_id, truth[image_id])
    project.skip(batch[3])

    state = read_pool_state(project)
    row_of = project.row_of()
    assert state.n == len(ids) and state.teacher.shape == (len(ids), 3) and state.student is None
    assert sorted(state.human_rows.tolist()) == sorted(row_of[i] for i in batch[:3])
    assert [state.classes[c] for c in state.human_y] == [truth[ids[r]] for r in state.human_rows]
    assert row_of[batch[3]] not in set(state.candidates.tolist())  # skipped: never queried again
    assert state.query.tolist() == [row_of[i] for i in batch]  # the open batch, in pick order
    assert set(state.human_names()) <= set(state.classes) | {"unlabeled"}

    trace = greedy_steps(state, 3)
    assert trace.indices.size == 3 and not set(trace.indices.tolist()) & set(state.seed_rows.tolist())
    labeled, spaces, names = coverage_inputs(state)
    assert names == ["teacher only"] and np.array_equal(labeled[0], state.seed_rows) and "teacher" in spaces
    project.close()


def _synthetic_state(n: int = 5000) -> PoolState:
    rng = np.random.default_rng(1)
    return PoolState(
        ids=[f"img/{i:05d}.png" for i in range(n)], classes=["a", "b", "c"],
        teacher=rng.dirichlet(np.ones(3), n).astype(np.float32), student=rng.dirichlet(np.ones(3), n).astype(np.float32),
        student_round=1, student_features=None, human_rows=np.array([0, 10, 20]), human_y=np.array([0, 1, 2]),
        seed_rows=np.array([0, 10, 20]), candidates=np.arange(21, n), picked_rounds={1: np.array([10, 20])},
        query=np.array([30, 31]),
    )


def test_linked_selection_follows_the_latest_person_made_selection() -> None:
    linked = LinkedSelection()
    assert linked.observe("exp_scatter", [7, 3, 3], user=True) and linked.rows == (3, 7)
    assert linked.source == "exp_scatter"
    # the chart redrawn with the highlight reads back an empty selection: the highlight stays
    assert not linked.observe("exp_scatter", []) and linked.rows == (3, 7)
    # the other chart's stale value read back again changes nothing; a new one (read back) wins
    assert not linked.observe("exp_ternary_chart", [])
    assert linked.observe("exp_ternary_chart", [9]) and linked.rows == (9,) and linked.source == "exp_ternary_chart"
    assert not linked.observe("exp_ternary_chart", [9])
    # a person's empty selection (a double click on the plot) clears it
    assert linked.observe("exp_scatter", [], user=True) and linked.rows == () and linked.source is None
    # survives a round trip through session state; garbage reads as nothing selected
    linked.observe("exp_scatter", [5, 6], user=True)
    again = LinkedSelection.from_state(linked.to_state())
    assert again == linked
    assert LinkedSelection.from_state({"rows": "x<script>", "seen": 3}).rows == ()
    assert LinkedSelection.from_state(None).rows == ()
    assert again.in_pool(6).tolist() == [5] and again.in_pool(100).tolist() == [5, 6]
    again.clear()
    assert again.rows == () and again.seen["exp_scatter"] == (5, 6)


def test_highlight_maps_to_the_same_images_on_both_panels_when_subsampled() -> None:
    """Selected rows the display sample would have left out are drawn, and plotly's per-trace point
    numbers (selectedpoints) name the same pool rows on the teacher and the student panel."""
    from activekd_core.figures import explore as figs

    state = _synthetic_state()
    plain = display_rows(state, 500)
    assert plain.subsampled
    left_out = np.setdiff1d(np.arange(state.n), plain.indices)[[0, 50, 900]]
    highlight = np.concatenate([left_out, [10]])  # three rows the sample drops, one labeled row
    subset = display_rows(state, 500, highlight=highlight)
    assert subset.subsampled and np.isin(highlight, subset.indices).all()
    assert np.isin([0, 10, 20, 30, 31], subset.indices).all()  # labeled, picked, query stay drawn
    for fig in (
        figs.scatter_pair(state.teacher[:, :2], state.student[:, :2], state.classes, labeled=state.human_rows,
                          y=state.human_y, indices=subset.indices, highlight=highlight),
        figs.ternary_pair(state.teacher, state.student, state.classes, labeled=state.human_rows, y=state.human_y,
                          indices=subset.indices, highlight=highlight),
    ):
        per_panel: dict[int, list[int]] = {0: [], 1: []}
        rings: dict[int, list[int]] = {}
        for tr in fig.data:
            if tr.meta["role"] == "points":
                rows = np.asarray(tr.customdata)
                assert tr.selectedpoints is not None  # every base trace says what is selected (maybe nothing)
                per_panel[tr.meta["panel"]].extend(rows[np.asarray(tr.selectedpoints, dtype=np.int64)].tolist())
            elif tr.meta["role"] == "selected":
                rings[tr.meta["panel"]] = sorted(np.asarray(tr.customdata).tolist())
        assert sorted(per_panel[0]) == sorted(per_panel[1]) == sorted(highlight.tolist())
        assert rings == {0: sorted(highlight.tolist()), 1: sorted(highlight.tolist())}
