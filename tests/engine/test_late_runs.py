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
from collections.abc import Iterator
from contextlib import contextmanager

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


TASKS = {
    "etl": {"func": "tests.support.tasks.noop", "start_cond": "false"},
    "report": {"func": "tests.support.tasks.noop", "start_cond": "after_success('etl')"},
    "busy": {"func": "tests.support.tasks.noop", "start_cond": "false"},
}


@pytest.fixture
def tasks(settings, clock) -> dict[str, int]:
    """The tasks' rows (name -> pk), and a log with a run in it: ids below the lowest run
    when following starts are taken as pruned, not late."""
    settings.ROCKET_EXECUTION = "main"
    settings.ROCKET_HEARTBEAT = "1 hour"
    settings.ROCKET_LEASE_TIMEOUT = "2 hours"
    settings.ROCKET_POLL_INTERVAL = 1
    settings.ROCKET_TASKS = TASKS
    rows = sync_tasks(registry.tasks(), clock.now())
    TaskRun.objects.create(task_id=rows["busy"].pk, status=RunStatus.SUCCESS, host="h", pid=1)
    return {name: row.pk for name, row in rows.items()}


@pytest.fixture
def scheduler(tasks, clock):
    scheduler = Scheduler(registry.tasks(), clock=clock)
    scheduler.startup()
    scheduler.tick()
    yield scheduler
    scheduler.request_stop()
    scheduler.shutdown()


def busy_runs(count: int, clock, scheduler: Scheduler | None = None) -> None:
    """Runs of "busy" that take later ids and commit first: the scheduler's own (not
    news to its poll), or another process's."""
    busy = Task.objects.get(name="busy")
    TaskRun.objects.bulk_create(
        TaskRun(
            task=busy,
            status=RunStatus.SUCCESS,
            started_at=clock.now(),
            finished_at=clock.now(),
            scheduler_id=scheduler.leadership.instance_pk if scheduler else None,
            host="h",
            pid=2,
        )
        for _ in range(count)
    )


@contextmanager
def committed_late(task_id: int, status: str, clock) -> Iterator[list[TaskRun]]:
    """Inside, a ``runtask`` run of ``task_id`` is inserted and not yet committed (another
    connection holds its transaction open); it commits on the way out."""
    created: list[TaskRun] = []
    errors: list[BaseException] = []
    wrote, may_commit = threading.Event(), threading.Event()

    def runtask() -> None:
        try:
            with transaction.atomic():
                created.append(
                    TaskRun.objects.create(
                        task_id=task_id,
                        status=status,
                        trigger=RunTrigger.MANUAL,
                        started_at=clock.now(),
                        finished_at=None if status == RunStatus.RUNNING else clock.now(),
                        host="elsewhere",
                        pid=1,
                    )
                )
                wrote.set()
                assert may_commit.wait(30)
        except BaseException as exc:  # re-raised below
            errors.append(exc)
            wrote.set()
        finally:
            connection.close()

    thread = threading.Thread(target=runtask)
    thread.start()
    try:
        assert wrote.wait(30)
        yield created
    finally:
        may_commit.set()
        thread.join(30)
    assert not errors, errors


def ticks(scheduler: Scheduler, clock, count: int = 3) -> None:
    for _ in range(count):
        clock.advance(1)
        scheduler.tick()


def reports() -> int:
    """How many runs of "report" (after_success('etl')) started."""
    return TaskRun.objects.filter(task__name="report").count()


@pytest.mark.parametrize("later_ids", [10, 5 * POLL_LOOKBACK])
def test_a_run_another_process_commits_late_reaches_the_conditions(
    tasks, scheduler, clock, later_ids
):
    clock.advance(1)
    with committed_late(tasks["etl"], RunStatus.SUCCESS, clock):
        busy_runs(later_ids, clock, scheduler)
        ticks(scheduler, clock, 1)  # its poll sees the later ids, not etl's run
        assert reports() == 0
    ticks(scheduler, clock)
    assert reports() == 1


def test_a_late_run_still_running_is_followed_to_its_finish(tasks, scheduler, clock):
    clock.advance(1)
    with committed_late(tasks["etl"], RunStatus.RUNNING, clock) as created:
        busy_runs(5 * POLL_LOOKBACK, clock, scheduler)
        ticks(scheduler, clock, 1)
    ticks(scheduler, clock, 1)
    assert reports() == 0  # etl still runs
    (run,) = created
    TaskRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCESS, finished_at=clock.now())
    ticks(scheduler, clock)
    assert reports() == 1


def test_a_run_committed_after_the_snapshot_at_start_up_reaches_the_conditions(tasks, clock):
    """Inserted before the scheduler read its snapshot, committed after: not in it."""
    with committed_late(tasks["etl"], RunStatus.SUCCESS, clock):
        busy_runs(5 * POLL_LOOKBACK, clock)  # a busy log, another process's
        scheduler = Scheduler(registry.tasks(), clock=clock)
        scheduler.startup()
        scheduler.tick()  # active: its snapshot holds the busy runs, not etl's
    try:
        ticks(scheduler, clock)
        assert reports() == 1
    finally:
        scheduler.request_stop()
        scheduler.shutdown()


def test_an_id_that_never_commits_is_watched_for_a_while_then_let_go(tasks, scheduler, clock):
    """A rolled-back insert leaves a hole for good: one query a poll, for HOLE_WATCH."""
    from django.test.utils import CaptureQueriesContext

    from django_rocket.engine.poller import HOLE_WATCH

    rolled_back: list[int] = []

    def insert_and_roll_back() -> None:
        with transaction.atomic():
            run = TaskRun.objects.create(
                task_id=tasks["etl"], status=RunStatus.RUNNING, host="h", pid=1
            )
            rolled_back.append(run.pk)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        insert_and_roll_back()
    busy_runs(3, clock, scheduler)  # ids after the hole, so the poll passes it
    ticks(scheduler, clock, 1)
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


def test_a_late_run_read_by_a_poll_that_failed_is_read_by_the_next(
    tasks, scheduler, clock, monkeypatch
):
    clock.advance(1)
    with committed_late(tasks["etl"], RunStatus.SUCCESS, clock):
        busy_runs(5 * POLL_LOOKBACK, clock, scheduler)
        ticks(scheduler, clock, 1)
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
    ticks(scheduler, clock)
    assert poller.holes == {}
    assert reports() == 1
