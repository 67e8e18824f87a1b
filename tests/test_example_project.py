"""The example project is a real project: it passes ``check`` and runs a cycle."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"

pytestmark = pytest.mark.slow


def manage(*args: str, db: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_is_clean(tmp_path):
    result = manage("check", "--fail-level", "WARNING", db=tmp_path / "db.sqlite3")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_migrate_and_one_cycle_records_the_failing_traceback(tmp_path):
    db = tmp_path / "db.sqlite3"
    assert manage("migrate", "--noinput", db=db).returncode == 0
    result = manage("runscheduler", "--once", db=db)
    assert result.returncode == 0, result.stderr
    rows = dict(
        sqlite3.connect(db).execute(
            "SELECT t.name, r.exc_text FROM django_rocket_taskrun r "
            "JOIN django_rocket_task t ON t.id = r.task_id"
        )
    )
    assert {"heartbeat", "flaky_report", "always_fails"} <= set(rows)
    assert "ValueError: This demo task always fails" in rows["always_fails"]
