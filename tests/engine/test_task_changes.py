"""The scheduler applies every change to a Task row, whatever order the changes commit in.

A pause, an override or a runtime task reaches a running scheduler through its poll,
which reads the rows changed since the last one it saw. It used to read them by
``updated_at``, each writer's own clock, two seconds behind the newest stamp seen: a
change stamped further behind than that (a web server whose clock is behind, or a
request that paused a task and committed seconds later, under ATOMIC_REQUESTS) was
never applied, and the poll's probe did not even notice it. Each change now takes the
next task revision from a counter row, locked until it commits, so revisions commit in
their order and the poll reads exactly those above its cursor.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_rocket import registry
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import Counter, Task
from django_rocket.ops.queue import set_enabled

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_tasks(settings):
    settings.ROCKET_EXECUTION = "main"
    settings.ROCKET_HEARTBEAT = "1 hour"
    settings.ROCKET_TASKS = {
        name: {"func": "tests.support.tasks.noop", "start_cond": "false"} for name in ("t0", "t1")
    }


def start(clock) -> Scheduler:
    scheduler = Scheduler(registry.tasks(), clock=clock)
    scheduler.startup()
    scheduler.tick()
    return scheduler


def poll(scheduler: Scheduler, clock) -> None:
    clock.advance(scheduler.poller.poll_every)
    scheduler.tick()


def test_a_change_stamped_behind_the_newest_one_seen_is_applied(two_tasks, clock):
    """A writer whose clock is ten seconds behind another's: its pause comes after."""
    scheduler = start(clock)
    ahead = timezone.now() + timedelta(seconds=10)
    Task.objects.filter(name="t1").update(enabled=False, updated_at=ahead)
    poll(scheduler, clock)
    assert scheduler.planner.enabled["t1"] is False
    Task.objects.filter(name="t0").update(enabled=False, updated_at=timezone.now())
    poll(scheduler, clock)
    assert scheduler.planner.enabled["t0"] is False
    for _ in range(3):  # and it stays applied once the cursor has long stopped moving
        clock.advance(10)
        scheduler.tick()
    assert scheduler.planner.enabled == {"t0": False, "t1": False}
    scheduler.shutdown()


def lock_waits() -> int:
    """How many of this database's statements wait for a row lock now.

    On MariaDB: run an UPDATE of the counter. Only this database's: CI runs another suite
    against the same server at the same time.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT COUNT(*) FROM pg_locks JOIN pg_stat_activity USING (pid) "
                "WHERE NOT granted AND datname = current_database()"
            )
        else:
            # Not INNODB_TRX: MariaDB lists no transaction for a first statement waiting.
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE "
                "COMMAND = 'Query' AND DB = DATABASE() "
                "AND INFO LIKE 'UPDATE %%django_rocket_counter%%'"
            )
        row = cursor.fetchone()
    connection.close()  # a fresh snapshot for the next look
    return int(row[0])


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite has one writer: nothing commits out of order"
)
def test_a_pause_committed_after_a_later_one_is_applied(two_tasks, clock):
    """A request pauses t0 and commits later (ATOMIC_REQUESTS); meanwhile t1 is paused.

    Before, t1's pause committed first and moved the poll's cursor past t0's stamp, and
    t0's pause, committed after, was never read. Now t1's pause waits for t0's commit.
    """
    scheduler = start(clock)
    a_wrote, a_may_commit = threading.Event(), threading.Event()
    b_done = threading.Event()
    errors: list[BaseException] = []

    def request_a() -> None:
        try:
            with transaction.atomic():
                set_enabled(Task.objects.get(name="t0"), False)
                a_wrote.set()
                assert a_may_commit.wait(30)
        except BaseException as exc:  # re-raised below
            errors.append(exc)
        finally:
            connection.close()

    def request_b() -> None:
        try:
            assert a_wrote.wait(30)
            set_enabled(Task.objects.get(name="t1"), False)
            b_done.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request_a), threading.Thread(target=request_b)]
    for thread in threads:
        thread.start()
    try:
        assert a_wrote.wait(30)
        deadline = time.monotonic() + 30  # real threads: wait for the state, not a time
        while not b_done.is_set() and not lock_waits():
            assert time.monotonic() < deadline, "t1's pause neither committed nor waited"
        poll(scheduler, clock)  # sees t1's pause if it committed first
    finally:
        a_may_commit.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors
    poll(scheduler, clock)
    assert scheduler.planner.enabled == {"t0": False, "t1": False}
    scheduler.shutdown()


def test_each_write_takes_the_next_revision_and_a_deleted_counter_starts_above_them(two_tasks):
    registry.tasks()
    t0 = Task.objects.create(name="t0", func="tests.support.tasks.noop", start_cond="false")
    first = t0.revision
    t0.description = "changed"
    t0.save(update_fields=["description"])
    assert t0.revision == first + 1
    Task.objects.filter(name="t0").update(enabled=False)
    assert Task.objects.get(name="t0").revision == first + 2
    with transaction.atomic():  # two writes in one transaction: two revisions
        Task.objects.filter(name="t0").update(enabled=True)
        t1 = Task.objects.create(name="t1", func="tests.support.tasks.noop", start_cond="false")
    assert (Task.objects.get(name="t0").revision, t1.revision) == (first + 3, first + 4)
    Counter.objects.all().delete()  # flushed by hand: revisions must not start over
    Task.objects.filter(name="t1").update(enabled=False)
    assert Task.objects.get(name="t1").revision == first + 5
    assert Counter.objects.get().value == first + 5
