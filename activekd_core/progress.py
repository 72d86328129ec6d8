"""Progress reporting and cancellation shared by every long piece of work.

One callback type and one exception hierarchy: a job runner, the trainer, the teachers
and the caches all report ``progress(done, total, message)`` and stop by raising a
subclass of :class:`Cancelled`, so a caller recognises a cancel with one ``isinstance``.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Cancelled", "ProgressFn"]

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, message)``; it may raise :class:`Cancelled` to stop the work."""


class Cancelled(RuntimeError):
    """Work stopped because a cancel was requested; work finished before that is kept."""
