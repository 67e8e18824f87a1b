"""The example project is a real project: it passes ``check`` and runs a cycle."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "example_project"

pytestmark = pytest.mark.slow


def manage(*args: str, db: Path, email_url: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("EMAIL_URL", None)
    if email_url is not None:
        env["EMAIL_URL"] = email_url
    return subprocess.run(
        # Every warning shown: Django's deprecations (RemovedInDjango…) are hidden by default.
        [sys.executable, "-W", "default", "manage.py", *args],
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
    assert "RemovedInDjango" not in result.stderr  # EMAIL_* settings on Django 6.1


def test_email_url_gives_the_mailer_on_django_61_and_email_settings_before(tmp_path):
    url = "smtp+tls://ops%40example.com:secret@smtp.example.com:587"
    code = (
        "from django.conf import settings as s; import django; "
        "print(s.MAILERS['default'] if django.VERSION >= (6, 1) else "
        "(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER, s.EMAIL_USE_TLS))"
    )
    result = manage("shell", "-c", code, db=tmp_path / "db.sqlite3", email_url=url)
    assert result.returncode == 0, result.stderr
    assert "RemovedInDjango" not in result.stderr
    import django

    if django.VERSION >= (6, 1):
        assert result.stdout.strip().splitlines()[-1] == str(
            {
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "OPTIONS": {
                    "host": "smtp.example.com",
                    "port": 587,
                    "username": "ops@example.com",
                    "password": "secret",
                    "use_tls": True,
                    "use_ssl": False,
                },
            }
        )
    else:
        assert result.stdout.strip().splitlines()[-1] == str(
            (
                "django.core.mail.backends.smtp.EmailBackend",
                "smtp.example.com",
                587,
                "ops@example.com",
                True,
            )
        )


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
    # The silenced error: the condition raised, was logged, and counted as false.
    assert "Condition of task 'report_status' raised; treated as false." in result.stderr
    assert "report_status" not in rows
    # ROCKET_ALERTS: the failure's email, printed by the console mail backend (the default).
    assert "Subject: [django-rocket] Task always_fails failed" in result.stdout, result.stdout
    assert "To: ops@example.com" in result.stdout
    assert "ValueError: This demo task always fails" in result.stdout
    assert "Could not send the alert email" not in result.stderr


def test_sendtestalert_prints_the_test_email(tmp_path):
    result = manage("sendtestalert", db=tmp_path / "db.sqlite3")
    assert result.returncode == 0, result.stderr
    assert "To: ops@example.com" in result.stdout
    assert "Sent a test alert to ops@example.com through" in result.stdout
    assert "RemovedInDjango" not in result.stderr


def test_the_report_follows_the_robust_applications_recipe(tmp_path):
    code = (
        "from django.conf import settings as s; print(s.ROCKET_TASKS['flaky_report']['start_cond'])"
    )
    result = manage("shell", "-c", code, db=tmp_path / "db.sqlite3")
    assert result.returncode == 0, result.stderr
    condition = result.stdout.strip().splitlines()[-1]
    # Issue 22: the demo's retries wait, so they do not all meet the same unavailable server.
    assert condition.startswith(
        "(daily | retry(3, delay='20 seconds', backoff=2, jitter=True, on=['ConnectionError']))"
        " & time_of_day.between("
    )
