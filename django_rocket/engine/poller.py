"""What other processes changed: queued runs, paused and changed tasks, their own runs.

A cheap probe (one index-backed statement) tells whether anything may have changed
since the last poll; only then does the poll read queued runs, changed tasks and
the runs other processes recorded (``runtask``, other instances), and feed them to
the planner's snapshot.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import DatabaseError, connection
from django.db.models import Count, Max, Q

from django_rocket.clock import Clock
from django_rocket.engine import snapshot
from django_rocket.engine.connection import log_database_error, reconnect
from django_rocket.engine.planner import Planner
from django_rocket.engine.tasktable import TaskTable
from django_rocket.models import RunStatus, Task, TaskRun

logger = logging.getLogger("django_rocket.scheduler")

# How many ids behind its cursor the poll looks again for rows that committed late.
POLL_LOOKBACK = 200
# Ids the poll passed that were not committed then (another process's insert in
# flight, or rolled back) are watched this long (monotonic seconds), at most this many
# (the lowest go first): the look-back alone is a fifth of a second at a thousand runs
# a second. When following starts, this many ids below the newest are checked too.
HOLE_WATCH = 600.0
HOLES_MAX = 1000
FOLLOW_SCAN = 2000
# How far below the newest id a poll looks for missing ones: ten seconds at W1's rate.
HOLE_SCAN = 100_000

# A ``runtask`` run recorded as ``crash`` because its heartbeat stopped (a partition, a
# stopped container) may be alive: its own finish then lands later and is the truth. The
# poll watches such runs for this long, at most this many (the oldest go first).
WATCH_CRASHED = timedelta(hours=24)
WATCH_CRASHED_MAX = 1000


class Poller:
    """Follow the run log and the Task table from a cursor, on the planner's behalf."""

    def __init__(
        self, clock: Clock, planner: Planner, poll_every: float, task_table: TaskTable
    ) -> None:
        self.clock = clock
        self.planner = planner
        self.task_table = task_table
        self.poll_every = poll_every
        self.next_poll: float = 0.0
        self.instance_pk: int | None = None
        # Bounded: runs of other processes still in progress (discarded as they finish or
        # are recorded as crashed), and ids seen within POLL_LOOKBACK (pruned every poll).
        self.external_open: set[int] = set()
        self.external_seen: set[int] = set()
        # Ids below the cursor not committed when the poll passed them: pk -> until when
        # (monotonic) to look for them (HOLE_WATCH).
        self.holes: dict[int, float] = {}
        self.last_probe: tuple[Any, ...] | None = None
        self.poll_cursor = 0
        self.task_cursor = 0  # the newest Task.revision read
        # Runs of runtask recorded as crash, by pk: until when (monotonic) to watch for
        # their own finish (WATCH_CRASHED). One that lands sets ``reload_wanted``: the
        # snapshot holds the crash, the run log the run's true outcome.
        self.crashed: dict[int, float] = {}
        self.reload_wanted = False

    def follow_from_now(self, instance_pk: int | None) -> None:
        """Start the cursor at the newest run; call it inside the snapshot's transaction.

        What the snapshot holds is not news to the poll; runs other processes still have
        going are followed until they finish.
        """
        self.instance_pk = instance_pk
        newest = TaskRun.objects.order_by("-pk").values_list("pk", flat=True).first()
        self.poll_cursor = newest or 0
        # Unordered: with the model's default order SQLite walks the whole
        # (started_at, id) index for these few ids (0.45 s at 1,000,000 rows, cold).
        self.external_seen = set(
            TaskRun.objects.filter(pk__gt=self.poll_cursor - POLL_LOOKBACK)
            .order_by()
            .values_list("pk", flat=True)
        )
        self.external_open = set(
            TaskRun.objects.running().exclude(scheduler=instance_pk).values_list("pk", flat=True)
        )
        self.holes = {}
        self._watch_holes(self.poll_cursor - FOLLOW_SCAN, self.poll_cursor, from_present=True)
        # Crashes of runtask runs from the last WATCH_CRASHED, found through the index on
        # (status, started_at, id): crash rows are few, whatever the size of the log.
        since = self.clock.now() - WATCH_CRASHED
        self.crashed = {}
        recent = TaskRun.objects.filter(
            status=RunStatus.CRASH, scheduler__isnull=True, finished_at__gte=since
        ).order_by("-started_at")
        newest_first = list(recent.values_list("pk", "finished_at")[:WATCH_CRASHED_MAX])
        for pk, finished_at in reversed(newest_first):  # the oldest first: dropped first
            left = cast(datetime, finished_at) - since  # >= since: not None
            self._watch_crashed(pk, left.total_seconds())
        self.next_poll = 0.0

    def adopted(self, pks: list[int]) -> None:
        """Leave runs this scheduler now follows itself (adopted) to the planner."""
        self.external_open.difference_update(pks)
        self.external_seen.update(pks)

    def poll(self) -> None:
        """Pick up admin requests: queued runs, paused tasks, runs other processes wrote."""
        self.next_poll = self.clock.monotonic() + self.poll_every
        try:
            if self.crashed:
                self._read_corrections()
            probe = self.probe()
            filled = self._filled_holes()
            if probe == self.last_probe and not self.external_open and not filled:
                return  # nothing was inserted, paused, resumed or committed late
            self.last_probe = probe
            for run in list(TaskRun.objects.queued().select_related("task")):
                self.planner.add_queued(run)
            self._read_task_changes()
            self._read_other_runs(filled)
        except DatabaseError:
            log_database_error(
                logger,
                logging.WARNING,
                "Polling the database failed; will retry.",
                now=self.clock.monotonic(),
            )
            reconnect()

    def _read_task_changes(self) -> None:
        # Pauses, overrides and runtime tasks: only the rows whose revision moved.
        self.task_cursor = self.task_table.read_changes(self.task_cursor)

    def _watch_holes(
        self, low: int, high: int, *, present: int | None = None, from_present: bool = False
    ) -> None:
        """Watch the ids in (low, high] that are not committed now.

        ``present`` is how many ids of the range are committed, if the caller counted
        them: ids are rarely missing (an insert of another process still in flight, a
        rolled-back one), and only then are the range's ids read. With ``from_present``
        no run at ``low`` was seen (following starts): ids below the lowest present one
        are taken as pruned, not late. Not on SQLite: one writer at a time, so its ids
        commit in their order.
        """
        if connection.vendor == "sqlite":
            return
        rows = TaskRun.objects.filter(pk__gt=low, pk__lte=high).order_by()
        if present is None:
            present = rows.count()
        if present >= high - low:
            return
        low = max(low, high - HOLE_SCAN)
        ids = set(rows.filter(pk__gt=low).values_list("pk", flat=True))
        if from_present:
            if not ids:
                return
            low = min(ids)
        until = self.clock.monotonic() + HOLE_WATCH
        missing = [pk for pk in range(high, low, -1) if pk not in ids][:HOLES_MAX]
        for pk in reversed(missing):  # the lowest first: dropped first
            self.holes[pk] = until
        while len(self.holes) > HOLES_MAX:
            del self.holes[min(self.holes)]

    def _filled_holes(self) -> list[int]:
        """The watched ids committed since, for this poll to read.

        Still watched until the poll has read them (``_read_other_runs``): a poll that
        fails on the way reads them at the next one.
        """
        now = self.clock.monotonic()
        for pk in [pk for pk, until in self.holes.items() if until <= now]:
            del self.holes[pk]
        if not self.holes:
            return []
        return list(
            TaskRun.objects.filter(pk__in=list(self.holes)).order_by().values_list("pk", flat=True)
        )

    def _read_other_runs(self, filled: list[int] | None = None) -> None:
        # Read the upper bound first, so a row committed meanwhile is left for the next
        # poll instead of being skipped. On PostgreSQL and MariaDB a row with a lower id
        # can commit after one with a higher id: the ids passed that are not committed
        # yet are watched (``holes``), and read once they are (``filled``).
        newest = self._newest_run()
        window = Q(pk__gt=max(self.poll_cursor - POLL_LOOKBACK, 0), pk__lte=newest)
        if filled:
            window |= Q(pk__in=filled)
        external = (
            TaskRun.objects.filter(window)
            .exclude(status=RunStatus.QUEUED)
            .select_related("task")
            .order_by("pk")
        )
        if self.instance_pk is not None:
            external = external.exclude(scheduler=self.instance_pk)
        if self.external_open:
            # Runs another process (runtask --wait) was still running at an earlier poll.
            external = external | TaskRun.objects.filter(pk__in=list(self.external_open)).exclude(
                status=RunStatus.RUNNING
            )
        history = self.planner.history
        for run in external:
            if not run.started_at or history is None:
                continue
            try:
                if run.pk in self.external_open:
                    if not run.is_finished:
                        continue  # still going; seen again through the look-back
                    finished_at = cast(datetime, run.finished_at)  # a None is refused below
                    history.record_finish(
                        run.task.name,
                        str(run.run_id),
                        finished_at,
                        run.status,
                        run.exception_types or (),
                    )
                    self.external_open.discard(run.pk)
                    if run.status == RunStatus.CRASH and run.scheduler_id is None:
                        self._watch_crashed(run.pk, WATCH_CRASHED.total_seconds())
                elif run.pk in self.external_seen:
                    continue
                else:
                    history.record_start(snapshot.record_of(run, run.task.name))
                    if not run.is_finished:
                        self.external_open.add(run.pk)
            except (ValueError, TypeError, KeyError):
                # A row the snapshot cannot take (already known, or inconsistent) must
                # not stop the loop; the snapshot is reloaded when leadership changes.
                logger.warning("Skipped run %s from another process.", run.run_id, exc_info=True)
                self.external_open.discard(run.pk)
            self.external_seen.add(run.pk)
            self.holes.pop(run.pk, None)  # committed inside the look-back: read now
            self.planner.history_changed(run.task.name)
        self.poll_cursor = max(self.poll_cursor, newest)
        for pk in filled or ():  # read (or not news: queued, this scheduler's own)
            self.holes.pop(pk, None)
        floor = self.poll_cursor - POLL_LOOKBACK
        self.external_seen = {pk for pk in self.external_seen if pk > floor}

    def _newest_run(self) -> int:
        """The newest run's id; the ids passed since the last poll that are missing are
        watched (``holes``), counted in the same statement. From an empty log (cursor 0)
        nothing is watched: ids below the first one seen are not news."""
        low = self.poll_cursor
        if not low or connection.vendor == "sqlite":
            return TaskRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        passed = TaskRun.objects.filter(pk__gt=low).aggregate(newest=Max("pk"), present=Count("pk"))
        newest = passed["newest"] or low
        self._watch_holes(low, newest, present=passed["present"])
        return newest

    def _watch_crashed(self, pk: int, seconds: float) -> None:
        self.crashed[pk] = self.clock.monotonic() + seconds
        while len(self.crashed) > WATCH_CRASHED_MAX:
            del self.crashed[next(iter(self.crashed))]  # the oldest watched

    def _read_corrections(self) -> None:
        """Has a watched ``crash`` been overwritten by its run's own finish? Reload if so.

        One statement over the watched ids (their primary keys); what it finds is rare, so
        the whole snapshot is read again (``reload_wanted``) rather than patched.
        """
        now = self.clock.monotonic()
        for pk in [pk for pk, until in self.crashed.items() if until <= now]:
            del self.crashed[pk]
        if not self.crashed:
            return
        for pk, run_id, task, status in (
            TaskRun.objects.filter(pk__in=list(self.crashed))
            .exclude(status=RunStatus.CRASH)
            .values_list("pk", "run_id", "task__name", "status")
        ):
            del self.crashed[pk]
            self.reload_wanted = True
            logger.info(
                "Run %s of task %r, recorded as crash when its process stopped reporting, "
                "has ended since as %s: its process was alive. Reading the run history again.",
                run_id,
                task,
                status,
            )

    def probe(self) -> tuple[Any, ...]:
        """One index-backed statement that changes whenever the full poll could find news.

        A queued run (run now, retry) or a run another process records inserts a row, so
        the newest id moves; a change to a task (a pause, an override, a runtime task)
        takes the next task revision; a run row that commits late inside the look-back
        window changes its count.

        The count reads at most ``POLL_LOOKBACK`` ids, and says so with a LIMIT: without
        it PostgreSQL estimated a third of the log for the open-ended range and, at
        1,000,000 runs, counted with two parallel workers, 11 ms a poll instead of 0.4.
        """
        qn = connection.ops.quote_name
        runs, tasks = qn(TaskRun._meta.db_table), qn(Task._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT (SELECT MAX(id) FROM {runs}), "
                f"(SELECT COUNT(*) FROM (SELECT id FROM {runs} "
                f"WHERE id > (SELECT MAX(id) FROM {runs}) - %s ORDER BY id DESC LIMIT %s) w), "
                f"(SELECT MAX(revision) FROM {tasks})",
                [POLL_LOOKBACK, POLL_LOOKBACK],
            )
            row = cursor.fetchone()
            assert row is not None
            return tuple(row)
