"""Follow the Task rows that change the schedule at runtime: overrides and runtime tasks.

At start-up :meth:`TaskTable.load` reads every runtime task and every declared task
with an override (one query); afterwards the poll hands it only the rows whose
``revision`` is above the last one it saw (:meth:`TaskTable.read_changes`), so a change
costs the rows that changed, not a reload of the whole schedule. Revisions commit in
their order (``models.Counter``): reading above the cursor misses nothing, and reads
nothing twice.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import Max, Q

from django_rocket.conditions import ConditionSyntaxError
from django_rocket.conf import conf
from django_rocket.engine.planner import Planner
from django_rocket.models import Task, TaskSource
from django_rocket.registry import TaskSpec, custom_key, runtime_spec, with_overrides

logger = logging.getLogger("django_rocket.scheduler")

# From how many rows the load leaves what it built out of the collector's reach (gc.freeze).
FREEZE_FROM = 10_000

_COLUMNS = (
    "pk",
    "revision",
    "name",
    "source",
    "declared",
    "enabled",
    "func",
    "start_cond",
    "end_cond",
    "start_cond_override",
    "end_cond_override",
    "execution",
    "timeout",
    "multilaunch",
    "backend",
    "queue",
    "description",
    "parameters",  # last: load() decodes it
)


def latest_task_revision() -> int:
    """Return the newest ``Task.revision``: where the poll for task changes starts."""
    return Task.objects.aggregate(top=Max("revision"))["top"] or 0


class TaskTable:
    """Keep the planner's specs in step with overrides and runtime tasks in the database."""

    def __init__(self, planner: Planner, declared: dict[str, TaskSpec]) -> None:
        self.planner = planner
        self.declared = dict(declared)  # as settings declare them, before any override
        self.task_pks: dict[str, int] = {}
        # Rows the load applied above its cursor: the first poll reads them again and
        # applies only those changed since.
        self.applied: dict[int, int] = {}
        self.default_timeout = conf.timeout  # read once, not once per row
        self.custom = custom_key()  # likewise

    def load(self, cursor: int = 0) -> int:
        """Read every runtime task and override; return how many rows were applied.

        Read as raw tuples: converting 100,000 rows through the ORM (JSON, datetimes) cost
        more than the rest of the start-up. ``cursor`` is where the poll will read from:
        a row whose revision is above it is remembered as applied, so the first poll
        reads it again but does not apply it again, unless it changed meanwhile.
        """
        query = (
            Task.objects.filter(
                Q(source=TaskSource.RUNTIME, declared=True)
                | ~Q(start_cond_override="")
                | ~Q(end_cond_override="")
            )
            .order_by()  # in any order: not sorting 100,000 rows by name
            .values_list(*_COLUMNS)
        )
        sql, params = query.query.sql_with_params()
        self.default_timeout = conf.timeout
        self.custom = custom_key()
        count = 0
        enabled = gc.isenabled()
        gc.disable()  # 100,000 specs: the collector would walk them again and again
        try:
            with connection.cursor() as rows:
                rows.execute(sql, params)
                while batch := rows.fetchmany(2000):
                    for row in batch:
                        parameters = row[-1]
                        if parameters == "{}":  # most tasks: not worth the JSON decoder
                            parameters = {}
                        elif isinstance(parameters, str | bytes):  # text on SQLite
                            parameters = json.loads(parameters)
                        self._apply((*row[:-1], parameters))
                        if row[1] > cursor:
                            self.applied[row[0]] = row[1]
                    count += len(batch)
        finally:
            if count >= FREEZE_FROM:
                # The specs live as long as the scheduler: spare every later full
                # collection walking them (the first one after the load took 0.3 s).
                gc.freeze()
            if enabled:
                gc.enable()
        return count

    def read_changes(self, cursor: int) -> int:
        """Apply the rows changed since ``cursor`` (a revision); return the new cursor."""
        changed = list(Task.objects.filter(revision__gt=cursor).values_list(*_COLUMNS))
        self.default_timeout = conf.timeout
        self.custom = custom_key()
        self.apply(changed)
        self.applied.clear()  # every row above the old cursor is read now
        return max((row[1] for row in changed), default=cursor)

    def apply(self, rows: Iterable[tuple[Any, ...]]) -> int:
        """Put each row's task into the planner, or take it out; return how many changed."""
        count = 0
        for row in rows:
            if self.applied.get(row[0]) == row[1]:
                continue  # applied by the load, unchanged since
            self._apply(row)
            count += 1
        return count

    def _apply(self, row: tuple[Any, ...]) -> None:
        (pk, _, name, source, declared, enabled, func, start, end) = row[:9]
        start_override, end_override, execution, timeout = row[9:13]
        multilaunch, backend, queue, description, parameters = row[13:]
        planner = self.planner
        if name in self.declared:
            # A declared task (or a runtime row the declaration takes over at start-up).
            base = self.declared[name]
            try:
                spec = with_overrides(base, start_override, end_override)
            except ConditionSyntaxError as exc:
                logger.error(
                    "Task %r: the condition override does not parse, so the declared "
                    "condition applies:\n%s",
                    name,
                    exc,
                )
                spec = base
            if planner.specs.get(name) != spec:
                planner.put_task(spec, enabled)
                logger.info(
                    "Task %r: start condition %s (%s).",
                    name,
                    spec.start_cond,
                    spec.condition_source,
                )
            elif planner.set_enabled(name, enabled):
                logger.info("Task %r %s.", name, "resumed" if enabled else "paused")
            return
        if source != TaskSource.RUNTIME:
            planner.set_enabled(name, enabled)  # a retired declared task: nothing runs it
            return
        if not declared:
            if planner.remove_task(name):
                logger.info("Runtime task %r was unscheduled.", name)
            return
        try:
            spec = runtime_spec(
                name,
                func,
                start,
                end,
                execution,
                timeout,
                parameters,
                default_timeout=self.default_timeout,
                multilaunch=multilaunch,
                backend=backend,
                queue=queue,
                description=description,
                custom=self.custom,
            )
        except (ValueError, TypeError) as exc:
            logger.error("Runtime task %r cannot be scheduled and is skipped: %s", name, exc)
            planner.remove_task(name)
            return
        self.task_pks[name] = pk
        if planner.specs.get(name) != spec:
            planner.put_task(spec, enabled)
        else:
            planner.set_enabled(name, enabled)
