"""The scheduler's database connection: one-snapshot reads, reconnecting, pruning broken ones."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import DatabaseError, DataError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.migrations.executor import MigrationExecutor

from django_rocket.clock import Clock
from django_rocket.executors.outcome import describe

logger = logging.getLogger("django_rocket.scheduler")


@contextmanager
def one_snapshot() -> Iterator[None]:
    """Make the reads inside see the database as of one instant.

    PostgreSQL, MySQL and MariaDB: a REPEATABLE READ transaction, whatever the
    connection's own level (Django runs MySQL at READ COMMITTED, where every read of a
    transaction takes a new snapshot). The statement sets the level of the transaction
    that the first read starts. SQLite: a transaction, which in WAL mode reads one
    snapshot (and with ``transaction_mode`` IMMEDIATE holds writers back for the few
    hundred milliseconds the reads take). Inside an outer transaction the reads already
    share it.
    """
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        if connection.vendor in ("postgresql", "mysql"):
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


# SQLite copies its write-ahead log into the database file once the log holds this many
# pages (its default, 1,000, unless init_command sets another: see sqlite_checkpoints_less).
SQLITE_DEFAULT_CHECKPOINT = 1000
SQLITE_CHECKPOINT = 10_000
_CHECKPOINT_UID = "django_rocket.engine.connection.checkpoint_less"


def _checkpoint_less(sender: object, connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    if connection.vendor != "sqlite":
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint")
            row = cursor.fetchone()
            if row is not None and row[0] == SQLITE_DEFAULT_CHECKPOINT:
                cursor.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_CHECKPOINT}")
    except DatabaseError:  # only a speed-up: the connection works as it is
        logger.debug("Could not set wal_autocheckpoint on %s.", connection.alias, exc_info=True)


@contextmanager
def sqlite_checkpoints_less() -> Iterator[None]:
    """While inside, this process's SQLite connections checkpoint every 10,000 pages.

    A tick rewrites the same pages of the run log's indexes again and again; a checkpoint
    every 1,000 pages (SQLite's default) copied each of them into the database file
    several times a second under load. Every 10,000 pages, W4 records a tenth more runs
    a second for the same work (bench/RESULTS.md), and the log file grows to about 40 MB
    (4 KB pages) before it is reused. A value set in ``init_command``
    (``PRAGMA wal_autocheckpoint=N``) is kept; other databases are left alone.
    """
    connection_created.connect(_checkpoint_less, weak=False, dispatch_uid=_CHECKPOINT_UID)
    try:
        for conn in connections.all(initialized_only=True):
            if conn.connection is not None:
                _checkpoint_less(None, conn)
        yield
    finally:
        connection_created.disconnect(dispatch_uid=_CHECKPOINT_UID)


# How many times reconnect() was called: a tick that sees it move has met a database
# error, and leaves the rest of its statements to the next tick (Scheduler.tick).
_failures = 0


def reconnect() -> None:
    """Close the connection after an error; the next query opens a new one."""
    global _failures
    _failures += 1
    try:
        connection.close()
    except DatabaseError:
        pass


def database_failures() -> int:
    """How many database errors this process has met (reconnect() calls); only its changes count."""
    return _failures


# A database error that repeats (each tick, poll or heartbeat of an outage) is logged in
# full once, then with how long and how often at most this often (monotonic seconds),
# and at DEBUG in between. One that has not happened for this long starts over.
REPEAT_EVERY = 60.0


@dataclass
class _Repeat:
    since: float  # when this outage's first such error was logged
    reported: float  # when it was last logged above DEBUG
    last: float  # when it last happened
    count: int = 1


_repeats: dict[str, _Repeat] = {}


def log_database_error(
    log: logging.Logger, level: int, message: str, *args: object, now: float
) -> None:
    """Log a failed database statement (call it in the ``except`` block).

    In an outage the same statement fails at every tick: a traceback a second, for as
    long as the outage lasts (a full disk for an hour: 3,600 of them for the starts
    alone). The first is logged in full at ``level``; the same ``message`` again at
    ``level`` only once every ``REPEAT_EVERY`` seconds, without the traceback but with
    how long it has failed, how often and the error; the others at DEBUG, in full.
    ``now`` is the caller's monotonic clock.
    """
    seen = _repeats.get(message)
    if seen is None or now - seen.last > REPEAT_EVERY:
        _repeats[message] = _Repeat(since=now, reported=now, last=now)
        log.log(level, message, *args, exc_info=True)
        return
    seen.count += 1
    seen.last = now
    if now - seen.reported < REPEAT_EVERY:
        log.debug(message, *args, exc_info=True)
        return
    seen.reported = now
    error = sys.exc_info()[1]
    log.log(
        level,
        f"{message} Failing so for %d s, %d times (the first with its traceback); now: %s",
        *args,
        now - seen.since,
        seen.count,
        describe(error) if error else "?",
    )


def close_broken_connections() -> None:
    """Close a connection that is broken, or older than a positive ``CONN_MAX_AGE``.

    Django's ``close_old_connections()`` is made for request boundaries: with the default
    ``CONN_MAX_AGE = 0`` it closes the connection every time, so every tick reconnected
    (a new SQLite handle and its PRAGMAs, or a PostgreSQL login): a quarter of an idle
    tick's CPU and a third of W4's throughput (bench/RESULTS.md).
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if conn.errors_occurred:
            if conn.is_usable():
                conn.errors_occurred = False
            else:
                conn.close()
        elif (
            conn.settings_dict.get("CONN_MAX_AGE")
            and conn.close_at is not None
            and time.monotonic() >= conn.close_at
        ):
            conn.close()


def unapplied_migrations() -> list[str]:
    """Return django-rocket's migrations the database lacks (``app.name``, in order).

    Empty when they are all applied, or when the database cannot say (not reachable):
    this only explains an error, it never raises one.
    """
    try:
        executor = MigrationExecutor(connection)
        ours = [node for node in executor.loader.graph.leaf_nodes() if node[0] == "django_rocket"]
        plan = executor.migration_plan(ours)
    except DatabaseError:
        reconnect()
        return []
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


def migrate_hint(missing: list[str]) -> str:
    """Say which migrations are missing and what to run, in one sentence."""
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return (
        f"The database answers, but {len(missing)} of django-rocket's migrations "
        f"{'is' if len(missing) == 1 else 'are'} not applied ({shown}): "
        "run `python manage.py migrate`."
    )


def when_the_database_answers(
    step: Callable[[], None], clock: Clock, wakeup: threading.Event, stopped: Callable[[], bool]
) -> bool:
    """Run ``step``, waiting out a database that is not reachable yet; False if stopped.

    A value the database refuses (``DataError``) is no outage: it is logged and raised.

    The waits double from 0.5 s up to 30 s; ``wakeup`` (a stop request) cuts one short. A
    database that answers but lacks any of django-rocket's migrations is waited out the
    same way, and the log says which ones to apply.
    """
    delay = 0.5
    while True:
        # A deploy that forgot `migrate` (or runs it beside the scheduler) is not an
        # outage: say what to do, without a traceback, and wait for it. Checked before the
        # step too: a migration whose absence breaks no query (a constraint, an index) can
        # still be one a guarantee rests on.
        missing = unapplied_migrations()
        if missing:
            logger.error("%s Retrying start-up in %gs.", migrate_hint(missing), delay)
        else:
            try:
                step()
                return True
            except DataError:
                # The database answered and refused a value (too long for its column, a NUL
                # in text): not an outage, and the same value fails the same way again.
                logger.error(
                    "The database refused a value at start-up, so the scheduler stops: "
                    "`python manage.py check` names the task setting that holds it "
                    "(runscheduler runs the checks unless --skip-checks).",
                    exc_info=True,
                )
                raise
            except DatabaseError:
                logger.error(
                    "The database is not reachable; retrying start-up in %gs.",
                    delay,
                    exc_info=True,
                )
                reconnect()
        if stopped():
            return False
        clock.wait(wakeup, delay)
        delay = min(delay * 2, 30.0)
