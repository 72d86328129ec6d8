"""A labeling project: a folder holding the store, caches, checkpoints and exports.

:class:`Project` is the facade pages, the command line and tests use; it delegates to one
module per concern:

- :mod:`~activekd_core.project.context`: folder, store, settings, image pool, and the one
  rule for which labels train (labeled images, audit set excluded);
- :mod:`~activekd_core.project.teacher_probs`: the teacher and its cached probabilities;
- :mod:`~activekd_core.project.rounds`: training rounds and the students' stored outputs;
- :mod:`~activekd_core.project.batches`: candidates, selection space, next/preview/queue,
  prefetching, and starting the next batch in the background under its lock;
- :mod:`~activekd_core.project.audit_set`: the audit sample and its accuracy;
- :mod:`~activekd_core.project.labels`, :mod:`~activekd_core.project.exports`,
  :mod:`~activekd_core.project.rare_classes`: decisions, exports, rare-class warnings;
- :mod:`~activekd_core.project.create`: creating and opening folders, the demo projects;
- :mod:`~activekd_core.project.facade`: :class:`Project` and the registry of job kinds.
"""

from __future__ import annotations

from activekd_core.project.batches import MANUAL, PARTIAL_SPACE, PREFETCH_KEY, QUEUE_STRATEGIES, REVISIT, BatchView
from activekd_core.project.context import (
    AUTO_RETRAIN_KEY,
    CLASS_KEYS_KEY,
    DB_NAME,
    DEFAULT_STRATEGY,
    PROJECT_FORMAT,
    VIEW_PREFS_PREFIX,
    ProjectError,
    ScanReport,
)
from activekd_core.project.create import DEMO_BATCH_SIZE, open_demo
from activekd_core.project.facade import JOB_KINDS, Project, prefetch_batch_job, retrain_job, select_batch_job
from activekd_core.project.rounds import MAX_UNDECODABLE_SHARE, UNDECODABLE_LISTED
from activekd_core.project.teacher_probs import TEACHER_HISTORY_SETTING

__all__ = [
    "AUTO_RETRAIN_KEY",
    "CLASS_KEYS_KEY",
    "DB_NAME",
    "DEFAULT_STRATEGY",
    "DEMO_BATCH_SIZE",
    "JOB_KINDS",
    "MANUAL",
    "MAX_UNDECODABLE_SHARE",
    "PREFETCH_KEY",
    "PROJECT_FORMAT",
    "QUEUE_STRATEGIES",
    "PARTIAL_SPACE",
    "REVISIT",
    "TEACHER_HISTORY_SETTING",
    "UNDECODABLE_LISTED",
    "VIEW_PREFS_PREFIX",
    "BatchView",
    "Project",
    "ProjectError",
    "ScanReport",
    "open_demo",
    "prefetch_batch_job",
    "retrain_job",
    "select_batch_job",
]
