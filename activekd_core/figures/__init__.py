"""Plotly figure builders, one module per page that draws them (no Streamlit here).

* :mod:`activekd_core.figures.explore`: the Explore page (layout and simplex pairs, overlays,
  plot selections, coverage, greedy steps).
* :mod:`activekd_core.figures.teacher_bias`: the Teacher-bias page (confusion, calibration,
  priors, prompt-workshop comparison).
* :mod:`activekd_core.figures.common`: what both share (the colour per class, unlabeled grey).
"""
