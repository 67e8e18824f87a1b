"""Crash recovery and adoption: what the active scheduler does with runs another one left.

A run this machine executes itself (process, thread, async, main) dies with its
scheduler: left ``running`` by a process that is gone, it is recorded as ``crash``.
A run handed to a Tasks framework backend is not the scheduler's: its row says where
it went (backend, queue, result id), it goes on on its worker whatever happens to the
scheduler, and the active scheduler adopts it: follows it through its backend and
records its true outcome. Only a result the backend has lost makes it a ``crash``
(the follower decides that, after two polls in a row).
"""

from __future__ import annotations

import logging
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django_rocket.display import format_runtime
from django_rocket.engine.events import log_run_event
from django_rocket.engine.leadership import Here, pid_alive
from django_rocket.models import RunStatus, SchedulerInstance, SchedulerRole, TaskRun
from django_rocket.registry import TaskSpec

logger = logging.getLogger("django_rocket.scheduler")


@dataclass
class Recovered:
    """What one recovery pass did: local runs recorded as crash, remote runs to adopt."""

    crashed: int = 0
    adopt: list[TaskRun] = field(default_factory=list)


def recover_crashed(
    now: datetime,
    *,
    specs: dict[str, TaskSpec],
    own_runs: Container[str],
    instance_pk: int | None,
    here: Here,
    lease_timeout: timedelta,
    answering_since: datetime | None = None,
) -> Recovered:
    """Record local runs of schedulers that are gone as ``crash``; claim their remote runs.

    Each crash message says why: the scheduler stopped, the ``runtask`` process stopped
    or its heartbeat did, or an older ``runtask`` run elsewhere, without a heartbeat, is
    older than its timeout. Only a row still
    ``running`` is recorded so: a finish written since it was read stays.
    ``own_runs`` are the runs this scheduler already follows. A remote run is claimed
    (its row's scheduler becomes this one) unless the scheduler that has it is alive
    and active; the caller adopts the claimed runs.

    ``answering_since``: when the database answered this scheduler again after an outage
    (None: it saw none). A heartbeat is taken as stopped only once the database has
    answered for a whole lease since: every other process's heartbeats failed during the
    outage too, and a ``runtask`` that waited it out records its finish soon after.
    """
    judged = answering_since is None or answering_since <= now - lease_timeout
    lease = lease_timeout if judged else None
    crashed: list[TaskRun] = []
    remote: list[TaskRun] = []
    for run in TaskRun.objects.running().select_related("scheduler", "task"):
        if run.run_id and str(run.run_id) in own_runs:
            continue
        if run.remote_id:
            if _may_adopt(run, now, instance_pk, here, lease):
                remote.append(run)
            continue
        cause = _orphaned(run, now, specs, instance_pk, here, lease, lease_timeout)
        if cause is None:
            continue
        message = f"{cause}; detected at {now.isoformat()} by {here.host}:{here.pid}."
        if not run.crash(now, message):
            continue  # it ended after all, its finish written since it was read
        crashed.append(run)
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
    return Recovered(len(crashed), _claim(remote, instance_pk))


def _claim(runs: list[TaskRun], instance_pk: int | None) -> list[TaskRun]:
    """Make this scheduler the one following ``runs``; return those still running."""
    if not runs:
        return []
    pks = [run.pk for run in runs]
    TaskRun.objects.filter(pk__in=pks, status=RunStatus.RUNNING).update(scheduler_id=instance_pk)
    still = set(
        TaskRun.objects.filter(pk__in=pks, status=RunStatus.RUNNING).values_list("pk", flat=True)
    )
    claimed = [run for run in runs if run.pk in still]
    if claimed:
        logger.info(
            "Adopting %d run(s) on task backends that another scheduler enqueued.", len(claimed)
        )
    return claimed


def _pid_seen_here(run: TaskRun, here: Here) -> bool:
    """Whether the row's pid names a process that this one would see: same processes.

    Same host name, and the PID namespace the pid was recorded in (its scheduler's, or a
    ``runtask`` run's own): a live process in another container with this hostname is not
    here to be seen. A runtask row from before migration 0011, or a worker's pid on a
    remote run, was recorded without one: the host name alone decides, as it did.
    """
    if run.host != here.host:
        return False
    inst = run.scheduler
    if inst is not None and (inst.host, inst.pid) == (run.host, run.pid):
        return inst.pid_namespace == here.pid_namespace
    return run.pid_namespace is None or run.pid_namespace == here.pid_namespace


def _owner_gone(
    run: TaskRun, inst: SchedulerInstance, now: datetime, here: Here, lease: timedelta | None
) -> bool:
    """Whether ``inst``, the scheduler that recorded ``run``, is gone.

    ``lease`` None: heartbeats are not judged now (the database was just away).
    """
    if run.pid and _pid_seen_here(run, here) and not pid_alive(run.pid):
        return True
    if inst.stopped_at is not None:
        return True
    return lease is not None and inst.last_seen < now - lease


def _may_adopt(
    run: TaskRun, now: datetime, instance_pk: int | None, here: Here, lease: timedelta | None
) -> bool:
    """Whether to follow a remote run: unless a live, active scheduler still follows it."""
    inst = run.scheduler
    if inst is None or inst.pk == instance_pk:
        return True  # its scheduler's row was deleted, or this one left it (lost the lease)
    return _owner_gone(run, inst, now, here, lease) or inst.role != SchedulerRole.ACTIVE


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


def _orphaned(
    run: TaskRun,
    now: datetime,
    specs: dict[str, TaskSpec],
    instance_pk: int | None,
    here: Here,
    lease: timedelta | None,
    lease_timeout: timedelta,
) -> str | None:
    """Why the process that was running the local run ``run`` is gone; None if it may not be.

    ``lease`` None: heartbeats are not judged now (the database was just away).
    """
    inst = run.scheduler
    if inst is None:
        return _runtask_gone(run, now, specs, here, lease, lease_timeout)
    if inst.pk == instance_pk or not _owner_gone(run, inst, now, here, lease):
        return None
    return f"The scheduler {_scheduler_of(run)} stopped while this run was in progress"


def _runtask_gone(
    run: TaskRun,
    now: datetime,
    specs: dict[str, TaskSpec],
    here: Here,
    lease: timedelta | None,
    lease_timeout: timedelta,
) -> str | None:
    """Why the process of a run no scheduler follows (``runtask``) is gone; None if not.

    As for a scheduler: a pid this process would see, and does not, is gone at once; a
    heartbeat (``last_seen``) older than the lease is gone wherever it ran. A row written
    before migration 0012 has no heartbeat: on another host it is gone once older than
    its task's timeout plus the lease.
    """
    where = f"{run.host}:{run.pid}" if run.host else "a process that recorded no host"
    pid = run.pid or 0
    seen_here = pid > 0 and _pid_seen_here(run, here)
    if seen_here and not pid_alive(pid):
        return f"The process {where} that ran it (runtask) stopped while this run was in progress"
    if run.last_seen is not None:
        if lease is None or run.last_seen >= now - lease:
            return None
        return (
            f"The process {where} that ran it (runtask) last recorded that it was alive at "
            f"{run.last_seen.isoformat()}, longer ago than the lease "
            f"({format_runtime(lease_timeout)})"
        )
    if seen_here:
        return None  # a runtask here whose process is alive
    # Another host, or a runtask in another container with this host name, from before
    # the heartbeat: nothing here can see whether it still runs. Its timeout is a guess.
    spec = specs.get(run.task.name)
    limit = spec.timeout if spec and spec.timeout else timedelta(days=1)
    if run.started_at is None or run.started_at >= now - limit - lease_timeout:
        return None
    return (
        f"Its process {where} (runtask) could not be seen from here (another host or PID "
        f"namespace), and the run started more than {format_runtime(limit + lease_timeout)} "
        f"ago ({'its timeout' if spec and spec.timeout else 'a day, as its task has no timeout'}"
        ", plus the lease)"
    )
