"""Plotly figure builders, one module per page that draws them (no Streamlit here).

* :mod:`activekd_core.figures.explore`: the Explore page (layout and simplex pairs, overlays,
  plot selections, coverage, greedy steps), drawing through
  :mod:`activekd_core.figures.pair` (the teacher | student panels, overlays, the highlighted
  selection) and :mod:`activekd_core.figures.ternary` (the 3-class simplex, its vertex labels).
* :mod:`activekd_core.figures.teacher_bias`: the Teacher-bias page (confusion, calibration,
  priors, prompt-workshop comparison).
* :mod:`activekd_core.figures.common`: what both share (the colour per class, unlabeled grey).
"""
