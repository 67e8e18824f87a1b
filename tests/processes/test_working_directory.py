"""A run that changes the working directory (``os.chdir``) moves every run of the process.

A relative SQLite path (django-environ's ``sqlite:///db.sqlite3``) was resolved against
the working directory at every new connection, so the next thread run's connection
opened another file there and failed ("unable to open database file", or "no such
table" in an empty file made for it), as would the scheduler's own after an error.
"""

import os

import pytest
from django.db import connection

from django_rocket.models import RunStatus, TaskRun
from tests.conftest import ROOT, wait_until

pytestmark = [pytest.mark.slow]


def relative_database() -> dict:
    """The test database, named by a path relative to ROOT, where subprocesses start."""
    if connection.vendor != "sqlite":
        pytest.skip("a database path relative to the working directory is SQLite's")
    s = connection.settings_dict
    name = os.path.relpath(s["NAME"], ROOT)
    return {"ENGINE": s["ENGINE"], "NAME": name, "OPTIONS": s["OPTIONS"]}


def test_a_run_that_changes_directory_leaves_the_database_where_it_was(scheduler_process, tmp_path):
    relative = relative_database()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tasks = {
        "moves": {
            "func": "tests.support.tasks.changes_directory",
            "parameters": {"path": str(elsewhere)},
            "start_cond": "every('1 hour')",
            "execution": "thread",
        },
        "reads": {
            "func": "tests.support.tasks.queries_the_database",
            "start_cond": "after_success('moves')",
            "execution": "thread",
        },
    }
    proc = scheduler_process(tasks, {"DATABASES": {"default": relative}})
    wait_until(
        lambda: TaskRun.objects.filter(task__name="reads").exclude(status="running").exists(),
        30,
        "the run after the move to end",
    )
    proc.wait_for_output(f"The working directory of this process changed to {elsewhere}")
    reads = TaskRun.objects.get(task__name="reads")
    assert reads.status == RunStatus.SUCCESS, reads.message
    assert not list(elsewhere.rglob("*.sqlite3"))


def test_runtask_records_a_run_that_changed_directory(scheduler_process, tmp_path):
    """The function moved, and closed its connection: the finish reconnected elsewhere."""
    relative = relative_database()
    proc = scheduler_process(
        {
            "moves": {
                "func": "tests.support.tasks.changes_directory_and_closes_its_connection",
                "parameters": {"path": str(tmp_path)},
                "start_cond": "false",
            }
        },
        {"DATABASES": {"default": relative}},
        ("moves", "--wait"),
        command="runtask",
    )
    assert proc.wait() == 0, proc.output()
    assert TaskRun.objects.get().status == RunStatus.SUCCESS
    assert f"The working directory of this process changed to {tmp_path}" in proc.output()
