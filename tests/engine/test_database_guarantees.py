"""The guarantees that rest on the database, checked for real on each backend.

Real threads, each with its own connection, race each other. On MySQL and MariaDB the
lease is taken and fenced at REPEATABLE READ (the servers' default level; Django's own
is READ COMMITTED, which the rest of the suite runs at).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import close_old_connections, connection

from django_rocket.engine import runlog
from django_rocket.engine.connection import one_snapshot
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, SchedulerInstance, SchedulerLease, Task, TaskRun
from django_rocket.ops import queue

pytestmark = pytest.mark.django_db(transaction=True)

EMOJI = "rocket 🚀, check ✓, 𝄞 and 中文"


def in_threads(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` in ``count`` threads released together; return results, raise errors."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # re-raised below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def repeatable_read() -> None:
    """Run this thread's connection at MySQL's default level instead of Django's."""
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def test_two_run_now_requests_past_the_check_together_queue_one_run(monkeypatch):
    """Both requests see no queued run, then both insert: the database keeps one."""
    task = Task.objects.create(name="report", func="tests.support.tasks.noop", start_cond="daily")
    both_checked = threading.Barrier(2)
    real_check = queue._queued_run

    def check_then_wait(task: Task) -> TaskRun | None:
        found = real_check(task)
        both_checked.wait(10)
        return found

    monkeypatch.setattr(queue, "_queued_run", check_then_wait)
    results = in_threads(2, lambda i: queue.queue_run(task))
    assert TaskRun.objects.count() == 1
    run = TaskRun.objects.get()
    assert run.status == RunStatus.QUEUED
    assert sorted(created for _, created in results) == [False, True]
    assert {r.pk for r, _ in results} == {run.pk}


def test_a_task_can_queue_again_once_its_queued_run_started():
    task = Task.objects.create(name="report", func="tests.support.tasks.noop", start_cond="daily")
    first, _ = queue.queue_run(task)
    TaskRun.objects.filter(pk=first.pk).update(status=RunStatus.RUNNING)
    second, created = queue.queue_run(task)
    assert created and second.pk != first.pk
    other = Task.objects.create(name="other", func="tests.support.tasks.noop", start_cond="daily")
    assert queue.queue_run(other)[1]  # one queued run per task, not per table


def test_schedulers_racing_for_the_lease_take_it_once_and_fence_the_old_holder(settings, clock):
    settings.ROCKET_TASKS = {"a": {"func": "tests.support.tasks.noop", "start_cond": "false"}}
    settings.ROCKET_LEASE_TIMEOUT = "10 seconds"
    settings.ROCKET_HEARTBEAT = "1 second"
    schedulers = [Scheduler(clock=clock) for _ in range(3)]
    schedulers[0].startup()  # the task rows and the lease row exist before the race

    def start(i: int) -> None:
        repeatable_read()
        if i:
            schedulers[i].startup()

    in_threads(3, start)
    lease = SchedulerLease.objects.get()
    active = SchedulerInstance.objects.filter(role="active")
    assert lease.token == 1
    assert [s.pk for s in active] == [lease.holder_id]

    # The holder stops renewing; once its lease expired, the others race for it.
    first = SchedulerInstance.objects.get(pk=lease.holder_id)
    holder = next(s for s in schedulers if s.leadership.instance_pk == first.pk)
    others = [s for s in schedulers if s is not holder]
    clock.advance(timedelta(seconds=11))

    def tick(i: int) -> None:
        repeatable_read()
        others[i].tick()

    in_threads(2, tick)
    lease = SchedulerLease.objects.get()
    assert lease.token == 2
    assert lease.holder_id in {s.leadership.instance_pk for s in others}
    repeatable_read()
    holder.tick()  # its renewal is fenced: it stands by and starts nothing
    roles = dict(SchedulerInstance.objects.values_list("pk", "role"))
    assert roles[first.pk] == "standby"
    assert [pk for pk, role in roles.items() if role == "active"] == [lease.holder_id]
    for scheduler in schedulers:
        scheduler.request_stop()
        scheduler.shutdown()


def test_a_run_committed_during_one_snapshot_stays_out_of_it():
    """The reads inside ``one_snapshot`` see one instant, whatever the connection's level."""
    task = Task.objects.create(name="report", func="tests.support.tasks.noop", start_cond="daily")

    def commit_a_run() -> None:
        try:
            TaskRun.objects.create(task=task, status=RunStatus.SUCCESS)
        finally:
            connection.close()

    writer = threading.Thread(target=commit_a_run)
    with one_snapshot():
        before = TaskRun.objects.count()
        writer.start()
        if connection.vendor != "sqlite":  # SQLite holds the writer back until the end
            writer.join(30)
            assert TaskRun.objects.filter(task=task).count() == 0  # committed, yet unseen
        assert TaskRun.objects.count() == before
    writer.join(30)
    assert TaskRun.objects.count() == before + 1


def test_4_byte_characters_survive_the_run_log_round_trip():
    task = Task.objects.create(name="emoji", func="tests.support.tasks.noop", start_cond="daily")
    run_id = uuid.uuid4()
    started = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    runlog.insert_runs(
        [(task.pk, run_id, "running", "scheduled", None, started, "h", 1, None, EMOJI, EMOJI)]
    )
    assert TaskRun.objects.values_list("message", "exc_text").get() == (EMOJI, EMOJI)
    traceback = f"Traceback (most recent call last):\nValueError: {EMOJI}\n"
    runlog.finish_runs(
        [
            (
                run_id,
                ("fail", started, timedelta(seconds=1), EMOJI, traceback, {"e": EMOJI}, [EMOJI]),
            )
        ]
    )
    run = TaskRun.objects.get()
    assert (run.message, run.exc_text, run.result) == (EMOJI, traceback, {"e": EMOJI})
    assert run.exception_types == [EMOJI]


def test_a_failing_task_s_4_byte_message_and_traceback_are_recorded(settings):
    settings.ROCKET_TASKS = {
        "bad": {
            "func": "tests.support.tasks.fails_with",
            "start_cond": "true",
            "execution": "main",
            "parameters": {"text": EMOJI},
        }
    }
    Scheduler(once=True).run()
    run = TaskRun.objects.get()
    assert run.status == RunStatus.FAIL
    assert EMOJI in run.message
    assert f"ValueError: {EMOJI}" in run.exc_text


def test_renewing_the_lease_extends_it_to_the_instant_only_for_the_token_holder(settings, clock):
    """The renewal's own SQL stores the expiry as the ORM would, on every backend."""
    from django_rocket.engine.leadership import Leadership

    SchedulerLease.objects.create(name="default", token=4, expires_at=clock.now())
    leadership = Leadership(
        clock, heartbeat_every=1.0, lease_timeout=timedelta(seconds=30), on_active=lambda now: None
    )
    later = clock.now() + timedelta(seconds=5, microseconds=250)
    leadership.token = 3  # an old holder
    assert leadership.renew(later) is False
    assert SchedulerLease.objects.get().expires_at == clock.now()
    leadership.token = 4
    assert leadership.renew(later) is True
    assert SchedulerLease.objects.get().expires_at == later + timedelta(seconds=30)
