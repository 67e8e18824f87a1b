"""Requests from people: queue a run (run now, retry), pause and resume tasks.

They go through here, never through the scheduler: they are rows the running
scheduler picks up at its next poll; on PostgreSQL a queued run also notifies it,
so an idle scheduler starts it at once (:mod:`django_rocket.engine.listener`).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from django_rocket import RocketError
from django_rocket.engine.listener import notify_schedulers
from django_rocket.models import FAILURE_STATUSES, RunStatus, RunTrigger, Task, TaskRun

logger = logging.getLogger("django_rocket.services")

# Outcomes that count as failures: "Last failure", the success rate, and what Retry accepts.
RETRYABLE_STATUSES = FAILURE_STATUSES


class RunRefused(RocketError):
    """A run cannot be queued; the message says why and what to do."""


def queue_run(
    task: Task, *, retry_of: TaskRun | None = None, user: Any = None
) -> tuple[TaskRun, bool]:
    """Queue a manual run of ``task``; return it and whether it was created.

    A task has at most one queued run (a database constraint), so a double
    submission, even from two requests racing each other, returns the run the
    first one queued.
    """
    if not task.declared:
        raise RunRefused(
            f"The task “{task.name}” is no longer declared in ROCKET_TASKS, so no scheduler "
            "can run it. Declare it again to run it."
        )
    if retry_of is not None:
        if retry_of.task_id != task.pk:
            raise RunRefused(f"Run {retry_of.run_id} is not a run of the task “{task.name}”.")
        if retry_of.status not in RETRYABLE_STATUSES:
            raise RunRefused(
                f"Run {retry_of.run_id} ended with “{retry_of.get_status_display()}”; "
                "only failed, crashed or terminated runs can be retried."
            )
    existing = _queued_run(task)
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            run = TaskRun.objects.create(
                task=task,
                status=RunStatus.QUEUED,
                trigger=RunTrigger.MANUAL,
                retry_of=retry_of,
                queued_at=timezone.now(),
            )
            notify_schedulers()  # PostgreSQL: an idle scheduler wakes when this commits
    except IntegrityError:
        # Another request queued one between our check and our insert. It may even
        # have started already, so return the newest manual run rather than a second one:
        # newest by start, along the index (task, started_at) (migration 0009).
        manual = TaskRun.objects.filter(task=task, trigger=RunTrigger.MANUAL)
        winner = (
            manual.queued().filter(due_at__isnull=True).first()
            or manual.order_by("-started_at", "-pk").first()
        )
        if winner is None:
            raise
        return winner, False
    logger.info(
        "Queued a manual run of task %r%s%s.",
        task.name,
        f" retrying run {retry_of.run_id}" if retry_of is not None else "",
        f" for {user}" if user is not None else "",
        extra={"task_name": task.name, "run_id": str(run.run_id)},
    )
    return run, True


def _queued_run(task: Task) -> TaskRun | None:
    # A run queued for a given time (runtask --at) is not a "run now".
    return TaskRun.objects.queued().filter(task=task, due_at__isnull=True).first()


def set_enabled(tasks: Task | QuerySet[Task], enabled: bool) -> int:
    """Pause or resume tasks; return how many changed.

    The update takes the next task revision (``TaskQuerySet.update``), which the
    scheduler's poll reads, so the change takes effect at its next poll;
    ``updated_at`` moves with it for the admin.
    """
    now = timezone.now()
    if isinstance(tasks, Task):
        changed = (
            Task.objects.filter(pk=tasks.pk)
            .exclude(enabled=enabled)
            .update(enabled=enabled, updated_at=now)
        )
        tasks.enabled = enabled
        if changed:
            tasks.updated_at = now
        return changed
    return tasks.exclude(enabled=enabled).update(enabled=enabled, updated_at=now)
