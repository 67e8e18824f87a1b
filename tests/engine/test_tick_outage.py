"""A tick that met a database error asks the database nothing more until the next tick.

Behind a network partition every statement waits out the connection's TCP options
before it fails (docs/howto/deployment.rst). A tick tried its heartbeat, then its poll,
then its starts, then its finishes: four such waits, so with the options at 2 s a tick
lasted 8 s, past a 5-second lease, and the stall report fired although the options had
done their job (bench/soak.py --faults db_drop). Now the first failure ends the tick's
database work; what it skipped is due again at the next tick.
"""

import contextlib
import logging
from collections.abc import Iterator

import pytest
from django.db import connection

from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import TaskRun

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.contextmanager
def unreachable() -> Iterator[None]:
    """The test database refuses every new connection: a closed port, a missing directory."""
    connection.close()
    settings = connection.settings_dict
    key = "NAME" if connection.vendor == "sqlite" else "PORT"
    saved = settings[key]
    settings[key] = "/nonexistent/rocket/db.sqlite3" if key == "NAME" else 1
    try:
        yield
    finally:
        connection.close()
        settings[key] = saved


def test_a_tick_stops_asking_the_database_after_its_first_failure(settings, clock, caplog):
    settings.ROCKET_TASKS = {
        "every": {
            "func": "tests.support.tasks.noop",
            "start_cond": "every('1 second')",
            "execution": "thread",
        }
    }
    settings.ROCKET_HEARTBEAT = "1 second"
    settings.ROCKET_POLL_INTERVAL = 1
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()
    clock.advance(1)  # the heartbeat, the poll and a start are all due
    caplog.clear()
    with unreachable(), caplog.at_level(logging.WARNING, logger="django_rocket"):
        scheduler.tick()
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert failures == ["Heartbeat failed; will retry."], failures
    # The next ticks, the database back, do what the failed one skipped.
    caplog.clear()
    for _ in range(3):
        clock.advance(1)
        scheduler.tick()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert TaskRun.objects.filter(task__name="every").count() >= 2
    scheduler.request_stop()
    scheduler.shutdown()
