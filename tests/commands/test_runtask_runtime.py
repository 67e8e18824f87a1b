"""``runtask NAME`` for a runtime task (``schedule()``): run now, queue, ``--at``, refusals."""

import os
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

import django_rocket
from django_rocket.models import (
    RunStatus,
    RunTrigger,
    SchedulerInstance,
    SchedulerRole,
    Task,
    TaskRun,
    TaskSource,
)
from django_rocket.ops import oneoff
from tests.support import runtime_tasks

pytestmark = pytest.mark.django_db

REMIND = "tests.support.runtime_tasks.remind"
FORBIDDEN = "tests.support.forbidden_tasks.boom"


@pytest.fixture(autouse=True)
def runtime_on(settings):
    settings.ROCKET_TASKS = {"report": {"func": "tests.support.tasks.noop", "start_cond": "daily"}}
    settings.ROCKET_TASK_FUNCTIONS = ["tests.support.runtime_tasks.*"]
    runtime_tasks.CALLS.clear()
    os.environ.pop("ROCKET_TEST_FORBIDDEN_IMPORTED", None)
    sys.modules.pop("tests.support.forbidden_tasks", None)


def runtask(*args: str) -> str:
    out = StringIO()
    call_command("runtask", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def alive_scheduler() -> None:
    SchedulerInstance.objects.create(host="sched-host", pid=4242, role=SchedulerRole.ACTIVE)


def off_list_row(name: str = "evil") -> Task:
    """Written straight into the database, past schedule()'s validation."""
    return Task.objects.create(
        name=name, func=FORBIDDEN, start_cond="daily", source=TaskSource.RUNTIME, execution="main"
    )


def assert_never_imported() -> None:
    assert "tests.support.forbidden_tasks" not in sys.modules
    assert "ROCKET_TEST_FORBIDDEN_IMPORTED" not in os.environ


def test_a_runtime_task_runs_here_on_its_own_row():
    django_rocket.schedule("remind-7", REMIND, "daily", parameters={"customer": 7})
    out = runtask("remind-7")
    run = TaskRun.objects.get()
    assert f"Run {run.run_id} of 'remind-7' ended with success" in out
    assert (run.status, run.trigger, run.result) == (
        RunStatus.SUCCESS,
        RunTrigger.MANUAL,
        {"customer": 7},
    )
    task = Task.objects.get()  # still the runtime task: settings did not take the row over
    assert (task.source, task.declared, task.func) == (TaskSource.RUNTIME, True, REMIND)
    assert runtime_tasks.CALLS == [{"customer": 7}]


def test_with_a_live_scheduler_a_runtime_task_is_queued():
    alive_scheduler()
    django_rocket.schedule("remind-7", REMIND, "daily")
    out = runtask("remind-7")
    run = TaskRun.objects.get()
    assert out == f"Queued run {run.run_id} of 'remind-7' for the scheduler sched-host:4242.\n"
    assert (run.status, run.trigger) == (RunStatus.QUEUED, RunTrigger.MANUAL)
    assert runtime_tasks.CALLS == []


@pytest.mark.parametrize("args", [(), ("--wait",), ("--at", "2099-01-01T05:00")])
def test_a_function_off_the_allowlist_is_refused_and_never_imported(args):
    off_list_row()
    with pytest.raises(CommandError, match="not allowed by ROCKET_TASK_FUNCTIONS") as info:
        runtask("evil", *args)
    assert "The runtime task 'evil' was not run" in str(info.value)
    assert "it was not imported" in str(info.value)
    assert_never_imported()
    assert not TaskRun.objects.exists()


def test_with_a_live_scheduler_an_off_list_function_is_refused_not_queued():
    alive_scheduler()
    off_list_row()
    with pytest.raises(CommandError, match="not allowed by ROCKET_TASK_FUNCTIONS"):
        runtask("evil")
    assert not TaskRun.objects.exists()


def test_at_queues_one_run_of_a_runtime_task():
    task = django_rocket.schedule("remind-7", REMIND, "daily")
    at = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    out = runtask("remind-7", "--at", at.isoformat())
    run = TaskRun.objects.get()
    assert (run.task_id, run.status, run.due_at) == (task.pk, RunStatus.QUEUED, at)
    assert f"Queued run {run.run_id} of 'remind-7'" in out


def test_an_unscheduled_runtime_task_is_refused():
    django_rocket.schedule("remind-7", REMIND, "daily")
    django_rocket.unschedule("remind-7")
    for args in ((), ("--at", "2099-01-01T05:00")):
        with pytest.raises(CommandError, match="'remind-7' was unscheduled"):
            runtask("remind-7", *args)
    assert not TaskRun.objects.exists()


def test_an_unknown_name_says_runtime_tasks_were_looked_at(settings):
    with pytest.raises(CommandError, match=r"no task 'nope' in ROCKET_TASKS or among the runtime"):
        runtask("nope")
    settings.ROCKET_TASK_FUNCTIONS = None  # runtime tasks off: the message is as before
    with pytest.raises(CommandError, match=r"no task 'nope' in ROCKET_TASKS\. "):
        runtask("nope")


def test_runtime_tasks_off_refuses_their_rows(settings):
    django_rocket.schedule("remind-7", REMIND, "daily")
    settings.ROCKET_TASK_FUNCTIONS = None
    with pytest.raises(CommandError, match="Runtime tasks are off"):
        runtask("remind-7")
    assert not TaskRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_taken_off_the_list_after_the_lookup_the_run_is_fail_not_imported(settings):
    """The list is read again as the run starts, as the scheduler does before each run."""
    django_rocket.schedule("remind-7", REMIND, "daily")
    spec = oneoff.runtime_task_spec(Task.objects.get())
    settings.ROCKET_TASK_FUNCTIONS = ["tests.support.other.*"]
    run = oneoff.run_in_process(spec)
    assert run.status == RunStatus.FAIL
    assert "not allowed by ROCKET_TASK_FUNCTIONS" in run.message
    assert runtime_tasks.CALLS == []
