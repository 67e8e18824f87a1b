"""Delete old runs in small batches, keeping every run the conditions still read.

Used by ``manage.py pruneruns`` and, for ``ROCKET_RUN_RETENTION``, by the
scheduler. A run is old when it finished before the cutoff. Runs in progress or
queued are never touched, and per task these are kept whatever their age: the
latest start, the latest finish of each outcome (what ``every``, ``after_*`` and
bare ``succeeded``/``failed`` read) and the open retry chain (what ``retry(n)``
counts). Each batch is its own short transaction, found by walking the primary
key, so pruning millions of rows never holds a lock for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from django_rocket.conditions import parse_duration
from django_rocket.conf import conf
from django_rocket.engine.snapshot import latest_ids
from django_rocket.models import (
    FAILURE_STATUSES,
    FINISHED_STATUSES,
    RunStatus,
    RunTrigger,
    Task,
    TaskRun,
)

BATCH_SIZE = 5000
# Runs read at a time while walking a task's retry chain back from its latest run.
_CHAIN_PAGE = 100


@dataclass(frozen=True)
class PruneResult:
    """What a prune did (or, on a dry run, would do)."""

    cutoff: datetime
    deleted: int
    kept: int  # runs older than the cutoff kept because conditions still read them
    batches: int
    dry_run: bool = False
    complete: bool = True  # False when max_batches stopped it before the end


def prune_runs(
    older_than: timedelta | str | float,
    *,
    keep_failed: bool = False,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    max_batches: int | None = None,
    now: datetime | None = None,
) -> PruneResult:
    """Delete the runs that finished more than ``older_than`` ago, except those still needed.

    ``keep_failed`` also keeps runs that ended ``fail``, ``crash`` or ``terminate``.
    ``max_batches`` bounds the work of one call (the scheduler prunes a little at a
    time); the result's ``complete`` says whether anything is left.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size!r}.")
    cutoff = _cutoff(now or timezone.now(), parse_duration(older_than))
    keep = needed_runs()
    old = TaskRun.objects.filter(status__in=FINISHED_STATUSES, finished_at__lt=cutoff)
    if keep_failed:
        old = old.exclude(status__in=FAILURE_STATUSES)
    deleted = kept = batches = 0
    last_pk = 0
    while max_batches is None or batches < max_batches:
        ids = list(
            old.filter(pk__gt=last_pk).order_by("pk").values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return PruneResult(cutoff, deleted, kept, batches, dry_run)
        last_pk = ids[-1]
        doomed = [pk for pk in ids if pk not in keep]
        kept += len(ids) - len(doomed)
        batches += 1
        if dry_run or not doomed:
            deleted += len(doomed)
            continue
        with transaction.atomic():
            # only("pk"): the collector need not load tracebacks; a retry's link is set NULL.
            _, per_model = TaskRun.objects.filter(pk__in=doomed).only("pk").delete()
        deleted += per_model.get(TaskRun._meta.label, 0)
    more = old.filter(pk__gt=last_pk).exists()
    return PruneResult(cutoff, deleted, kept, batches, dry_run, complete=not more)


def _cutoff(now: datetime, older_than: timedelta) -> datetime:
    """Return ``now - older_than``; an age reaching before year 1 keeps every run."""
    try:
        return now - older_than
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def apply_retention(
    *, now: datetime | None = None, max_batches: int | None = None
) -> PruneResult | None:
    """Prune as ``ROCKET_RUN_RETENTION`` says; return None when it is not set."""
    retention = conf.run_retention
    if retention is None:
        return None
    return prune_runs(retention, now=now, max_batches=max_batches)


def needed_runs() -> set[int]:
    """Return the ids of the runs that conditions still read, for every task."""
    task_ids = list(Task.objects.values_list("pk", flat=True))
    keep = latest_ids(task_ids)
    for task_id in task_ids:
        keep |= _retry_chain(task_id)
    return keep


def _retry_chain(task_id: int) -> set[int]:
    """Ids of the task's latest consecutive failed runs, back to the first not started as a retry.

    Runs in progress are stepped over: the chain they would extend must survive.
    """
    runs = (
        TaskRun.objects.filter(task_id=task_id, started_at__isnull=False)
        .order_by("-started_at", "-id")
        .values_list("pk", "status", "trigger")
    )
    chain: set[int] = set()
    offset = 0
    while True:
        page = list(runs[offset : offset + _CHAIN_PAGE])
        for pk, status, trigger in page:
            if status == RunStatus.RUNNING:
                continue
            if status != RunStatus.FAIL:
                return chain
            chain.add(pk)
            if trigger != RunTrigger.RETRY:
                return chain
        if len(page) < _CHAIN_PAGE:
            return chain
        offset += _CHAIN_PAGE
