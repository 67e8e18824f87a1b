"""Crash recovery: runs left ``running`` by a process that is gone are recorded as ``crash``."""

from __future__ import annotations

import logging
from collections.abc import Container
from datetime import datetime, timedelta

from django_rocket.engine.events import log_run_event
from django_rocket.engine.leadership import pid_alive
from django_rocket.models import TaskRun
from django_rocket.registry import TaskSpec

logger = logging.getLogger("django_rocket.scheduler")


def recover_crashed(
    now: datetime,
    *,
    specs: dict[str, TaskSpec],
    own_runs: Container[str],
    instance_pk: int | None,
    host: str,
    pid: int,
    lease_timeout: timedelta,
) -> int:
    """Mark runs left ``running`` by a scheduler that is gone as ``crash``; return how many."""
    crashed = [
        run
        for run in TaskRun.objects.running().select_related("scheduler", "task")
        if _is_orphan(run, now, specs, own_runs, instance_pk, host, lease_timeout)
    ]
    for run in crashed:
        who = _scheduler_of(run)
        run.crash(
            now,
            f"The scheduler {who} stopped while this run was in progress; "
            f"detected at {now.isoformat()} by {host}:{pid}.",
        )
        log_run_event(
            run.task.name,
            str(run.run_id),
            "crash",
            run.started_at,
            now,
            level=logging.ERROR,
            message=run.message,
        )
    if crashed:
        logger.warning("Recorded %d run(s) as crash.", len(crashed))
    return len(crashed)


def _scheduler_of(run: TaskRun) -> str:
    """Name the scheduler that ran ``run``: its instance, else the row's host and pid.

    The row's host and pid are the worker's for a run of execution ``tasks`` (the
    follower records where it ran): the soak test found crash messages naming a
    django-tasks-db worker's pid as "the scheduler".
    """
    inst = run.scheduler
    if inst is not None:
        return f"{inst.host}:{inst.pid}"
    return f"{run.host}:{run.pid}" if run.host else "an unknown scheduler"


def _is_orphan(
    run: TaskRun,
    now: datetime,
    specs: dict[str, TaskSpec],
    own_runs: Container[str],
    instance_pk: int | None,
    host: str,
    lease_timeout: timedelta,
) -> bool:
    """Whether the process that was running ``run`` is gone."""
    if run.run_id and str(run.run_id) in own_runs:
        return False
    inst = run.scheduler
    if inst is not None and inst.pk == instance_pk:
        return False
    if run.host == host and run.pid and not pid_alive(run.pid):
        return True
    if inst is not None:
        return inst.stopped_at is not None or inst.last_seen < now - lease_timeout
    if run.host != host:
        spec = specs.get(run.task.name)
        limit = spec.timeout if spec and spec.timeout else timedelta(days=1)
        return run.started_at is not None and run.started_at < now - limit - lease_timeout
    return False
