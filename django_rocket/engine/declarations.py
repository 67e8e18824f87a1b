"""Keep the Task table in step with the declared tasks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DataError, router, transaction
from django.db.models import Q

from django_rocket.models import Task, TaskSource, next_task_revision
from django_rocket.registry import TaskSpec
from django_rocket.registry.declared import NAME_MAX, shown

logger = logging.getLogger("django_rocket.scheduler")


@dataclass(frozen=True)
class TaskRow:
    """What the engine keeps of a declared task's row."""

    pk: int
    enabled: bool


def declared_fields(spec: TaskSpec) -> dict[str, Any]:
    """Return the Task columns that come from the task's declaration."""
    return {
        "func": spec.func,
        "start_cond": str(spec.start_cond),
        "end_cond": str(spec.end_cond) if spec.end_cond is not None else "",
        "execution": spec.execution,
        "description": spec.description,
        "multilaunch": spec.multilaunch,
        "backend": spec.backend,
        "queue": spec.queue,
        "declared": True,
        "source": TaskSource.SETTINGS,
    }


def sync_tasks(
    specs: dict[str, TaskSpec], now: datetime, *, retire_others: bool = True
) -> dict[str, TaskRow]:
    """Make the Task rows match ``specs``; return each declared task's row.

    With ``retire_others`` (the scheduler, which holds every declared task), rows of tasks
    no longer declared are marked so; they keep their history. Runtime tasks are not
    retired, except one whose name is now declared in ROCKET_TASKS: the declaration takes
    its row over (settings are the source of truth), keeping its runs.
    """
    declared = {name: declared_fields(spec) for name, spec in specs.items()}
    # Not every runtime task: there may be 100,000 of them, and only their names matter here.
    ours = Q(name__in=list(declared))
    rows = Task.objects.filter(ours | Q(source=TaskSource.SETTINGS) if retire_others else ours)
    existing = {t.name: t for t in rows}
    # Several schedulers may start at once: whoever inserts first wins, others skip.
    new = [name for name in declared if name not in existing]
    if new:
        with transaction.atomic():  # bulk_create does not save(): the revision is given here
            revision = next_task_revision(router.db_for_write(Task))
            Task.objects.bulk_create(
                [
                    Task(
                        name=name, enabled=specs[name].enabled, revision=revision, **declared[name]
                    )
                    for name in new
                ],
                ignore_conflicts=True,
            )
    # Changed declarations are written in one statement per batch, not one per task:
    # after a deploy that touches many tasks, start-up would otherwise commit once each.
    changed = []
    taken_over: list[int] = []
    for name, values in declared.items():
        row = existing.get(name)
        if row is not None and row.source == TaskSource.RUNTIME:
            logger.warning(
                "Task %r is declared in ROCKET_TASKS and was also created at runtime by "
                "schedule(); the declaration replaces the runtime task (its runs are kept).",
                name,
            )
            taken_over.append(row.pk)
        if row is not None and any(getattr(row, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = now
            changed.append(row)
    if changed:
        synced = [*declared[changed[0].name], "updated_at"]  # the same keys for every task
        Task.objects.bulk_update(changed, synced, batch_size=100)
    if taken_over:
        Task.objects.filter(pk__in=taken_over).update(
            parameters={}, timeout="", start_cond_override="", end_cond_override=""
        )
    if retire_others:
        gone = [
            n
            for n, t in existing.items()
            if n not in declared and t.declared and t.source == TaskSource.SETTINGS
        ]
        if gone:
            Task.objects.filter(name__in=gone).update(declared=False, updated_at=now)
    stored = {
        name: TaskRow(pk, enabled)
        for pk, name, enabled in Task.objects.filter(name__in=list(declared)).values_list(
            "pk", "name", "enabled"
        )
    }
    missing = [name for name in declared if name not in stored]
    if missing:
        # MySQL and MariaDB: bulk_create(ignore_conflicts=True) is INSERT IGNORE, which
        # cuts a name too long for its column short (a warning, not an error).
        raise DataError(
            f"The database did not store {len(missing)} declared task(s) as named, such as "
            f"{shown(missing[0])}: a name it cannot hold (longer than {NAME_MAX} characters, "
            "or text it refuses)."
        )
    return stored
