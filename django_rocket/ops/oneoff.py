"""Run one task in this process, outside the scheduler (``manage.py runtask``).

A declared task is run from its declaration; a runtime task (``schedule()``) from its
row, only while its function is on ``ROCKET_TASK_FUNCTIONS``: a function off the list
is refused before anything is imported (:func:`runtime_task_spec`), here as in the
scheduler.

The run is recorded like any other: its row, with trigger ``manual``, is
committed before the function starts and updated when it ends, and its events
go to the ``django_rocket.task`` logger with the same attributes as the
scheduler's. While the function runs, a thread writes the row's ``last_seen``
every ``ROCKET_HEARTBEAT``. If this process dies mid-run, the row stays ``running``
with this host and pid, and the scheduler's crash recovery records it as ``crash``:
at once where it can see that the pid is gone, else once ``last_seen`` is older than
the lease, as for a scheduler. The task's timeout is not enforced here, so it cannot
tell recovery anything. SIGTERM stops the function as Ctrl-C does (:class:`SigtermStops`):
the run is recorded as ``terminate``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connection
from django.utils import timezone

from django_rocket import registry
from django_rocket.conditions import parse_duration
from django_rocket.conf import conf
from django_rocket.engine.connection import log_database_error
from django_rocket.engine.declarations import sync_tasks
from django_rocket.engine.events import LoggingGuard, log_run_event
from django_rocket.engine.leadership import pid_namespace
from django_rocket.engine.processstate import WorkingDirectoryWatch, pin_sqlite_paths
from django_rocket.engine.runlog import REFUSED
from django_rocket.executors.local import (
    IdleWatch,
    autocommit_again,
    connection_closer,
    revive_idle_connection,
    settle_connections,
    statement_killer,
)
from django_rocket.executors.outcome import (
    Ending,
    StopSignal,
    bounded,
    call_task,
    describe,
    format_traceback,
    refused_note,
    stopped,
    storable,
)
from django_rocket.executors.statementwatch import StatementWatch
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun
from django_rocket.ops.queue import RunRefused
from django_rocket.ops.schedules import runtime_row_spec
from django_rocket.registry import TaskSpec

logger = logging.getLogger("django_rocket.scheduler")


def runtime_task_spec(task: Task) -> TaskSpec:
    """Return the spec a runtime task's row runs with; raise RunRefused saying why not.

    Refused: a task that was unscheduled, a function off ``ROCKET_TASK_FUNCTIONS``
    (checked before it is imported) or that is not what the list allows, a row no
    scheduler could follow.
    """
    name = task.name
    if not task.declared:
        raise RunRefused(
            f"The runtime task {name!r} was unscheduled; schedule() it again to run it."
        )
    refusal = registry.loaded_refusal(task.func)
    if refusal:
        raise RunRefused(f"The runtime task {name!r} was not run: {refusal}")
    try:
        return runtime_row_spec(task)
    except (ValueError, TypeError) as exc:
        raise RunRefused(
            f"The runtime task {name!r} cannot run; its row is not valid: {exc}. "
            "Schedule it again with replace=True."
        ) from None


def run_in_process(spec: TaskSpec, *, now: Callable[[], datetime] = timezone.now) -> TaskRun:
    """Run ``spec`` here and now; return its finished run. Call it outside a transaction.

    A runtime task runs on its own row (settings do not own it), and its function is
    checked against ``ROCKET_TASK_FUNCTIONS`` again, before it is imported: if it was
    taken off the list meanwhile, the run is ``fail`` with the reason.
    """
    with IdleWatch():  # the connection idles while the function runs
        return _run_in_process(spec, now)


def _run_in_process(spec: TaskSpec, now: Callable[[], datetime]) -> TaskRun:
    if spec.source == registry.RUNTIME:
        task_pk = Task.objects.values_list("pk", flat=True).get(name=spec.name)
        refusal = registry.loaded_refusal(spec.func)
    else:
        task_pk = sync_tasks({spec.name: spec}, now(), retire_others=False)[spec.name].pk
        refusal = ""
    started = now()
    run = TaskRun.objects.create(
        task_id=task_pk,
        status=RunStatus.RUNNING,
        trigger=RunTrigger.MANUAL,
        started_at=started,
        host=socket.gethostname(),
        pid=os.getpid(),
        pid_namespace=pid_namespace(),  # crash recovery checks the pid only from it
        last_seen=started,
    )
    log_run_event(spec.name, str(run.run_id), "run", started, None)
    logging_guard = LoggingGuard("runtask")  # the function may configure logging again
    pin_sqlite_paths()  # or change the working directory: the finish's reconnect
    working_directory = WorkingDirectoryWatch()
    revive_idle_connection()  # reads the server's idle limit now, while the connection works
    with SigtermStops() as sigterm:  # until the run is recorded
        outcome: Ending | None = None
        if refusal:
            sigterm.returned()  # no function to stop
            outcome = {"status": RunStatus.FAIL.value, "message": refusal}
        else:
            try:
                with Heartbeat(run, now):
                    try:
                        outcome = _call(spec)
                    finally:  # a StopSignal just after: the watchdog must not meet the finish
                        sigterm.returned()
            except StopSignal as exc:  # came after the function returned: its outcome stands
                outcome = outcome or stopped(exc)
        outcome = bounded(outcome, conf.result_max_bytes)
        status, finished = outcome["status"], now()
        message = storable(outcome.get("message", ""))
        exc_text = storable(outcome.get("exc_text", ""))
        logging_guard.check()
        working_directory.check()
        # Logged, and so alerted, before the run log is asked to take it, as the
        # scheduler logs a run's end before writing it: a database that is away, or a
        # write that hangs on a partitioned connection until an orchestrator's SIGKILL,
        # must not keep the event from the logs and the alerts.
        log_run_event(
            spec.name,
            str(run.run_id),
            status,
            run.started_at,
            finished,
            # Not level_of(): a one-off run logs only its failure above INFO, as it always has.
            level=logging.ERROR if status == RunStatus.FAIL else logging.INFO,
            message=message,
            exc_text=exc_text,
        )
        # Stopped by SIGTERM, perhaps mid-statement: its connections are closed.
        settle_connections(spec.name, stopped=status == RunStatus.TERMINATE)
        autocommit_again(spec.name)  # or the finish goes into what the function left open
        revive_idle_connection()  # the server may have closed it while the function ran
        # FinishNotRecorded leaves the run's fields holding its outcome all the same.
        _finish(
            run,
            status,
            finished,
            message,
            exc_text,
            outcome.get("result"),
            outcome.get("exception_types", ()),
            given_up=sigterm.given_up,
            recording=sigterm.recording,
        )
    return run


class SigtermStops:
    """While the function runs, SIGTERM raises :class:`StopSignal` into it (main thread only).

    So a run that an orchestrator, a deploy or ``timeout`` stops ends ``terminate`` with
    its traceback, after its ``finally`` blocks, instead of leaving its row ``running``
    for crash recovery. SIGHUP (the terminal of an SSH session closing) does the same,
    unless it is ignored (``nohup``): then it stays ignored. Only the first of these
    raises. Ctrl-C (SIGINT) raises ``KeyboardInterrupt`` into the function, as Python
    does. Once the function has returned (:meth:`returned`), a signal does not interrupt
    the recording of the run: it tells a finish waiting for the database to give up
    (:meth:`given_up`); one that comes while the database is being asked to take it
    (:meth:`recording`) gives the write :data:`FINISH_GRACE` seconds, then ends it
    (:class:`FinishInterrupted`, or on MySQL a connection shut down), so a write that
    hangs on a partitioned network does not wait for SIGKILL; a second Ctrl-C raises
    ``KeyboardInterrupt``. The handlers that were there before are put back when
    the run is recorded, and the command ends.

    On MySQL and MariaDB the driver holds the handler while the function waits for a
    statement: a watchdog (:class:`StatementWatch`) hears these signals on its own and
    ends the statement (``KILL QUERY``), so that the handler runs at once.
    """

    def __init__(self) -> None:
        self.calling = True
        self.told: list[str] = []  # the signals received, in order
        self.late = 0  # how many of them came after the function returned
        self.previous: dict[int, Any] = {}
        self.watch: StatementWatch | None = None
        self.in_finish = False  # the database is being asked to take the run's finish
        self._finish_alarm: Any = None  # SIGALRM's handler before recording() took it

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """While the finish is written: a stop signal ends a write that hangs.

        The write gets :data:`FINISH_GRACE` seconds more, as one under way takes
        milliseconds; then ``SIGALRM`` raises :class:`FinishInterrupted` where the write
        waits (psycopg's wait lets a handler run). Where ``SIGALRM`` is someone else's,
        the signal raises at once. On MySQL and MariaDB, whose driver holds handlers
        while it waits, a watchdog hears the signal and shuts the connection down after
        the same grace (a partition lets no ``KILL QUERY`` through either).
        """
        self.in_finish = True
        self._finish_alarm = None
        watch = None
        if self.previous:  # the handlers are this command's: a signal can come
            if signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None) and not any(
                signal.getitimer(signal.ITIMER_REAL)
            ):
                self._finish_alarm = signal.signal(signal.SIGALRM, self._finish_overdue)
            watch = StatementWatch.start(connection_closer, self._heard_in_finish)
            if self.late:  # told already: this write gets the grace, no more
                if self._finish_alarm is not None:
                    signal.setitimer(signal.ITIMER_REAL, FINISH_GRACE)
                if watch is not None:
                    watch.kill_at = time.monotonic() + FINISH_GRACE
        try:
            yield
        finally:
            self.in_finish = False
            if self._finish_alarm is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, self._finish_alarm)
                self._finish_alarm = None
            if watch is not None:
                watch.end()

    def _finish_overdue(self, signum: int, frame: object) -> None:
        """SIGALRM: the grace a stop signal gave the finish's write is over."""
        if self.in_finish:
            self.in_finish = False  # once: what follows is not the write
            raise FinishInterrupted(self.told[0] if self.told else "a stop signal")

    def _heard_in_finish(self, watch: StatementWatch, number: int) -> None:
        """In the watchdog: a signal this command stops on came while the finish waits."""
        if number in self.previous and watch.kill_at is None:
            watch.kill_at = time.monotonic() + FINISH_GRACE

    def __enter__(self) -> SigtermStops:
        if threading.current_thread() is threading.main_thread():
            self.previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._stop)
            if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
                self.previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._stop)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._stop)
            self.watch = StatementWatch.start(statement_killer, self._heard)
        return self

    def _heard(self, watch: StatementWatch, number: int) -> None:
        """In the watchdog: a signal this stops on came; its statement ends now."""
        if self.calling and number in self.previous:
            watch.kill_at = time.monotonic()

    def returned(self) -> None:
        self.calling = False
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.end()  # the finish's statements are not the function's

    def given_up(self) -> str:
        """The signal that told this command to stop since the function began, or ``""``."""
        return self.told[0] if self.told else ""

    def __exit__(self, *exc_info: object) -> None:
        self.returned()
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _stop(self, signum: int, frame: object) -> None:
        self.told.append(signal.Signals(signum).name)
        if self.calling:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # every time, as Python's own handler does
            if len(self.told) == 1:
                raise StopSignal(
                    f"Stopped by {self.told[0]}: runtask was asked to stop while it ran."
                )
            return
        self.late += 1
        if self.in_finish and self._finish_alarm is None:
            self.in_finish = False  # once: what follows is not the write
            raise FinishInterrupted(self.told[-1])
        if self.in_finish and self.late == 1:
            signal.setitimer(signal.ITIMER_REAL, FINISH_GRACE)  # a write under way ends
            return
        if signum == signal.SIGINT and self.late > 1:
            raise KeyboardInterrupt  # Ctrl-C again: the recording itself may hang


FINISH_GRACE = 2.0
"""Seconds a finish's write still gets after a stop signal: one under way takes ms."""


class FinishInterrupted(Exception):
    """A stop signal came while the database had not yet answered the run's finish."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"{signal_name} came while the database had not yet answered")


class FinishNotRecorded(Exception):
    """The run ended, but the database did not take its outcome.

    The finish is tried as ``ROCKET_LOG_RETRY`` says, then every
    :data:`FINISH_RETRY_EVERY` seconds for as long as this process is not told to stop;
    ``given_up`` is the signal that told it (``""``: the database refused the finish
    even without its message, traceback and result). ``run`` holds the outcome; its row is still
    ``running``, and its heartbeat has stopped, so a scheduler records it as ``crash``
    once the lease has passed.
    """

    def __init__(
        self, run: TaskRun, cause: Exception, attempts: int, waited: float, given_up: str
    ) -> None:
        super().__init__(str(cause))
        self.run = run
        self.cause = cause
        self.attempts = attempts
        self.waited = waited
        self.given_up = given_up


def finish_attempts() -> int:
    """How many times a run's finish is tried as ``ROCKET_LOG_RETRY`` says, before the wait."""
    return max(int(conf.log_retry["attempts"]), 1)


# Once ROCKET_LOG_RETRY's attempts are spent, a run's finish is tried this often until
# the database takes it: soon after it is back, so that a scheduler's crash recovery
# rarely records the run as crash first (the finish would then replace that).
FINISH_RETRY_EVERY = 1.0
# How often a finish waiting for the database looks whether it was told to give up.
GIVE_UP_LOOK_EVERY = 0.1


class Heartbeat:
    """Write ``last_seen`` on a running run's row every ``ROCKET_HEARTBEAT``, from a thread.

    Crash recovery on another host, or in another container, cannot look for this
    process; it takes the run as gone once ``last_seen`` is older than the lease, as it
    does a scheduler whose heartbeat stopped. The update is conditional: a row that is
    no longer ``running`` is left alone (the finish, written later, is the truth). A
    database error costs one beat, not the run. The thread closes its own connection.
    """

    def __init__(self, run: TaskRun, now: Callable[[], datetime]) -> None:
        self.run = run
        self.now = now
        self.every = parse_duration(conf.heartbeat).total_seconds()
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._beat, name=f"rocket-runtask-heartbeat-{run.pk}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        # Not waited for long: a beat stuck on a dead connection must not hold up the
        # finish, and one that lands after it changes nothing (it is conditional).
        self.thread.join(timeout=5.0)

    def _beat(self) -> None:
        pk, run_id = self.run.pk, self.run.run_id
        try:
            with IdleWatch() as idle:  # a beat longer than the server's idle limit
                self._beats(pk, run_id, idle)
        finally:
            connection.close()

    def _beats(self, pk: int, run_id: object, idle: IdleWatch) -> None:
        while not self.stopped.wait(self.every):
            idle.revive()
            try:
                kept = TaskRun.objects.filter(pk=pk, status=RunStatus.RUNNING).update(
                    last_seen=self.now()
                )
            except DatabaseError:
                logger.warning(
                    "Could not record that run %s is still going; trying again in %g s.",
                    run_id,
                    self.every,
                    exc_info=True,
                )
                connection.close()
                continue
            if not kept:
                logger.warning(
                    "Run %s is no longer recorded as running (a scheduler that could not "
                    "see this process for longer than ROCKET_LEASE_TIMEOUT recorded it as "
                    "crash?); its end is recorded when the function returns.",
                    run_id,
                )
                return


def _call(spec: TaskSpec) -> Ending:
    try:
        func = spec.load_function()
    except BaseException as exc:  # SystemExit at import too: the row must not stay running
        return {
            "status": RunStatus.FAIL.value,
            "message": f"Could not import the task function: {describe(exc)}",
            "exc_text": format_traceback(exc),
        }
    return call_task(func, spec.parameters, conf.result_max_bytes)  # never raises


def _finish(
    run: TaskRun,
    status: str,
    finished_at: datetime,
    message: str,
    exc_text: str,
    result: Any,
    exception_types: Sequence[str] = (),
    *,
    given_up: Callable[[], str] = str,
    recording: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> None:
    """Record the finish, waiting for the database for as long as it takes.

    Tried as ``ROCKET_LOG_RETRY`` says, then every :data:`FINISH_RETRY_EVERY` seconds
    until the database takes it: a database that fails over, or restarts, must not turn
    a run that ended into a ``crash``. Gives up, raising :class:`FinishNotRecorded`,
    once ``given_up()`` names the signal that told this process to stop, or when that
    signal ends a write that hangs (each attempt is made inside ``recording()``).
    """
    policy = conf.log_retry
    attempts = finish_attempts()
    began = time.monotonic()
    attempt = 0  # failed for want of the database
    tried = 0
    refused = False
    while True:
        tried += 1
        try:
            with recording():
                run.finish(
                    status,
                    finished_at,
                    message=message,
                    exc_text=exc_text,
                    result=result,
                    exception_types=exception_types,
                )
        except FinishInterrupted as exc:  # told to stop while a write hung
            raise FinishNotRecorded(run, exc, tried, time.monotonic() - began, given_up()) from exc
        except REFUSED as exc:
            if refused:  # even without them: nothing more can be left out
                raise FinishNotRecorded(run, exc, tried, time.monotonic() - began, "") from exc
            # Refused, not unreachable: record the run without what the database refused.
            logger.error("Run %s was refused as it ended (%s).", run.run_id, exc)
            refused = True
            message, exc_text, result = refused_note(exc), "", None
            continue
        except DatabaseError as exc:
            attempt += 1
            signal_name = given_up()
            if signal_name:
                raise FinishNotRecorded(
                    run, exc, tried, time.monotonic() - began, signal_name
                ) from exc
            if attempt < attempts:
                logger.warning(
                    "Recording the finish of run %s failed (attempt %d); retrying.",
                    run.run_id,
                    attempt,
                    exc_info=True,
                )
                pause = min(policy["backoff"] * 2 ** (attempt - 1), policy["max_backoff"])
            else:
                log_database_error(
                    logger,
                    logging.WARNING,
                    "Run %s ended with %s, but the database does not take its outcome; "
                    "trying again every %g s until it does (SIGTERM or Ctrl-C gives up, "
                    "and leaves the row to crash recovery).",
                    run.run_id,
                    status,
                    FINISH_RETRY_EVERY,
                    now=time.monotonic(),
                )
                pause = FINISH_RETRY_EVERY
            connection.close()
            _pause(pause, given_up)
            continue
        if attempt >= attempts:
            logger.warning(
                "Recorded the finish of run %s (%s) once the database took it, after %d "
                "attempts over %.0f s.",
                run.run_id,
                status,
                tried,
                time.monotonic() - began,
            )
        return


def _pause(seconds: float, given_up: Callable[[], str]) -> None:
    """Sleep ``seconds``, or less once ``given_up()`` names a signal."""
    end = time.monotonic() + seconds
    while not given_up() and (left := end - time.monotonic()) > 0:
        time.sleep(min(left, GIVE_UP_LOOK_EVERY))
