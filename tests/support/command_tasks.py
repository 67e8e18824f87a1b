"""Task functions for the management command tests."""

import logging

from django_rocket.models import TaskRun


def sees_its_own_row() -> dict:
    """Return what the run log says while this function runs (write-ahead check)."""
    run = TaskRun.objects.get(status="running")
    return {"status": run.status, "trigger": run.trigger}


def logs_and_succeeds() -> str:
    logging.getLogger("tests.support.command_tasks").info("working")
    return "done"


async def async_value() -> int:
    return 42
