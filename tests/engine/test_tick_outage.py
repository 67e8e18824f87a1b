"""A tick that met a database error asks the database nothing more until the next tick.

Behind a network partition every statement waits out the connection's TCP options
before it fails (docs/howto/deployment.rst). A tick tried its heartbeat, then its poll,
then its starts, then its finishes: four such waits, so with the options at 2 s a tick
lasted 8 s, past a 5-second lease, and the stall report fired although the options had
done their job (bench/soak.py --faults db_drop). Now the first failure ends the tick's
database work; what it skipped is due again at the next tick.
"""

import logging

import pytest

from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, Task, TaskRun
from tests.conftest import unreachable

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_after_an_outage_crash_recovery_waits_a_lease_for_heartbeats(settings, clock, caplog):
    """A runtask on another host beat until the database went away for a minute.

    Its heartbeat could not be written meanwhile, and is a minute old when the database
    answers again. The scheduler's first recovery pass after that recorded it as
    ``crash`` at once, though it waited the outage out and records its finish within a
    second; now heartbeats are judged once the database has answered for a lease.
    """
    settings.ROCKET_HEARTBEAT = "1 second"
    settings.ROCKET_TASKS = {}
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()  # active; the first recovery pass is done
    task = Task.objects.create(name="by-hand", func="tests.support.tasks.noop", start_cond="false")
    run = TaskRun.objects.create(
        task=task,
        status=RunStatus.RUNNING,
        trigger="manual",
        started_at=clock.now(),
        host="batch-host",
        pid=31,
        pid_namespace="batch-boot/pid:9",
        last_seen=clock.now(),
    )
    with unreachable():
        for _ in range(60):
            clock.advance(1)
            scheduler.tick()
    for _ in range(29):  # recovery passes (one a lease) with the database back
        clock.advance(1)
        scheduler.tick()
        assert TaskRun.objects.get(pk=run.pk).status == RunStatus.RUNNING
    for _ in range(3):  # a lease of answers, and still no beat from it
        clock.advance(1)
        scheduler.tick()
    run.refresh_from_db()
    assert run.status == RunStatus.CRASH, run.message
    scheduler.request_stop()
    scheduler.shutdown()
