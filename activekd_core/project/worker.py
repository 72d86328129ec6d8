"""The worker process of a project's background job: ``python -m activekd_core.project.worker``.

Started by :meth:`activekd_core.jobs.JobRunner.start_process` (never imported by the
package itself); ``--kind`` is resolved through :data:`activekd_core.project.facade.JOB_KINDS`.
"""

from __future__ import annotations

import sys

from activekd_core.jobs import worker_main
from activekd_core.project.facade import JOB_KINDS

if __name__ == "__main__":
    sys.exit(worker_main(JOB_KINDS))
