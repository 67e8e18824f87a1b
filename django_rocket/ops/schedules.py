"""Tasks created by code: :func:`schedule` and :func:`unschedule`.

A runtime task is a Task row with ``source="runtime"``; a running scheduler picks it
up at its next poll. Its function must be allowed by ``ROCKET_TASK_FUNCTIONS`` (checked
here before anything is imported, and again by the scheduler before each run).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, router, transaction
from django.utils import timezone

from django_rocket import registry
from django_rocket.conditions import (
    Condition,
    ConditionSyntaxError,
    Context,
    MemoryHistory,
    RunRecord,
)
from django_rocket.conf import conf
from django_rocket.engine.snapshot import record_of
from django_rocket.models import (
    RunStatus,
    RunTrigger,
    Task,
    TaskRun,
    TaskSource,
    next_task_revision,
)
from django_rocket.ops.queue import RunRefused
from django_rocket.registry import TaskSpec

logger = logging.getLogger("django_rocket.services")

Timeout = str | int | float | timedelta | None
PREVIEW_COUNT = 5
PREVIEW_HORIZON = timedelta(days=366)


def timeout_text(timeout: Timeout) -> str:
    """Return a timeout as the Task row stores it: text, or "" for ROCKET_TIMEOUT."""
    if timeout is None:
        return ""
    if isinstance(timeout, timedelta):
        return f"{timeout.total_seconds():g} seconds"
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        return f"{timeout:g} seconds"
    return str(timeout)


def validate_runtime_task(
    name: str,
    func: str,
    start_cond: str,
    *,
    end_cond: str = "",
    parameters: dict[str, Any] | None = None,
    execution: str | None = None,
    timeout: Timeout = None,
    enabled: bool = True,
    multilaunch: bool = False,
    backend: str = "",
    queue: str = "",
    description: str = "",
) -> dict[str, list[str]]:
    """Return the problems of a runtime task, by field; empty if it can be scheduled.

    The checks are a declared task's (``manage.py check``): ``backend`` and ``queue``
    apply to execution 'tasks' only, and must name a configured alias and a queue it
    accepts; blank is the default.
    """
    entry: dict[str, Any] = {
        "func": func,
        "start_cond": start_cond,
        "end_cond": end_cond,
        "parameters": {} if parameters is None else parameters,
        "execution": conf.execution if execution is None else execution,
        "timeout": conf.timeout if timeout is None else timeout,
        "enabled": enabled,
        "multilaunch": multilaunch,
        "description": description,
    }
    # Given only if set, as a ROCKET_TASKS entry omits them: blank is the default.
    entry.update({key: value for key, value in (("backend", backend), ("queue", queue)) if value})
    errors = registry.runtime_problems(name, entry)
    if not isinstance(description, str):
        errors.setdefault("description", []).append(
            f"description must be text, not {type(description).__name__}."
        )
    return errors


def schedule(
    name: str,
    func: str,
    start_cond: str,
    *,
    end_cond: str = "",
    parameters: dict[str, Any] | None = None,
    execution: str | None = None,
    timeout: Timeout = None,
    enabled: bool = True,
    replace: bool = False,
    multilaunch: bool = False,
    backend: str = "",
    queue: str = "",
    description: str = "",
) -> Task:
    """Create (or with ``replace``, change) a runtime task; return its row.

    Raises ValidationError, with messages per field, for anything a scheduler could not
    run: a condition that does not parse, a function off ``ROCKET_TASK_FUNCTIONS`` or
    that does not import, parameters that are not JSON or do not fit the function, a
    name that is a declared task's or (without ``replace``) already scheduled.

    The options after ``replace`` are a declared task's: ``multilaunch`` lets a run
    start while one is in progress; ``backend`` and ``queue`` pick where execution
    'tasks' enqueues (blank: the default); ``description`` is shown in the admin.
    """
    if conf.task_functions is None:
        raise ValidationError(registry.RUNTIME_OFF)
    errors = validate_runtime_task(
        name,
        func,
        start_cond,
        end_cond=end_cond,
        parameters=parameters,
        execution=execution,
        timeout=timeout,
        enabled=enabled,
        multilaunch=multilaunch,
        backend=backend,
        queue=queue,
        description=description,
    )
    if errors:
        raise ValidationError(errors)
    values: dict[str, Any] = {
        "func": func,
        "start_cond": start_cond,
        "end_cond": end_cond,
        "parameters": dict(parameters or {}),
        "execution": conf.execution if execution is None else execution,
        "timeout": timeout_text(timeout),
        "enabled": enabled,
        "multilaunch": multilaunch,
        "backend": backend,
        "queue": queue,
        "description": description,
        "declared": True,
        "source": TaskSource.RUNTIME,
        "start_cond_override": "",
        "end_cond_override": "",
    }
    try:
        task = _write(name, values, replace)
    except IntegrityError:
        # Another process created the same name between our read and our insert.
        raise ValidationError(
            {"name": [f"The task {name!r} was just scheduled by another process."]}
        ) from None
    logger.info("Scheduled runtime task %r: %s when %s.", name, func, start_cond)
    return task


def _write(name: str, values: dict[str, Any], replace: bool) -> Task:
    """Insert the task's row or, if the name is taken, check and change the row.

    The insert comes first, as most names are new: the unique name decides, and a
    taken one fails the insert, alone in autocommit mode or inside a savepoint (a
    caller's transaction goes on). Reading the row first, locked, cost as much as the
    insert, and a transaction around the lone insert two more statements.
    """
    try:
        if not transaction.get_autocommit():
            with transaction.atomic():
                return Task.objects.create(name=name, **values)
        return Task.objects.create(name=name, **values)
    except IntegrityError:
        pass
    with transaction.atomic():
        # The revision counter before the row, as every other write to tasks takes them:
        # the other order could deadlock with a bulk update (set_enabled) of this row.
        next_task_revision(router.db_for_write(Task))
        task = Task.objects.select_for_update().filter(name=name).first()
        if task is None:  # deleted since: raises IntegrityError if taken again meanwhile
            return Task.objects.create(name=name, **values)
        _check_replaceable(task, replace)
        for key, value in values.items():
            setattr(task, key, value)
        task.save()  # takes the next task revision: the scheduler's poll picks it up
    return task


def _check_replaceable(task: Task, replace: bool) -> None:
    if task.source != TaskSource.RUNTIME:
        raise ValidationError(
            {
                "name": [
                    f"{task.name!r} is a task declared in ROCKET_TASKS (now or before; its "
                    "runs are kept under that name); a runtime task cannot take it. "
                    "Choose another name."
                ]
            }
        )
    if task.declared and not replace:
        raise ValidationError(
            {
                "name": [
                    f"The runtime task {task.name!r} is already scheduled. Pass replace=True "
                    "to change it, or unschedule it first."
                ]
            }
        )


def unschedule(name: str) -> bool:
    """Take a runtime task off the schedule, keeping its runs; False if it was not on it.

    Raises ValidationError for a task declared in ROCKET_TASKS: remove it from settings.
    """
    task = Task.objects.filter(name=name).first()
    if task is None:
        return False
    if task.source != TaskSource.RUNTIME:
        raise ValidationError(
            f"{name!r} is declared in ROCKET_TASKS; remove it from settings.py instead "
            "(or pause it in the admin)."
        )
    if not task.declared:
        return False
    task.declared = False
    task.save(update_fields=["declared", "updated_at"])
    logger.info("Unscheduled runtime task %r; its runs are kept.", name)
    return True


# -- what the scheduler applies, and when it would be due


def runtime_row_spec(task: Task) -> TaskSpec:
    """Return a runtime task's spec from its row, without importing its function.

    Raises ValueError or TypeError for a row no scheduler can follow.
    """
    return registry.runtime_spec(
        task.name,
        task.func,
        task.start_cond,
        task.end_cond,
        task.execution,
        task.timeout,
        task.parameters,
        multilaunch=task.multilaunch,
        backend=task.backend,
        queue=task.queue,
        description=task.description,
    )


def effective_spec(task: Task, declared: dict[str, TaskSpec] | None) -> TaskSpec | None:
    """Return the spec a scheduler applies to ``task``'s row; None if none can.

    A declared task's is its declaration with the admin's override; a runtime task's
    comes from its row. ``declared`` is :func:`registry.collect`'s good tasks.
    """
    if task.source == TaskSource.RUNTIME and task.name not in (declared or {}):
        try:
            return runtime_row_spec(task)
        except (ValueError, TypeError):
            return None
    spec = (declared or {}).get(task.name)
    if spec is None:
        return None
    try:
        return registry.with_overrides(spec, task.start_cond_override, task.end_cond_override)
    except ConditionSyntaxError:
        return spec  # what the scheduler does too, logging the error


def due_times(
    name: str,
    cond: Condition,
    now: datetime,
    *,
    runs: Iterable[RunRecord] = (),
    count: int = PREVIEW_COUNT,
) -> list[datetime]:
    """Return the next ``count`` instants ``cond`` would start ``name``.

    Simulated from the task's past ``runs`` and the runs the preview itself starts
    (each taken to succeed at once), so a condition on other tasks' runs, or on its own
    failures, shows no time. At most a year ahead.
    """
    tz = registry.scheduler_zone()
    history = MemoryHistory(list(runs))
    times: list[datetime] = []
    at = now
    for step in range(20 * count):
        ctx = Context(task=name, now=at.astimezone(tz), history=history, tz=tz)
        due, change = cond.evaluate(ctx)
        if due:
            times.append(at.astimezone(tz))
            if len(times) >= count:
                break
            run_id = f"preview-{step}"
            history.record_start(RunRecord(task=name, run_id=run_id, started_at=at))
            history.record_finish(name, run_id, at, "success")
            due, change = cond.evaluate(Context(task=name, now=ctx.now, history=history, tz=tz))
            if due:  # true whatever ran: due again at the next tick
                change = at + timedelta(seconds=1)
        if change is None or change - now > PREVIEW_HORIZON:
            break
        at = max(change, at + timedelta(microseconds=1))
    return times


def task_due_times(
    task: Task, cond: Condition, now: datetime, runs: Iterable[TaskRun] | None = None
) -> list[datetime]:
    """Return when ``cond`` would next start ``task``, from its latest runs (see due_times).

    ``runs``: the task's latest started runs, if the caller has read them already.
    """
    if task.pk is None:  # a task being added: no runs yet
        return due_times(task.name, cond, now)
    if runs is None:
        runs = task.runs.filter(started_at__isnull=False).order_by("-started_at", "-id")[:50]
    records = [record_of(run, task.name) for run in runs if run.started_at is not None]
    return due_times(task.name, cond, now, runs=records)


# -- one run at a given time


def queue_run_at(task: Task, due_at: datetime, *, user: Any = None) -> TaskRun:
    """Queue one manual run of ``task`` to start at ``due_at`` (a clocked schedule).

    It is a queued run like "Run now", so it shows in the run list and can be cancelled
    there; the active scheduler starts it at that instant, whatever the task's condition
    and even if it is paused. Raises RunRefused for a task no scheduler runs, or an
    instant in the past.
    """
    if not task.declared:
        raise RunRefused(
            f"The task “{task.name}” is not on the schedule (removed from ROCKET_TASKS or "
            "unscheduled), so no scheduler can run it."
        )
    if due_at.utcoffset() is None:
        raise RunRefused(f"{due_at.isoformat()} has no time zone; give an aware datetime.")
    if due_at <= timezone.now():
        raise RunRefused(
            f"{due_at.isoformat()} is in the past; use “Run now” (runtask NAME) to run it now."
        )
    run = TaskRun.objects.create(
        task=task,
        status=RunStatus.QUEUED,
        trigger=RunTrigger.MANUAL,
        queued_at=timezone.now(),
        due_at=due_at,
    )
    logger.info(
        "Queued a run of task %r at %s%s.",
        task.name,
        due_at.isoformat(),
        f" for {user}" if user is not None else "",
        extra={"task_name": task.name, "run_id": str(run.run_id)},
    )
    return run
