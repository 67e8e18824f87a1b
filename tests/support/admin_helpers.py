"""Builders shared by the admin tests: declared tasks, runs, users with given permissions."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from django.contrib.auth.models import Permission, User
from django.utils import timezone

from django_rocket.models import RunStatus, RunTrigger, SchedulerInstance, Task, TaskRun

DECLARED = {
    "report": {
        "func": "tests.support.tasks.noop",
        "start_cond": "every('1 hour')",
        "execution": "main",
        "description": "Builds the nightly report.",
    },
    "sync": {"func": "tests.support.tasks.fails", "start_cond": "daily", "execution": "main"},
}

_hosts = itertools.count()


def make_task(name: str = "report", **fields) -> Task:
    values = {
        "func": "tests.support.tasks.noop",
        "start_cond": "every('1 hour')",
        "execution": "main",
    }
    values.update(fields)
    return Task.objects.create(name=name, **values)


def make_run(
    task: Task,
    status: str = RunStatus.SUCCESS,
    *,
    started_at: datetime | None = None,
    runtime: float | None = 1.5,
    **fields,
) -> TaskRun:
    started_at = started_at or timezone.now() - timedelta(minutes=5)
    finished = status not in (RunStatus.QUEUED, RunStatus.RUNNING)
    values = {
        "task": task,
        "status": status,
        "started_at": None if status == RunStatus.QUEUED else started_at,
        "trigger": RunTrigger.SCHEDULED,
        "host": "worker-1",
        "pid": 4242,
    }
    if finished and runtime is not None:
        values["runtime"] = timedelta(seconds=runtime)
        values["finished_at"] = started_at + values["runtime"]
    elif finished:
        values["finished_at"] = started_at
    values.update(fields)
    return TaskRun.objects.create(**values)


def make_runs(task: Task, count: int, *, start: datetime | None = None, **fields) -> list[TaskRun]:
    """Create ``count`` runs one minute apart, cycling through the outcomes, in one query."""
    start = start or timezone.now() - timedelta(days=1)
    outcomes = [RunStatus.SUCCESS, RunStatus.SUCCESS, RunStatus.FAIL, RunStatus.INACTION]
    runs = []
    for i in range(count):
        began = start + timedelta(minutes=i)
        runtime = timedelta(seconds=1 + i % 7)
        runs.append(
            TaskRun(
                task=task,
                status=outcomes[i % len(outcomes)],
                started_at=began,
                finished_at=began + runtime,
                runtime=runtime,
                host="worker-1",
                pid=4242,
                **fields,
            )
        )
    return TaskRun.objects.bulk_create(runs)


def alive_scheduler(**fields) -> SchedulerInstance:
    values = {"host": f"host-{next(_hosts)}", "pid": 100, "role": "active"}
    values.update(fields)
    return SchedulerInstance.objects.create(**values)


def staff_user(username: str, *perms: str) -> User:
    """Create a staff user holding the given ``app_label.codename`` permissions."""
    user = User.objects.create_user(username, is_staff=True)  # no password: tests force_login
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


VIEW_PERMS = (
    "django_rocket.view_task",
    "django_rocket.view_taskrun",
    "django_rocket.view_schedulerinstance",
)
