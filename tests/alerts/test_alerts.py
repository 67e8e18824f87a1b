"""Email alerts against a real SMTP server (aiosmtpd), and against broken ones."""

import inspect
import logging
import re
import threading
import time
import warnings
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import django
import pytest
from django.contrib import admin
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.smtp import EmailBackend as SMTPEmailBackend
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.urls import path

from django_rocket import alerts
from django_rocket.alerts import (
    EmailAlertHandler,
    EmailConfig,
    install_alerts,
    mailer,
    sending,
    shutdown_alerts,
)
from django_rocket.alerts.message import admin_url_for
from django_rocket.models import RunStatus, Task, TaskRun
from tests.support.smtp import SilentServer, SMTPServer, free_port, parts, use_smtp

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "tests/tasks.py", line 22, in fails\n'
    '    raise ValueError("boom: the task failed on purpose")\n'
    "ValueError: boom: the task failed on purpose\n"
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def smtp(settings):
    with SMTPServer() as server:
        use_smtp(settings, server.port)
        yield server


@pytest.fixture
def fake_time():
    return FakeTime()


@pytest.fixture
def make_handler():
    made: list[EmailAlertHandler] = []

    def make(**options) -> EmailAlertHandler:
        handler_options = {
            key: options.pop(key) for key in ("time_func", "poll", "queue_size") if key in options
        }
        config = EmailConfig(receivers=("ops@example.com",), **options)
        handler = EmailAlertHandler(config, **handler_options)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.shutdown(timeout=2)


def failure(task: str = "nightly", exc_text: str = TRACEBACK, **extra) -> logging.LogRecord:
    """A record like the scheduler's ``fail`` event."""
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    end = start + timedelta(seconds=2.5)
    record = logging.getLogger("django_rocket.task").makeRecord(
        "django_rocket.task",
        logging.ERROR,
        __file__,
        1,
        "Task %r fail: %s",
        (task, "ValueError: boom"),
        None,
        extra={
            "task_name": task,
            "run_id": "8c5b6b1e-0f7e-4c55-b3f5-2d7d3d0c9a11",
            "action": "fail",
            "start": start,
            "end": end,
            "runtime": 2.5,
            **extra,
        },
    )
    record.exc_text = exc_text
    return record


# --- one failure, one email -----------------------------------------------------------------


def test_a_failure_sends_one_email_with_task_and_traceback(smtp, make_handler):
    handler = make_handler()
    handler.handle(failure())
    assert handler.shutdown(timeout=5)
    (message,) = smtp.inbox.wait_for(1)
    assert message["Subject"] == "[django-rocket] Task nightly failed"
    assert message["From"] == "rocket@example.com"
    assert message["To"] == "ops@example.com"
    html, text = parts(message)
    for body in (html, text):
        assert "nightly" in body
        assert "8c5b6b1e-0f7e-4c55-b3f5-2d7d3d0c9a11" in body
        assert "2026-03-02 09:00:00" in body
        assert "2.5 seconds" in body
    assert TRACEBACK.strip() in text
    assert "raise ValueError(&quot;boom: the task failed on purpose&quot;)" in html
    assert len(smtp.inbox.messages) == 1


def test_records_below_the_level_send_nothing(smtp, make_handler):
    handler = make_handler()
    log = logging.getLogger("tests.alerts.level")
    log.addHandler(handler)
    try:
        log.warning("only a warning")
    finally:
        log.removeHandler(handler)
    assert handler.shutdown(timeout=5)
    assert smtp.inbox.messages == []


# --- throttling -----------------------------------------------------------------------------


def test_a_hundred_failures_in_the_window_give_one_email_and_one_summary(
    smtp, make_handler, fake_time
):
    handler = make_handler(time_func=fake_time, poll=0.02)
    for _ in range(100):
        handler.handle(failure())
    smtp.inbox.wait_for(1)
    time.sleep(0.1)
    assert len(smtp.inbox.messages) == 1
    fake_time.now += 15 * 60  # the window ends; the sender thread notices on its own
    first, summary = smtp.inbox.wait_for(2)
    assert first["Subject"] == "[django-rocket] Task nightly failed"
    assert summary["Subject"] == "[django-rocket] Task nightly failed 99 more times in 15 minutes"
    html, text = parts(summary)
    assert "within 15 minutes" in text
    assert "ValueError: boom" in html
    assert handler.shutdown(timeout=5)
    assert len(smtp.inbox.messages) == 2


def test_a_pending_summary_is_sent_at_shutdown(smtp, make_handler, fake_time):
    handler = make_handler(time_func=fake_time)
    for _ in range(5):
        handler.handle(failure())
    assert handler.shutdown(timeout=5)
    summary = smtp.inbox.wait_for(2)[1]
    assert summary["Subject"].endswith("failed 4 more times in 15 minutes")


def test_throttling_is_per_task_and_a_quiet_window_ends_without_summary(
    smtp, make_handler, fake_time
):
    handler = make_handler(time_func=fake_time)
    handler.handle(failure("a"))
    handler.handle(failure("b"))
    fake_time.now += 15 * 60 + 1
    handler.handle(failure("a"))
    assert handler.shutdown(timeout=5)
    subjects = sorted(m["Subject"] for m in smtp.inbox.wait_for(3))
    assert subjects == [
        "[django-rocket] Task a failed",
        "[django-rocket] Task a failed",
        "[django-rocket] Task b failed",
    ]


def test_mixed_events_summarise_as_alerts(smtp, make_handler, fake_time):
    handler = make_handler(time_func=fake_time)
    handler.handle(failure())
    handler.handle(failure(action="crash"))
    handler.handle(failure())
    assert handler.shutdown(timeout=5)
    assert smtp.inbox.wait_for(2)[1]["Subject"].endswith(
        "Task nightly: 2 more alerts in 15 minutes"
    )


def test_throttle_zero_sends_every_alert(smtp, make_handler):
    handler = make_handler(throttle=0)
    for _ in range(3):
        handler.handle(failure())
    assert handler.shutdown(timeout=5)
    assert len(smtp.inbox.wait_for(3)) == 3


# --- safe content ---------------------------------------------------------------------------


def test_exception_text_and_task_data_are_escaped(smtp, make_handler):
    handler = make_handler()
    handler.handle(
        failure(
            task="<b>bold</b>",
            exc_text="Traceback\nValueError: <script>alert('x')</script> & {{ 7*7 }}",
        )
    )
    assert handler.shutdown(timeout=5)
    (message,) = smtp.inbox.wait_for(1)
    html, text = parts(message)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html
    assert "{{ 7*7 }}" in html and "49" not in html  # not rendered by any template engine
    assert "<script>alert('x')</script>" in text  # plain text is not HTML


def test_subject_is_one_line_and_headers_cannot_be_injected(smtp, make_handler):
    handler = make_handler(subject="[prod] {{ task_name }} {{ message }}")
    evil = "nightly\r\nBcc: victim@example.org\r\n\r\nfake body"
    handler.handle(failure(task=evil))
    assert handler.shutdown(timeout=5)
    (message,) = smtp.inbox.wait_for(1)
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    assert message["Subject"].startswith("[prod] nightly Bcc: victim@example.org fake body")
    assert message["Bcc"] is None
    assert smtp.inbox.envelopes == [("rocket@example.com", ["ops@example.com"])]
    raw_headers = smtp.inbox.raw[0].split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in raw_headers


def test_no_settings_or_locals_leak(smtp, make_handler, settings):
    handler = make_handler(subject="{{ settings.SECRET_KEY }}{{ request }}x")
    record = failure(password="hunter2-local-secret")
    handler.handle(record)
    assert handler.shutdown(timeout=5)
    raw = smtp.inbox.wait_for(1)[0].as_string()
    assert settings.SECRET_KEY not in raw
    assert "hunter2-local-secret" not in raw


def test_exc_info_records_are_rendered_as_traceback(smtp, make_handler):
    handler = make_handler()
    log = logging.getLogger("tests.alerts.exc_info")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            {}["missing"]
        except KeyError:
            log.exception("lookup failed", extra={"task_name": "lookup"})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert handler.shutdown(timeout=5)
    (message,) = smtp.inbox.wait_for(1)
    assert message["Subject"] == "[django-rocket] Task lookup: error lookup failed"
    _, text = parts(message)
    assert "KeyError: 'missing'" in text


# --- a broken SMTP server changes nothing for the caller ------------------------------------


def test_a_closed_port_is_logged_and_emit_returns_at_once(settings, make_handler, caplog):
    use_smtp(settings, free_port())
    handler = make_handler(timeout=1.0)
    started = time.monotonic()
    handler.handle(failure())
    assert time.monotonic() - started < 0.05
    assert handler.shutdown(timeout=5)
    assert handler.failed == 1
    (record,) = [r for r in caplog.records if "Could not send" in r.getMessage()]
    assert record.name == "django_rocket.scheduler"
    assert "nightly" in record.getMessage()
    assert "ConnectionRefusedError" in record.getMessage()


def test_a_silent_server_never_blocks_emit_and_shutdown_is_bounded(settings, make_handler, caplog):
    with SilentServer() as silent:
        use_smtp(settings, silent.port)
        handler = make_handler(timeout=5.0, queue_size=3)
        started = time.monotonic()
        for n in range(20):
            handler.handle(failure(f"task-{n}"))
        assert time.monotonic() - started < 0.1
        started = time.monotonic()
        assert handler.shutdown(timeout=0.5) is False
        assert time.monotonic() - started < 1.0
    messages = [r.getMessage() for r in caplog.records if r.name == "django_rocket.scheduler"]
    # 20 alerts: one being sent, three waiting, the others dropped (one more if the
    # sender thread had not yet taken the first off the queue).
    assert any(re.match(r"Dropped 1[67] alert email\(s\)", m) for m in messages), messages
    assert any("Stopped waiting for the SMTP server" in m for m in messages), messages


def test_a_silent_server_times_out_and_is_logged(settings, make_handler, caplog):
    with SilentServer() as silent:
        use_smtp(settings, silent.port)
        handler = make_handler(timeout=0.3)
        handler.handle(failure())
        assert handler.shutdown(timeout=5)
    assert handler.failed == 1
    assert any("the SMTP server did not answer in time" in r.getMessage() for r in caplog.records)


def test_sending_recovers_after_a_failure(settings, make_handler):
    with SMTPServer() as server:
        use_smtp(settings, free_port())
        handler = make_handler(throttle=0)
        handler.handle(failure())
        deadline = time.monotonic() + 5
        while not handler.failed and time.monotonic() < deadline:
            time.sleep(0.01)
        use_smtp(settings, server.port)
        handler._sender = None  # settings are read when the sender is made
        handler.handle(failure())
        assert handler.shutdown(timeout=5)
        assert len(server.inbox.wait_for(1)) == 1


# --- admin link and templates ---------------------------------------------------------------


class RunAdminSite(admin.AdminSite):
    pass


run_admin_site = RunAdminSite(name="admin")
run_admin_site.register(TaskRun)
urlpatterns = [path("admin/", run_admin_site.urls)]


@pytest.mark.django_db(transaction=True)
def test_the_email_links_to_the_run_in_the_admin(smtp, make_handler, settings):
    settings.ROOT_URLCONF = __name__
    settings.ROCKET_ADMIN_BASE_URL = "https://ops.example.com/"
    task = Task.objects.create(name="nightly", func="tests.support.tasks.fails")
    run = TaskRun.objects.create(task=task, status=RunStatus.FAIL)
    handler = make_handler()
    handler.handle(failure(run_id=str(run.run_id)))
    assert handler.shutdown(timeout=5)
    html, text = parts(smtp.inbox.wait_for(1)[0])
    url = f"https://ops.example.com/admin/django_rocket/taskrun/{run.run_id}/change/"
    assert f'href="{url}"' in html
    assert url in text


@pytest.mark.django_db
def test_the_admin_link_asks_nothing_of_the_database(settings, django_assert_num_queries):
    """An alert may be about the database being away: its link must not wait for it."""
    settings.ROOT_URLCONF = __name__
    settings.ROCKET_ADMIN_BASE_URL = "https://ops.example.com/"
    run_id = "0193a6c4-1f2e-7b3a-9c4d-5e6f7a8b9c0d"
    with django_assert_num_queries(0):
        url = admin_url_for(run_id.replace("-", ""))  # the hex form, as rows store it
    assert url == f"https://ops.example.com/admin/django_rocket/taskrun/{run_id}/change/"
    assert admin_url_for("not a run id") is None
    assert admin_url_for(None) is None


def test_without_a_base_url_there_is_no_link(smtp, make_handler):
    handler = make_handler()
    handler.handle(failure())
    assert handler.shutdown(timeout=5)
    html, _ = parts(smtp.inbox.wait_for(1)[0])
    assert "href" not in html


def test_templates_can_be_replaced(smtp, make_handler, settings, tmp_path):
    (tmp_path / "alert.html").write_text("<p>Custom: {{ task_name }} / {{ exc_text }}</p>")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    handler = make_handler(html="alert.html", text=None)
    handler.handle(failure(exc_text="<oops>"))
    assert handler.shutdown(timeout=5)
    (message,) = smtp.inbox.wait_for(1)
    html, text = parts(message)
    assert html.strip() == "<p>Custom: nightly / &lt;oops&gt;</p>"
    assert text == ""


# --- installing on the task logger ----------------------------------------------------------


def test_install_and_shutdown_alerts(smtp, settings):
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"], "throttle": 0}}
    task_logger = logging.getLogger("django_rocket.task")
    handler = install_alerts()
    try:
        assert handler in task_logger.handlers
        assert handler.config.throttle == 0
        task_logger.error("Task 'nightly' fail", extra={"task_name": "nightly", "action": "fail"})
    finally:
        assert shutdown_alerts(timeout=5)
    assert handler not in task_logger.handlers
    assert smtp.inbox.wait_for(1)[0]["Subject"] == "[django-rocket] Task nightly failed"
    assert shutdown_alerts(timeout=1)  # nothing installed any more


def test_install_without_email_alerts_does_nothing(settings):
    settings.ROCKET_ALERTS = {}
    assert install_alerts() is None


def test_install_warns_when_the_logger_level_hides_the_alert_level(smtp, settings, caplog):
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"], "level": "DEBUG"}}
    try:
        install_alerts()
    finally:
        shutdown_alerts(timeout=1)
    assert "set its level in LOGGING" in caplog.text


def test_config_from_settings(settings):
    settings.ROCKET_ALERTS = {
        "email": {
            "receivers": "ops@example.com",
            "level": "warning",
            "throttle": "1 hour",
            "timeout": "3 seconds",
            "text": None,
        }
    }
    config = EmailConfig.from_settings()
    assert config == EmailConfig(
        receivers=("ops@example.com",),
        level=logging.WARNING,
        throttle=3600.0,
        timeout=3.0,
        text=None,
    )


# --- sendtestalert --------------------------------------------------------------------------


def test_sendtestalert_sends_and_says_so(smtp, settings, capsys):
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com", "dev@example.com"]}}
    call_command("sendtestalert")
    out = capsys.readouterr().out
    assert out.strip() == (
        f"Sent a test alert to ops@example.com, dev@example.com through 127.0.0.1:{smtp.port}."
    )
    (message,) = smtp.inbox.wait_for(1)
    assert message["Subject"] == "[django-rocket] Test alert: email alerts work"
    assert smtp.inbox.envelopes[0][1] == ["ops@example.com", "dev@example.com"]


def test_sendtestalert_reports_a_refused_connection_in_one_line(settings):
    port = free_port()
    use_smtp(settings, port)
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"]}}
    with pytest.raises(CommandError) as info:
        call_command("sendtestalert")
    message = str(info.value)
    assert message.startswith(f"Could not send the test alert through 127.0.0.1:{port}: ")
    assert "ConnectionRefusedError" in message
    assert "\n" not in message


def test_sendtestalert_reports_a_silent_server(settings):
    with SilentServer() as silent:
        use_smtp(settings, silent.port)
        settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"], "timeout": 0.3}}
        with pytest.raises(CommandError, match=r"the SMTP server did not answer in time$"):
            call_command("sendtestalert")


def test_sendtestalert_needs_email_alerts(settings):
    settings.ROCKET_ALERTS = {}
    with pytest.raises(CommandError, match="ROCKET_ALERTS has no 'email' entry"):
        call_command("sendtestalert")


# --- system checks --------------------------------------------------------------------------


def alert_check_ids() -> list[str]:
    return [m.id for m in checks.run_checks() if re.fullmatch(r"django_rocket\.[EW]04\d", m.id)]


@pytest.fixture
def email_host(settings):
    use_smtp(settings, 587, host="smtp.example.com")


def test_a_valid_configuration_passes(settings, email_host):
    settings.ROCKET_ALERTS = {
        "email": {
            "receivers": ["ops@example.com", "Ops Team <team@example.org>"],
            "subject": "[prod] {{ headline }}",
            "html": "django_rocket/alerts/email.html",
            "text": None,
            "level": "ERROR",
            "throttle": "15 minutes",
            "timeout": 10,
        }
    }
    settings.ROCKET_ADMIN_BASE_URL = "https://ops.example.com"
    assert alert_check_ids() == []


@pytest.mark.parametrize(
    ("value", "expected_id", "fragment"),
    [
        (["ops@example.com"], "django_rocket.E040", "ROCKET_ALERTS must be a dict, not list."),
        ({"slack": {}}, "django_rocket.E040", "ROCKET_ALERTS has an unknown key 'slack'."),
        ({"email": "ops@example.com"}, "django_rocket.E040", "must be a dict, not str"),
        (
            {"email": {"receivers": ["a@example.com"], "receiver": ["b@example.com"]}},
            "django_rocket.E041",
            "unknown key 'receiver'",
        ),
        ({"email": {"receivers": ["ops"]}}, "django_rocket.E042", "has 'ops', not an email"),
        ({"email": {"receivers": []}}, "django_rocket.E042", "[] is not a list of addresses"),
        ({"email": {}}, "django_rocket.E042", "None is not a list of addresses"),
        (
            {"email": {"receivers": ["a@example.com\r\nBcc: x@example.com"]}},
            "django_rocket.E042",
            "not an email address",
        ),
        (
            {"email": {"receivers": ["a@example.com"], "throttle": "15 minuets"}},
            "django_rocket.E043",
            "'15 minuets' is not a duration",
        ),
        (
            {"email": {"receivers": ["a@example.com"], "level": "LOUD"}},
            "django_rocket.E044",
            "'LOUD' is not a logging level",
        ),
        (
            {"email": {"receivers": ["a@example.com"], "timeout": 0}},
            "django_rocket.E045",
            "0 is not a positive duration",
        ),
        (
            {"email": {"receivers": ["a@example.com"], "html": "missing/alert.html"}},
            "django_rocket.E046",
            "'missing/alert.html', which cannot be found",
        ),
        (
            {"email": {"receivers": ["a@example.com"], "html": None, "text": None}},
            "django_rocket.E046",
            "neither an html nor a text template",
        ),
        (
            {"email": {"receivers": ["a@example.com"], "subject": "{% if %}"}},
            "django_rocket.E046",
            "is not a valid template",
        ),
    ],
)
def test_invalid_alerts_are_reported(settings, email_host, value, expected_id, fragment):
    settings.ROCKET_ALERTS = value
    messages = [m for m in alerts.check_alerts() if m.id == expected_id]
    assert messages, alerts.check_alerts()
    assert any(fragment in m.msg for m in messages), [m.msg for m in messages]
    assert all(m.hint for m in messages)
    assert expected_id in alert_check_ids()


def test_unknown_key_suggests_the_close_one(settings, email_host):
    settings.ROCKET_ALERTS = {"email": {"receivers": ["a@example.com"], "throtle": "1 hour"}}
    (message,) = alerts.check_alerts()
    assert message.hint.startswith("Did you mean 'throttle'?")


def test_alerts_without_email_host_warn(settings):
    settings.ROCKET_ALERTS = {"email": {"receivers": ["a@example.com"]}}
    # Under Django's test runner the backend is the memory one, which needs no host.
    assert alerts.check_alerts() == []
    with deprecated_email_settings(EMAIL_BACKEND=mailer.SMTP_BACKEND):
        (message,) = alerts.check_alerts()
        assert message.id == "django_rocket.W040"
        assert "no SMTP host is configured (EMAIL_HOST or MAILERS); it would use 'localhost'" in (
            message.msg
        )
        assert "sendtestalert" in message.hint
        assert ("MAILERS = {" in message.hint) is (django.VERSION >= (6, 1))


def test_bad_admin_base_url(settings):
    settings.ROCKET_ADMIN_BASE_URL = "ops.example.com"
    (message,) = alerts.check_alerts()
    assert message.id == "django_rocket.E047"
    assert "'ops.example.com'" in message.msg


def test_invalid_settings_refuse_to_install(settings):
    settings.ROCKET_ALERTS = {"email": {"receivers": ["nobody"]}}
    with pytest.raises(Exception, match=r"not valid: .*'nobody'"):
        install_alerts()


# --- the SMTP server: MAILERS (Django 6.1+) or EMAIL_* --------------------------------------


@pytest.fixture
def mailers(settings, monkeypatch):
    """Set MAILERS; before Django 6.1 (which ignores it) make the alerts read it anyway."""
    if not mailer.MAILERS_SUPPORTED:
        monkeypatch.setattr(mailer, "MAILERS_SUPPORTED", True)

    def set_mailers(**entries: dict) -> None:
        settings.MAILERS = entries

    return set_mailers


@contextmanager
def deprecated_email_settings(**values):
    """Override EMAIL_* settings, accepting Django 6.1's warning for setting and restoring them.

    Only the override is excused: reading them (what django-rocket does) must not warn.
    """
    override = override_settings(**values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # RemovedInDjango2028Warning
        override.enable()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            override.disable()


def mailer_entry(**options) -> dict:
    """A MAILERS entry for Django's SMTP backend at smtp.example.com."""
    return {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {"host": "smtp.example.com", **options},
    }


class SMTPSubclass(SMTPEmailBackend):
    """A project's own SMTP backend."""


def test_smtp_settings_from_a_mailer(mailers):
    mailers(
        default={
            "OPTIONS": {  # no BACKEND: Django's SMTP backend
                "host": "smtp.example.com",
                "use_tls": True,
                "username": "scheduler@example.com",
                "password": "secret",
                "timeout": 7,
            }
        }
    )
    assert alerts.smtp_settings() == alerts.SMTPSettings(
        host="smtp.example.com",
        port=587,
        username="scheduler@example.com",
        password="secret",
        use_tls=True,
        timeout=7,
    )


@pytest.mark.parametrize(
    ("options", "port"),
    [({}, 25), ({"use_tls": True}, 587), ({"use_ssl": True}, 465), ({"port": "2525"}, 2525)],
)
def test_a_mailer_port_defaults_like_django(mailers, options, port):
    mailers(default=mailer_entry(**options))
    assert alerts.smtp_settings().port == port


@pytest.mark.skipif(django.VERSION < (6, 1), reason="mail.mailers is new in Django 6.1")
@pytest.mark.parametrize(
    "options",
    [{}, {"use_tls": True}, {"use_ssl": True, "timeout": 3}, {"username": "u", "password": "p"}],
)
def test_a_mailer_resolves_as_djangos_smtp_backend_does(mailers, options):
    from django.core import mail

    mailers(default=mailer_entry(**options))
    backend = mail.mailers["default"]
    smtp = alerts.smtp_settings()
    for name in ("host", "port", "username", "password", "use_tls", "use_ssl", "timeout"):
        assert getattr(smtp, name) == getattr(backend, name), name


def test_the_smtp_options_are_those_of_djangos_smtp_backend():
    parameters = inspect.signature(SMTPEmailBackend.__init__).parameters
    accepted = {name for name, p in parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD}
    assert accepted - {"self"} == mailer.SMTP_OPTIONS


def test_alerts_send_through_the_mailer_key(mailers, settings, capsys):
    with SMTPServer() as server:
        mailers(
            default={"BACKEND": "django.core.mail.backends.console.EmailBackend"},
            alerts=mailer_entry(host="127.0.0.1", port=server.port),
        )
        settings.DEFAULT_FROM_EMAIL = "rocket@example.com"
        settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"], "mailer": "alerts"}}
        assert alerts.check_alerts() == []
        assert EmailConfig.from_settings().mailer == "alerts"
        call_command("sendtestalert")
        assert f"through 127.0.0.1:{server.port}." in capsys.readouterr().out
        assert len(server.inbox.wait_for(1)) == 1
        handler = install_alerts()
        try:
            logging.getLogger("django_rocket.task").error(
                "Task 'nightly' fail", extra={"task_name": "nightly", "action": "fail"}
            )
        finally:
            assert shutdown_alerts(timeout=5)
        assert handler.sent == 1
        assert server.inbox.wait_for(2)[1]["Subject"] == "[django-rocket] Task nightly failed"


def test_the_timeout_defaults_to_the_mailers(mailers, settings):
    mailers(default=mailer_entry(timeout=7))
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"]}}
    assert EmailConfig.from_settings().timeout == 7.0
    mailers(default=mailer_entry())
    assert EmailConfig.from_settings().timeout == mailer.DEFAULT_TIMEOUT


@pytest.mark.parametrize(
    ("entries", "email", "fragment"),
    [
        (
            {"default": mailer_entry()},
            {"mailer": "alerts"},
            "the mailer 'alerts', which is not in MAILERS (it has 'default')",
        ),
        (
            {"default": {"BACKEND": "django.conf.Settings"}},
            {},
            "uses the backend 'django.conf.Settings', which cannot be imported as a Django email",
        ),
        (
            {"default": {"BACKEND": "no.such.Backend", "OPTIONS": {"host": "x"}}},
            {},
            "uses the backend 'no.such.Backend'",
        ),
        (
            {"default": mailer_entry(use_tsl=True)},
            {},
            "OPTIONS the SMTP backend does not accept: 'use_tsl'",
        ),
        ({"default": {"OPTIONS": {"port": 25}}}, {}, "has no SMTP host: OPTIONS['host'] is None"),
        (
            {"default": mailer_entry(use_tls=True, use_ssl=True)},
            {},
            "sets both 'use_tls' and 'use_ssl'",
        ),
        ({"default": mailer_entry(port="smtp")}, {}, "OPTIONS['port'] 'smtp' is not a port"),
        ({"default": mailer_entry()}, {"mailer": ["default"]}, "is not a MAILERS alias"),
    ],
)
def test_an_unusable_mailer_is_e048(mailers, settings, entries, email, fragment):
    mailers(**entries)
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"], **email}}
    (message,) = alerts.check_alerts()
    assert message.id == "django_rocket.E048"
    assert fragment in message.msg, message.msg
    assert message.hint
    assert "django_rocket.E048" in alert_check_ids()
    with pytest.raises(ImproperlyConfigured, match=r"not valid: .*Run manage\.py check"):
        install_alerts()
    with pytest.raises(CommandError):
        call_command("sendtestalert")


@pytest.mark.skipif(django.VERSION < (6, 1), reason="mail.mailers is new in Django 6.1")
@pytest.mark.parametrize(
    "options", [{"use_tsl": True}, {"use_tls": True, "use_ssl": True}, {"host": None}]
)
def test_django_refuses_the_mailers_e048_refuses(mailers, options):
    from django.core import mail

    mailers(default=mailer_entry(**options))
    with pytest.raises(mail.InvalidMailer):
        mail.mailers["default"]
    with pytest.raises(alerts.MailerError):
        alerts.smtp_settings()


def test_a_subclass_of_the_smtp_backend_is_accepted(mailers, settings):
    mailers(default={"BACKEND": f"{__name__}.SMTPSubclass", "OPTIONS": {"host": "smtp.x.org"}})
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"]}}
    assert alerts.check_alerts() == []
    assert alerts.smtp_settings().host == "smtp.x.org"


def test_the_test_runners_memory_mailer_is_not_an_error(mailers, settings):
    # Django's test runner replaces every MAILERS entry with the memory backend.
    from django.core import mail

    assert hasattr(mail, "outbox")  # set up by the test environment
    mailers(default={"BACKEND": "django.core.mail.backends.locmem.EmailBackend"})
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"]}}
    assert alerts.check_alerts() == []
    assert EmailConfig.from_settings().timeout == mailer.DEFAULT_TIMEOUT


def test_a_mailer_key_without_mailers_is_e048(settings):
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"], "mailer": "alerts"}}
    (message,) = alerts.check_alerts()
    assert message.id == "django_rocket.E048"
    why = "MAILERS is not defined" if django.VERSION >= (6, 1) else "MAILERS needs Django 6.1"
    assert f"'mailer'] is 'alerts', but {why}" in message.msg


def test_the_default_mailer_key_without_mailers_uses_email_settings(settings, email_host):
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"], "mailer": "default"}}
    assert alerts.check_alerts() == []


def test_email_settings_are_read_without_a_deprecation_warning(settings):
    settings.ROCKET_ALERTS = {"email": {"receivers": ["ops@example.com"]}}
    with (
        deprecated_email_settings(
            EMAIL_HOST="smtp.example.com",
            EMAIL_PORT=465,
            EMAIL_HOST_USER="scheduler@example.com",
            EMAIL_HOST_PASSWORD="secret",
            EMAIL_USE_SSL=True,
            EMAIL_TIMEOUT=4,
        ),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        smtp = alerts.smtp_settings()
        assert alerts.check_alerts() == []
        assert EmailConfig.from_settings().timeout == 4.0
    assert [str(w.message) for w in caught] == []
    assert smtp == alerts.SMTPSettings(
        host="smtp.example.com",
        port=465,
        username="scheduler@example.com",
        password="secret",
        use_ssl=True,
        timeout=4,
    )


def test_alerts_send_through_email_settings(settings, make_handler):
    # Deprecated on Django 6.1 but still working: the sender thread reads them, silently
    # (a warning there would be an error, and the email would not be sent).
    settings.DEFAULT_FROM_EMAIL = "rocket@example.com"
    with (
        SMTPServer() as server,
        deprecated_email_settings(
            EMAIL_BACKEND=mailer.SMTP_BACKEND, EMAIL_HOST="127.0.0.1", EMAIL_PORT=server.port
        ),
    ):
        handler = make_handler()
        handler.handle(failure())
        assert handler.shutdown(timeout=5)
        assert handler.sent == 1
        assert len(server.inbox.wait_for(1)) == 1


@pytest.mark.skipif(django.VERSION >= (6, 1), reason="Django 6.1 reads MAILERS")
def test_mailers_is_ignored_before_django_6_1(settings, email_host):
    settings.MAILERS = {"default": mailer_entry(host="mailers.example.com")}
    assert alerts.smtp_settings().host == "smtp.example.com"


def test_a_client_certificate_is_loaded(mailers, tmp_path):
    missing = tmp_path / "missing.pem"
    mailers(default=mailer_entry(use_tls=True, ssl_certfile=str(missing)))
    assert alerts.smtp_settings().ssl_certfile == str(missing)
    with pytest.raises(FileNotFoundError):
        sending.smtp_sender(1.0)


def test_a_handler_closed_before_its_thread_starts(make_handler, monkeypatch):
    """``dictConfig`` in a run's thread closes every handler logging knows of, one being
    made meanwhile too (the scheduler putting the alerts back): its close raised
    "cannot join thread before it is started" into that run."""

    class ClosedFirst(threading.Thread):
        def start(self) -> None:
            if self.name == "rocket-alerts":
                self._target.__self__.close()  # what the other thread's dictConfig did
            super().start()

    monkeypatch.setattr(alerts.handler.threading, "Thread", ClosedFirst)
    handler = make_handler()
    assert handler.stopped
    handler._thread.join(5)
    assert not handler._thread.is_alive()  # it found the stop in its queue
