"""Load the run history the conditions read, in a bounded number of queries.

The scheduler keeps one :class:`~django_rocket.conditions.bounded.BoundedHistory`
as its snapshot: per task, only what its conditions can read (their
:meth:`~django_rocket.conditions.Condition.needs`). Loading it reads, for every
task at once: the latest start and the latest finish of each outcome, the most
recent runs (only as many as the deepest retry chain a condition can count, see
:func:`retry_depth`), the runs in progress, the events inside the sliding
windows and the current periods that counting conditions look at, and, for a
count over all time, one count per outcome. Each query is index-backed, so the
load time does not grow with the size of the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo

from django.db import connection
from django.db.models import Count, OuterRef, Q, Subquery

from django_rocket.conditions import Condition, RunRecord
from django_rocket.conditions.bounded import BoundedHistory
from django_rocket.conditions.needs import Needs, merge_needs
from django_rocket.conditions.tasks import Retry
from django_rocket.models import FINISHED_STATUSES, RunStatus, Task, TaskRun
from django_rocket.registry import MAX_RETRY

# How far back an unlimited ``retry`` looks for the start of its chain.
RECENT_RUNS_PER_TASK = 50


def record_of(run: TaskRun, task_name: str) -> RunRecord:
    if run.started_at is None:
        # What RunRecord raises for it; callers pass started runs only.
        raise TypeError("started_at must be a datetime, not NoneType.")
    return _record(
        task_name,
        run.run_id,
        run.status,
        run.trigger,
        run.started_at,
        run.finished_at,
        run.exception_types,
    )


def _record(
    task_name: str,
    run_id: object,
    status: str,
    trigger: str,
    started_at: datetime,
    finished_at: datetime | None,
    exception_types: Sequence[str] | None = (),
) -> RunRecord:
    """The snapshot's record of one run row; a run not finished has no finish yet."""
    finished = status in FINISHED_STATUSES
    return RunRecord(
        task=task_name,
        run_id=str(run_id),
        started_at=started_at,
        finished_at=finished_at if finished else None,
        outcome=status if finished else None,
        trigger=trigger,
        exception_types=tuple(exception_types or ()) if finished else (),
    )


def latest_ids(task_ids: list[int] | None) -> set[int]:
    """Ids of the latest started run and the latest finish of each outcome, per task.

    ``None``: of every task, without listing 100,000 ids in the statement.
    """
    if task_ids is not None and not task_ids:
        return set()
    runs = TaskRun.objects.filter(task=OuterRef("pk"))
    annotations = {
        "latest_start": Subquery(
            runs.filter(started_at__isnull=False).order_by("-started_at", "-id").values("id")[:1]
        )
    }
    for status in FINISHED_STATUSES:
        annotations[f"latest_{status}"] = Subquery(
            runs.filter(status=status).order_by("-finished_at", "-id").values("id")[:1]
        )
    ids: set[int] = set()
    # Unordered: sorting 100,000 tasks by name for nothing cost PostgreSQL a second.
    tasks = Task.objects.order_by()
    tasks = tasks if task_ids is None else tasks.filter(pk__in=task_ids)
    for row in tasks.annotate(**annotations).values_list(*annotations):
        ids.update(row)
    ids.discard(None)  # a task with no run of that kind
    return ids


def retry_depth(cond: Condition | None) -> int:
    """How many of a task's most recent runs ``cond`` needs to decide its retry chain.

    ``retry(n)`` is true while the chain of failed runs is at most ``n`` long, so
    its ``n + 1`` latest runs decide it: a chain cut off there is still longer than
    ``n``. An unlimited ``retry`` gets :data:`RECENT_RUNS_PER_TASK`. A condition
    with no ``retry`` needs none beyond the latest ones, which the load always reads.
    A limit above :data:`~django_rocket.registry.MAX_RETRY` (refused by check E014,
    but a ``TaskSpec`` can be built without it) reads as many runs as that bound: the
    query's LIMIT must fit the database's integers, and any chain that long is allowed.
    """
    if cond is None:
        return 0
    if isinstance(cond, Retry):
        return RECENT_RUNS_PER_TASK if cond.n is None else min(cond.n, MAX_RETRY) + 1
    return max((retry_depth(child) for child in cond.children()), default=0)


def _recent_ids(limit: int, task_ids: Sequence[int]) -> set[int]:
    """Ids of each task's ``limit`` most recent runs, in one query.

    Every form reads, per task, ``limit`` entries of the (task, started_at) index, so
    the cost does not grow with the size of the log. PostgreSQL needs LATERAL for that:
    with ``JOIN ... ON r.id IN (subquery)`` it evaluates the subquery once per (run, task)
    pair (319 s at 100,000 rows). SQLite has no LATERAL but plans the ``IN`` form per
    task (8 ms at 1,000,000 rows). MariaDB refuses a LIMIT inside ``IN`` and has no
    LATERAL, so on MySQL and MariaDB each task gets its own limited SELECT, joined by
    UNION ALL (75 ms for 2,000 tasks at 100,000 rows on MariaDB 10.11).
    """
    if not task_ids:
        return set()
    runs, tasks = (connection.ops.quote_name(m._meta.db_table) for m in (TaskRun, Task))

    def recent(task_id: str) -> str:
        return (
            f"SELECT r2.id FROM {runs} r2 WHERE r2.task_id = {task_id} AND r2.started_at "
            "IS NOT NULL ORDER BY r2.started_at DESC, r2.id DESC LIMIT %s"
        )

    if connection.vendor == "mysql":
        sql = " UNION ALL ".join([f"({recent('%s')})"] * len(task_ids))
        params = [value for task_id in task_ids for value in (task_id, limit)]
    elif connection.vendor == "postgresql":
        sql = f"SELECT r.id FROM {tasks} t CROSS JOIN LATERAL ({recent('t.id')}) r"
        params = [limit]
    else:
        sql = f"SELECT r.id FROM {tasks} t JOIN {runs} r ON r.id IN ({recent('t.id')})"
        params = [limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


# The columns a RunRecord is made of, in the order load() unpacks them.
RECORD_COLUMNS = (
    "id",
    "task_id",
    "run_id",
    "status",
    "trigger",
    "started_at",
    "finished_at",
    "exception_types",
)


def _counted_since(now: datetime, needs: Needs, tz: tzinfo) -> datetime | None:
    """The earliest instant whose events a task's counting conditions read at ``now``."""
    instants = [now - length for _, length in needs.windows]
    wall = now.astimezone(tz)
    instants += [span.around(now, wall, tz)[1].start for _, span in needs.periods]
    return min(instants, default=None)


def _set_totals(history: BoundedHistory, names: dict[int, str], needs: Mapping[str, Needs]) -> None:
    """Give the conditions that count over all time the counts of the whole log."""
    counted = [pk for pk, name in names.items() if name in needs and needs[name].totals]
    if not counted:
        return
    runs = TaskRun.objects.order_by().filter(task_id__in=counted)
    for task_id, status, count in runs.values_list("task_id", "status").annotate(Count("id")):
        history.set_total(names[task_id], status, count)
    started = runs.filter(started_at__isnull=False).values_list("task_id").annotate(Count("id"))
    for task_id, count in started:
        history.set_total(names[task_id], "start", count)


def load(
    now: datetime,
    *,
    needs: Mapping[str, Needs] | None = None,
    tz: tzinfo = UTC,
    recent: int = RECENT_RUNS_PER_TASK,
) -> tuple[BoundedHistory, dict[str, int]]:
    """Build the snapshot; return it with the id of each task's latest failed run.

    ``needs`` is what each task's conditions read (:func:`needs_of`), ``tz`` the
    zone their periods are counted in. ``recent`` is how many of each task's
    latest runs to read besides the latest start and finishes (the callers pass
    the largest :func:`retry_depth` of their conditions). Rows are read as
    tuples, not model instances: building a model for each was most of the load's time.
    """
    needs = dict(needs or {})
    names = dict(Task.objects.values_list("pk", "name"))
    ids = latest_ids(None) if names else set()
    if recent > 0:
        ids |= _recent_ids(recent, list(names))
    # Unordered (the rows are sorted below): the model's default order could make the
    # database walk a whole index instead of looking the ids up.
    runs = TaskRun.objects.order_by()
    rows = list(
        runs.filter(pk__in=ids).exclude(status=RunStatus.QUEUED).values_list(*RECORD_COLUMNS)
    )
    rows += runs.running().exclude(pk__in=ids).values_list(*RECORD_COLUMNS)
    # The events counting conditions read: one query per distinct instant they read from.
    groups: dict[datetime, list[int]] = {}
    for pk, name in names.items():
        since = _counted_since(now, needs[name], tz) if name in needs else None
        if since is not None:
            groups.setdefault(since, []).append(pk)
    for since, task_ids in groups.items():
        rows += (
            runs.filter(Q(started_at__gte=since) | Q(finished_at__gte=since), task_id__in=task_ids)
            .exclude(status=RunStatus.QUEUED)
            .exclude(pk__in=[r[0] for r in rows])
            .values_list(*RECORD_COLUMNS)
        )
    rows.sort(key=lambda r: (r[5] or now, r[0]))
    history = BoundedHistory(
        needs,
        tz,
        (
            _record(names[task_id], run_id, status, trigger, started_at, finished_at, types)
            for _, task_id, run_id, status, trigger, started_at, finished_at, types in rows
            if started_at
        ),
    )
    history.trim(now)
    _set_totals(history, names, needs)
    last_failed: dict[str, int] = {}
    for pk, task_id, _, status, *_ in rows:
        if status == RunStatus.FAIL:
            last_failed[names[task_id]] = pk
    return history, last_failed


def needs_of(conditions: Mapping[str, Iterable[Condition | None]]) -> dict[str, Needs]:
    """Return what history each task must keep for the conditions of each owner task."""
    return merge_needs(
        cond.needs(owner)
        for owner, conds in conditions.items()
        for cond in conds
        if cond is not None
    )
