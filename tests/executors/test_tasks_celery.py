"""Execution "tasks" on Celery: django-tasks-celery's backend, a real Celery worker.

RabbitMQ (127.0.0.1:5672) is the broker and Redis (127.0.0.1:6379) the result backend;
the worker is a ``celery worker`` subprocess started by the test (tests/celery_support.py).
They skip without Celery, RabbitMQ or Redis unless ``ROCKET_CELERY=required`` (CI), and
always on Django 5.2, where django-tasks-celery cannot work.
"""

import re
import uuid
from collections.abc import Iterator

import pytest

from django_rocket.executors.django_tasks.celery_reader import CeleryReader
from django_rocket.executors.django_tasks.follower import reader_for
from django_rocket.executors.django_tasks.framework import READY, framework
from django_rocket.executors.django_tasks.readers import GENERIC_PER_POLL, Remote
from django_rocket.models import RunStatus, RunTrigger, TaskRun
from tests.conftest import wait_until
from tests.executors.test_tasks_execution import HOST, remote, runs_by_task, start_runs
from tests.support.celery_support import Celery, celery_queues

WHERE = re.compile(r"result (\S+)\)")


@pytest.fixture
def celery() -> Iterator[Celery]:
    with celery_queues() as harness:
        yield harness


@pytest.mark.slow
def test_celery_worker_runs_fail_and_stop_on_timeout(scheduler_process, celery):
    unserved = celery.other_queue("idle")  # no worker consumes it
    on = {"queue": celery.queue}
    config = {**celery.settings(), "ROCKET_POLL_INTERVAL": 0.2}
    tasks = {
        "plain": remote(
            "tests.support.remote_tasks.add", "daily", parameters={"a": 4, "b": 5}, **on
        ),
        "broken": remote("tests.support.remote_tasks.fails", "daily | retry(1)", **on),
        "decorated": remote(
            "tests.support.remote_tasks.greet", "daily", parameters={"name": "Bo"}, **on
        ),
        "killed": remote("tests.support.tasks.kill_self", "daily", **on),
        "slow": remote(
            "tests.support.remote_tasks.sleep_for",
            "daily",
            timeout="5 seconds",
            parameters={"seconds": 60},
            **on,
        ),
        "unserved": remote(
            "tests.support.remote_tasks.add",
            "daily",
            timeout="2 seconds",
            parameters={"a": 1, "b": 1},
            queue=unserved,
        ),
    }
    worker = celery.start_worker(celery.queue, tasks=tasks)
    scheduler = scheduler_process(tasks, config)
    wait_until(
        lambda: TaskRun.objects.filter(
            task__name="slow", message__startswith=f"Running on worker {worker.name} ("
        ).exists(),
        30,
        "the slow run to be seen running on the worker",
    )
    pool = worker.pool_pids()  # before the slow run's pool process is terminated

    def settled() -> bool:
        runs = runs_by_task()
        return sum(len(found) for found in runs.values()) == 7 and all(
            r.is_finished for found in runs.values() for r in found
        )

    try:
        wait_until(settled, 40, "every run to be recorded")
    except AssertionError:
        print(scheduler.output())
        raise
    runs = runs_by_task()
    # "killed" may run in the same pool process as "plain" or "broken", after them: that
    # process is gone by now, and replaced, so count the pool processes that died too.
    wait_until(worker.exited_pool_pids, 10, "the pool to log the process 'killed' ended")
    pool |= worker.pool_pids() | worker.exited_pool_pids()
    (plain,) = runs["plain"]
    assert (plain.status, plain.result, plain.host) == (RunStatus.SUCCESS, 9, HOST)
    assert plain.pid in pool
    (decorated,) = runs["decorated"]
    assert decorated.result == {"greeting": "hello Bo", "attempt": 1}
    first, retry = runs["broken"]
    assert (first.status, retry.status, retry.trigger) == ("fail", "fail", RunTrigger.RETRY)
    assert first.message == "ValueError: boom: the task failed on a worker"
    assert "raise ValueError" in first.exc_text
    assert (first.host, first.pid in pool) == (HOST, True)
    (killed,) = runs["killed"]  # its pool process died: Celery itself reports the failure
    assert killed.status == RunStatus.FAIL
    assert killed.message.startswith(
        "billiard.exceptions.WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL)"
    )
    (slow,) = runs["slow"]
    assert slow.status == RunStatus.TERMINATE
    assert slow.message.startswith(f"Timed out after 0:00:05. (worker {worker.name} was told")
    (unserved_run,) = runs["unserved"]
    assert unserved_run.status == RunStatus.TERMINATE
    assert "revoked before a worker ran it" in unserved_run.message


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_one_poll_settles_every_celery_result_in_flight(settings, clock, celery):
    count = 2 * GENERIC_PER_POLL + 20  # more than the generic reader's share
    settings.TASKS = celery.settings()["TASKS"]
    settings.ROCKET_POLL_INTERVAL = 1.0
    settings.ROCKET_TASKS = {
        "bulk": remote("tests.support.remote_tasks.add", multilaunch=True, queue=celery.queue)
    }
    api = framework()
    backend = api.backends["default"]
    assert isinstance(reader_for(backend, api.no_result), CeleryReader)
    runner, run_ids, outcomes = start_runs(clock, count, a=1, b=2)
    runner.poll(clock.now())  # all waiting: no worker yet; notes where each run waits
    assert outcomes == []
    result_ids = [
        WHERE.search(message).group(1)
        for message in TaskRun.objects.filter(run_id__in=run_ids).values_list("message", flat=True)
    ]
    assert len(set(result_ids)) == count

    worker = celery.start_worker(celery.queue, tasks=settings.ROCKET_TASKS)
    wait_until(
        lambda: all(backend.get_result(r).is_finished for r in result_ids[-5:]),
        60,
        "the worker to run every run",
    )
    wait_until(lambda: all(backend.get_result(r).is_finished for r in result_ids), 30)
    clock.advance(1)
    runner.poll(clock.now())
    assert len(outcomes) == count  # one poll, one MGET: the generic reader would see 50
    assert {(o.status, o.result) for o in outcomes} == {(RunStatus.SUCCESS, 3)}
    hosts = set(TaskRun.objects.values_list("host", "pid").distinct())
    assert {host for host, _ in hosts} == {HOST}
    assert {pid for _, pid in hosts} <= worker.pool_pids()
    assert runner.poll(clock.now()) is None  # nothing left in flight


@pytest.mark.django_db(transaction=True)
def test_celery_cannot_tell_an_unknown_result_from_a_waiting_one(settings, celery):
    """What a scheduler that adopts runs must know: no 'does not exist' from Celery."""
    settings.TASKS = celery.settings()["TASKS"]
    api = framework()
    backend = api.backends["default"]
    unknown = str(uuid.uuid4())
    assert str(backend.get_result(unknown).status) == READY  # no exception
    reader = reader_for(backend, api.no_result)
    remote_run = Remote(None, "default", celery.queue, unknown)
    (seen,) = reader.read([remote_run]).values()
    assert seen is not None  # never None: a lost result is a run that ends at its timeout
    assert seen.status == READY


@pytest.mark.slow
def test_a_run_on_a_lost_celery_worker_is_a_crash_at_its_timeout(
    scheduler_process, celery, tmp_path
):
    marker = tmp_path / "hanging"
    tasks = {
        "hang": remote(
            "tests.support.remote_tasks.hang_the_first_time",
            "daily",
            timeout="4 seconds",
            parameters={"marker": str(marker)},
            queue=celery.queue,
        )
    }
    worker = celery.start_worker(celery.queue, tasks=tasks)
    scheduler_process(tasks, {**celery.settings(), "ROCKET_POLL_INTERVAL": 0.2})
    wait_until(marker.exists, 30, "the worker to start the run")
    wait_until(
        lambda: TaskRun.objects.filter(message__startswith="Running on worker").exists(),
        10,
        "the run to be seen running",
    )
    worker.kill()  # the whole worker, pool included: nobody is left to answer a revoke
    wait_until(lambda: TaskRun.objects.filter(status=RunStatus.CRASH).exists(), 30, "a crash")
    run = TaskRun.objects.get(status=RunStatus.CRASH)  # daily then starts it again
    assert run.message.startswith("Timed out after 0:00:04. No result arrived from backend")
    assert "the worker may have died" in run.message
