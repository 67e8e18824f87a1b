"""Execution "tasks": runs handed to Django's Tasks framework, followed to their end.

The end-to-end tests use real backends and real workers: django-tasks-db with two
``db_worker`` processes (one killed with SIGKILL mid-run), and django-tasks-rq with
an RQ worker on the local Redis. Outside CI they skip when a package is absent.
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from django_rocket import registry
from django_rocket.engine import runlog
from django_rocket.engine.leadership import Here, pid_namespace
from django_rocket.engine.scheduler import Scheduler
from django_rocket.executors.django_tasks import checks as tasks_checks
from django_rocket.executors.django_tasks.framework import framework
from django_rocket.executors.outcome import Launch
from django_rocket.executors.runner import Runner
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun
from tests.conftest import ROOT, database_url, wait_until

HOST = socket.gethostname()
DB_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


def require(*modules: str) -> None:
    """Skip when a package is genuinely absent; in CI, fail instead."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if framework() is None:
        missing.append("django.tasks or django_tasks")
    if not missing:
        return
    message = (
        f"{', '.join(missing)} not installed: install the 'tasks' dependency group "
        "(pip install -e . --group tasks)."
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the execution 'tasks' tests, but {message}")
    pytest.skip(message)


def remote(func: str, cond: str = "every('1 hour')", **extra) -> dict:
    return {"func": func, "start_cond": cond, "execution": "tasks", **extra}


def runs_by_task() -> dict[str, list[TaskRun]]:
    runs: dict[str, list[TaskRun]] = {}
    for run in TaskRun.objects.select_related("task").order_by("started_at", "id"):
        runs.setdefault(run.task.name, []).append(run)
    return runs


def problem_ids(settings, tasks: dict) -> set[str]:
    settings.ROCKET_TASKS = tasks
    _, problems = registry.collect()
    return {p.id for p in problems}


# --- checks ----------------------------------------------------------------------------------


def test_checks_name_what_execution_tasks_needs(settings):
    require()
    api = framework().name
    settings.TASKS = {
        "default": {"BACKEND": f"{api}.backends.immediate.ImmediateBackend"},
        "narrow": {
            "BACKEND": f"{api}.backends.immediate.ImmediateBackend",
            "QUEUES": ["reports"],
        },
        "blind": {"BACKEND": f"{api}.backends.dummy.DummyBackend"},
    }
    ok = remote("tests.support.remote_tasks.add", parameters={"a": 1, "b": 2})
    assert problem_ids(settings, {"t": ok}) == {"django_rocket.W051"}  # immediate: development only
    assert problem_ids(settings, {"t": {**ok, "backend": "narrow", "queue": "reports"}}) == {
        "django_rocket.W051"
    }
    assert "django_rocket.E051" in problem_ids(settings, {"t": {**ok, "backend": "nope"}})
    assert "django_rocket.E051" in problem_ids(settings, {"t": {**ok, "backend": 3}})
    assert "django_rocket.E052" in problem_ids(settings, {"t": {**ok, "backend": "narrow"}})
    assert "django_rocket.E053" in problem_ids(settings, {"t": {**ok, "backend": "blind"}})
    process = {**ok, "execution": "process", "queue": "reports"}
    assert "django_rocket.E054" in problem_ids(settings, {"t": process})
    bad_params = {**ok, "parameters": {"a": {1, 2}, "b": 1}}
    assert "django_rocket.E055" in problem_ids(settings, {"t": bad_params})
    decorated = {
        "func": "tests.support.remote_tasks.greet",
        "start_cond": "daily",
        "execution": "thread",
    }
    assert "django_rocket.E056" in problem_ids(
        settings, {"t": {**decorated, "parameters": {"name": "x"}}}
    )
    assert "django_rocket.W050" in problem_ids(settings, {"t": {**ok, "timeout": "never"}})
    # A function decorated with @task is checked against its own signature.
    greet = remote("tests.support.remote_tasks.greet", parameters={"name": "x"})
    assert problem_ids(settings, {"t": greet}) == {"django_rocket.W051"}
    assert "django_rocket.E011" in problem_ids(
        settings, {"t": {**greet, "parameters": {"nom": "x"}}}
    )


def test_a_missing_tasks_framework_is_a_check_error_saying_what_to_install(settings, monkeypatch):
    monkeypatch.setattr(tasks_checks, "framework", lambda: None)
    settings.ROCKET_TASKS = {"t": remote("tests.support.tasks.noop")}
    _, problems = registry.collect()
    (problem,) = problems
    assert problem.id == "django_rocket.E050"
    assert "django.tasks (Django >= 6.0)" in problem.msg
    assert "pip install django-tasks" in problem.hint


# --- ImmediateBackend: the function runs while it is enqueued --------------------------------


@pytest.mark.django_db(transaction=True)
def test_immediate_backend_records_every_kind_of_end(settings):
    require()
    api = framework().name
    settings.TASKS = {"default": {"BACKEND": f"{api}.backends.immediate.ImmediateBackend"}}
    settings.ROCKET_TASKS = {
        "plain": remote("tests.support.remote_tasks.add", parameters={"a": 2, "b": 3}),
        "coroutine": remote("tests.support.remote_tasks.add_later", parameters={"a": 1, "b": 1}),
        "decorated": remote("tests.support.remote_tasks.greet", parameters={"name": "Ada"}),
        "broken": remote("tests.support.remote_tasks.fails"),
        "idle": remote("tests.support.remote_tasks.nothing_to_do"),
        "unkept": remote("tests.support.remote_tasks.returns_set"),
    }
    Scheduler(once=True).run()
    runs = {name: found[0] for name, found in runs_by_task().items()}
    assert runs["plain"].status == RunStatus.SUCCESS
    assert runs["plain"].result == 5
    assert (runs["plain"].host, runs["plain"].pid) == (HOST, os.getpid())
    assert runs["coroutine"].result == 2
    assert runs["decorated"].result == {"greeting": "hello Ada", "attempt": 1}
    assert runs["broken"].status == RunStatus.FAIL
    assert runs["broken"].message == "ValueError: boom: the task failed on a worker"
    assert "Traceback (most recent call last)" in runs["broken"].exc_text
    assert f"ran on {HOST} (pid {os.getpid()})" in runs["broken"].exc_text
    assert runs["broken"].host == HOST
    # The worker's note carries the exception's class and bases, and stays out of the message.
    assert runs["broken"].exception_types == [
        "builtins.ValueError",
        "builtins.Exception",
        "builtins.BaseException",
    ]
    assert runs["idle"].status == RunStatus.INACTION
    assert runs["idle"].message == "No new files."
    assert runs["unkept"].status == RunStatus.SUCCESS
    assert "not JSON-serialisable" in runs["unkept"].message


# --- django-tasks-db, in process: the cost of following, withdrawal, lost results -----------


def start_runs(clock, count: int, func: str = "tests.support.remote_tasks.add", **params) -> tuple:
    task = Task.objects.create(name="bulk", func=func, execution="tasks")
    run_ids = [str(uuid.uuid4()) for _ in range(count)]
    runlog.insert_runs(
        (
            task.pk,
            r,
            RunStatus.RUNNING,
            RunTrigger.SCHEDULED,
            None,
            clock.now(),
            HOST,
            1,
            None,
            "",
            "",
        )
        for r in run_ids
    )
    outcomes: list = []
    runner = Runner(outcomes.append, clock.now)
    # Enqueued where the task says, as the scheduler does (the spec carries both).
    entry = getattr(django_settings, "ROCKET_TASKS", {}).get("bulk", {})
    where = {"backend": entry.get("backend", ""), "queue": entry.get("queue", "")}
    for run_id in run_ids:
        runner.launch(Launch(run_id, "bulk", func, params, "tasks", **where))
    return runner, run_ids, outcomes


def statements(ctx: CaptureQueriesContext) -> list[str]:
    """The captured SQL without transaction control (BEGIN, COMMIT, savepoints)."""
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK")
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].upper().startswith(control)]


def run_db_worker_in_process() -> None:
    from django_tasks_db.management.commands.db_worker import Worker

    Worker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="in-process",
        excluded_queue_names=[],
    ).run()


@pytest.mark.django_db(transaction=True)
def test_five_hundred_runs_in_flight_cost_one_query_per_poll(settings, clock):
    require("django_tasks_db")
    settings.TASKS = DB_TASKS
    settings.ROCKET_POLL_INTERVAL = 1.0
    settings.ROCKET_TASKS = {"bulk": remote("tests.support.remote_tasks.add", multilaunch=True)}
    runner, run_ids, outcomes = start_runs(clock, 500, a=1, b=2)

    with CaptureQueriesContext(connection) as first:
        assert runner.poll(clock.now()) == pytest.approx(1.0)
    # One look-up for all 500 results, one executemany noting where each run waits.
    assert len(statements(first)) == 2, statements(first)
    assert "Enqueued (backend 'default', queue 'default', result" in (
        TaskRun.objects.get(run_id=run_ids[0]).message
    )
    with CaptureQueriesContext(connection) as early:
        assert runner.poll(clock.now()) == pytest.approx(1.0)
    assert len(early) == 0  # not due: ROCKET_POLL_INTERVAL bounds the look-ups
    clock.advance(1)
    with CaptureQueriesContext(connection) as steady:
        runner.poll(clock.now())
    assert len(steady) == 1, statements(steady)

    run_db_worker_in_process()
    clock.advance(1)
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as settled:
        assert runner.poll(clock.now()) is None  # nothing left in flight
    elapsed = time.perf_counter() - started
    # The look-up, and one executemany recording the workers' hosts.
    assert len(statements(settled)) == 2, statements(settled)
    assert elapsed < 5
    assert len(outcomes) == 500
    assert {o.status for o in outcomes} == {RunStatus.SUCCESS}
    assert {o.result for o in outcomes} == {3}
    assert set(TaskRun.objects.values_list("host", "pid").distinct()) == {(HOST, os.getpid())}


@pytest.mark.django_db(transaction=True)
def test_a_scheduler_tick_costs_the_same_with_5_or_500_remote_runs_in_flight(settings, clock):
    require("django_tasks_db")
    settings.TASKS = DB_TASKS
    settings.ROCKET_HEARTBEAT = "1 hour"

    def idle_tick(count: int) -> list[str]:
        settings.ROCKET_TASKS = {
            f"t{i:03d}": remote("tests.support.remote_tasks.add", parameters={"a": i, "b": 0})
            for i in range(count)
        }
        scheduler = Scheduler(registry.tasks(), clock=clock)
        scheduler.startup()
        scheduler.tick()  # every task is due: all are enqueued
        scheduler.tick()  # the enqueued runs are noted on their rows
        assert scheduler.runner.in_flight == count
        clock.advance(2)
        with CaptureQueriesContext(connection) as ctx:
            scheduler.tick()
        scheduler.request_stop(force=True)
        scheduler.shutdown()  # leaves the runs in flight to the next scheduler, frees the lease
        return statements(ctx)

    small = idle_tick(5)
    TaskRun.objects.all().delete()
    large = idle_tick(500)
    # The poll's probe plus its full read (new rows since the last poll), and one result look-up.
    assert len(small) == len(large) <= 6, (small, large)
    assert sum("django_tasks_database_dbtaskresult" in sql for sql in large) == 1


@pytest.mark.django_db(transaction=True)
def test_a_run_no_worker_took_is_withdrawn_at_its_timeout(settings, clock):
    require("django_tasks_db")
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = DB_TASKS
    settings.ROCKET_TASKS = {"bulk": remote("tests.support.remote_tasks.add")}
    runner, (run_id,), outcomes = start_runs(clock, 1, a=1, b=1)
    runner.terminate(run_id, "Timed out after 0:00:05.")
    (outcome,) = outcomes
    assert outcome.status == RunStatus.TERMINATE
    assert outcome.message.startswith(
        "Timed out after 0:00:05. (withdrawn from the queue before a worker took it; "
        "backend 'default', queue 'default', result "
    )
    (row,) = DBTaskResult.objects.all()
    assert row.status == "FAILED"
    assert row.exception_class_path == "django_rocket.TaskTerminated"
    run_db_worker_in_process()  # nothing left for a worker to run
    assert DBTaskResult.objects.get().status == "FAILED"
    assert runner.poll(clock.now()) is None


@pytest.mark.django_db(transaction=True)
def test_a_result_the_backend_lost_is_a_crash(settings, clock):
    require("django_tasks_db")
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = DB_TASKS
    settings.ROCKET_TASKS = {"bulk": remote("tests.support.remote_tasks.add")}
    runner, _, outcomes = start_runs(clock, 1, a=1, b=1)
    DBTaskResult.objects.all().delete()
    runner.poll(clock.now())
    assert outcomes == []  # once could be a race; twice in a row is lost
    clock.advance(1)
    runner.poll(clock.now())
    (outcome,) = outcomes
    assert outcome.status == RunStatus.CRASH
    assert "no longer knows this run's result" in outcome.message


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_while_enqueueing_is_a_failed_run_not_a_shutdown(settings, caplog):
    """The backend's own write failing is an outage, not the task's pre-run error.

    Found by bench/soak.py: a database cut landed while a run was being enqueued on
    django-tasks-db, and the scheduler shut down ("could not be started") although
    ROCKET_SILENCE_TASK_PRERUN only concerns the task itself.
    """
    require("django_tasks_db")
    from django.db import OperationalError

    settings.TASKS = DB_TASKS
    settings.ROCKET_SILENCE_TASK_PRERUN = False
    settings.ROCKET_TASKS = {
        "bulk": remote("tests.support.remote_tasks.add", parameters={"a": 1, "b": 1})
    }

    def cut_the_backend(execute, sql, params, many, context):
        if "django_tasks_database_dbtaskresult" in sql and sql.lstrip().upper().startswith(
            "INSERT"
        ):
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(cut_the_backend):
        assert Scheduler(once=True).run() == 0
    (run,) = TaskRun.objects.all()
    assert run.status == RunStatus.FAIL
    assert "could not be handed to its backend" in run.message
    assert "server closed the connection" in run.message
    assert not any("Shutting down" in r.getMessage() for r in caplog.records)


# --- adoption: a run on a worker outlives its scheduler ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_stopped_schedulers_remote_run_is_adopted_and_recorded_once(settings, clock):
    require("django_tasks_db")
    settings.TASKS = DB_TASKS
    settings.ROCKET_TASKS = {
        "sum": remote("tests.support.remote_tasks.add", "daily", parameters={"a": 1, "b": 2})
    }
    first = Scheduler(registry.tasks(), clock=clock)
    first.startup()
    first.tick()
    (row,) = TaskRun.objects.all()  # where it went is on the row as soon as it is enqueued
    assert (row.status, row.remote_backend, row.remote_queue) == ("running", "default", "default")
    from django_tasks_db.models import DBTaskResult

    assert row.remote_id == str(DBTaskResult.objects.get().id)
    first.request_stop("deploy")
    first.shutdown()
    assert TaskRun.objects.get().status == RunStatus.RUNNING  # left to the cluster
    run_db_worker_in_process()
    clock.advance(5)

    second = Scheduler(registry.tasks(), clock=clock)
    second.startup()  # becomes active: adopts the run
    assert second.planner.running.keys() == {str(row.run_id)}
    second.tick()
    (run,) = TaskRun.objects.all()  # recorded, and daily does not start the task again
    assert (run.status, run.result, run.host) == (RunStatus.SUCCESS, 3, HOST)
    assert run.runtime.total_seconds() >= 5
    assert run.scheduler_id == second.leadership.instance_pk
    second.request_stop(force=True)
    second.shutdown()


@pytest.mark.django_db(transaction=True)
def test_a_scheduler_that_loses_the_lease_leaves_its_remote_runs_to_the_new_active_one(
    settings, clock
):
    require("django_tasks_db")
    from django_rocket.models import SchedulerLease

    settings.TASKS = DB_TASKS
    settings.ROCKET_HEARTBEAT = "1 second"
    settings.ROCKET_TASKS = {
        "sum": remote("tests.support.remote_tasks.add", "daily", parameters={"a": 2, "b": 2})
    }
    deposed = Scheduler(registry.tasks(), clock=clock)
    deposed.startup()
    deposed.tick()
    assert deposed.runner.in_flight == 1
    SchedulerLease.objects.update(token=F("token") + 1)  # another instance took the lease
    clock.advance(1)
    deposed.tick()  # its heartbeat finds the lease gone: it stands by and lets go
    assert not deposed.active and deposed.runner.in_flight == 0
    assert not deposed.planner.running
    SchedulerLease.objects.update(holder=None, expires_at=None)

    successor = Scheduler(registry.tasks(), clock=clock)
    successor.startup()  # the deposed one is alive, but on standby: its run is adopted
    assert successor.active and len(successor.planner.running) == 1
    run_db_worker_in_process()
    clock.advance(1)
    successor.tick()
    (run,) = TaskRun.objects.all()
    assert (run.status, run.result) == (RunStatus.SUCCESS, 4)
    for scheduler in (deposed, successor):
        scheduler.request_stop(force=True)
        scheduler.shutdown()


@pytest.mark.django_db(transaction=True)
def test_a_remote_run_on_a_backend_no_longer_configured_is_a_crash(settings, clock):
    require("django_tasks_db")
    settings.TASKS = DB_TASKS
    settings.ROCKET_TASKS = {"t": remote("tests.support.remote_tasks.fails", "daily")}
    task = Task.objects.create(name="t", func="tests.support.remote_tasks.fails", execution="tasks")
    TaskRun.objects.create(
        task=task,
        status=RunStatus.RUNNING,
        started_at=clock.now(),
        remote_backend="retired",
        remote_queue="default",
        remote_id="42",
    )
    scheduler = Scheduler(registry.tasks(), clock=clock)
    scheduler.startup()
    scheduler.tick()
    (run,) = TaskRun.objects.filter(remote_backend="retired")
    assert run.status == RunStatus.CRASH
    assert "task backend 'retired', which is no longer configured" in run.message
    scheduler.request_stop(force=True)
    scheduler.shutdown()


@pytest.mark.django_db(transaction=True)
def test_only_runs_no_live_active_scheduler_follows_are_adopted(clock):
    from django_rocket.engine.recovery import recover_crashed
    from django_rocket.models import SchedulerInstance

    now = clock.now()
    task = Task.objects.create(name="t", func="tests.support.remote_tasks.add", execution="tasks")
    other = SchedulerInstance.objects.create(
        host="elsewhere", pid=1, role="active", last_seen=now, started_at=now
    )
    me = SchedulerInstance.objects.create(host=HOST, pid=os.getpid(), role="active")
    remote_run = TaskRun.objects.create(
        task=task, status="running", started_at=now, scheduler=other, remote_id="r1"
    )
    local_run = TaskRun.objects.create(task=task, status="running", started_at=now, scheduler=other)

    def recover(following=()):
        return recover_crashed(
            now,
            specs={},
            own_runs={str(r.run_id) for r in following},
            instance_pk=me.pk,
            here=Here(HOST, os.getpid(), pid_namespace()),
            lease_timeout=timedelta(seconds=30),
        )

    assert recover().adopt == []  # its scheduler is alive and active: it follows it
    other.role = "standby"  # it lost the lease: it leaves its remote runs
    other.save()
    assert [r.pk for r in recover().adopt] == [remote_run.pk]
    assert TaskRun.objects.get(pk=remote_run.pk).scheduler_id == me.pk
    assert TaskRun.objects.get(pk=local_run.pk).status == RunStatus.RUNNING  # still alive
    SchedulerInstance.objects.filter(pk=other.pk).update(last_seen=now - timedelta(minutes=1))
    result = recover(following=[remote_run])
    assert result.crashed == 1 and result.adopt == []  # the local run crashed with it
    assert TaskRun.objects.get(pk=remote_run.pk).status == RunStatus.RUNNING


# --- real workers ----------------------------------------------------------------------------


class Command:
    """A ``manage.py`` command in a subprocess against the test database."""

    def __init__(self, *args: str, settings: dict) -> None:
        env = os.environ.copy()
        env.update(
            DATABASE_URL=database_url(),
            DJANGO_SETTINGS_MODULE="tests.settings",
            PYTHONPATH=str(ROOT),
            ROCKET_TEST_SETTINGS=json.dumps(settings),
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for_output(self, text: str, limit: float = 30.0) -> None:
        """Wait until the command prints ``text`` (a worker saying it is ready)."""
        try:
            wait_until(lambda: any(text in line for line in self.lines), limit, repr(text))
        except AssertionError:
            print(*self.lines)
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def commands():
    started: list[Command] = []

    def start(*args: str, settings: dict) -> Command:
        command = Command(*args, settings=settings)
        started.append(command)
        return command

    yield start
    for command in started:
        command.stop()


def db_worker(commands, worker_id: str, settings: dict) -> Command:
    return commands(
        "db_worker",
        "--interval=0.1",
        "--no-startup-delay",
        "--no-reload",
        f"--worker-id={worker_id}",
        settings=settings,
    )


def ready(*workers: Command, text: str = "Starting worker") -> None:
    """Wait until every worker is ready, so that run timeouts measure runs, not start-ups."""
    for worker in workers:
        worker.wait_for_output(text)


@pytest.mark.slow
def test_db_workers_one_killed_mid_run(scheduler_process, commands, tmp_path):
    require("django_tasks_db")
    config = {"TASKS": DB_TASKS, "ROCKET_POLL_INTERVAL": 0.2}
    marker = tmp_path / "hanging"
    tasks = {
        "hang": remote(
            "tests.support.remote_tasks.hang_the_first_time",
            "daily | retry(1)",
            timeout="6 seconds",
            parameters={"marker": str(marker)},
        ),
        "broken": remote("tests.support.remote_tasks.fails", "daily | retry(1)"),
        "plain": remote("tests.support.remote_tasks.add", "daily", parameters={"a": 2, "b": 3}),
        "decorated": remote("tests.support.remote_tasks.greet", "daily", parameters={"name": "Bo"}),
    }
    # A worker runs only what its ROCKET_TASKS declares: it has the scheduler's settings.
    workers = [
        db_worker(commands, name, {**config, "ROCKET_TASKS": tasks})
        for name in ("worker-a", "worker-b")
    ]
    ready(*workers)
    scheduler = scheduler_process(tasks, config)
    wait_until(marker.exists, 30, "a worker to start the hanging run")
    pid = int(marker.read_text())
    assert pid in {w.proc.pid for w in workers}
    os.kill(pid, signal.SIGKILL)

    def settled() -> bool:
        runs = runs_by_task()
        return (
            [r.status for r in runs.get("hang", [])] == [RunStatus.CRASH, RunStatus.SUCCESS]
            and [r.status for r in runs.get("broken", [])] == [RunStatus.FAIL, RunStatus.FAIL]
            and len(runs.get("plain", [])) == 1
            and len(runs.get("decorated", [])) == 1
            and all(r.is_finished for found in runs.values() for r in found)
        )

    try:
        wait_until(settled, 40, "every run to be recorded")
    except AssertionError:
        print(scheduler.output(), *(line for w in workers for line in w.lines))
        raise
    runs = runs_by_task()
    lost, again = runs["hang"]
    assert "Timed out after 0:00:06. No result arrived from backend 'default'" in lost.message
    assert "the worker may have died" in lost.message
    assert again.result == "done on the second try"
    assert again.host == HOST
    assert again.pid != pid and again.pid in {w.proc.pid for w in workers}
    first, retry = runs["broken"]
    assert first.message == "ValueError: boom: the task failed on a worker"
    assert "raise ValueError" in first.exc_text
    assert (first.host, retry.trigger, retry.retry_of_id) == (HOST, RunTrigger.RETRY, first.pk)
    (plain,) = runs["plain"]
    assert (plain.status, plain.result, plain.host) == (RunStatus.SUCCESS, 5, HOST)
    (decorated,) = runs["decorated"]
    assert decorated.result == {"greeting": "hello Bo", "attempt": 1}
    time.sleep(1)  # retry(1) allows one retry, and the crash's re-run succeeded: nothing more
    assert TaskRun.objects.count() == 6


@pytest.fixture
def redis_queue():
    """A queue name of its own on the local Redis, removed afterwards."""
    require("django_tasks_rq", "django_rq")
    import redis

    name = f"rocket-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    client = redis.Redis(host="127.0.0.1", port=6379, db=0)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"The RQ tests need Redis on 127.0.0.1:6379: {exc}")
    yield name
    keys = list(client.scan_iter(f"rq:*{name}*"))
    if keys:
        client.delete(*keys)


@pytest.mark.slow
def test_rq_worker_runs_fail_and_stop_on_timeout(scheduler_process, commands, redis_queue):
    idle_queue = f"{redis_queue}-idle"  # no worker listens here
    queues = {
        name: {"HOST": "127.0.0.1", "PORT": 6379, "DB": 0} for name in (redis_queue, idle_queue)
    }
    config = {
        "INSTALLED_APPS": [*django_settings.INSTALLED_APPS, "django_rq"],
        "TASKS": {
            **DB_TASKS,
            "rq": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": [redis_queue, idle_queue]},
        },
        "RQ_QUEUES": queues,
        "ROCKET_POLL_INTERVAL": 0.2,
    }
    rq = {"backend": "rq", "queue": redis_queue}
    tasks = {
        "plain": remote(
            "tests.support.remote_tasks.add", "daily", parameters={"a": 4, "b": 5}, **rq
        ),
        "broken": remote("tests.support.remote_tasks.fails", "daily | retry(1)", **rq),
        "killed": remote("tests.support.tasks.kill_self", "daily", **rq),
        "slow": remote(
            "tests.support.remote_tasks.sleep_for",
            "daily",
            timeout="5 seconds",
            parameters={"seconds": 60},
            **rq,
        ),
        "unserved": remote(
            "tests.support.remote_tasks.add",
            "daily",
            timeout="2 seconds",
            parameters={"a": 1, "b": 1},
            backend="rq",
            queue=idle_queue,
        ),
    }
    worker = commands(
        "rqworker",
        redis_queue,
        "--job-class=django_tasks_rq.Job",
        settings={**config, "ROCKET_TASKS": tasks},
    )
    ready(worker, text="Listening on")
    scheduler = scheduler_process(tasks, config)

    def settled() -> bool:
        runs = runs_by_task()
        return sum(len(found) for found in runs.values()) == 6 and all(
            r.is_finished for found in runs.values() for r in found
        )

    try:
        wait_until(settled, 40, "every run to be recorded")
    except AssertionError:
        print(scheduler.output(), *worker.lines)
        raise
    runs = runs_by_task()
    (plain,) = runs["plain"]
    assert (plain.status, plain.result, plain.host) == (RunStatus.SUCCESS, 9, HOST)
    first, retry = runs["broken"]
    assert (first.status, retry.status, retry.trigger) == ("fail", "fail", RunTrigger.RETRY)
    assert "ValueError: boom: the task failed on a worker" in first.exc_text
    assert first.host == HOST
    (killed,) = runs["killed"]  # its work horse died: RQ itself reports the failure
    assert killed.status == RunStatus.FAIL
    assert killed.message.startswith("Work-horse terminated unexpectedly")
    (slow,) = runs["slow"]
    assert slow.status == RunStatus.TERMINATE
    assert slow.message.startswith("Timed out after 0:00:05. (worker ")
    assert "was told to stop it" in slow.message
    (unserved,) = runs["unserved"]
    assert unserved.status == RunStatus.TERMINATE
    assert "cancelled in its queue before a worker took it" in unserved.message
