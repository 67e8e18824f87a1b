"""Runs on worker backends outlive the scheduler: stopped or killed, it is not asked to
finish them; the next active scheduler adopts them, and nothing runs twice.

Real ``db_worker`` and RQ worker processes, real ``runscheduler`` subprocesses; the task
function appends to a ledger file, so the test counts executions, not rows.
"""

import signal

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from django_rocket.models import RunStatus, SchedulerInstance, TaskRun
from tests.conftest import wait_until
from tests.executors.test_tasks_execution import (  # noqa: F401  (commands: a fixture)
    DB_TASKS,
    HOST,
    commands,
    db_worker,
    ready,
    redis_queue,
    remote,
    require,
)

pytestmark = [pytest.mark.slow]

WORK_SECONDS = 3


def lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def daily_ledger(ledger, **extra) -> dict:
    return {
        "ledger": remote(
            "tests.support.remote_tasks.ledger_entry",
            "daily",
            parameters={"ledger": str(ledger), "seconds": WORK_SECONDS},
            **extra,
        )
    }


def worker_backend(kind: str, commands, queue: str | None):  # noqa: F811
    """Start a worker of ``kind``; return the scheduler settings and the task options."""
    if kind == "db":
        require("django_tasks_db")
        config = {"TASKS": DB_TASKS, "ROCKET_POLL_INTERVAL": 0.2}
        # A worker runs only what its ROCKET_TASKS declares: the scheduler's task.
        worker = db_worker(commands, "worker-a", {**config, "ROCKET_TASKS": daily_ledger("-")})
        ready(worker)
        return config, {}, worker
    assert queue is not None
    config = {
        "INSTALLED_APPS": [*django_settings.INSTALLED_APPS, "django_rq"],
        "TASKS": {**DB_TASKS, "rq": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": [queue]}},
        "RQ_QUEUES": {queue: {"HOST": "127.0.0.1", "PORT": 6379, "DB": 0}},
        "ROCKET_POLL_INTERVAL": 0.2,
    }
    options = {"backend": "rq", "queue": queue}
    worker = commands(
        "rqworker",
        queue,
        "--job-class=django_tasks_rq.Job",
        settings={**config, "ROCKET_TASKS": daily_ledger("-", **options)},
    )
    ready(worker, text="Listening on")
    return config, options, worker


def finished_on_its_worker(kind: str, row: TaskRun) -> bool:
    """Whether the backend itself says the run's work is done (read behind django-rocket)."""
    if kind == "db":
        from django_tasks_db.models import DBTaskResult

        return DBTaskResult.objects.filter(id=row.remote_id, status="SUCCESSFUL").exists()
    import redis
    from rq.job import Job

    job = Job.fetch(row.remote_id, connection=redis.Redis(host="127.0.0.1", port=6379, db=0))
    return job.get_status() == "finished"


@pytest.fixture(params=["db", "rq"])
def backend_kind(request) -> str:
    return request.param


@pytest.fixture
def queue_name(backend_kind, request) -> str | None:
    return request.getfixturevalue("redis_queue") if backend_kind == "rq" else None


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_daily_run_in_flight_when_the_scheduler_dies_runs_once_and_is_recorded_once(
    scheduler_process,
    commands,  # noqa: F811
    tmp_path,
    backend_kind,
    queue_name,
    how,
):
    config, options, worker = worker_backend(backend_kind, commands, queue_name)
    config = {**config, "ROCKET_SHUTDOWN_GRACE": 20}
    ledger = tmp_path / "ledger"
    tasks = daily_ledger(ledger, **options)
    first = scheduler_process(tasks, config)
    wait_until(lambda: lines(ledger), 30, "the worker to start the run")
    (row,) = TaskRun.objects.all()
    assert row.status == RunStatus.RUNNING
    assert row.remote_backend == options.get("backend", "default")
    assert row.remote_queue == options.get("queue", "default")
    assert row.remote_id
    first.wait_for_output("started with")  # its signal handlers are installed
    first.proc.send_signal(how)
    assert first.wait(30) == (0 if how == signal.SIGTERM else -signal.SIGKILL)
    # The stopped scheduler left the run to the cluster: nobody recorded it meanwhile.
    assert TaskRun.objects.get().status == RunStatus.RUNNING
    wait_until(lambda: finished_on_its_worker(backend_kind, row), 30, "the worker to finish")
    seen_done = timezone.now()

    second = scheduler_process(tasks, config, args=("--once",))
    try:
        assert second.wait(60) == 0
    except Exception:
        print(first.output(), second.output(), *worker.lines)
        raise
    (run,) = TaskRun.objects.all()
    assert (run.status, run.result) == (RunStatus.SUCCESS, "written once"), run.message
    assert (run.host, run.pid) == (HOST, int(lines(ledger)[0]))  # the worker's, not a scheduler's
    assert run.runtime.total_seconds() >= WORK_SECONDS
    # The worker's finish time, not the moment the next scheduler noticed it.
    assert run.finished_at <= seen_done
    assert run.scheduler_id == SchedulerInstance.objects.get(pid=second.proc.pid).pk
    assert "Adopting 1 run(s)" in second.output()
    assert len(lines(ledger)) == 1


def test_the_old_shutdown_stops_remote_runs_when_asked(scheduler_process, commands, tmp_path):  # noqa: F811
    """ROCKET_STOP_REMOTE_RUNS_AT_SHUTDOWN: wait within the grace, then stop or give up."""
    config, _, _ = worker_backend("db", commands, None)
    config = {**config, "ROCKET_SHUTDOWN_GRACE": 1, "ROCKET_STOP_REMOTE_RUNS_AT_SHUTDOWN": True}
    ledger = tmp_path / "ledger"
    first = scheduler_process(daily_ledger(ledger), config)
    wait_until(lambda: lines(ledger), 30, "the worker to start the run")
    first.wait_for_output("started with")
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    (run,) = TaskRun.objects.all()
    assert run.status == RunStatus.CRASH  # a db_worker cannot be told to stop a started run
    assert "Terminated at scheduler shutdown. No result arrived" in run.message
