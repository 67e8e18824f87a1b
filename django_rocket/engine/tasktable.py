"""Follow the Task rows that change the schedule at runtime: overrides and runtime tasks.

At start-up :meth:`TaskTable.load` reads every runtime task and every declared task
with an override (one query); afterwards the poll hands it only the rows whose
``updated_at`` moved (:meth:`TaskTable.read_changes`), so a change costs the rows that
changed, not a reload of the whole schedule.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import connection
from django.db.models import Case, F, Q, When

from django_rocket.conditions import ConditionSyntaxError
from django_rocket.conf import conf
from django_rocket.engine.planner import Planner
from django_rocket.models import Task, TaskSource
from django_rocket.registry import TaskSpec, custom_key, runtime_spec, with_overrides

logger = logging.getLogger("django_rocket.scheduler")

# Rows are read again this far behind the cursor: a row whose updated_at was taken just
# before another's can commit just after it (another process, another transaction).
LOOKBACK = timedelta(seconds=2)
# Once the cursor has not moved for this long (the scheduler's clock), every row stamped
# before it has committed, and the window starts at the cursor itself: the latest batch
# of changes (ten thousand tasks declared or scheduled at once) is no longer read again
# at every poll until some other task changes.
SETTLED = 2 * LOOKBACK
# From how many rows the load leaves what it built out of the collector's reach (gc.freeze).
FREEZE_FROM = 10_000

# Up to this many changed rows are read by id; more, the whole window again.
FRESH_BY_ID = 500

_COLUMNS = (
    "pk",
    "updated_at",
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


def _as_datetime(value: Any) -> datetime:
    """Return a raw ``updated_at`` as the ORM reads it (aware; SQLite holds text)."""
    field = Task._meta.get_field("updated_at")
    column = field.get_col(Task._meta.db_table)
    for converter in connection.ops.get_db_converters(column) + field.get_db_converters(connection):
        value = converter(value, column, connection)
    return cast(datetime, value)


class TaskTable:
    """Keep the planner's specs in step with overrides and runtime tasks in the database."""

    def __init__(self, planner: Planner, declared: dict[str, TaskSpec]) -> None:
        self.planner = planner
        self.declared = dict(declared)  # as settings declare them, before any override
        self.task_pks: dict[str, int] = {}
        self.applied: dict[int, datetime] = {}  # rows in the look-back window, as applied
        # The look-back window's rows as the last poll saw them: id -> updated_at as the
        # database driver returns it (None until the first poll).
        self.stamps: dict[int, Any] | None = None
        self.window_rows = 0  # how many (id, updated_at) the last poll read
        self.default_timeout = conf.timeout  # read once, not once per row
        self.custom = custom_key()  # likewise

    def load(self, cursor: datetime | None = None) -> int:
        """Read every runtime task and override; return how many rows were applied.

        Read as raw tuples: converting 100,000 rows through the ORM (JSON, datetimes) cost
        more than the rest of the start-up. ``cursor`` is where the poll will read from:
        a row changed within its look-back is remembered as applied, so the first poll
        reads it again but does not apply it again, unless it changed meanwhile.
        """
        # updated_at only where the poll reads the row again, decided by the database:
        # converting 100,000 datetimes is not free.
        again = Q(updated_at__gt=cursor - LOOKBACK) if cursor is not None else Q(pk__in=[])
        columns = ["again_at" if column == "updated_at" else column for column in _COLUMNS]
        query = (
            Task.objects.filter(
                Q(source=TaskSource.RUNTIME, declared=True)
                | ~Q(start_cond_override="")
                | ~Q(end_cond_override="")
            )
            .annotate(again_at=Case(When(again, then=F("updated_at")), default=None))
            .order_by()  # in any order: not sorting 100,000 rows by name
            .values_list(*columns)
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
                        if row[1] is not None:
                            self.applied[row[0]] = _as_datetime(row[1])
                    count += len(batch)
        finally:
            if count >= FREEZE_FROM:
                # The specs live as long as the scheduler: spare every later full
                # collection walking them (the first one after the load took 0.3 s).
                gc.freeze()
            if enabled:
                gc.enable()
        return count

    def read_changes(self, cursor: datetime | None, *, settled: bool = False) -> datetime | None:
        """Apply the rows changed since ``cursor``; return the new cursor.

        The window's rows are read as (id, updated_at) first, as the database stores them
        (SQLite's text unparsed: parsing ten thousand stamps took 30 ms a poll), and whole
        only when not seen so by the previous poll: ten thousand tasks written in one
        second were otherwise read whole, JSON and all, by every poll after. The window
        reaches ``LOOKBACK`` behind the cursor, unless the cursor has ``settled`` (not
        moved for ``SETTLED``): then a row stamped before it has committed long ago.
        """
        rows = Task.objects.all()
        if cursor is not None:
            rows = rows.filter(updated_at__gt=cursor if settled else cursor - LOOKBACK)
        if self.stamps is None:
            changed = list(rows.values_list(*_COLUMNS))
            self.stamps = {row[0]: _as_driver_returns(row[1]) for row in changed}
            self.window_rows = len(changed)
        else:
            stamped = rows.order_by().values_list("pk", "updated_at")  # unsorted: a dict
            sql, params = stamped.query.sql_with_params()
            if connection.vendor == "sqlite":  # an expression: no declared type to parse by
                sql = f"SELECT w.pk, w.updated_at || '' FROM ({sql}) w"
            with connection.cursor() as db:
                db.execute(sql, params)
                stamps = dict(db.fetchall())
            self.window_rows = len(stamps)
            fresh = [pk for pk, stamp in stamps.items() if self.stamps.get(pk) != stamp]
            if settled:  # the rows behind the cursor are known: keep them for the next window
                self.stamps.update(stamps)
            else:
                self.stamps = stamps
            if len(fresh) > FRESH_BY_ID:
                changed = list(rows.values_list(*_COLUMNS))
            elif fresh:
                changed = list(Task.objects.filter(pk__in=fresh).values_list(*_COLUMNS))
            else:
                changed = []
        self.default_timeout = conf.timeout
        self.custom = custom_key()
        self.apply(changed)
        newest = max((row[1] for row in changed), default=cursor)
        if cursor is not None and newest is not None and newest < cursor:
            newest = cursor  # a late row stamped behind the cursor does not move it back
        if newest is not None:
            floor = newest - LOOKBACK
            self.applied = {pk: at for pk, at in self.applied.items() if at > floor}
        return newest

    def apply(self, rows: Iterable[tuple[Any, ...]]) -> int:
        """Put each row's task into the planner, or take it out; return how many changed."""
        count = 0
        for row in rows:
            pk, updated_at = row[0], row[1]
            if self.applied.get(pk) == updated_at:
                continue  # seen in an earlier poll's look-back
            self.applied[pk] = updated_at
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


def _as_driver_returns(value: datetime) -> Any:
    """``updated_at`` as :meth:`TaskTable.read_changes` reads it, unconverted by the ORM.

    Aware where the database keeps zones; otherwise naive in the connection's zone, as
    MySQL's driver returns it, and on SQLite the text Django stores for it. A mismatch
    only costs one more read.
    """
    if connection.features.supports_timezones:
        return value
    naive = value.astimezone(connection.timezone).replace(tzinfo=None)
    return str(naive) if connection.vendor == "sqlite" else naive
