"""Which Tasks framework is installed: ``django.tasks`` (Django >= 6.0) or the backport."""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from typing import Any

DEFAULT_ALIAS = DEFAULT_QUEUE = "default"
# A TaskResult's status, as both frameworks spell it.
READY, RUNNING, SUCCESSFUL, FAILED = "READY", "RUNNING", "SUCCESSFUL", "FAILED"
MISSING_FRAMEWORK = (
    "execution 'tasks' needs Django's Tasks framework: django.tasks (Django >= 6.0) or, "
    "on Django 5.2, the django-tasks backport."
)


@dataclass(frozen=True)
class TasksApi:
    """The parts of a Tasks framework django-rocket uses."""

    name: str
    backends: Any  # its task_backends handler
    invalid_task: type[Exception]
    invalid_backend: type[Exception]
    no_result: type[Exception]


@functools.cache
def framework() -> TasksApi | None:
    """Return Django's Tasks framework (``django.tasks`` or the backport), or None if absent."""
    for name in ("django.tasks", "django_tasks"):
        try:
            api = importlib.import_module(name)
            errors = importlib.import_module(f"{name}.exceptions")
            importlib.import_module(f"{name}.signals")  # resets backends when TASKS changes
        except ImportError:
            continue
        return TasksApi(
            name=name,
            backends=api.task_backends,
            # The backport kept the names these errors had before Django adopted them.
            invalid_task=getattr(errors, "InvalidTask", None) or errors.InvalidTaskError,
            invalid_backend=(
                getattr(errors, "InvalidTaskBackend", None) or errors.InvalidTaskBackendError
            ),
            no_result=errors.TaskResultDoesNotExist,
        )
    return None


def django_task(obj: object) -> Any | None:
    """Return ``obj`` if it is a Django Task (a function decorated with ``@task``), else None."""
    classes = tuple(
        module.Task
        for module in (sys.modules.get("django.tasks.base"), sys.modules.get("django_tasks.base"))
        if module is not None
    )
    return obj if classes and isinstance(obj, classes) else None


def plain_function(obj: object) -> Any:
    """Return what a Django Task calls, as its parameters must fit it, or ``obj`` itself."""
    declared = django_task(obj)
    if declared is None:
        return obj
    # Django passes the context first; the declared parameters are the rest.
    return functools.partial(declared.func, None) if declared.takes_context else declared.func


def is_immediate(backend: object) -> bool:
    """Return True for an ImmediateBackend, which runs a task while it is enqueued."""
    return type(backend).__name__ == "ImmediateBackend"
