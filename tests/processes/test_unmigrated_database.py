"""A database without django-rocket's migrations: one sentence that says to migrate.

Before, the commands printed ``OperationalError: no such table`` with a traceback, and
``runscheduler`` logged "The database is not reachable" for ever: the wrong diagnosis
for a deploy that forgot ``migrate``.
"""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.slow

MIGRATIONS = sorted(
    p.stem for p in (ROOT / "django_rocket" / "migrations").glob("0*.py") if p.stem[:4].isdigit()
)
TASKS = '{"t": {"func": "tests.support.tasks.noop", "start_cond": "true", "execution": "main"}}'


def environment(db: Path) -> dict:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "PYTHONPATH": str(ROOT)}
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", ROCKET_TEST_TASKS=TASKS)
    env.pop("ROCKET_TEST_SETTINGS", None)
    return env


def django(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=environment(db),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", [("showtasks",), ("explaintask", "t"), ("runtask", "t")])
def test_a_command_on_an_empty_database_says_to_migrate(tmp_path, command):
    result = django(tmp_path / "empty.sqlite3", *command)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(
        f"CommandError: The database answers, but {len(MIGRATIONS)} of django-rocket's "
        f"migrations are not applied (django_rocket.{MIGRATIONS[0]}, "
    ), result.stderr
    assert result.stderr.rstrip().endswith("run `python manage.py migrate`."), result.stderr
    assert "Traceback" not in result.stderr


def test_the_missing_migrations_are_named(tmp_path):
    # Behind by 0008, which adds Task columns every query of tasks reads (0009 only drops
    # an index: a database without it answers every query, so nothing is missed alone).
    behind = "0007_taskrun_exception_types"
    missing = MIGRATIONS[MIGRATIONS.index(behind) + 1 :]
    assert missing[0] == "0008_task_execution_options"
    db = tmp_path / "behind.sqlite3"
    migrated = django(db, "migrate", "django_rocket", behind, "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    result = django(db, "explaintask", "t")
    assert result.returncode == 1, result.stderr
    # The first three by name, then how many more.
    named = ", ".join(f"django_rocket.{m}" for m in missing[:3])
    if len(missing) > 3:
        named += f" and {len(missing) - 3} more"
    assert result.stderr == (
        f"CommandError: The database answers, but {len(missing)} of django-rocket's "
        f"migrations {'is' if len(missing) == 1 else 'are'} not applied ({named}): "
        "run `python manage.py migrate`.\n"
    )


def one_cycle_after_migrate(db: Path, waiting_for: str) -> str:
    """Start ``runscheduler --once``; once it logs ``waiting_for``, migrate; its output.

    The scheduler must still be waiting then (it started nothing), and finish its cycle
    once the migrations are there.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "runscheduler", "--once"],
        cwd=ROOT,
        env=environment(db),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(waiting_for in line for line in lines), 30, repr(waiting_for))
        assert proc.poll() is None  # waiting, not started
        migrated = django(db, "migrate", "--noinput")  # the deploy's migrate, run late
        assert migrated.returncode == 0, migrated.stderr
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        reader.join(timeout=10)
    return "".join(lines)


def test_the_scheduler_says_to_migrate_and_starts_once_the_tables_are_there(tmp_path):
    db = tmp_path / "later.sqlite3"
    output = one_cycle_after_migrate(db, "migrations are not applied")
    assert "run `python manage.py migrate`. Retrying start-up in 0.5s." in output, output
    assert "not reachable" not in output and "Traceback" not in output, output
    assert "started with 1 task(s)" in output, output
    ran = django(db, "showtasks")
    assert ran.returncode == 0 and "success" in ran.stdout, ran.stdout + ran.stderr


def test_the_scheduler_does_not_start_without_the_latest_migration(tmp_path):
    # Even one whose absence breaks no query: a constraint or an index can be one a
    # guarantee rests on (0003's one queued run per task, say).
    db = tmp_path / "one-behind.sqlite3"
    migrated = django(db, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    back = django(db, "migrate", "django_rocket", MIGRATIONS[-2], "--noinput")
    assert back.returncode == 0, back.stderr
    output = one_cycle_after_migrate(db, f"django_rocket.{MIGRATIONS[-1]}")
    assert "1 of django-rocket's migrations is not applied" in output, output
    # Nothing ran before the migration: the only runs are from after it.
    assert output.index("started with") > output.index("is not applied"), output
