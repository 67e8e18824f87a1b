"""Alerts through Django's own mail backends when the backend is not SMTP.

The console backend prints the email, the memory backend keeps it in ``mail.outbox``; both
get the message Red Mail would send over SMTP (subject, text and HTML parts, from and to).
"""

from datetime import UTC, datetime

import pytest
from django.core import mail
from django.core.management import call_command

from django_rocket import alerts
from django_rocket.alerts import EmailConfig, mailer, sending
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, TaskRun
from tests.conftest import wait_until

CONSOLE = "django.core.mail.backends.console.EmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
SUBJECT = "[django-rocket] Task nightly failed"


@pytest.fixture
def backend(settings, monkeypatch):
    """Use ``path`` for alerts: EMAIL_BACKEND, or the default MAILERS entry on Django 6.1+."""

    def use(path: str) -> None:
        settings.DEFAULT_FROM_EMAIL = "rocket@example.com"
        settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"], "throttle": 0}}
        if mailer.MAILERS_SUPPORTED:
            settings.MAILERS = {"default": {"BACKEND": path}}
        else:
            settings.EMAIL_BACKEND = path

    return use


def fail_nightly_through_the_scheduler(settings, clock) -> TaskRun:
    """Run tests.support.tasks.fails in one real tick of a scheduler with alerts on."""
    settings.ROCKET_TASKS = {
        "nightly": {
            "func": "tests.support.tasks.fails",
            "start_cond": "every('1 hour')",
            "execution": "thread",
        }
    }
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    try:
        scheduler.tick()
        wait_until(lambda: not scheduler.runner.in_flight, 60, "the run to report its outcome")
        clock.advance(1)
        scheduler.tick()
    finally:
        scheduler.request_stop("test over")
        scheduler.shutdown()  # sends the queued alerts
    return TaskRun.objects.get()


@pytest.mark.django_db(transaction=True)
def test_a_failed_task_is_printed_by_the_console_backend(settings, clock, backend, capsys):
    backend(CONSOLE)
    assert alerts.check_alerts() == []
    run = fail_nightly_through_the_scheduler(settings, clock)
    assert run.status == RunStatus.FAIL
    out = capsys.readouterr().out
    assert f"Subject: {SUBJECT}" in out
    assert "From: rocket@example.com" in out
    assert "To: ops@example.com" in out
    assert "Content-Type: text/plain" in out
    assert "Content-Type: text/html" in out
    assert "ValueError" in out  # the traceback is in the body


@pytest.mark.django_db(transaction=True)
def test_a_failed_task_reaches_the_memory_backends_outbox(settings, clock, backend):
    backend(LOCMEM)
    fail_nightly_through_the_scheduler(settings, clock)
    (message,) = mail.outbox
    assert message.subject == SUBJECT
    assert message.from_email == "rocket@example.com"
    assert message.to == ["ops@example.com"]
    assert "Task nightly failed" in message.body
    ((html, kind),) = message.alternatives
    assert kind == "text/html"
    assert "<html" in html.lower()


def test_sendtestalert_prints_through_the_console_backend(backend, capsys):
    backend(CONSOLE)
    call_command("sendtestalert")
    out = capsys.readouterr().out
    assert "To: ops@example.com" in out
    assert "manage.py sendtestalert" in out  # the test alert's message
    assert f"Sent a test alert to ops@example.com through {CONSOLE}." in out


def test_an_html_only_alert_is_sent_as_html(backend, settings):
    backend(LOCMEM)
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"], "text": None}}
    sending.send(EmailConfig.from_settings(), alert())
    (message,) = mail.outbox
    assert message.content_subtype == "html"
    assert "<html" in message.body.lower()


def test_no_smtp_host_is_needed_for_another_backend(backend):
    backend(CONSOLE)
    assert alerts.check_alerts() == []  # neither W040 nor E048
    assert not mailer.uses_smtp()


def test_a_backend_that_cannot_be_imported_is_e048(backend):
    backend("no.such.Backend")
    (message,) = alerts.check_alerts()
    assert message.id == "django_rocket.E048"
    assert "'no.such.Backend', which cannot be imported" in message.msg


def alert() -> alerts.Alert:
    return alerts.Alert(
        level="ERROR",
        logger="django_rocket.task",
        message="Task 'nightly' fail",
        created=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        task_name="nightly",
    )
