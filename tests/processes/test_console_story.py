"""What ``runscheduler`` prints on stderr, with and without the project's LOGGING for it."""

import re

import pytest

pytestmark = [pytest.mark.slow]

TASKS = {
    "ok": {"func": "tests.support.tasks.noop", "start_cond": "true", "execution": "main"},
    "bad": {"func": "tests.support.tasks.fails", "start_cond": "true", "execution": "main"},
}
# Django's defaults only: nothing routes django_rocket's records anywhere.
UNCONFIGURED = {"LOGGING": {"version": 1, "disable_existing_loggers": False}}
BOOM = "ValueError: boom: the task failed on purpose"
STAMP = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "


def one_cycle(scheduler_process, settings: dict, *args: str) -> str:
    proc = scheduler_process(TASKS, settings, ("--once", *args))
    code = proc.wait()
    output = proc.output()
    assert code == 0, output
    return output


def test_without_logging_settings_the_scheduler_tells_its_story(scheduler_process):
    output = one_cycle(scheduler_process, UNCONFIGURED)
    started = STAMP + r"INFO django_rocket\.scheduler: Scheduler \S+:\d+ started with 2 task"
    assert re.search(started, output, re.M), output
    assert re.search(STAMP + r"INFO django_rocket\.scheduler: Scheduler stopped", output, re.M)
    failed = STAMP + r"ERROR django_rocket\.task: Task 'bad' fail: " + BOOM + r"\nTraceback"
    assert re.search(failed, output, re.M), output
    # Routine run events stay out of the console at the default verbosity.
    assert "Task 'ok'" not in output, output


def test_verbosity_2_prints_every_run_event(scheduler_process):
    output = one_cycle(scheduler_process, UNCONFIGURED, "--verbosity", "2")
    assert re.search(STAMP + r"INFO django_rocket\.task: Task 'ok' run", output, re.M), output
    assert re.search(STAMP + r"INFO django_rocket\.task: Task 'ok' success", output, re.M)


def test_verbosity_0_prints_only_warnings_and_errors(scheduler_process):
    output = one_cycle(scheduler_process, UNCONFIGURED, "--verbosity", "0")
    assert "started with" not in output, output
    # Python's last-resort handler: the message alone.
    assert re.search(r"^Task 'bad' fail: " + BOOM + "$", output, re.M), output


def test_the_projects_logging_decides_and_nothing_is_printed_twice(scheduler_process):
    # tests/settings.py routes django_rocket to stderr with its own format, at INFO.
    output = one_cycle(scheduler_process, {}, "--verbosity", "3")
    assert len(re.findall(r"started with", output)) == 1, output
    assert len(re.findall(r"Task 'bad' fail: ValueError: boom", output)) == 1, output
    assert re.search(r"INFO django_rocket\.task: Task 'ok' success", output), output
    assert "DEBUG" not in output, output


def test_a_handler_on_the_root_logger_is_left_to_decide(scheduler_process):
    settings = {
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"root": {"format": "ROOT %(levelname)s %(message)s"}},
            "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "root"}},
            "root": {"handlers": ["h"], "level": "WARNING"},
        }
    }
    output = one_cycle(scheduler_process, settings)
    assert "started with" not in output, output  # the project keeps INFO out
    failures = re.findall(r"^.*Task 'bad' fail.*$", output, re.M)
    assert failures == [f"ROOT ERROR Task 'bad' fail: {BOOM}"], output
