"""What the admin and the commands read: the active scheduler, task overviews, next runs.

The overview of a page of tasks takes a fixed number of index-backed queries,
whatever the size of the run log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from django_rocket import registry
from django_rocket.conditions import Condition, Context, MemoryHistory
from django_rocket.conditions.retrying import format_number
from django_rocket.conditions.tasks import Retry
from django_rocket.conf import conf
from django_rocket.engine.snapshot import RECORD_COLUMNS, record_of
from django_rocket.models import (
    FAILURE_STATUSES,
    FINISHED_STATUSES,
    RunStatus,
    SchedulerInstance,
    SchedulerRole,
    Task,
    TaskRun,
)
from django_rocket.ops.schedules import effective_spec
from django_rocket.registry import TaskSpec

logger = logging.getLogger("django_rocket.services")

# How many of a task's latest runs the success rate and mean runtime look at.
RECENT_RUNS = 20

_RUN_FIELDS = (*RECORD_COLUMNS, "runtime")


def active_scheduler(max_age: float | timedelta | None = None) -> SchedulerInstance | None:
    """Return the active scheduler if it was seen within ``max_age`` (ROCKET_HEALTH_MAX_AGE)."""
    if max_age is None:
        max_age = conf.health_max_age
    if not isinstance(max_age, timedelta):
        max_age = timedelta(seconds=max_age)
    return (
        SchedulerInstance.objects.filter(
            role=SchedulerRole.ACTIVE, last_seen__gte=timezone.now() - max_age
        )
        .order_by("-last_seen")
        .first()
    )


def last_seen_scheduler() -> SchedulerInstance | None:
    """Return the scheduler instance seen most recently, whatever its role."""
    return SchedulerInstance.objects.order_by("-last_seen").first()


@dataclass(frozen=True)
class RetryDue:
    """The next retry of a failed run: which one, of how many, and when it is due."""

    attempt: int
    limit: int | None
    at: datetime
    backoff: float = 1.0
    jitter: float = 0.0

    def describe(self, now: datetime) -> str:
        """Say when, in ``now``'s time zone: ``retry 2 of 3 due at 10:24:13 (backoff 2x)``."""
        at = self.at.astimezone(now.tzinfo)
        when = at.strftime("%H:%M:%S" if at.date() == now.date() else "%Y-%m-%d %H:%M:%S")
        of = f" of {self.limit}" if self.limit is not None else ""
        times = "\N{MULTIPLICATION SIGN}"  # as operators read it: backoff 2 times
        notes = [f"backoff {format_number(self.backoff)}{times}"] if self.backoff != 1 else []
        if self.jitter:
            notes.append(f"jitter ±{format_number(round(self.jitter * 100, 1))} %")
        detail = f" ({', '.join(notes)})" if notes else ""
        return f"retry {self.attempt}{of} due at {when}{detail}"


def retry_due(cond: Condition, ctx: Context) -> RetryDue | None:
    """The retry of ``cond`` coming next after a failure, or None if none is coming."""
    if isinstance(cond, Retry):
        due = cond.due(ctx)
        if due is None:
            return None
        return RetryDue(due[0], cond.n, due[1], cond.backoff, cond.jitter)
    for child in cond.children():
        found = retry_due(child, ctx)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class NextRun:
    """When a task may next start, as far as its start condition can tell.

    ``state`` is one of: ``"at"`` (see ``at``), ``"due"`` (its condition is
    true now), ``"event"`` (only another run can make it true), ``"busy"``
    (due, but its run in progress must finish first), ``"paused"``,
    ``"undeclared"`` or ``"unknown"`` (the condition could not be evaluated).
    """

    state: str
    at: datetime | None = None
    retry: RetryDue | None = None


@dataclass(frozen=True)
class TaskOverview:
    """What the admin shows about one task."""

    status: str = ""  # "running", "queued", the latest run's outcome, or "" if it never ran
    last_run: TaskRun | None = None  # the latest run started
    last_success: TaskRun | None = None  # the latest run that finished with success
    last_failure: TaskRun | None = None  # the latest to finish failed, crashed or terminated
    recent_finished: int = 0
    success_rate: float | None = None  # share of recent finished runs that did not fail
    mean_runtime: timedelta | None = None
    next_run: NextRun = NextRun("unknown")


def _run_subquery(**filters: Any) -> QuerySet[TaskRun]:
    return TaskRun.objects.filter(task=OuterRef("pk"), **filters)


def task_overview(
    tasks: Sequence[Task], *, now: datetime | None = None, recent: int = RECENT_RUNS
) -> dict[int, TaskOverview]:
    """Return the overview of each task, keyed by pk, in two queries.

    The first reads, per task, the ids of its latest start and latest finish of
    each outcome, its queued run, and the start time of its ``recent``-th latest
    run; the second reads those runs, the runs in that recent window and the runs
    in progress. Every lookup walks an index on ``(task, …)``.
    """
    if not tasks:
        return {}
    now = now or timezone.now()
    declared = declared_specs()
    # What the scheduler applies: a declared task with its override, or a runtime task.
    specs = dict(declared or {})
    for task in tasks:
        spec = effective_spec(task, declared)
        if spec is not None:
            specs[task.name] = spec
    wanted = {task.name for task in tasks}
    if specs:
        for task in tasks:
            spec = specs.get(task.name)
            if spec is not None:
                for cond in (spec.start_cond, spec.end_cond):
                    if cond is not None:
                        wanted |= set(cond.depends_on(task.name))
    started = {"started_at__isnull": False}
    annotations: dict[str, Any] = {
        "latest_start": Subquery(
            _run_subquery(**started).order_by("-started_at", "-id").values("id")[:1]
        ),
        "window_start": Subquery(
            _run_subquery(**started)
            .order_by("-started_at", "-id")
            .values("started_at")[recent - 1 : recent]
        ),
        "has_queued": Exists(_run_subquery(status=RunStatus.QUEUED)),
    }
    for status in FINISHED_STATUSES:
        annotations[f"latest_{status}"] = Subquery(
            _run_subquery(status=status, finished_at__isnull=False)
            .order_by("-finished_at", "-id")
            .values("id")[:1]
        )
    rows = list(
        Task.objects.filter(Q(pk__in=[t.pk for t in tasks]) | Q(name__in=wanted))
        .annotate(**annotations)
        .values("pk", "name", *annotations)
    )
    ids: set[int] = set()
    scope = Q(status=RunStatus.RUNNING, task_id__in=[row["pk"] for row in rows])
    whole = []
    for row in rows:
        ids.update(row[key] for key in annotations if key.startswith("latest_") and row[key])
        if row["window_start"] is None:
            whole.append(row["pk"])
        else:
            scope |= Q(task_id=row["pk"], started_at__gte=row["window_start"])
    if whole:
        scope |= Q(task_id__in=whole, started_at__isnull=False)
    if ids:
        scope |= Q(pk__in=ids)
    runs: dict[int, list[TaskRun]] = {row["pk"]: [] for row in rows}
    by_id: dict[int, TaskRun] = {}
    for run in TaskRun.objects.filter(scope).order_by().only(*_RUN_FIELDS):
        runs[run.task_id].append(run)
        by_id[run.pk] = run
    names = {row["pk"]: row["name"] for row in rows}
    history = _history(runs, names)
    by_task = {row["pk"]: row for row in rows}
    return {
        task.pk: _overview(
            task, by_task[task.pk], runs[task.pk], by_id, recent, specs, history, now
        )
        for task in tasks
    }


def _overview(
    task: Task,
    row: dict[str, Any],
    runs: list[TaskRun],
    by_id: dict[int, TaskRun],
    recent: int,
    specs: dict[str, TaskSpec] | None,
    history: MemoryHistory | None,
    now: datetime,
) -> TaskOverview:
    def latest(key: str) -> TaskRun | None:
        return by_id.get(row[key]) if row[key] else None

    newest = latest("latest_start")
    running = [r for r in runs if r.status == RunStatus.RUNNING]
    status: str
    if running:
        status = RunStatus.RUNNING
    elif row["has_queued"]:
        status = RunStatus.QUEUED
    else:
        status = newest.status if newest is not None else ""
    success = latest(f"latest_{RunStatus.SUCCESS}")
    failures = [r for r in (latest(f"latest_{s}") for s in FAILURE_STATUSES) if r]
    window = sorted(
        (r for r in runs if r.started_at is not None), key=lambda r: (r.started_at, r.pk)
    )[-recent:]
    finished = [r for r in window if r.status in FINISHED_STATUSES]
    timed = [r.runtime for r in finished if r.runtime is not None]
    return TaskOverview(
        status=status,
        last_run=newest,
        last_success=success,
        last_failure=max(failures, key=lambda r: (r.finished_at, r.pk), default=None),
        recent_finished=len(finished),
        success_rate=(
            sum(r.status not in FAILURE_STATUSES for r in finished) / len(finished)
            if finished
            else None
        ),
        mean_runtime=sum(timed, timedelta()) / len(timed) if timed else None,
        next_run=next_run(task, specs, history, now, busy=bool(running)),
    )


def recent_runs(task: Task, limit: int = 50) -> list[TaskRun]:
    """Return the task's latest ``limit`` started runs, oldest first."""
    runs = list(task.runs.filter(started_at__isnull=False).order_by("-started_at", "-id")[:limit])
    runs.reverse()
    return runs


# ---------------------------------------------------------------------- next run


def declared_specs() -> dict[str, TaskSpec] | None:
    """Return the valid declared task specs, or None if ROCKET_TASKS cannot be read at all.

    A task with a configuration error is left out (``manage.py check`` names it);
    the others keep their next run.
    """
    try:
        return registry.collect()[0]
    except Exception:
        # The admin must stay usable while ROCKET_TASKS is broken; `manage.py check` says why.
        logger.debug("The declared tasks cannot be read; next runs are unknown.", exc_info=True)
        return None


def _history(runs: dict[int, list[TaskRun]], names: dict[int, str]) -> MemoryHistory | None:
    records = [
        record_of(run, names[task_pk])
        for task_pk, task_runs in runs.items()
        for run in task_runs
        if run.started_at is not None
    ]
    try:
        return MemoryHistory(records)
    except (TypeError, ValueError):
        logger.debug("The run history could not be built.", exc_info=True)
        return None


def next_run(
    task: Task,
    specs: dict[str, TaskSpec] | None,
    history: MemoryHistory | None,
    now: datetime,
    *,
    busy: bool = False,
) -> NextRun:
    """Return when ``task`` may next start, evaluating its start condition on ``history``.

    The history holds the task's recent runs and its latest finish of each
    outcome, so conditions counting runs over long periods are approximate.
    """
    if not task.declared:
        return NextRun("undeclared")
    if not task.enabled:
        return NextRun("paused")
    spec = (specs or {}).get(task.name)
    if spec is None or history is None:
        return NextRun("unknown")
    try:
        tz = registry.scheduler_zone()
        ctx = Context(task=task.name, now=now.astimezone(tz), history=history, tz=tz)
        due, change = spec.start_cond.evaluate(ctx)
        retry = retry_due(spec.start_cond, ctx)
    except Exception:
        logger.debug("The start condition of %r could not be evaluated.", task.name, exc_info=True)
        return NextRun("unknown")
    if due:
        return NextRun("busy" if busy and not spec.multilaunch else "due", retry=retry)
    if change is None:
        return NextRun("event", retry=retry)
    return NextRun("at", change, retry)
