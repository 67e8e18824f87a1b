"""Robust scheduling for Django: composable conditions, a durable run log, alerts."""

import importlib
from typing import Any

from django_rocket.executors.current import current_run_should_stop

__version__ = "0.1.0.dev0"


class RocketError(Exception):
    """Base class of django-rocket's domain errors."""


class TaskInaction(Exception):
    """Raise from a task to record the run as ``inaction`` (there was nothing to do)."""


class TaskTerminated(Exception):
    """Raised inside a thread run by :func:`django_rocket.check_terminate` when asked to stop."""


def check_terminate() -> None:
    """Raise :class:`TaskTerminated` if the scheduler asked the current thread run to stop."""
    if current_run_should_stop():
        raise TaskTerminated("The scheduler asked this run to stop.")


def __getattr__(name: str) -> Any:
    """Load ``schedule`` and ``unschedule`` on first use: they need Django, the package must not.

    ``import django_rocket`` (the condition language, ``check_terminate``) stays Django-free.
    """
    if name in ("schedule", "unschedule"):
        return getattr(importlib.import_module("django_rocket.ops.schedules"), name)
    raise AttributeError(f"module 'django_rocket' has no attribute {name!r}")


__all__ = [
    "RocketError",
    "TaskInaction",
    "TaskTerminated",
    "__version__",
    "check_terminate",
    "schedule",
    "unschedule",
]
