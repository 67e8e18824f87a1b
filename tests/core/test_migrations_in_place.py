"""Migrations 0011 and 0012 add a TaskRun column in place: the run log is never copied.

A nullable column without a default is one ``ALTER TABLE ... ADD COLUMN`` on every
database. With a default, Django would rebuild the table on SQLite (a copy of every run,
in one transaction, at the deploy), which is why both columns are nullable.
"""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from django_rocket.models import RunStatus, Task, TaskRun
from tests.support.migrations import latest, migrate

APP = "django_rocket"

# Each migration, the one before it, and the column it adds with a value for it.
ADDED = {
    "0011": ("0010_schedulerinstance_pid_namespace", "pid_namespace", "x/pid:1"),
    "0012": ("0011_taskrun_pid_namespace", "last_seen", timezone.now() - timedelta(seconds=5)),
}


@pytest.mark.parametrize("migration", sorted(ADDED))
@pytest.mark.django_db(transaction=True)
def test_it_is_one_add_column_without_copying_the_run_log(migration):
    out = StringIO()
    call_command("sqlmigrate", APP, migration, stdout=out)
    statements = [
        line for line in out.getvalue().splitlines() if line.strip() and not line.startswith("--")
    ]
    body = [s for s in statements if s.upper() not in ("BEGIN;", "COMMIT;")]
    assert len(body) == 1, body
    assert "ADD COLUMN" in body[0].upper() and "django_rocket_taskrun" in body[0], body
    assert ADDED[migration][1] in body[0], body


@pytest.mark.parametrize("migration", sorted(ADDED))
@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_runs_both_ways(migration):
    before, column, value = ADDED[migration]
    newest = latest()
    task = Task.objects.create(name="kept", func="tests.support.tasks.noop", start_cond="false")
    run = TaskRun.objects.create(
        task=task, status=RunStatus.SUCCESS, started_at=timezone.now(), **{column: value}
    )
    try:
        migrate(before)
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM django_rocket_taskrun")
            assert cursor.fetchone() == (1,)
    finally:
        migrate(newest)
    again = TaskRun.objects.get(pk=run.pk)
    assert (again.run_id, getattr(again, column)) == (run.run_id, None)  # rows before: none
