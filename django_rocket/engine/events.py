"""Run events on the ``django_rocket.task`` logger, the same for the scheduler and ``runtask``."""

from __future__ import annotations

import logging
from datetime import datetime

from django_rocket.models import RunStatus

logger = logging.getLogger("django_rocket.scheduler")
task_logger = logging.getLogger("django_rocket.task")

_LEVELS: dict[str, int] = {
    RunStatus.FAIL: logging.ERROR,
    RunStatus.CRASH: logging.ERROR,
    RunStatus.TERMINATE: logging.WARNING,
}


def level_of(status: str) -> int:
    """Return the log level of a run that ended with ``status``."""
    return _LEVELS.get(status, logging.INFO)


def log_run_event(
    task: str,
    run_id: str,
    action: str,
    start: datetime | None,
    end: datetime | None,
    *,
    level: int = logging.INFO,
    message: str = "",
    exc_text: str = "",
) -> None:
    """Log that a run started or ended; a handler that raises is reported, never raised."""
    if not task_logger.isEnabledFor(level):
        return
    runtime = (end - start).total_seconds() if start and end else None
    text = f"Task {task!r} {action}" + (f": {message}" if message else "")
    try:
        record = task_logger.makeRecord(
            task_logger.name,
            level,
            __file__,
            0,
            text,
            (),
            None,
            extra={
                "task_name": task,
                "run_id": run_id,
                "action": action,
                "start": start,
                "end": end,
                "runtime": runtime,
            },
        )
        # exc_text is the standard attribute formatters append, as Rocketry's records had.
        record.exc_text = exc_text or None
        task_logger.handle(record)
    except Exception:
        logger.error("A handler on django_rocket.task raised.", exc_info=True)
