"""``showtasks`` and ``explaintask`` show the condition the scheduler applies, and its source."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from django_rocket.models import Task, TaskSource

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def tasks(settings):
    settings.ROCKET_TASKS = {
        "report": {"func": "tests.support.tasks.noop", "start_cond": "daily"},
        "sync": {"func": "tests.support.tasks.noop", "start_cond": "every('10 minutes')"},
    }
    settings.ROCKET_TASK_FUNCTIONS = ["tests.support.runtime_tasks.*"]
    Task.objects.create(
        name="report",
        func="tests.support.tasks.noop",
        start_cond="daily",
        start_cond_override="daily.at('05:00')",
    )
    Task.objects.create(
        name="remind-7",
        func="tests.support.runtime_tasks.remind",
        source=TaskSource.RUNTIME,
        start_cond="every('1 hour')",
        execution="main",
    )
    Task.objects.create(
        name="remind-8",
        func="tests.support.runtime_tasks.remind",
        source=TaskSource.RUNTIME,
        start_cond="every('1 hour')",
        declared=False,
    )


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_showtasks_shows_the_override_and_runtime_tasks():
    table = run("showtasks")
    lines = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert set(lines) == {"report", "sync", "remind-7"}  # an unscheduled task is not listed
    assert lines["report"].endswith(
        "daily.at('05:00') (override set in the admin; ROCKET_TASKS declares: daily)"
    )
    assert lines["sync"].endswith("every('10 minutes')")
    assert lines["remind-7"].endswith("every('1 hour') (runtime task, created by schedule())")
    data = {t["task"]: t for t in json.loads(run("showtasks", "--json"))["tasks"]}
    assert {n: t["condition_source"] for n, t in data.items()} == {
        "report": "override",
        "sync": "settings",
        "remind-7": "runtime",
    }


def test_explaintask_explains_the_override():
    text = run("explaintask", "report")
    assert (
        "Condition: daily.at('05:00') (override set in the admin; ROCKET_TASKS declares: daily)"
        in text
    )
    data = json.loads(run("explaintask", "report", "--json"))
    assert (data["condition"], data["condition_source"]) == ("daily.at('05:00')", "override")


def test_explaintask_explains_a_runtime_task():
    data = json.loads(run("explaintask", "remind-7", "--json"))
    assert (data["condition"], data["condition_source"]) == ("every('1 hour')", "runtime")
    assert "(runtime task, created by schedule())" in run("explaintask", "remind-7")
