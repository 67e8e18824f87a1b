"""What a task entry with execution ``tasks`` needs: the checks, and its enqueue options."""

from __future__ import annotations

import json
from typing import Any

from django.core import checks

from django_rocket.conf import conf, parse_timeout
from django_rocket.executors.django_tasks.framework import (
    DEFAULT_ALIAS,
    DEFAULT_QUEUE,
    MISSING_FRAMEWORK,
    django_task,
    framework,
    is_immediate,
)
from django_rocket.executors.django_tasks.worker import worker_task


def task_options(entry: dict[str, Any], target: object) -> tuple[str, str, int]:
    """Return the backend alias, queue and priority a task's runs are enqueued with."""
    declared = django_task(target)
    backend = entry.get("backend") or (declared.backend if declared else DEFAULT_ALIAS)
    queue = entry.get("queue") or (declared.queue_name if declared else DEFAULT_QUEUE)
    priority = declared.priority if declared else 0
    return backend, queue, priority


def task_problems(
    name: str, entry: dict[str, Any], execution: str, target: object
) -> list[checks.CheckMessage]:
    """Check what execution 'tasks' needs of one task entry."""

    def error(id: str, msg: str, hint: str) -> checks.CheckMessage:
        return checks.Error(f"Task {name!r}: {msg}", hint=hint, obj=name, id=id)

    def warning(id: str, msg: str, hint: str) -> checks.CheckMessage:
        return checks.Warning(f"Task {name!r}: {msg}", hint=hint, obj=name, id=id)

    found: list[checks.CheckMessage] = []
    if execution != "tasks":
        given = [key for key in ("backend", "queue") if key in entry]
        if given:
            found.append(
                error(
                    "django_rocket.E054",
                    f"{' and '.join(given)} only {'apply' if len(given) > 1 else 'applies'} "
                    "to execution 'tasks', "
                    f"but its execution is {execution!r}.",
                    'Add "execution": "tasks", or remove the key.',
                )
            )
        if django_task(target) is not None:
            found.append(
                error(
                    "django_rocket.E056",
                    f"func {entry.get('func')!r} is a Django Task (decorated with @task), "
                    f"which only execution 'tasks' can run; its execution is {execution!r}.",
                    'Add "execution": "tasks", or point func at an undecorated function.',
                )
            )
        return found
    api = framework()
    if api is None:
        return [
            error(
                "django_rocket.E050",
                MISSING_FRAMEWORK,
                "Upgrade to Django 6.0 or later, or install the backport with "
                "'pip install django-tasks' (plus a backend such as django-tasks-db).",
            )
        ]
    for key in ("backend", "queue"):
        if key in entry and (not isinstance(entry[key], str) or not entry[key]):
            found.append(
                error(
                    "django_rocket.E051" if key == "backend" else "django_rocket.E052",
                    f"{key} must be a non-empty string, not {entry[key]!r}.",
                    f'Write e.g. "{key}": "default".',
                )
            )
    if found:
        return found
    try:
        json.dumps(entry.get("parameters", {}))
    except (TypeError, ValueError) as exc:
        found.append(
            error(
                "django_rocket.E055",
                f"parameters must be JSON values to be enqueued ({exc}).",
                "Pass strings, numbers, booleans, None, lists and dicts only.",
            )
        )
    backend, queue, priority = task_options(entry, target)
    configured = list(api.backends.settings)
    if backend not in configured:
        found.append(
            error(
                "django_rocket.E051",
                f"backend {backend!r} is not configured in TASKS.",
                f"Use one of {', '.join(map(repr, configured)) or 'no alias yet'}, "
                "or add it to the TASKS setting.",
            )
        )
        return found
    try:
        instance = api.backends[backend]
        worker_task(backend, queue, priority)
    except api.invalid_backend as exc:
        found.append(
            error(
                "django_rocket.E051",
                f"backend {backend!r} cannot be loaded: {exc}",
                "Fix its BACKEND path in the TASKS setting.",
            )
        )
        return found
    except api.invalid_task as exc:
        found.append(
            error(
                "django_rocket.E052",
                f"runs cannot be enqueued on backend {backend!r}, queue {queue!r}: {exc}",
                f"Use a queue listed in TASKS[{backend!r}]['QUEUES'], or add {queue!r} there.",
            )
        )
        return found
    if is_immediate(instance):
        found.append(
            warning(
                "django_rocket.W051",
                f"backend {backend!r} is an ImmediateBackend: each run executes inside the "
                "scheduler's loop while it is enqueued.",
                "Fine for development; in production point TASKS at a backend with workers "
                "(django-tasks-db, django-tasks-rq, django-tasks-celery).",
            )
        )
    elif not instance.supports_get_result:
        found.append(
            error(
                "django_rocket.E053",
                f"backend {backend!r} ({type(instance).__name__}) cannot report results, "
                "so the scheduler could never learn how a run ended.",
                "Use a backend whose supports_get_result is True (django-tasks-db, "
                "django-tasks-rq, or django-tasks-celery with a result backend).",
            )
        )
    try:
        forever = parse_timeout(entry.get("timeout", conf.timeout)) is None
    except (TypeError, ValueError):
        forever = False  # reported as E010
    if forever:
        found.append(
            warning(
                "django_rocket.W050",
                "execution 'tasks' without a timeout: a result that never arrives (a worker "
                "killed mid-run, a lost queue) keeps the run 'running' for ever.",
                'Set "timeout" to a duration longer than any real run, e.g. "1 hour".',
            )
        )
    return found
