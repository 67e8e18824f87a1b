"""Writing the run log: starts and finishes in batches, refused rows, retries, the spool.

Finishes wait in :attr:`Recorder.pending` until a write commits them: with the next
tick's starts (one commit a tick, see ``Scheduler``) or on their own. A failed write is
retried with backoff; after ``ROCKET_LOG_RETRY["attempts"]`` failures the pending
finishes are spooled to a file too, and the scheduler stops unless
``ROCKET_SILENCE_TASK_LOGGING`` is set. A batch the database refuses is written run by
run, and a run refused on its own is recorded without what was refused.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, NamedTuple

from django.db import DatabaseError, transaction

from django_rocket.clock import Clock
from django_rocket.conf import conf
from django_rocket.engine import runlog
from django_rocket.engine.connection import log_database_error, reconnect
from django_rocket.engine.planner import Start
from django_rocket.engine.spool import Spool, apply_spools
from django_rocket.executors.outcome import Outcome, refused_note
from django_rocket.models import RunStatus, RunTrigger, TaskRun
from django_rocket.registry import TaskSpec

logger = logging.getLogger("django_rocket.scheduler")

# A run whose row is committed: its task, its trigger and its id.
Started = tuple[TaskSpec, str, str]


def new_run_ids(count: int) -> Iterator[str]:
    """``count`` time-ordered run ids (UUID version 7, RFC 9562), from one read of randomness.

    The first 48 bits are the system clock's milliseconds since the epoch, the other 74
    (after the version and variant bits) random. New ids sort after the ones before
    them, so each tick's rows go to the right-hand end of the run id's unique index,
    instead of one random page of it per run (version 4): on SQLite a tick's commit
    writes about a fifth fewer pages, and PostgreSQL's index stays as compact. Ordered
    only as well as the clock: a step back costs some speed, never uniqueness.

    ``uuid.uuid4()`` reads 16 bytes per call; at a thousand runs a tick those reads cost
    more than the rest of the id's making. The variant bits are set for all the ids at
    once, and each is written in its canonical form without making a ``UUID`` of it.
    """
    raw = bytearray(os.urandom(16 * count))
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # variant RFC 4122 / 9562
    text = raw.hex()
    stamp = f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}"
    head = f"{stamp[:8]}-{stamp[8:]}-7"  # ... and the version
    for i in range(0, 32 * count, 32):
        yield f"{head}{text[i + 13 : i + 16]}-{text[i + 16 : i + 20]}-{text[i + 20 : i + 32]}"


def retry_parents(names: list[str], last_failed: dict[str, int | str]) -> dict[str, int]:
    """Primary keys of the failed runs that the retries starting now follow."""
    wanted = {n: last_failed[n] for n in names if n in last_failed}
    by_run_id = {v: n for n, v in wanted.items() if isinstance(v, str)}
    parents = {n: v for n, v in wanted.items() if isinstance(v, int)}
    if by_run_id:
        for run_id, pk in TaskRun.objects.filter(run_id__in=list(by_run_id)).values_list(
            "run_id", "pk"
        ):
            parents[by_run_id[str(run_id)]] = pk
    return parents


# The runs to start: each one's task, trigger, run id and queued row (None: a new run).
Starts = list[tuple[TaskSpec, str, str, TaskRun | None]]


class Where(NamedTuple):
    """What a start's row says besides its task and trigger: which scheduler, where."""

    task_pks: dict[str, int]
    last_failed: dict[str, int | str]
    host: str
    pid: int
    instance_pk: int | None


def start_rows(starts: Starts, now: datetime, where: Where) -> list[tuple[Any, ...]]:
    """The rows of the new runs among ``starts`` (runlog.START_FIELDS); queued ones have theirs."""
    retry_of = retry_parents(
        [spec.name for spec, trigger, _, _ in starts if trigger == RunTrigger.RETRY],
        where.last_failed,
    )
    return [
        (
            where.task_pks[spec.name],
            run_id,
            RunStatus.RUNNING,
            trigger,
            retry_of.get(spec.name) if trigger == RunTrigger.RETRY else None,
            now,
            where.host,
            where.pid,
            where.instance_pk,
            "",
            "",
        )
        for spec, trigger, run_id, queued in starts
        if queued is None
    ]


def write_starts(starts: Starts, now: datetime, where: Where) -> list[Started]:
    """Write the rows of runs starting now; return those this process took.

    New runs are inserted in one statement; a queued run is taken only if it is still
    queued (another scheduler, or a deleted row, may have been first).
    """
    runlog.insert_runs(start_rows(starts, now, where))
    host, pid, instance_pk = where.host, where.pid, where.instance_pk
    taken: list[Started] = []
    for spec, trigger, run_id, queued in starts:
        if queued is None:
            taken.append((spec, trigger, run_id))
        elif TaskRun.objects.filter(pk=queued.pk).queued().start(now, host, pid, instance_pk):
            taken.append((spec, RunTrigger.MANUAL, run_id))
    return taken


def write_tick(
    finishes: list[Outcome], starts: Starts, now: datetime, where: Where, fence: runlog.Fence
) -> list[Started]:
    """Write finishes and new runs with the lease renewed, in one statement (PostgreSQL).

    What the fenced transaction of :meth:`Recorder.commit_starts` does, in one round trip
    (runlog.write_tick). Raise :class:`LeaseLost` if the lease is no longer this
    process's: then nothing was written.
    """
    assert all(queued is None for *_, queued in starts)  # taking a queued run is its own write
    finished = runlog.write_tick(finish_rows(finishes), start_rows(starts, now, where), fence)
    if finished is None:
        raise LeaseLost
    if finished < len({o.run_id for o in finishes}):
        _log_left_out(finishes)
    return [(spec, trigger, run_id) for spec, trigger, run_id, _ in starts]


def with_run_ids(batch: list[Start]) -> Starts:
    """Give each run to start its id: a queued run keeps its own."""
    fresh = new_run_ids(len(batch))
    return [
        (spec, trigger, str(queued.run_id) if queued else next(fresh), queued)
        for spec, trigger, queued in batch
    ]


def write_finishes(batch: list[Outcome]) -> None:
    """Write finished runs in one statement (inside the caller's transaction, if any).

    Only a run still ``running`` is finished. A run that another scheduler recorded
    meanwhile keeps that record: its crash recovery ended the runs of this one while this
    one's heartbeat was missing (cut off from the database, or its loop held up past the
    lease), and it has acted on that record since, starting later runs. Such a finish is
    logged and left out.
    """
    # Inside the starts' transaction no savepoint: a failure there rolls back all of it.
    with transaction.atomic(savepoint=False):
        written = runlog.finish_runs(finish_rows(batch), only_running=True)
        if written < len({o.run_id for o in batch}):
            _log_left_out(batch)


def finish_rows(batch: list[Outcome]) -> list[tuple[str, tuple[Any, ...]]]:
    """Each finish as (run id, values of FINISH_FIELDS); a start not known is read first."""
    missing = [o.run_id for o in batch if o.started_at is None]
    if missing:
        started = dict(
            TaskRun.objects.filter(run_id__in=missing).values_list("run_id", "started_at")
        )
        for outcome in batch:
            if outcome.started_at is None:
                outcome.started_at = started.get(uuid.UUID(outcome.run_id))
    return [
        (
            o.run_id,
            (
                o.status,
                o.finished_at,
                o.finished_at - o.started_at if o.started_at and o.finished_at else None,
                o.message or "",
                o.exc_text or "",
                o.result,
                list(o.exception_types),
            ),
        )
        for o in batch
    ]


def _log_left_out(batch: list[Outcome]) -> None:
    """Log the finishes that found their run already recorded (one read, only then)."""
    rows = {
        str(run_id): (status, finished_at)
        for run_id, status, finished_at in TaskRun.objects.filter(
            run_id__in=[o.run_id for o in batch]
        ).values_list("run_id", "status", "finished_at")
    }
    for o in batch:
        status, finished_at = rows.get(o.run_id, (None, None))
        if (status, finished_at) == (o.status, o.finished_at):
            continue  # this finish, written now
        logger.warning(
            "Run %s of task %r ended %s at %s, but the run log holds %s; that record stays (%s).",
            o.run_id,
            o.task,
            o.status,
            o.finished_at.isoformat() if o.finished_at else "an unknown time",
            f"{status} at {finished_at.isoformat() if finished_at else '?'}"
            if status
            else "no row",
            "another scheduler recorded it while this one's heartbeat was missing"
            if status
            else "the row was deleted",
        )


class LeaseLost(Exception):
    """The lease was taken over: nothing was written, and this process must stand by."""


class StartsNotRecorded(Exception):
    """The starts could not be written; the runs must not begin."""


class Recorder:
    """The finishes not yet committed, and how writing them fares."""

    def __init__(self, clock: Clock, *, on_fatal: Callable[[str, BaseException], None]) -> None:
        self.clock = clock
        self.on_fatal = on_fatal
        # Bounded: emptied by each committed write; in an outage, spooled to disk after
        # ROCKET_LOG_RETRY's attempts.
        self.pending: list[Outcome] = []
        self.write_attempts = 0
        self.next_write_attempt: float = 0.0
        self.spool = Spool()

    def apply_spools(self) -> None:
        """Write what earlier processes spooled, to runs still running."""
        apply_spools(self._write_spooled)

    def _write_spooled(self, batch: list[Outcome]) -> list[Outcome]:
        """Write spooled finishes; return those refused even without their text."""
        try:
            write_finishes(batch)
        except runlog.REFUSED as exc:
            return self._write_each(batch, exc, spooled=True)
        return []

    def add(self, outcome: Outcome) -> None:
        """Hold a finished run until it is written."""
        self.pending.append(outcome)

    def flushable(self) -> list[Outcome]:
        """The finishes to write now: none while a failed write waits for its backoff."""
        if not self.pending or self.clock.monotonic() < self.next_write_attempt:
            return []
        return list(self.pending)

    def seconds_to_retry(self) -> float | None:
        """Return in how many seconds a pending write is due; None if nothing is pending."""
        if not self.pending:
            return None
        return self.next_write_attempt - self.clock.monotonic()

    def commit_starts(
        self,
        now: datetime,
        count: int,
        *,
        renew: Callable[[datetime], bool],
        write: Callable[[], list[Started]],
        at_once: Callable[[list[Outcome]], list[Started]] | None = None,
    ) -> list[Started]:
        """Write ``count`` starts in one fenced transaction, with the finishes pending.

        The finishes share the starts' transaction: one commit a tick instead of two.
        While a failed write waits for its backoff they stay out, and :meth:`flush`
        writes them once it is over. ``renew`` fences the write: if the lease is no
        longer this process's, everything is rolled back and :class:`LeaseLost` raised.
        ``at_once``, if given, does all of it in one statement instead (:func:`write_tick`),
        given the finishes.
        """
        finishes = self.flushable()
        try:
            if at_once is not None:
                # Nothing written if the lease was lost: the finishes stay pending.
                taken = at_once(finishes)
            else:
                with transaction.atomic():
                    if finishes:
                        write_finishes(finishes)
                    if not renew(now):
                        # Rolled back, the finishes included: they stay pending for the flush.
                        raise LeaseLost
                    taken = write()
        except (DatabaseError, *runlog.REFUSED) as exc:
            if finishes and isinstance(exc, runlog.REFUSED):
                # Perhaps a finish the database refuses, rolled back with the starts: write
                # the finishes on their own (flush falls back to run by run), then the
                # starts without them. No finishes are pending for this second try.
                self.flush()
                return self.commit_starts(now, count, renew=renew, write=write, at_once=at_once)
            # Write-ahead: a run whose row is not committed never starts.
            log_database_error(
                logger,
                logging.ERROR,
                "Could not record the start of %d run(s)%s; will retry.",
                count,
                f" nor {len(finishes)} finish(es)" if finishes else "",
                now=self.clock.monotonic(),
            )
            reconnect()
            if finishes:
                self.write_failed(finishes, exc)
            raise StartsNotRecorded from exc
        if finishes:
            self.written(finishes)
        return taken

    def flush(self) -> None:
        """Write finished runs in one batch, retrying with backoff; spool while the DB is down."""
        batch = self.flushable()
        if not batch:
            return
        try:
            try:
                write_finishes(batch)
            except runlog.REFUSED as exc:
                # The database refused a value; it is not down, and the same batch would
                # fail the same way on every retry. One run must not hold back the others.
                self._write_each(batch, exc)
        except DatabaseError as exc:
            reconnect()
            self.write_failed(batch, exc)
            return
        self.written(batch)

    def _write_each(
        self, batch: list[Outcome], refused: Exception, *, spooled: bool = False
    ) -> list[Outcome]:
        """Write a refused batch run by run; a run refused alone loses what was refused.

        A ``spooled`` finish (see :mod:`.spool`) refused even without its text is logged
        and returned: it must not hold start-up.
        """
        logger.warning(
            "The database refused a batch of finished runs (%s); writing them one by one.", refused
        )
        given_up: list[Outcome] = []
        for outcome in batch:
            try:
                write_finishes([outcome])
            except runlog.REFUSED as exc:
                logger.error(
                    "Run %s of task %r was refused as it ended (%s: %s); recorded without its "
                    "message, traceback and result.",
                    outcome.run_id,
                    outcome.task,
                    type(exc).__name__,
                    exc,
                )
                outcome.message = refused_note(exc)
                outcome.exc_text = ""
                outcome.result = None
                try:
                    write_finishes([outcome])
                except runlog.REFUSED as again:
                    if not spooled:
                        raise
                    logger.error(
                        "Spooled run %s of task %r was refused even so (%s: %s); it stays "
                        "running until crash recovery ends it.",
                        outcome.run_id,
                        outcome.task,
                        type(again).__name__,
                        again,
                    )
                    given_up.append(outcome)
        return given_up

    def write_failed(self, batch: list[Outcome], exc: Exception) -> None:
        """Back off; after ``attempts`` failures spool the batch (and stop, unless silenced)."""
        self.write_attempts += 1
        policy = conf.log_retry
        delay = min(policy["backoff"] * 2 ** (self.write_attempts - 1), policy["max_backoff"])
        self.next_write_attempt = self.clock.monotonic() + delay
        if self.write_attempts >= policy["attempts"]:
            spooled = self.spool.write(batch)
            if self.write_attempts == policy["attempts"]:
                logger.error(
                    "Recording %d finished run(s) failed %d times; kept in memory and %s "
                    "until the database is back.",
                    len(batch),
                    self.write_attempts,
                    f"spooled to {self.spool.path}" if spooled else "not spooled",
                    exc_info=exc,
                )
                if not conf.silence_task_logging:
                    self.on_fatal("the run log could not be written", exc)
        else:
            logger.warning(
                "Recording finished runs failed (attempt %d); retrying in %.1fs.",
                self.write_attempts,
                delay,
                exc_info=exc,
            )

    def written(self, batch: list[Outcome]) -> None:
        """The batch is committed: drop it from what is pending, and end a write outage."""
        written = {o.run_id for o in batch}
        self.pending = [o for o in self.pending if o.run_id not in written]
        if self.write_attempts:
            logger.info("The run log is writable again; %d run(s) recorded.", len(batch))
            self.spool.clear()
        self.write_attempts = 0
        self.next_write_attempt = 0.0

    def flush_before_exit(self) -> None:
        """Try a few more times to write what is pending, then spool what is left."""
        for _ in range(3):
            if not self.pending:
                break
            self.next_write_attempt = 0.0
            self.flush()
        if self.pending:
            spooled = self.spool.write(self.pending)
            logger.error(
                "%d finished run(s) could not be recorded; %s.",
                len(self.pending),
                f"spooled to {self.spool.path}" if spooled else "nor spooled (see above)",
            )
