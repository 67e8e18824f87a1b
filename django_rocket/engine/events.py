"""Run events on the ``django_rocket.task`` logger, the same for the scheduler and ``runtask``."""

from __future__ import annotations

import logging
from datetime import datetime

from django_rocket.alerts import revive_alerts
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


class LoggingGuard:
    """Keep run events and email alerts going when a run configures logging again.

    ``logging.config.dictConfig``, which ``django.setup()`` calls (a task module written
    as a standalone script does at import), closes every handler, the email alerts'
    too, and disables every logger its configuration does not name unless it says
    ``"disable_existing_loggers": False``; ``logging.disable`` silences every logger. A
    run that did any of these stopped every later event and alert of the process,
    silently. :meth:`check`, before events are logged, puts back what was there when
    the guard was made, and says so.
    """

    NAMES = ("django_rocket", "django_rocket.task", "django_rocket.scheduler")

    def __init__(self, where: str = "the scheduler") -> None:
        self.where = where
        # Only what was on: a logger disabled in LOGGING is the project's choice.
        self._watched = [lg for lg in map(logging.getLogger, self.NAMES) if not lg.disabled]
        self._manager = logging.getLogger().manager
        self._disable = self._manager.disable  # logging.disable()'s level at the start

    def check(self) -> None:
        """Put back what a new logging configuration took away; cheap when nothing did."""
        taken = []
        if self._manager.disable > self._disable:
            taken.append(f"called logging.disable({logging.getLevelName(self._manager.disable)})")
            logging.disable(self._disable)
        disabled = [lg for lg in self._watched if lg.disabled]
        if disabled:
            taken.append("disabled " + ", ".join(lg.name for lg in disabled))
            for lg in disabled:
                lg.disabled = False
        if revive_alerts():
            taken.append("closed the email alerts' handler")
        if taken:
            logger.warning(
                "Logging was configured again while %s ran: it %s, which would have "
                "stopped run events and alerts. Put them back. A task should leave logging "
                "alone (logging.config.dictConfig, as django.setup() calls it, closes every "
                "handler): configure it once, in LOGGING, with "
                '"disable_existing_loggers": False.',
                self.where,
                " and ".join(taken),
            )
