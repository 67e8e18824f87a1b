"""ROCKET_SILENCE_*: contained errors keep the loop alive, others stop it cleanly; both log."""

import logging
from datetime import timedelta

import pytest

from django_rocket.conditions import parse
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, TaskRun
from django_rocket.registry import TaskSpec
from tests.support.triggers import allow_run_updates, refuse_run_updates

pytestmark = pytest.mark.django_db(transaction=True)

OK = {"func": "tests.support.tasks.noop", "start_cond": "every('1 hour')", "execution": "main"}


@pytest.fixture
def exploding(settings):
    settings.ROCKET_CONDITION_MODULES = ["tests.support.conditions_for_tests"]
    settings.ROCKET_TASKS = {
        "boom": {**OK, "start_cond": "explodes"},
        "ok": OK,
    }


def scheduler_errors(caplog) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "django_rocket.scheduler" and r.levelname == "ERROR"
    ]


def test_raising_condition_is_false_when_silenced(settings, exploding, caplog):
    settings.ROCKET_SILENCE_COND_CHECK = True
    assert Scheduler(once=True).run() == 0
    assert list(TaskRun.objects.values_list("task__name", flat=True)) == ["ok"]
    (record,) = scheduler_errors(caplog)
    assert "'boom'" in record.getMessage()
    assert "this condition always raises" in str(record.exc_info[1])


def test_raising_condition_shuts_down_when_not_silenced(settings, exploding, caplog):
    assert Scheduler(once=True).run() == 1
    assert any("Shutting down" in r.getMessage() for r in scheduler_errors(caplog))
    assert all(r.status != RunStatus.RUNNING for r in TaskRun.objects.all())


def unstartable() -> dict[str, TaskSpec]:
    # The system check refuses such a task; the scheduler must still cope with one.
    return {
        "bad": TaskSpec(
            "bad", "tests.support.tasks.missing", parse("every('1 hour')"), execution="thread"
        ),
        "ok": TaskSpec(
            "ok", "tests.support.tasks.noop", parse("every('1 hour')"), execution="thread"
        ),
    }


@pytest.mark.parametrize(("silenced", "code"), [(True, 0), (False, 1)])
def test_task_that_cannot_start_is_a_failed_run(settings, caplog, silenced, code):
    settings.ROCKET_SILENCE_TASK_PRERUN = silenced
    assert Scheduler(unstartable(), once=True).run() == code
    bad = TaskRun.objects.get(task__name="bad")
    assert bad.status == RunStatus.FAIL
    assert "could not be started" in bad.message
    assert "missing" in bad.exc_text
    assert TaskRun.objects.get(task__name="ok").status == RunStatus.SUCCESS
    (record,) = scheduler_errors(caplog)  # logged with its traceback either way
    assert record.exc_info is not None
    assert "'bad'" in record.getMessage()


def block_run_updates() -> None:
    refuse_run_updates("rocket_block", "the disk is on fire")


def unblock_run_updates() -> None:
    allow_run_updates("rocket_block")


def test_failed_log_writes_are_retried_kept_and_written_later(settings, clock, caplog, tmp_path):
    settings.ROCKET_TASKS = {"ok": OK}
    settings.ROCKET_SILENCE_TASK_LOGGING = True
    settings.ROCKET_LOG_RETRY = {"attempts": 3, "backoff": 1, "max_backoff": 4}
    settings.ROCKET_SPOOL_DIR = str(tmp_path)
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    block_run_updates()
    try:
        scheduler.tick()  # starts the run (an INSERT) and runs it in the loop
        for _ in range(6):
            clock.advance(timedelta(seconds=5))
            scheduler.tick()
        assert not scheduler.stop_requested
        assert TaskRun.objects.get().status == RunStatus.RUNNING
        spooled = list(tmp_path.glob("spool-*.jsonl"))
        assert len(spooled) == 1
        assert '"status": "success"' in spooled[0].read_text()
        assert any("kept in memory" in r.getMessage() for r in scheduler_errors(caplog))
    finally:
        unblock_run_updates()
    clock.advance(timedelta(seconds=5))
    scheduler.tick()
    assert TaskRun.objects.get().status == RunStatus.SUCCESS
    assert not list(tmp_path.glob("spool-*.jsonl"))
    scheduler.request_stop()
    scheduler.shutdown()


def test_unsilenced_log_failure_stops_and_spools_for_the_next_start(settings, clock, tmp_path):
    settings.ROCKET_TASKS = {"ok": OK}
    settings.ROCKET_LOG_RETRY = {"attempts": 2, "backoff": 1, "max_backoff": 1}
    settings.ROCKET_SPOOL_DIR = str(tmp_path)
    block_run_updates()
    try:
        assert Scheduler(clock=clock).run() == 1
        assert TaskRun.objects.get().status == RunStatus.RUNNING
        assert list(tmp_path.glob("spool-*.jsonl"))
    finally:
        unblock_run_updates()
    # The next scheduler writes the spooled finish before anything else.
    next_one = Scheduler(clock=clock, once=True)
    assert next_one.run() == 0
    run = TaskRun.objects.get()
    assert run.status == RunStatus.SUCCESS
    assert run.runtime is not None
    assert not list(tmp_path.glob("spool-*.jsonl"))


def test_two_tasks_that_cannot_start_still_give_the_running_ones_their_grace(caplog):
    """Two shut-downs in one tick counted as a second Ctrl-C: no grace, runs terminated.

    Found by bench/soak.py: two ``main`` tasks that could not start in one tick, and the
    worker's and threads' runs in progress were given up at once.
    """
    tasks = unstartable()
    tasks["bad2"] = TaskSpec(
        "bad2", "tests.support.tasks.missing", parse("every('1 hour')"), execution="thread"
    )
    tasks["slow"] = TaskSpec(
        "slow",
        "tests.support.soak_tasks.ok",
        parse("every('1 hour')"),
        execution="thread",
        parameters={"task": "slow", "period": 3600, "sleep": 0.5},
    )
    scheduler = Scheduler(tasks, once=True)
    assert scheduler.run() == 1
    assert not scheduler.force_stop
    assert TaskRun.objects.get(task__name="slow").status == RunStatus.SUCCESS
    assert TaskRun.objects.filter(task__name__startswith="bad", status=RunStatus.FAIL).count() == 2


def test_a_second_stop_request_still_skips_the_grace():
    scheduler = Scheduler({})
    scheduler.fail_stop("an error")
    assert scheduler.stop_requested and not scheduler.force_stop
    scheduler.request_stop("received SIGTERM")
    assert not scheduler.force_stop  # the first signal: the grace applies
    scheduler.request_stop("received SIGINT")
    assert scheduler.force_stop
