"""Issue 17, item 4: a Tasks framework worker calls only what a declared task names.

A queued job is data: whoever can write a row to django-tasks-db's table (or a message
to Redis) chooses the dotted path ``call_in_worker`` is given. Before, a row naming
``subprocess.getoutput`` ran a shell command on the worker.
"""

import json
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from django_rocket.executors.django_tasks.worker import (
    _call_in_worker,
    declared_functions,
    refusal,
)
from django_rocket.models import RunStatus
from tests.executors.test_tasks_execution import (
    DB_TASKS,
    commands,  # noqa: F401 - the fixture
    remote,
    require,
    start_runs,
)

WORKER_PATH = "django_rocket.executors.django_tasks.worker.call_in_worker"


def hostile_args(run_id: str, marker) -> dict:
    return {
        "args": [run_id, "subprocess.getoutput", {"cmd": f"touch {marker}"}, 65536],
        "kwargs": {},
    }


def write_job_row(run_id: str, marker) -> uuid.UUID:
    """Insert a job straight into django-tasks-db's table, as an attacker with SQL would."""
    from django_tasks_db.models import DBTaskResult

    table = connection.ops.quote_name(DBTaskResult._meta.db_table)
    row_id = uuid.uuid4()
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, status, enqueued_at, args_kwargs, priority, task_path, "
            "worker_ids, queue_name, backend_name, run_after, exception_class_path, traceback) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                row_id.hex if connection.vendor == "sqlite" else row_id,
                "READY",
                now,
                json.dumps(hostile_args(run_id, marker)),
                0,
                WORKER_PATH,
                "[]",
                "default",
                "default",
                now,
                "",
                "",
            ],
        )
    return row_id


@pytest.mark.django_db(transaction=True)
def test_a_hostile_job_row_is_refused_by_a_real_db_worker(settings, clock, commands, tmp_path):  # noqa: F811
    require("django_tasks_db")
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = DB_TASKS
    settings.ROCKET_POLL_INTERVAL = 1.0
    tasks = {"bulk": remote("tests.support.remote_tasks.add", parameters={"a": 1, "b": 2})}
    settings.ROCKET_TASKS = tasks
    # A run the scheduler follows, whose queued job is rewritten to call something else...
    runner, (run_id,), outcomes = start_runs(clock, 1, a=1, b=2)
    followed = tmp_path / "followed"
    table = connection.ops.quote_name(DBTaskResult._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET args_kwargs = %s",
            [json.dumps(hostile_args(run_id, followed))],
        )
    # ... and a job nobody enqueued, written straight into the table.
    planted = tmp_path / "planted"
    row_id = write_job_row(str(uuid.uuid4()), planted)

    worker = commands(
        "db_worker",
        "--batch",
        "--interval=0.1",
        "--no-startup-delay",
        "--no-reload",
        "--worker-id=worker-a",
        settings={"TASKS": DB_TASKS, "ROCKET_TASKS": tasks},
    )
    assert worker.proc.wait(timeout=60) == 0, "".join(worker.lines)

    assert not followed.exists() and not planted.exists()  # no shell command ran
    row = DBTaskResult.objects.get(id=row_id)
    assert row.return_value["status"] == RunStatus.FAIL
    assert row.return_value["message"].startswith("Refused to call 'subprocess.getoutput'")
    clock.advance(1)
    runner.poll(clock.now())
    (outcome,) = outcomes
    assert outcome.status == RunStatus.FAIL
    assert outcome.message.startswith("Refused to call 'subprocess.getoutput': no task declared")
    assert "execution 'tasks'" in outcome.message


def test_only_the_funcs_of_declared_tasks_with_execution_tasks_may_be_called(settings):
    settings.ROCKET_TASKS = {
        "remote": remote("tests.support.remote_tasks.add"),
        "local": {"func": "tests.support.tasks.noop", "start_cond": "daily", "execution": "thread"},
        "odd": "not a dict",
    }
    assert declared_functions() == {"tests.support.remote_tasks.add"}
    assert refusal("tests.support.remote_tasks.add") == ""
    assert "Refused to call 'tests.support.tasks.noop'" in refusal("tests.support.tasks.noop")
    assert refusal(["subprocess.getoutput"]).startswith("Refused to call")
    settings.ROCKET_EXECUTION = "tasks"  # the default execution counts too
    assert "tests.support.tasks.noop" not in declared_functions()
    settings.ROCKET_TASKS["plain"] = {"func": "tests.support.tasks.noop", "start_cond": "daily"}
    assert "tests.support.tasks.noop" in declared_functions()
    settings.ROCKET_TASKS = "not a dict"
    assert declared_functions() == set()


@pytest.mark.parametrize(
    ("kind", "message"),
    [("exit", "SystemExit: 3"), ("interrupt", "KeyboardInterrupt"), ("genexit", "GeneratorExit")],
)
def test_a_base_exception_in_a_worker_is_a_fail_not_the_workers_end(settings, kind, message):
    """Raised on, SystemExit or KeyboardInterrupt would stop the worker process itself."""
    settings.ROCKET_TASKS = {"t": remote("tests.support.tasks.raises_base")}
    ending = _call_in_worker(None, "r1", "tests.support.tasks.raises_base", {"kind": kind}, 100)
    assert ending["status"] == RunStatus.FAIL
    assert ending["message"] == message
    assert ending["run_id"] == "r1"


def test_a_hostile_value_in_a_worker_is_not_kept_and_says_why(settings):
    settings.ROCKET_TASKS = {"t": remote("tests.support.tasks.returns_deeply_nested")}
    ending = _call_in_worker(None, "r1", "tests.support.tasks.returns_deeply_nested", {}, 100)
    assert ending["status"] == RunStatus.SUCCESS
    assert ending["message"].startswith("Return value not kept: it is nested too deep")


@pytest.mark.django_db(transaction=True)
def test_hostile_functions_through_a_real_backend_end_as_readable_runs(settings):
    """execution "tasks" through the framework's ImmediateBackend and a scheduler cycle."""
    from django_rocket.engine.scheduler import Scheduler
    from django_rocket.executors.django_tasks.framework import framework
    from django_rocket.executors.outcome import MESSAGE_MAX_CHARS, traceback_limit
    from django_rocket.models import TaskRun

    require()
    api = framework().name
    settings.TASKS = {"default": {"BACKEND": f"{api}.backends.immediate.ImmediateBackend"}}
    t = "tests.support.tasks."
    settings.ROCKET_TASKS = {
        "unprintable": remote(t + "raises_unprintable"),
        "exit": remote(t + "raises_base", parameters={"kind": "exit"}),
        "interrupt": remote(t + "raises_base", parameters={"kind": "interrupt"}),
        "huge": remote(t + "big_failure"),
        "deep": remote(t + "returns_deeply_nested"),
        "hostile": remote(t + "returns_hostile"),
    }
    assert Scheduler(once=True).run() == 0
    runs = {run.task.name: run for run in TaskRun.objects.select_related("task")}
    assert runs["unprintable"].status == RunStatus.FAIL
    assert "UnprintableError" in runs["unprintable"].message
    assert runs["exit"].status == RunStatus.FAIL
    assert runs["exit"].message == "SystemExit: 3"
    assert runs["interrupt"].message == "KeyboardInterrupt"
    assert runs["huge"].status == RunStatus.FAIL
    assert len(runs["huge"].message) <= MESSAGE_MAX_CHARS
    assert len(runs["huge"].exc_text.encode()) <= traceback_limit(65536)
    for name in ("deep", "hostile"):
        assert runs[name].status == RunStatus.SUCCESS
        assert runs[name].message.startswith("Return value not kept"), runs[name].message


def test_a_worker_calls_what_its_runtime_allowlist_allows_and_nothing_else(settings, tmp_path):
    """Runtime tasks with execution 'tasks': the worker's ROCKET_TASK_FUNCTIONS allows them.

    Whoever may write a runtime task may already have an allowed function called; a
    function off the list is refused before it is imported.
    """
    settings.ROCKET_TASKS = {}
    settings.ROCKET_TASK_FUNCTIONS = ["tests.support.runtime_tasks.*"]
    assert refusal("tests.support.runtime_tasks.remind") == ""
    assert refusal("tests.support.runtime_tasks.getcwd").startswith("Refused")  # re-exported
    assert refusal("tests.support.runtime_tasks._private").startswith("Refused")
    assert "ROCKET_TASK_FUNCTIONS does not allow it" in refusal("subprocess.getoutput")
    marker = tmp_path / "ran"
    ending = _call_in_worker(None, "r1", "subprocess.getoutput", {"cmd": f"touch {marker}"}, 65536)
    assert ending["status"] == RunStatus.FAIL and not marker.exists()
    ending = _call_in_worker(
        None, "r2", "tests.support.runtime_tasks.remind", {"customer": 4}, 65536
    )
    assert (ending["status"], ending["result"]) == (RunStatus.SUCCESS, {"customer": 4})
    settings.ROCKET_TASK_FUNCTIONS = None  # runtime tasks off: nothing but declared tasks
    assert refusal("tests.support.runtime_tasks.remind").startswith("Refused")
