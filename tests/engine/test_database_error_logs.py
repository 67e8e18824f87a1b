"""A database error that repeats at every tick is logged in full once, then sparingly.

In an outage (a server down, a disk full) the starts, the poll and the heartbeat fail
at each of their turns: the log had an ERROR with its traceback every second for the
starts alone, as long as the outage lasted.
"""

from __future__ import annotations

import logging

from django.db import OperationalError

from django_rocket.engine.connection import REPEAT_EVERY, log_database_error

log = logging.getLogger("django_rocket.scheduler")
STARTS = "Could not record the start of %d run(s)%s; will retry."


def fail(now: float, message: str = STARTS, args: tuple = (2, "")) -> None:
    try:
        raise OperationalError("database or disk is full")
    except OperationalError:
        log_database_error(log, logging.ERROR, message, *args, now=now)


def test_the_first_in_full_then_once_a_minute_with_how_long_and_how_often(caplog):
    caplog.set_level(logging.DEBUG, "django_rocket.scheduler")
    for second in range(121):  # one failing tick a second for two minutes
        fail(1000.0 + second)
    shown = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in shown] == [
        "Could not record the start of 2 run(s); will retry.",
        "Could not record the start of 2 run(s); will retry. Failing so for 60 s, 61 times "
        "(the first with its traceback); now: OperationalError: database or disk is full",
        "Could not record the start of 2 run(s); will retry. Failing so for 120 s, 121 times "
        "(the first with its traceback); now: OperationalError: database or disk is full",
    ]
    assert shown[0].exc_info is not None and shown[1].exc_info is None
    quiet = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(quiet) == 118 and all(r.exc_info for r in quiet)  # kept, in full, at DEBUG


def test_another_message_and_a_new_outage_are_logged_in_full(caplog):
    caplog.set_level(logging.ERROR, "django_rocket.scheduler")
    fail(0.0)
    fail(1.0, "Heartbeat failed; will retry.", ())  # another statement: its own first time
    fail(2.0)
    fail(2.0 + REPEAT_EVERY + 1)  # a minute without it: a new outage
    assert [(r.getMessage(), r.exc_info is not None) for r in caplog.records] == [
        ("Could not record the start of 2 run(s); will retry.", True),
        ("Heartbeat failed; will retry.", True),
        ("Could not record the start of 2 run(s); will retry.", True),
    ]
