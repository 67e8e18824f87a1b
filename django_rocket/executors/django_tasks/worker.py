"""What runs in a Tasks framework worker: one call of :data:`call_in_worker` per run.

A queued job names its function by dotted path, so this module's path is part of
every job in a queue: ``django_rocket.executors.django_tasks.worker.call_in_worker``.
"""

from __future__ import annotations

import inspect
import os
import re
import socket
from typing import Any

from asgiref.sync import async_to_sync
from django.utils.module_loading import import_string

from django_rocket import TaskInaction, TaskTerminated
from django_rocket.conf import conf
from django_rocket.executors.allowlist import loaded_refusal
from django_rocket.executors.django_tasks.framework import (
    DEFAULT_ALIAS,
    DEFAULT_QUEUE,
    MISSING_FRAMEWORK,
    django_task,
    framework,
)
from django_rocket.executors.outcome import (
    Ending,
    bounded,
    exception_types,
    failure,
    safe_text,
    settle,
)
from django_rocket.models import RunStatus

# The note a failing run's exception carries, so the follower can tell where it ran.
WORKER_NOTE = re.compile(r"^django-rocket: run (\S+) ran on (\S+) \(pid (\d+)\)\.$", re.MULTILINE)
# And its exception's class and bases, which the backend does not keep (retry(on=...)).
TYPES_NOTE = re.compile(r"^django-rocket: exception types: (\S+(?:, \S+)*)$", re.MULTILINE)


def declared_functions() -> set[str]:
    """The dotted paths a queued job may call: each ``func`` of a declared task with
    execution ``tasks`` in this worker's ROCKET_TASKS."""
    tasks = conf.tasks
    if not isinstance(tasks, dict):
        return set()
    return {
        entry["func"]
        for entry in tasks.values()
        if isinstance(entry, dict)
        and isinstance(entry.get("func"), str)
        and entry.get("execution", conf.execution) == "tasks"
    }


def refusal(func: object) -> str:
    """Why a queued job naming ``func`` is not run, or '' when a declared task names it
    or this worker's ``ROCKET_TASK_FUNCTIONS`` allows it (a runtime task's function:
    whoever may write runtime tasks may already have it called)."""
    if isinstance(func, str) and func in declared_functions():
        return ""
    # Checked before anything is imported, then for what the path really names.
    if isinstance(func, str) and conf.task_functions and not loaded_refusal(func):
        return ""
    shown = safe_text(func)
    shown = shown if len(shown) <= 200 else shown[:200] + "..."
    return (
        f"Refused to call {shown!r}: no task declared in this worker's ROCKET_TASKS with "
        "execution 'tasks' names it as its func, and its ROCKET_TASK_FUNCTIONS does not "
        "allow it. A queued job can only run a declared task or a runtime task's allowed "
        "function; declare or allow it (with the same settings on the scheduler and the "
        "workers), or look for whoever wrote this job to the queue."
    )


def _call_in_worker(
    context: Any, run_id: str, func: str, parameters: dict[str, Any], max_bytes: int
) -> Ending:
    """Run one django-rocket run in a worker; return how it ended, with the worker's host.

    Only a function a declared task names is called (a queue is data anyone who can
    write to it controls). An exception is raised again for the backend to record, with
    a note saying where it ran; anything else (a refusal, SystemExit or KeyboardInterrupt
    from the function, which must not stop the worker) is returned as a ``fail``.
    """
    host, pid = socket.gethostname(), os.getpid()
    refused = refusal(func)
    if refused:
        return {
            "run_id": str(run_id),
            "host": host,
            "pid": pid,
            "status": RunStatus.FAIL.value,
            "message": refused,
        }
    try:
        target = import_string(func)
        declared = django_task(target)
        if declared is not None and declared.takes_context:
            value = declared.call(context, **parameters)
        elif declared is not None:
            value = declared.call(**parameters)
        elif inspect.iscoroutinefunction(target):
            value = async_to_sync(target)(**parameters)
        else:
            value = target(**parameters)
    except TaskInaction as exc:
        ending: Ending = {"status": RunStatus.INACTION.value, "message": str(exc)}
    except TaskTerminated as exc:
        ending = {
            "status": RunStatus.TERMINATE.value,
            "message": str(exc) or "Terminated on request.",
        }
    except Exception as exc:
        # The backend records the failure with this traceback; the note tells where it ran.
        try:
            exc.add_note(f"django-rocket: run {run_id} ran on {host} (pid {pid}).")
            exc.add_note(f"django-rocket: exception types: {', '.join(exception_types(exc))}")
        except Exception:
            pass  # a hostile exception; the backend still records it
        raise
    except BaseException as exc:  # SystemExit, KeyboardInterrupt...: would stop the worker
        ending = failure(exc)
    else:
        ending = settle(value, max_bytes)
    return {"run_id": run_id, "host": host, "pid": pid, **bounded(ending, max_bytes)}


# The backend finds a task by its function's dotted path and expects a Task object there.
# Building it on first access (module __getattr__) keeps TASKS untouched at import time.
_call_in_worker.__name__ = _call_in_worker.__qualname__ = "call_in_worker"


def __getattr__(name: str) -> Any:
    if name == "call_in_worker":
        return worker_task()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def worker_task(backend: str | None = None, queue: str | None = None, priority: int = 0) -> Any:
    """Return the Task that runs django-rocket runs, bound to a backend alias and queue."""
    api = framework()
    if api is None:
        raise ImportError(MISSING_FRAMEWORK)
    if backend is None:
        configured = list(api.backends.settings)
        backend = DEFAULT_ALIAS if DEFAULT_ALIAS in configured or not configured else configured[0]
    instance = api.backends[backend]
    if queue is None:
        queues = instance.queues
        queue = DEFAULT_QUEUE if not queues or DEFAULT_QUEUE in queues else sorted(queues)[0]
    return instance.task_class(
        func=_call_in_worker,
        backend=backend,
        queue_name=queue,
        priority=priority,
        takes_context=True,
    )
