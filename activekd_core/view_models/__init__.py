"""Streamlit-free view models: what each page shows, assembled from a :class:`~activekd_core.project.Project`.

Pages import only the project facade, these modules and pure presentation helpers
(:mod:`activekd_core.display_text`, :mod:`activekd_core.image_view`,
:mod:`activekd_core.display_recipe`, :mod:`activekd_core.figures`); everything they need
from the services and the ground floor (jobs, store, selection, teachers, images, devices,
...) comes through here as plain values, so it can be tested without a browser.

* :mod:`~activekd_core.view_models.session`: shared by every page (images on screen, reopening
  a replaced project, recent projects, teacher suggestions).
* :mod:`~activekd_core.view_models.label`, :mod:`~activekd_core.view_models.train`,
  :mod:`~activekd_core.view_models.project_page`, :mod:`~activekd_core.view_models.explore`,
  :mod:`~activekd_core.view_models.teacher_bias`: one per page.
* :mod:`~activekd_core.view_models.rare`: the rare-class notes of the Label and Train pages.

The Review page's view model is :mod:`activekd_core.review_state`; Explore's arrays come from
:mod:`activekd_core.explore_state` (re-exported by :mod:`~activekd_core.view_models.explore`).
"""
