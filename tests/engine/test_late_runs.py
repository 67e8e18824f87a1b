"""A run another process inserts reaches the scheduler, however late its insert commits.

The poll reads the runs other processes write (``runtask``) by id, from a little behind
the newest it saw: on PostgreSQL and MariaDB an id is taken when the row is inserted,
and a row can commit after rows with higher ids. The look-back was 200 ids, and the
scheduler's own runs take ids too: at a thousand runs a second, 200 ids are a fifth
of a second. A ``runtask`` run whose commit came later than that (a slow disk flush,
synchronous replication, a caller's transaction) was never seen by the running
scheduler: ``after_success`` of its task did not fire, and its finish was not followed.
"""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection, transaction

from django_rocket import registry
from django_rocket.engine.declarations import sync_tasks
from django_rocket.engine.poller import POLL_LOOKBACK
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor == "sqlite", reason="SQLite has one writer: ids commit in order"
    ),
]


@pytest.fixture
def scheduler(settings, clock):
    settings.ROCKET_EXECUTION = "main"
    settings.ROCKET_HEARTBEAT = "1 hour"
    settings.ROCKET_LEASE_TIMEOUT = "2 hours"
    settings.ROCKET_POLL_INTERVAL = 1
    settings.ROCKET_TASKS = {
        "etl": {"func": "tests.support.tasks.noop", "start_cond": "false"},
        "report": {"func": "tests.support.tasks.noop", "start_cond": "after_success('etl')"},
        "busy": {"func": "tests.support.tasks.noop", "start_cond": "false"},
    }
    rows = sync_tasks(registry.tasks(), clock.now())
    # A log with a run in it: ids below the lowest run when following starts are taken
    # as pruned, not late.
    TaskRun.objects.create(task_id=rows["busy"].pk, status=RunStatus.SUCCESS, host="h", pid=1)
    scheduler = Scheduler(registry.tasks(), clock=clock)
    scheduler.startup()
    scheduler.tick()
    yield scheduler
    scheduler.request_stop()
    scheduler.shutdown()


def own_runs(scheduler: Scheduler, count: int, clock) -> None:
    """Runs the scheduler wrote itself: ids taken, not news to its poll."""
    busy = Task.objects.get(name="busy")
    TaskRun.objects.bulk_create(
        TaskRun(
            task=busy,
            status=RunStatus.SUCCESS,
            started_at=clock.now(),
            finished_at=clock.now(),
            scheduler_id=scheduler.leadership.instance_pk,
        )
        for _ in range(count)
    )


def in_open_transaction(write, wrote: threading.Event, may_commit: threading.Event):
    """Run ``write`` in a transaction of another connection that commits when allowed."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with transaction.atomic():
                write()
                wrote.set()
                assert may_commit.wait(30)
        except BaseException as exc:  # re-raised by the caller
            errors.append(exc)
            wrote.set()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


@pytest.mark.parametrize("later_ids", [10, 5 * POLL_LOOKBACK])
def test_a_run_another_process_commits_late_reaches_the_conditions(scheduler, clock, later_ids):
    clock.advance(1)
    etl = Task.objects.get(name="etl")
    wrote, may_commit = threading.Event(), threading.Event()

    def runtask_records_a_success() -> None:
        TaskRun.objects.create(
            task=etl,
            status=RunStatus.SUCCESS,
            trigger=RunTrigger.MANUAL,
            started_at=clock.now(),
            finished_at=clock.now(),
            host="elsewhere",
            pid=1,
        )

    thread, errors = in_open_transaction(runtask_records_a_success, wrote, may_commit)
    try:
        assert wrote.wait(30)
        own_runs(scheduler, later_ids, clock)  # later ids, committed first
        clock.advance(1)
        scheduler.tick()  # its poll sees the later ids, not etl's run
        assert not TaskRun.objects.filter(task__name="report").exists()
    finally:
        may_commit.set()
        thread.join(30)
    assert not errors, errors
    for _ in range(3):
        clock.advance(1)
        scheduler.tick()
    assert TaskRun.objects.filter(task__name="report").count() == 1


def test_a_late_run_still_running_is_followed_to_its_finish(scheduler, clock):
    clock.advance(1)
    etl = Task.objects.get(name="etl")
    wrote, may_commit = threading.Event(), threading.Event()
    created: list[TaskRun] = []

    def runtask_starts() -> None:
        created.append(
            TaskRun.objects.create(
                task=etl,
                status=RunStatus.RUNNING,
                trigger=RunTrigger.MANUAL,
                started_at=clock.now(),
                host="elsewhere",
                pid=1,
            )
        )

    thread, errors = in_open_transaction(runtask_starts, wrote, may_commit)
    try:
        assert wrote.wait(30)
        own_runs(scheduler, 5 * POLL_LOOKBACK, clock)
        clock.advance(1)
        scheduler.tick()
    finally:
        may_commit.set()
        thread.join(30)
    assert not errors, errors
    clock.advance(1)
    scheduler.tick()
    assert not TaskRun.objects.filter(task__name="report").exists()  # etl still runs
    (run,) = created
    TaskRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCESS, finished_at=clock.now())
    for _ in range(3):
        clock.advance(1)
        scheduler.tick()
    assert TaskRun.objects.filter(task__name="report").count() == 1


def test_a_run_committed_after_the_snapshot_at_start_up_reaches_the_conditions(settings, clock):
    """Inserted before the scheduler read its snapshot, committed after: not in it."""
    settings.ROCKET_EXECUTION = "main"
    settings.ROCKET_HEARTBEAT = "1 hour"
    settings.ROCKET_LEASE_TIMEOUT = "2 hours"
    settings.ROCKET_POLL_INTERVAL = 1
    settings.ROCKET_TASKS = {
        "etl": {"func": "tests.support.tasks.noop", "start_cond": "false"},
        "report": {"func": "tests.support.tasks.noop", "start_cond": "after_success('etl')"},
        "busy": {"func": "tests.support.tasks.noop", "start_cond": "false"},
    }
    rows = sync_tasks(registry.tasks(), clock.now())
    TaskRun.objects.create(task_id=rows["busy"].pk, status=RunStatus.SUCCESS, host="h", pid=1)
    wrote, may_commit = threading.Event(), threading.Event()

    def runtask_records_a_success() -> None:
        TaskRun.objects.create(
            task_id=rows["etl"].pk,
            status=RunStatus.SUCCESS,
            trigger=RunTrigger.MANUAL,
            started_at=clock.now(),
            finished_at=clock.now(),
            host="elsewhere",
            pid=1,
        )

    thread, errors = in_open_transaction(runtask_records_a_success, wrote, may_commit)
    try:
        assert wrote.wait(30)
        TaskRun.objects.bulk_create(  # a busy log: later ids, committed first
            TaskRun(
                task_id=rows["busy"].pk,
                status=RunStatus.SUCCESS,
                started_at=clock.now(),
                finished_at=clock.now(),
                host="elsewhere",
                pid=2,
            )
            for _ in range(5 * POLL_LOOKBACK)
        )
        scheduler = Scheduler(registry.tasks(), clock=clock)
        scheduler.startup()
        scheduler.tick()  # active: its snapshot holds the busy runs, not etl's
    finally:
        may_commit.set()
        thread.join(30)
    assert not errors, errors
    try:
        for _ in range(3):
            clock.advance(1)
            scheduler.tick()
        assert TaskRun.objects.filter(task__name="report").count() == 1
    finally:
        scheduler.request_stop()
        scheduler.shutdown()


def test_an_id_that_never_commits_is_watched_for_a_while_then_let_go(scheduler, clock):
    """A rolled-back insert leaves a hole for good: one query a poll, for HOLE_WATCH."""
    from django.test.utils import CaptureQueriesContext

    from django_rocket.engine.poller import HOLE_WATCH

    etl = Task.objects.get(name="etl")
    rolled_back: list[int] = []

    def insert_and_roll_back() -> None:
        with transaction.atomic():
            run = TaskRun.objects.create(task=etl, status=RunStatus.RUNNING, host="h", pid=1)
            rolled_back.append(run.pk)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        insert_and_roll_back()
    own_runs(scheduler, 3, clock)  # ids after the hole, so the poll passes it
    clock.advance(1)
    scheduler.tick()
    poller = scheduler.poller
    assert list(poller.holes) == rolled_back
    clock.advance(1)
    with CaptureQueriesContext(connection) as watched:
        poller.poll()  # nothing new: the probe, and the look for the hole
    assert len(watched.captured_queries) == 2, watched.captured_queries
    clock.advance(HOLE_WATCH)
    with CaptureQueriesContext(connection) as quiet:
        poller.poll()
    assert poller.holes == {}
    assert len(quiet.captured_queries) == 1  # the probe alone again


def test_a_late_run_read_by_a_poll_that_failed_is_read_by_the_next(scheduler, clock, monkeypatch):
    clock.advance(1)
    etl = Task.objects.get(name="etl")
    wrote, may_commit = threading.Event(), threading.Event()

    def runtask_records_a_success() -> None:
        TaskRun.objects.create(
            task=etl,
            status=RunStatus.SUCCESS,
            trigger=RunTrigger.MANUAL,
            started_at=clock.now(),
            finished_at=clock.now(),
            host="elsewhere",
            pid=1,
        )

    thread, errors = in_open_transaction(runtask_records_a_success, wrote, may_commit)
    try:
        assert wrote.wait(30)
        own_runs(scheduler, 5 * POLL_LOOKBACK, clock)
        clock.advance(1)
        scheduler.tick()
    finally:
        may_commit.set()
        thread.join(30)
    assert not errors, errors
    poller = scheduler.poller
    assert len(poller.holes) == 1
    read_task_changes = poller._read_task_changes

    def fails_once() -> None:
        monkeypatch.setattr(poller, "_read_task_changes", read_task_changes)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(poller, "_read_task_changes", fails_once)
    clock.advance(1)
    poller.poll()  # finds etl's run committed, then fails before reading it
    assert len(poller.holes) == 1
    for _ in range(3):
        clock.advance(1)
        scheduler.tick()
    assert poller.holes == {}
    assert TaskRun.objects.filter(task__name="report").count() == 1
