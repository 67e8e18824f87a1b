"""Task functions that log, for the alert and log-forwarding tests."""

import logging

task_logger = logging.getLogger("django_rocket.task")


def logs_an_error(note: str = "disk almost full") -> str:
    """Log an ERROR on the task logger and one on this module's logger, then succeed."""
    task_logger.error("Task note: %s", note, extra={"task_name": "logs_an_error"})
    logging.getLogger(__name__).error("Module logger: %s", note)
    return note
