"""Runtime tasks take the execution options declared tasks have: backend, queue, and more."""

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

import django_rocket
from django_rocket import registry
from django_rocket.engine.scheduler import Scheduler
from django_rocket.executors.django_tasks.framework import framework
from django_rocket.models import RunStatus, Task, TaskRun
from tests.executors.test_tasks_execution import require

pytestmark = pytest.mark.django_db(transaction=True)

ADD = "tests.support.remote_tasks.add"
REMIND = "tests.support.runtime_tasks.remind"


@pytest.fixture
def runtime_on(settings):
    settings.ROCKET_TASK_FUNCTIONS = [
        "tests.support.runtime_tasks.*",
        "tests.support.remote_tasks.*",
    ]
    settings.ROCKET_EXECUTION = "main"
    settings.ROCKET_HEARTBEAT = "1 hour"
    settings.ROCKET_TASKS = {}


@pytest.fixture
def two_backends(settings):
    """Two ImmediateBackends: the default, and one that takes only the queue "reports"."""
    require()
    immediate = f"{framework().name}.backends.immediate.ImmediateBackend"
    settings.TASKS = {
        "default": {"BACKEND": immediate},
        "narrow": {"BACKEND": immediate, "QUEUES": ["reports"]},
    }


def test_schedule_stores_the_options(runtime_on, two_backends):
    task = django_rocket.schedule(
        "sum",
        ADD,
        "every('1 hour')",
        parameters={"a": 2, "b": 3},
        execution="tasks",
        timeout="1 hour",
        multilaunch=True,
        backend="narrow",
        queue="reports",
        description="Adds two numbers on a worker.",
    )
    task.refresh_from_db()
    assert (task.execution, task.backend, task.queue) == ("tasks", "narrow", "reports")
    assert task.multilaunch is True
    assert task.description == "Adds two numbers on a worker."
    plain = django_rocket.schedule("plain", REMIND, "daily")
    plain.refresh_from_db()
    assert (plain.backend, plain.queue, plain.multilaunch, plain.description) == ("", "", False, "")


@pytest.mark.parametrize(
    ("options", "field", "text"),
    [
        (
            {"execution": "thread", "backend": "narrow"},
            "backend",
            "only applies to execution 'tasks'",
        ),
        ({"execution": "thread", "queue": "reports"}, "queue", "only applies to execution 'tasks'"),
        ({"execution": "tasks", "backend": "nope"}, "backend", "not configured in TASKS"),
        ({"execution": "tasks", "backend": "narrow"}, "queue", "cannot be enqueued"),
        ({"execution": "tasks", "queue": "elsewhere"}, "queue", "cannot be enqueued"),
        ({"multilaunch": "yes"}, "multilaunch", "must be True or False"),
        ({"description": 3}, "description", "must be text"),
    ],
)
def test_bad_options_are_field_errors(runtime_on, two_backends, options, field, text):
    with pytest.raises(ValidationError) as excinfo:
        django_rocket.schedule(
            "sum", ADD, "daily", parameters={"a": 1, "b": 2}, timeout="1 hour", **options
        )
    errors = excinfo.value.message_dict
    assert set(errors) == {field}, errors
    assert text in errors[field][0]
    assert not Task.objects.exists()


def start(clock) -> Scheduler:
    scheduler = Scheduler(registry.tasks(), clock=clock)
    scheduler.startup()
    scheduler.tick()
    return scheduler


def test_a_runtime_task_is_enqueued_on_its_backend_and_queue(runtime_on, two_backends, clock):
    django_rocket.schedule(
        "sum",
        ADD,
        "every('1 hour')",
        parameters={"a": 2, "b": 3},
        execution="tasks",
        timeout="1 hour",
        backend="narrow",
        queue="reports",
    )
    scheduler = start(clock)  # loaded at start-up
    scheduler.tick()
    django_rocket.schedule(  # and picked up by the poll
        "sum-default", ADD, "every('1 hour')", parameters={"a": 1, "b": 1}, execution="tasks"
    )
    clock.advance(1)
    scheduler.tick()
    scheduler.tick()
    runs = {run.task.name: run for run in TaskRun.objects.select_related("task")}
    assert (runs["sum"].status, runs["sum"].result) == (RunStatus.SUCCESS, 5)
    assert (runs["sum"].remote_backend, runs["sum"].remote_queue) == ("narrow", "reports")
    assert runs["sum-default"].result == 2
    assert (runs["sum-default"].remote_backend, runs["sum-default"].remote_queue) == (
        "default",
        "default",
    )
    scheduler.shutdown()


def test_a_declared_task_is_still_enqueued_on_its_backend_and_queue(
    settings, runtime_on, two_backends, clock
):
    settings.ROCKET_TASKS = {
        "sum": {
            "func": ADD,
            "start_cond": "every('1 hour')",
            "execution": "tasks",
            "parameters": {"a": 2, "b": 2},
            "timeout": "1 hour",
            "backend": "narrow",
            "queue": "reports",
        }
    }
    scheduler = start(clock)
    scheduler.tick()
    run = TaskRun.objects.get()
    assert (run.status, run.result, run.remote_backend, run.remote_queue) == (
        RunStatus.SUCCESS,
        4,
        "narrow",
        "reports",
    )
    assert Task.objects.get().backend == "narrow"  # the row says what settings declare
    scheduler.shutdown()


def test_the_scheduler_applies_multilaunch_and_the_description(runtime_on, clock):
    django_rocket.schedule("overlap", REMIND, "false", multilaunch=True, description="Hourly.")
    scheduler = start(clock)
    spec = scheduler.planner.specs["overlap"]
    assert (spec.multilaunch, spec.description) == (True, "Hourly.")
    django_rocket.schedule("overlap", REMIND, "false", multilaunch=False, replace=True)
    clock.advance(1)
    scheduler.tick()
    assert scheduler.planner.specs["overlap"].multilaunch is False
    scheduler.shutdown()


def test_a_row_inserted_without_the_new_columns_gets_their_defaults():
    """An older version's INSERT (a rolling deploy) or hand-written SQL still works."""
    table = connection.ops.quote_name(Task._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (name, func, start_cond, end_cond, start_cond_override, "
            "end_cond_override, source, parameters, timeout, execution, description, enabled, "
            "declared, created_at, updated_at) VALUES ('old', 'x', 'daily', '', '', '', "
            "'settings', '{}', '', 'thread', '', %s, %s, %s, %s)",
            [True, True, timezone.now(), timezone.now()],
        )
    task = Task.objects.get(name="old")
    assert (task.backend, task.queue, task.multilaunch) == ("", "", False)
