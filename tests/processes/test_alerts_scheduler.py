"""Alerts with a real ``runscheduler`` subprocess and a real SMTP server."""

import itertools
import time

import pytest

from django_rocket.models import RunStatus, TaskRun
from tests.support.smtp import SilentServer, SMTPServer, email_settings, free_port, parts

pytestmark = [pytest.mark.slow]

RECEIVERS = ["ops@example.com"]


def task(func: str, cond: str = "every('1 hour')", execution: str = "process", **extra) -> dict:
    return {"func": func, "start_cond": cond, "execution": execution, **extra}


@pytest.fixture
def smtp():
    with SMTPServer() as server:
        yield server


def alert_settings(port: int, **email) -> dict:
    return {**email_settings(port), "ROCKET_ALERTS": {"email": {"receivers": RECEIVERS, **email}}}


@pytest.mark.parametrize("execution", ["process", "thread", "main"])
def test_a_failing_run_sends_exactly_one_email(scheduler_process, smtp, execution):
    proc = scheduler_process(
        {"nightly": task("tests.support.tasks.fails", execution=execution)},
        alert_settings(smtp.port),
        args=("--once",),
    )
    assert proc.wait() == 0, proc.output()
    run = TaskRun.objects.get()
    assert run.status == RunStatus.FAIL
    (message,) = smtp.inbox.wait_for(1)
    time.sleep(0.2)
    assert len(smtp.inbox.messages) == 1
    assert message["Subject"] == "[django-rocket] Task nightly failed"
    html, text = parts(message)
    assert str(run.run_id) in text
    assert "Traceback (most recent call last)" in text
    assert "ValueError: boom: the task failed on purpose" in text
    assert "ValueError: boom: the task failed on purpose" in html


def test_the_reference_recipe_through_logging(scheduler_process, smtp):
    """A Red Mail EmailHandler on django_rocket.task, configured in LOGGING, as documented."""
    logging_setting = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "stderr": {"class": "logging.StreamHandler"},
            "task_email": {
                "class": "redmail.log.EmailHandler",
                "level": "ERROR",
                "host": "127.0.0.1",
                "port": smtp.port,
                "use_starttls": False,
                "sender": "rocket@example.com",
                "receivers": RECEIVERS,
                "subject": "Task failed",
                "html": (
                    "<h2>Task failed: {{ record.task_name }}</h2>"
                    "<code><pre>{{ record.exc_text }}</pre></code>"
                ),
            },
        },
        "loggers": {
            "django_rocket": {"handlers": ["stderr"], "level": "INFO"},
            "django_rocket.task": {"handlers": ["task_email"], "level": "INFO"},
        },
    }
    proc = scheduler_process(
        {"nightly": task("tests.support.tasks.fails")},
        {"LOGGING": logging_setting},
        args=("--once",),
    )
    assert proc.wait() == 0, proc.output()
    (message,) = smtp.inbox.wait_for(1, what=proc.output)
    assert message["Subject"] == "Task failed"
    html, _ = parts(message)
    assert "<h2>Task failed: nightly</h2>" in html
    assert "ValueError: boom: the task failed on purpose" in html


@pytest.mark.parametrize("execution", ["process", "thread"])
def test_records_logged_inside_a_run_reach_the_alerts(scheduler_process, smtp, execution):
    proc = scheduler_process(
        {"noisy": task("tests.support.alert_tasks.logs_an_error", execution=execution)},
        alert_settings(smtp.port),
        args=("--once",),
    )
    assert proc.wait() == 0, proc.output()
    assert TaskRun.objects.get().status == RunStatus.SUCCESS
    (message,) = smtp.inbox.wait_for(1)
    assert (
        message["Subject"]
        == "[django-rocket] Task logs_an_error: error Task note: disk almost full"
    )


@pytest.mark.parametrize("server", ["closed port", "silent server"])
def test_a_broken_smtp_server_does_not_delay_runs_or_change_them(scheduler_process, server):
    silent = SilentServer() if server == "silent server" else None
    port = silent.port if silent else free_port()
    tasks = {
        "bad": task("tests.support.tasks.fails", "every('1 second')", execution="main"),
        "good": task("tests.support.tasks.noop", "every('1 second')", execution="thread"),
    }
    # Every event of every run is an alert, none throttled: the worst case for the queue.
    settings = alert_settings(port, level="INFO", throttle=0, timeout=1)
    try:
        if silent:
            silent.__enter__()
        started = time.monotonic()
        proc = scheduler_process(tasks, settings, args=("--duration", "5"))
        assert proc.wait(timeout=60) == 0
        elapsed = time.monotonic() - started
        output = proc.output()
    finally:
        if silent:
            silent.__exit__(None, None, None)
    assert elapsed < 5 + 15, output  # start-up, the run, and a bounded alert flush
    assert "Could not send the alert email" in output
    for name, status in (("bad", RunStatus.FAIL), ("good", RunStatus.SUCCESS)):
        runs = list(TaskRun.objects.filter(task__name=name).order_by("started_at"))
        assert len(runs) >= 4, (name, len(runs), output)
        assert {r.status for r in runs} == {status}
        gaps = [(b.started_at - a.started_at).total_seconds() for a, b in itertools.pairwise(runs)]
        assert max(gaps) <= 2.0, (name, gaps)


# Django's own LOGGING example, without "disable_existing_loggers": False (its default is True).
LOGGING_THAT_DISABLES = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["stderr"], "level": "INFO"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
}


@pytest.mark.parametrize(
    ("func", "logging_setting", "said"),
    [
        ("sets_django_up_again", None, ["closed the email alerts' handler"]),
        (
            "sets_django_up_again",
            LOGGING_THAT_DISABLES,
            ["disabled django_rocket, django_rocket.task, django_rocket.scheduler"],
        ),
        ("disables_logging", None, ["it called logging.disable(CRITICAL), which"]),
    ],
    ids=["own", "disabling", "logging.disable"],
)
def test_a_task_that_configures_logging_again_does_not_stop_the_alerts(
    scheduler_process, smtp, func, logging_setting, said
):
    """A run calls ``django.setup()`` (a task module written as a script), then one fails.

    Django's ``dictConfig`` closed the alerts' handler, which then dropped every record:
    no alert went out until the scheduler restarted, and nothing said so. With a LOGGING
    that leaves ``disable_existing_loggers`` at True it also disabled django_rocket's
    loggers, so run events stopped too. The scheduler now puts both back, and says why.
    """
    settings = alert_settings(smtp.port)
    if logging_setting is not None:
        settings["LOGGING"] = logging_setting
    proc = scheduler_process(
        {
            "setup": task(f"tests.support.tasks.{func}", execution="thread"),
            "nightly": task(
                "tests.support.tasks.fails", "after_success('setup')", execution="thread"
            ),
        },
        settings,
    )
    (message,) = smtp.inbox.wait_for(1, limit=20, what=proc.output)
    assert message["Subject"] == "[django-rocket] Task nightly failed"
    proc.wait_for_output("Logging was configured again while the scheduler ran")
    proc.stop()
    out = proc.output()
    assert "Task 'nightly' fail" in out  # the run event, on the console too
    # django.setup() configures logging twice (Django's defaults, then LOGGING), in the
    # run's thread: the scheduler may look in between, and say what it put back in two
    # warnings, one of which may meet the second configuration half done.
    warnings = " / ".join(line for line in out.splitlines() if "configured again" in line)
    for fragment in said:
        assert fragment in warnings, warnings
    if logging_setting is None:
        assert "disabled django_rocket" not in warnings, warnings
    assert TaskRun.objects.get(task__name="nightly").status == RunStatus.FAIL


def test_runtask_alerts_a_function_that_configures_logging_again(scheduler_process, smtp):
    settings = {**alert_settings(smtp.port), "LOGGING": LOGGING_THAT_DISABLES}
    proc = scheduler_process(
        {"nightly": task("tests.support.tasks.sets_django_up_again_then_fails", "false")},
        settings,
        ("nightly", "--wait"),
        command="runtask",
    )
    assert proc.wait() == 1, proc.output()
    (message,) = smtp.inbox.wait_for(1, limit=10, what=proc.output)
    assert message["Subject"] == "[django-rocket] Task nightly failed"
    assert "Logging was configured again while" in proc.output()
