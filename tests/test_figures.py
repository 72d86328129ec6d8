"""Figure structure: traces, point counts, customdata pool indices (not pixels)."""

from __future__ import annotations

import html
import numpy as np
import plotly.graph_objects as go
import pytest

from activekd_core import bias, coverage, projection
from activekd_core.figures import explore as figures
from activekd_core.figures import teacher_bias as bias_figures

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture()
def pool():
    rng = np.random.default_rng(0)
    n = 60
    t = rng.dirichlet(np.ones(3), n)
    s = rng.dirichlet(np.ones(3), n)
    labeled = np.array([0, 5, 10, 20, 33])
    y = np.array([0, 1, 2, 1, 0])
    ids = [f"img/{i:03d}.png" for i in range(n)]
    return t, s, labeled, y, ids


def _point_traces(fig, panel=None):
    return [tr for tr in fig.data if tr.meta["role"] == "points" and (panel is None or tr.meta["panel"] == panel)]


def test_scatter_pair_structure_and_customdata(pool):
    t, s, labeled, y, ids = pool
    txy, sxy = projection.pca_layout(t), projection.pca_layout(s)
    fig = figures.scatter_pair(
        txy, sxy, CLASSES, labeled=labeled, y=y, teacher_probs=t, student_probs=s,
        picked_rounds={1: [5, 10], 2: [20, 33]}, query=[40, 41, 42], ids=ids,
    )
    for panel in (0, 1):
        pts = _point_traces(fig, panel)
        # every pool row drawn exactly once per panel, customdata = pool rows
        allcd = np.concatenate([np.asarray(tr.customdata) for tr in pts])
        np.testing.assert_array_equal(np.sort(allcd), np.arange(60))
        names = [tr.name for tr in pts]
        assert names == ["cat", "dog", "fox", "unlabeled"]
        unl = pts[-1]
        assert len(unl.customdata) == 55 and unl.marker.color == figures.UNLABELED_COLOR
        dog = pts[1]
        np.testing.assert_array_equal(dog.customdata, [5, 20])
        # coordinates belong to the right rows
        coords = txy if panel == 0 else sxy
        np.testing.assert_allclose(dog.x, coords[[5, 20], 0])
    overlays = [tr for tr in fig.data if tr.meta["role"] == "overlay"]
    assert [tr.name for tr in overlays] == ["round 1 picks", "round 2 picks", "current query"] * 2
    np.testing.assert_array_equal(overlays[2].customdata, [40, 41, 42])
    assert overlays[2].marker.symbol == "diamond-open"
    # legend shown once per category, panel 2 traces sit on the second axes
    assert sum(tr.showlegend for tr in fig.data) == 7
    assert {tr.xaxis for tr in _point_traces(fig, 1)} == {"x2"}
    # hover text: id, human label, top-3 of both models
    txt = dog.hovertext[0]
    assert "img/005.png" in txt and "human: dog" in txt and "teacher:" in txt and "student:" in txt
    top = CLASSES[int(np.argmax(t[5]))]
    assert f"teacher: {top} {t[5].max():.2f}" in txt


def test_scatter_color_by_prediction_and_subset(pool):
    t, s, labeled, y, ids = pool
    txy = projection.pca_layout(t)
    sub = projection.display_subset(60, 20, keep=labeled, seed=0)
    fig = figures.scatter_pair(txy, None, CLASSES, color_by="teacher", labeled=labeled, y=y, teacher_probs=t,
                               indices=sub.indices)
    pts = _point_traces(fig)
    drawn = np.concatenate([np.asarray(tr.customdata) for tr in pts])
    np.testing.assert_array_equal(np.sort(drawn), sub.indices)
    assert "unlabeled" not in [tr.name for tr in pts]
    for tr in pts:
        assert (t[np.asarray(tr.customdata)].argmax(axis=1) == CLASSES.index(tr.name)).all()
    big = figures.scatter_pair(txy, None, CLASSES, labeled=labeled, y=y, gl=True)
    assert all(isinstance(tr, go.Scattergl) for tr in big.data)
    with pytest.raises(ValueError, match="needs student_probs"):
        figures.scatter_pair(txy, None, CLASSES, color_by="student")
    with pytest.raises(ValueError, match="out of range"):
        figures.scatter_pair(txy, None, CLASSES, query=[60])


def test_ternary_pair_uses_probabilities(pool):
    t, s, labeled, y, ids = pool
    trace = coverage.greedy_trace(s, labeled, 4)
    ov = figures.Overlay("PCoreSet next", trace.indices, "x", text=tuple(f"d={d:.2f}" for d in trace.distances))
    fig = figures.ternary_pair(t, s, CLASSES, labeled=labeled, y=y, overlays=[ov])
    assert all(isinstance(tr, go.Scatterternary) for tr in fig.data)
    pts = _point_traces(fig, 1)
    cat = pts[0]
    np.testing.assert_allclose(cat.a, s[np.asarray(cat.customdata), 0])
    np.testing.assert_allclose(cat.c, s[np.asarray(cat.customdata), 2])
    ovs = [tr for tr in fig.data if tr.meta["role"] == "overlay"]
    assert len(ovs) == 2 and "d=" in ovs[0].hovertext[0]
    np.testing.assert_array_equal(ovs[1].customdata, trace.indices)
    assert fig.layout.ternary.aaxis.title.text == "cat"
    assert fig.layout.ternary2.caxis.title.text == "fox"
    with pytest.raises(ValueError, match="exactly 3 classes"):
        figures.ternary_pair(np.eye(4), None, ["a", "b", "c", "d"])


def test_selected_indices_from_events():
    pts = [{"customdata": 7}, {"customdata": [3]}, {"customdata": 7}, {"x": 1}]
    np.testing.assert_array_equal(figures.selected_indices({"selection": {"points": pts}}), [3, 7])
    np.testing.assert_array_equal(figures.selected_indices({"points": pts}), [3, 7])
    np.testing.assert_array_equal(figures.selected_indices(pts), [3, 7])

    class Sel:  # attribute access like Streamlit's PlotlyState
        def __init__(self):
            self.selection = type("S", (), {"points": pts})()

    np.testing.assert_array_equal(figures.selected_indices(Sel()), [3, 7])
    assert figures.selected_indices(None).size == 0


def test_bias_figures_structure():
    probs = np.array([[0.8, 0.1, 0.1]] * 6 + [[0.1, 0.8, 0.1]] * 4 + [[0.1, 0.1, 0.8]] * 2)
    truth = np.array([0] * 5 + [1] * 5 + [2] * 2)
    lab = np.arange(12)
    rep = bias.classification_report(probs, truth, lab, CLASSES)
    hm = bias_figures.confusion_heatmap(rep)
    assert isinstance(hm.data[0], go.Heatmap)
    np.testing.assert_allclose(np.asarray(hm.data[0].z), rep.confusion_normalized)
    assert hm.data[0].text[1][0].startswith("1<br>20%")
    assert np.asarray(bias_figures.confusion_heatmap(rep, normalized=False).data[0].z).sum() == 12

    bins = bias.reliability_bins(probs, truth, lab, 10)
    rel = bias_figures.reliability_figure(bins, ece=bias.expected_calibration_error(probs, truth, lab))
    assert [tr.name for tr in rel.data] == ["accuracy", "mean confidence", "perfect calibration"]
    assert len(rel.data[0].x) == 10 and "ECE" in rel.layout.title.text

    pri = bias_figures.priors_figure(bias.priors(probs, truth, lab, CLASSES))
    assert len(pri.data) == 2 and list(pri.data[0].x) == CLASSES

    ent = bias_figures.entropy_histogram_figure(bias.entropy_histogram(probs, 10, y=truth, labeled=lab))
    assert [tr.name for tr in ent.data] == ["pool", "labeled correct", "labeled wrong"]
    assert sum(ent.data[0].y) == 12

    cc = bias_figures.confidence_correctness_figure(bias.confidence_vs_correctness(probs, truth, lab, CLASSES))
    assert len(cc.data[0].customdata) == 11 and list(cc.data[1].customdata) == [5]

    after = np.eye(3)[truth] * 0.7 + 0.1
    cmp = bias.compare_teachers(probs, after, truth, lab, CLASSES)
    cf = bias_figures.comparison_figure(cmp, metric="predicted_share")
    assert [tr.name for tr in cf.data] == ["before", "after", "human share"]
    with pytest.raises(ValueError, match="unknown comparison metric"):
        bias_figures.comparison_figure(cmp, metric="auc")


def test_coverage_and_greedy_figures():
    pts = np.array([[x, 0.0] for x in (0, 1, 2, 10, 11)])
    curve = coverage.coverage_curve([[0], [0, 4]], {"teacher": pts, "student": [pts, pts]})
    fig = figures.coverage_figure(curve)
    assert [tr.name for tr in fig.data] == ["teacher mean", "teacher max", "student mean", "student max"]
    assert list(fig.data[0].x) == [0, 1]
    assert len(figures.coverage_figure(curve, show_max=False).data) == 2
    tr = coverage.greedy_trace(pts, [0], 3)
    g = figures.greedy_trace_figure(tr, upto=2)
    assert list(g.data[0].customdata) == [4, 2]
    np.testing.assert_allclose(g.data[0].y, [11, 2])


def test_strategy_overlays(pool):
    t, s, labeled, y, ids = pool
    ovs = figures.strategy_overlays({"pcoreset": [1, 2], "random": [3, 4, 50]}, scores={"pcoreset": [0.5, 0.25]})
    assert [o.name for o in ovs] == ["pcoreset next", "random next"]
    assert ovs[0].symbol != ovs[1].symbol and ovs[0].text[1] == "pcoreset pick 2, score 0.25"
    fig = figures.scatter_pair(projection.pca_layout(t), None, CLASSES, labeled=labeled, y=y, overlays=ovs)
    drawn = {tr.name: list(tr.customdata) for tr in fig.data if tr.meta["role"] == "overlay"}
    assert drawn == {"pcoreset next": [1, 2], "random next": [3, 4, 50]}
    with pytest.raises(ValueError, match="2 picks but 1 scores"):
        figures.strategy_overlays({"entropy": [1, 2]}, scores={"entropy": [0.1]})


HOSTILE_CLASSES = ["<a href='http://evil.test/x'>cat</a>", "<b>dog</b> & co", "fox<br>"]


def test_names_in_figures_are_text_not_plotly_html(pool):
    """Plotly turns <a href> in legends, ticks and hover text into live links: names are escaped."""
    t, s, labeled, y, _ = pool
    ids = [f"<a href='http://evil.test/{i}'>img{i}</a>.png" for i in range(t.shape[0])]
    txy = projection.pca_layout(t)
    figs_ = [
        figures.scatter_pair(txy, None, HOSTILE_CLASSES, labeled=labeled, y=y, teacher_probs=t, ids=ids),
        figures.ternary_pair(t, s, HOSTILE_CLASSES, labeled=labeled, y=y, ids=ids),
        bias_figures.confusion_heatmap(bias.classification_report(t, y, labeled, HOSTILE_CLASSES)),
        bias_figures.priors_figure(bias.priors(t, y, labeled, HOSTILE_CLASSES)),
    ]
    for fig in figs_:
        text = fig.to_json()
        assert "<a href" not in text and "<b>dog" not in text and "fox<br>" not in text
        assert "&lt;a href=" in text
    legend = [tr.name for tr in figs_[0].data if tr.meta["role"] == "points"]
    assert "&lt;b&gt;dog&lt;/b&gt; &amp; co" in legend


def test_ternary_vertex_labels_are_bounded_escaped_and_fit_the_margins(pool):
    """Long hostile class names at the simplex's vertices: cut with an ellipsis, escaped, full name on hover,
    and margins / panel gap / title offset sized so the labels neither clip nor collide."""
    from activekd_core.figures import ternary

    t, s, labeled, y, _ = pool
    names = ["<b>an extremely long class name & more</b>", "short", "another-quite-long-class-name-here"]
    fig = figures.ternary_pair(t, s, names, labeled=labeled, y=y)
    lay = fig.layout
    for axes in (lay.ternary, lay.ternary2):
        titles = [axes.aaxis.title, axes.baxis.title, axes.caxis.title]
        for title, name in zip(titles, names):
            assert title.font.size == ternary.VERTEX_FONT
            assert "<" not in title.text and len(html.unescape(title.text)) <= ternary.VERTEX_MAX
        assert titles[0].text.startswith("&lt;b&gt;an extreme") and titles[0].text.endswith("…")
        assert titles[1].text == "short"
        assert len(titles[2].text) == ternary.VERTEX_MAX and titles[2].text.endswith("…")
    # the full names are in the hover of a marker at each vertex, escaped
    vertices = [tr for tr in fig.data if tr.meta["role"] == "vertex"]
    assert len(vertices) == 2 and all(tr.customdata is None for tr in vertices)
    assert "&lt;b&gt;an extremely long class name &amp; more&lt;/b&gt;" in vertices[0].hovertext[0]
    assert "another-quite-long-class-name-here" in vertices[1].hovertext[2]
    # room: a bottom label is centred on its vertex, so half its width must fit in the side margin,
    # both halves (left panel's c, right panel's b) in the gap between the panels at the narrowest width
    half = ternary.CHAR_WIDTH * ternary.VERTEX_FONT * ternary.VERTEX_MAX / 2
    assert lay.margin.l >= half and lay.margin.r >= half
    gap_px = (lay.ternary2.domain.x[0] - lay.ternary.domain.x[1]) * ternary.MIN_WIDTH
    assert gap_px >= 2 * half
    assert lay.margin.b >= ternary.VERTEX_FONT + ternary.TICK_FONT
    # the subplot titles are raised above the top vertex's label and still inside the top margin
    shifts = [a.yshift for a in lay.annotations]
    assert len(shifts) == 2 and all(sh >= ternary.VERTEX_FONT + ternary.TICK_FONT for sh in shifts)
    assert lay.margin.t >= shifts[0] + ternary.VERTEX_FONT
    # short names need less room than long ones (margins follow the labels)
    small = figures.ternary_pair(t, s, CLASSES).layout
    assert small.margin.l < lay.margin.l
