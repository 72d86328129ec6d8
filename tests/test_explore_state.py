"""The Explore page's arrays, read from a real (small) demo project without Streamlit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from activekd_core.demo_data import truth_for_root
from activekd_core.explore_state import coverage_inputs, greedy_steps, read_pool_state
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
