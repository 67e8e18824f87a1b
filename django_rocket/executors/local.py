"""Run task functions in the scheduler process: in its loop, a worker thread, or an event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.signals import connection_created

from django_rocket.executors.current import set_current_run
from django_rocket.executors.outcome import ActiveRun, Ending, Finish, call_task, call_task_async
from django_rocket.models import RunStatus

logger = logging.getLogger("django_rocket.scheduler")

# Whether the calling thread opened a database connection since it last closed them.
_opened = threading.local()


def _note_connection(sender: object, **kwargs: object) -> None:
    _opened.connection = True


# A worker closes its connections after a run only if one was opened: closing them all,
# when the run opened none, cost half of a run that does nothing.
connection_created.connect(_note_connection, weak=False, dispatch_uid="django_rocket.local")


def close_run_connections() -> None:
    """Close the connections the calling thread opened (a worker outlives its run)."""
    if getattr(_opened, "connection", False):
        _opened.connection = False
        connections.close_all()


def settle_connections(task: str, *, stopped: bool) -> None:
    """Close the connections a stopped function may have left mid-statement.

    A ``main`` run stopped at its timeout or by SIGTERM, or ``runtask``'s function
    stopped by SIGTERM (``stopped``), is stopped by an exception raised where it is
    (``StopSignal``): perhaps inside a driver's call. psycopg cancels the statement for
    ``KeyboardInterrupt`` only, and otherwise leaves the connection mid-statement;
    MySQLdb's statement is not interrupted, but the exception can come between the
    statement and the reading of its result ("Commands out of sync"). The next statement
    on that connection failed either way (the scheduler's poll, heartbeat, starts), and on
    PostgreSQL the server went on with the abandoned one. So after a stopped function the
    connections it used are closed (the next statement opens another), and a statement
    still running in PostgreSQL is cancelled first, whatever ended the function.
    """
    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if raw is None:
            continue
        pgconn = getattr(raw, "pgconn", None)  # psycopg 3
        in_flight = pgconn is not None and pgconn.transaction_status == _PG_ACTIVE
        if not (in_flight or stopped):
            continue
        if in_flight:
            logger.warning(
                "Task %r ended while a statement of it waited for the database (%r); the "
                "statement is cancelled and the connection closed.",
                task,
                connection.alias,
            )
            try:
                cancel = getattr(raw, "cancel_safe", None)  # psycopg 3.2+: bounded
                if cancel is not None:
                    cancel(timeout=5.0)
                else:
                    raw.cancel()
            except Exception:  # the connection is closed whatever the cancel did
                logger.warning("Could not cancel the statement.", exc_info=True)
        if connection.in_atomic_block:
            continue  # a caller's transaction (a test's): it rolls back and closes
        try:
            connection.close()
        except DatabaseError:
            connection.connection = None


# psycopg's pq.TransactionStatus.ACTIVE: a statement is in progress on the connection.
_PG_ACTIVE = 1


def _open_mysql_connections() -> list[Any]:
    """This thread's MySQL connections (their Django wrappers) that are open."""
    return [
        c
        for c in connections.all(initialized_only=True)
        if c.vendor == "mysql" and c.connection is not None
    ]


def statement_killer() -> Callable[[], None] | None:
    """For this thread's MySQL connections: what ends the statement one runs, from elsewhere.

    A ``main`` run, or ``runtask``'s function, is stopped by an exception raised from a
    signal handler, which runs once the interpreter gets control back: MySQLdb waits for
    a statement's answer in C and retries when a signal interrupts it, so a timeout or a
    stop waited for the statement, however long. The function returned, called from
    another thread, sends ``KILL QUERY`` on a connection of its own for each of these
    connections that is running a statement: the statement fails at once, and the
    pending handler raises.
    None where there is no MySQL connection open (psycopg's wait lets the handler run).
    """
    # Their server-side ids, read here: MySQLdb refuses a connection's use from another
    # thread while this one waits on it.
    held = [(c, int(c.connection.thread_id())) for c in _open_mysql_connections()]
    if not held:
        return None

    def kill() -> None:
        for wrapper, thread_id in held:
            try:
                other = wrapper.get_new_connection(wrapper.get_connection_params())
                try:
                    cursor = other.cursor()
                    cursor.execute(
                        "SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = %s",
                        [thread_id],
                    )
                    row = cursor.fetchone()
                    if row and row[0] == "Query":
                        cursor.execute(f"KILL QUERY {thread_id}")
                        logger.warning(
                            "Ended the statement a stopped function was waiting for "
                            "(KILL QUERY %d on %r).",
                            thread_id,
                            wrapper.alias,
                        )
                finally:
                    other.close()
            except Exception:
                logger.warning("Could not end a stopped function's statement.", exc_info=True)

    return kill


def connection_closer() -> Callable[[], None] | None:
    """For this thread's MySQL connections: what ends a wait on them, from elsewhere.

    For a write that hangs on a partitioned network, where ``KILL QUERY`` cannot reach
    the server either: the function returned, called from another thread, shuts the
    connections' sockets down, so the driver's read fails at once ("Lost connection")
    and the caller goes on. None where there is no MySQL connection open (psycopg's wait
    lets a signal handler run).
    """
    # Their file descriptors, read here, in the thread that uses them.
    held = [(c.alias, c.connection.fileno()) for c in _open_mysql_connections()]
    if not held:
        return None

    def close() -> None:
        for alias, fd in held:
            try:
                # A duplicate of the descriptor: shutting it down ends the connection
                # itself, and closing it leaves the driver's own descriptor alone.
                with socket.socket(fileno=os.dup(fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
                logger.warning("Closed connection %r, which runtask's finish waited on.", alias)
            except OSError:
                logger.warning("Could not close connection %r.", alias, exc_info=True)

    return close


def autocommit_again(task: str) -> None:
    """Put back autocommit if a function left the thread's connection without it.

    A function run on a connection that outlives it (``main`` runs on the scheduler's,
    ``runtask`` on its own) may leave ``transaction.set_autocommit(False)`` in force.
    Every later write on that connection then went into one transaction that was never
    committed: the scheduler's heartbeats, starts and finishes, or ``runtask``'s finish.
    What the function left uncommitted is rolled back, as a thread run's connection is
    closed after it, with a warning. Inside an ``atomic`` block of the caller's (a test's)
    nothing is touched.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    # Read off the wrapper: asking the connection would open one a function did not.
    if connection.connection is None or connection.in_atomic_block or connection.autocommit:
        return
    try:
        logger.warning(
            "Task %r left the database connection with autocommit off; what it did not "
            "commit is rolled back, and the run is recorded.",
            task,
        )
        connection.rollback()
        connection.set_autocommit(True)
    except DatabaseError:
        connection.close()  # the next write opens a new one


# PostgreSQL 14+ and MySQL/MariaDB close a session left idle this long (0: never).
_IDLE_LIMIT_SQL = {
    "postgresql": "SELECT setting::bigint / 1000.0 FROM pg_settings "
    "WHERE name = 'idle_session_timeout'",
    "mysql": "SELECT @@SESSION.wait_timeout",
}


def server_idle_limit(cursor: Any, vendor: str) -> float | None:
    """Seconds after which the server closes this session if it sends nothing; None: never.

    PostgreSQL's ``idle_session_timeout`` (14 and later), MySQL's and MariaDB's
    ``wait_timeout``. What lies between (a pooler, a firewall) may close sooner; the
    scheduler's heartbeat keeps its own connection busy for those.
    """
    sql = _IDLE_LIMIT_SQL.get(vendor)
    if sql is None:
        return None
    cursor.execute(sql)
    row = cursor.fetchone()
    seconds = float(row[0]) if row is not None and row[0] is not None else 0.0
    return seconds if seconds > 0 else None


# The IdleWatch following each thread's connection, if any.
_watching = threading.local()


class IdleWatch:
    """Notice that the server closed this thread's connection while it sat idle.

    A scheduler whose ``main`` run took longer than the server's idle limit
    (:func:`server_idle_limit`), a ``runtask`` whose function did, or a process stopped
    and resumed: the next statement met a closed session (PostgreSQL
    ``IdleSessionTimeout``, MySQL 2006 "Server has gone away"). The write then failed
    with an error and a traceback in the log, and waited for its retry.

    Used as a context manager, it follows this thread's connection. :meth:`revive`,
    called before the connection is used again, reads the server's limit once per
    connection. Where there is one, it notes from then on when the connection last ran a
    statement (a Django execute wrapper) and, once the connection has been idle for half
    the limit, asks the server whether it still answers (one round trip, only then) and
    closes it if not: the next statement opens a new one. Where the server has no limit
    (SQLite; PostgreSQL by default) nothing is asked and no statement is wrapped.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self.last_used = monotonic()
        # The raw connection the limit was read on, and the limit.
        self._limit_for: tuple[object, float | None] | None = None
        self._wrapped: Any = None  # the connection whose statements it notes
        self._previous: IdleWatch | None = None
        self.revived = 0  # connections found closed by the server (tests read it)

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: Any,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        try:
            return execute(sql, params, many, context)
        finally:
            self.last_used = self._monotonic()

    def __enter__(self) -> IdleWatch:
        self._previous = getattr(_watching, "current", None)
        _watching.current = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        _watching.current = self._previous
        self._unwrap()

    @property
    def wrapping(self) -> bool:
        """Whether it notes every statement of the connection (the server has a limit)."""
        return self._wrapped is not None

    def _unwrap(self) -> None:
        if self._wrapped is not None and self in self._wrapped.execute_wrappers:
            self._wrapped.execute_wrappers.remove(self)
        self._wrapped = None

    def _limit(self, connection: Any) -> float | None:
        raw = connection.connection
        if self._limit_for is None or self._limit_for[0] is not raw:
            with connection.cursor() as cursor:
                limit = server_idle_limit(cursor, connection.vendor)
            self._limit_for = (raw, limit)
            self.last_used = self._monotonic()
            if limit is None:
                self._unwrap()
            elif self._wrapped is None:
                connection.execute_wrappers.append(self)
                self._wrapped = connection
        return self._limit_for[1]

    def revive(self) -> None:
        """Close this thread's connection if the server closed its side while it idled."""
        connection = connections[DEFAULT_DB_ALIAS]
        if connection.connection is None or connection.in_atomic_block:
            return  # nothing open to check, or a caller's transaction to keep
        idle = self._monotonic() - self.last_used
        limit: float | None = None
        try:
            known = self._limit_for is not None and self._limit_for[0] is connection.connection
            limit = self._limit(connection)
            if not known or limit is None or idle < limit / 2:
                return  # a limit read just now was read on a connection that answers
            if connection.is_usable():
                self.last_used = self._monotonic()
                return
        except DatabaseError:
            pass  # closed already: reading the limit met the closed session
        self.revived += 1
        logger.log(
            logging.INFO if self.revived == 1 else logging.DEBUG,
            "The database closed this process's connection after it sat idle for %.0f s "
            "(the server's idle limit: %s); the next statement opens a new one.",
            idle,
            "unknown" if limit is None else f"{limit:g} s",
        )
        self._limit_for = None
        try:
            connection.close()  # the next statement opens a new one
        except DatabaseError:
            pass


def revive_idle_connection() -> None:
    """:meth:`IdleWatch.revive` for this thread's connection, if an IdleWatch follows it."""
    watch = getattr(_watching, "current", None)
    if watch is not None:
        watch.revive()


class ThreadWorkers:
    """Worker threads for execution "thread", reused from one run to the next.

    A run handed over never waits for a worker: when none is idle a new one starts,
    so a long run cannot hold up a short one. How many may be busy at once is
    decided before a run is handed over: ``ROCKET_MAX_THREADS`` (``busy``, read by
    ``Runner.thread_slots``) keeps due runs from starting at all. A worker idle for
    ``idle_timeout`` seconds exits, so a burst of concurrent runs does not leave its
    threads behind.
    Starting a thread per run cost as much as the rest of a short run's
    bookkeeping together (see bench/RESULTS.md).

    Nothing here grows with the number of runs: the queue holds the jobs handed over
    and not yet taken, the rest are counters. There are as many threads as the most
    runs that overlapped within the last ``idle_timeout``; each costs 15 to 20 KB of
    RSS, and part of a burst's memory stays with the allocator after its
    threads exit, so RSS follows the largest burst (issue 23, guarantees.rst).
    """

    def __init__(
        self, idle_timeout: float = 60.0, on_free: Callable[[], None] | None = None
    ) -> None:
        self.idle_timeout = idle_timeout
        # Called from a worker when its run's function has returned and the thread is
        # free again: ROCKET_MAX_THREADS' waiting tasks may start (the scheduler wakes).
        self.on_free = on_free
        # Runs handed over and not yet taken by a worker: each job is taken once.
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for a job, minus jobs already handed to them
        self.started = 0  # threads started over the pool's life (tests read it)
        # Jobs handed over whose function has not returned: the threads in use. A run
        # whose timeout flagged it but whose function goes on still counts: its thread does.
        self.busy = 0
        self._closed = False

    def submit(self, job: Callable[[], None]) -> None:
        """Hand ``job`` to an idle worker, or start one for it."""
        with self._lock:
            if self._closed:
                raise RuntimeError("The scheduler is shutting down; no new thread runs start.")
            self.busy += 1
            if self._idle > 0:
                self._idle -= 1
                self._jobs.put(job)
                return
            self.started += 1
        thread = threading.Thread(target=self._work, args=(job,), name="rocket-worker", daemon=True)
        try:
            thread.start()
        except BaseException as exc:
            with self._lock:
                self.started -= 1
                self.busy -= 1
                busy = self.busy
            if isinstance(exc, RuntimeError):  # "can't start new thread": a system limit
                raise RuntimeError(
                    f"{exc} ({busy} thread run(s) in progress): the system refused another "
                    "thread. ROCKET_MAX_THREADS caps how many thread runs go at once; the "
                    "others wait for a free thread."
                ) from exc
            raise

    def _work(self, job: Callable[[], None] | None) -> None:
        while job is not None:
            try:
                job()
            except BaseException:  # job() reports its own outcome; never lose the worker
                logger.exception("A thread run's bookkeeping raised.")
            with self._lock:
                self.busy -= 1
                closed = self._closed
                if not closed:
                    self._idle += 1
            if self.on_free is not None:
                self.on_free()
            if closed:
                return
            try:
                job = self._jobs.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    # A job handed over while we timed out is in the queue now: take it.
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return

    def close(self) -> None:
        """Let idle workers exit and busy ones exit after their run; refuse new jobs."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._jobs.put(None)


def thread_job(
    active: ActiveRun, func: Callable[..., Any], max_bytes: int, finish: Finish
) -> Callable[[], None]:
    """Return the job a worker thread runs for ``active``: the call, then its report."""

    def job() -> None:
        thread = threading.current_thread()
        ending: Ending = {"status": RunStatus.FAIL.value, "message": "The run did not report."}
        try:
            thread.name = f"rocket-{active.launch.task}"
            set_current_run(active)
            ending = call_task(func, active.launch.parameters, max_bytes)  # never raises
        finally:
            try:
                close_run_connections()
            except Exception:
                logger.warning("Closing a thread run's connections failed.", exc_info=True)
            set_current_run(None)
            thread.name = "rocket-worker"
            finish(active.launch.run_id, ending)  # always: a run never stays running

    return job


class EventLoop:
    """One event loop in its own thread, started on first use, for execution "async"."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="rocket-async", daemon=True
            )
            self._thread.start()
        return self._loop

    def start(
        self, active: ActiveRun, func: Callable[..., Any], max_bytes: int, finish: Finish
    ) -> None:
        """Schedule the coroutine function's run on the loop; ``finish`` gets its ending."""
        loop = self._ensure()

        async def wrapper() -> None:
            ending: Ending = {"status": RunStatus.FAIL.value, "message": "The run did not report."}
            try:
                ending = await call_task_async(func, active.launch.parameters, max_bytes)
            except asyncio.CancelledError:
                ending = {"status": RunStatus.TERMINATE.value, "message": "Cancelled."}
            finally:
                finish(active.launch.run_id, ending)  # always: a run never stays running

        def create() -> None:
            active.coroutine = loop.create_task(wrapper())

        loop.call_soon_threadsafe(create)

    def cancel(self, active: ActiveRun) -> None:
        """Cancel a run's coroutine (its ending says ``Cancelled.``)."""
        if active.coroutine is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(active.coroutine.cancel)

    def stop(self) -> None:
        """Stop the loop, if it ever started."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
