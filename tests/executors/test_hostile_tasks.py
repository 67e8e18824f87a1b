"""Issue 17: nothing a task function raises or returns can hang, stop or fool the scheduler.

Each case runs in every execution mode through real scheduler ticks (a FakeClock drives
the scheduler's time; a real child process or thread runs the task, awaited with a
bounded wait), and through ``runtask --wait``. Each must end as one recorded run with a
readable message; none may stay ``running`` or stop the scheduler.
"""

from io import StringIO

import pytest
from django.core.management import call_command

from django_rocket.engine.scheduler import Scheduler
from django_rocket.executors.outcome import (
    MESSAGE_MAX_CHARS,
    call_task,
    cut_traceback,
    encode_result,
    traceback_limit,
)
from django_rocket.models import RunStatus, TaskRun
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MODES = ("main", "thread", "async", "process")
T = "tests.support.tasks."


def func_for(name: str, mode: str) -> str:
    """The sync function, or its ``async_`` twin for execution "async"."""
    return T + (f"async_{name}" if mode == "async" else name)


def run_by_scheduler(settings, clock, func: str, mode: str, **extra) -> TaskRun:
    """Start the task in one real tick, wait (bounded) for its report, record it."""
    settings.ROCKET_TASKS = {
        "t": {"func": func, "start_cond": "every('1 hour')", "execution": mode, **extra}
    }
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    try:
        scheduler.tick()
        assert not scheduler.stop_requested, scheduler.stop_reason
        wait_until(lambda: not scheduler.runner.in_flight, 60, "the run to report its outcome")
        clock.advance(1)
        scheduler.tick()
        assert not scheduler.stop_requested, scheduler.stop_reason
    finally:
        scheduler.request_stop("test over")
        scheduler.shutdown()
    return TaskRun.objects.get()


def run_by_runtask(settings, func: str, **extra) -> tuple[TaskRun, str]:
    settings.ROCKET_TASKS = {"t": {"func": func, "start_cond": "false", **extra}}
    out, err = StringIO(), StringIO()
    code = 0
    try:
        call_command("runtask", "t", "--wait", stdout=out, stderr=err)
    except SystemExit as exc:
        code = exc.code
    assert code in (0, 1)
    return TaskRun.objects.get(), out.getvalue() + err.getvalue()


FAILURES = [
    # (function, parameters, what the message says)
    ("raises_unprintable", {}, "UnprintableError: <UnprintableError object: its str() and repr()"),
    ("raises_base", {"kind": "exit"}, "SystemExit: 3"),
    ("raises_base", {"kind": "interrupt"}, "KeyboardInterrupt"),
    ("raises_base", {"kind": "genexit"}, "GeneratorExit"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "params", "message"), FAILURES)
def test_a_hostile_failure_is_a_readable_fail_in_every_mode(
    settings, clock, mode, name, params, message
):
    run = run_by_scheduler(settings, clock, func_for(name, mode), mode, parameters=params)
    assert run.status == RunStatus.FAIL
    assert run.message.startswith(message), run.message
    assert "Traceback (most recent call last)" in run.exc_text
    assert run.finished_at is not None


@pytest.mark.parametrize(("name", "params", "message"), FAILURES)
def test_a_hostile_failure_is_a_readable_fail_in_runtask(settings, name, params, message):
    run, said = run_by_runtask(settings, T + name, parameters=params)
    assert run.status == RunStatus.FAIL
    assert run.message.startswith(message), run.message
    assert message in said
    assert "Traceback" not in said  # one line; -v 2 shows the traceback


@pytest.mark.parametrize("mode", ["main", "thread", "process"])
def test_an_exception_class_pickle_cannot_find_still_fails_readably(settings, clock, mode):
    run = run_by_scheduler(settings, clock, T + "raises_unpicklable", mode)
    assert run.status == RunStatus.FAIL
    assert run.message == "LocalError: a local exception class"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("name", "note"),
    [
        ("returns_deeply_nested", "Return value not kept: it is nested too deep"),
        ("returns_hostile", "Return value not kept: encoding it raised RuntimeError: __class__"),
    ],
)
def test_a_value_that_breaks_the_encoder_is_not_kept_and_says_why(
    settings, clock, mode, name, note
):
    """The function returned, so the run succeeded; its value is dropped with a note."""
    run = run_by_scheduler(settings, clock, func_for(name, mode), mode)
    assert run.status == RunStatus.SUCCESS
    assert run.result is None
    assert run.message.startswith(note), run.message


@pytest.mark.parametrize("name", ["returns_deeply_nested", "returns_hostile"])
def test_a_value_that_breaks_the_encoder_in_runtask(settings, name):
    run, _ = run_by_runtask(settings, T + name)
    assert run.status == RunStatus.SUCCESS
    assert run.message.startswith("Return value not kept"), run.message


@pytest.mark.parametrize("mode", ["main", "thread", "process"])
def test_a_sync_function_that_returns_a_generator_fails_saying_its_body_never_ran(
    settings, clock, mode
):
    run = run_by_scheduler(settings, clock, T + "returns_generator", mode)
    assert run.status == RunStatus.FAIL
    assert "returned a generator" in run.message and "never ran" in run.message


@pytest.mark.parametrize("mode", ["main", "thread", "process"])
def test_a_coroutine_returned_by_a_sync_function_is_run(settings, clock, mode):
    run = run_by_scheduler(settings, clock, T + "returns_coroutine", mode)
    assert run.status == RunStatus.SUCCESS, run.message
    assert run.result == "async"


def test_generator_and_coroutine_in_runtask(settings):
    run, _ = run_by_runtask(settings, T + "returns_generator")
    assert run.status == RunStatus.FAIL and "never ran" in run.message
    TaskRun.objects.all().delete()
    run, _ = run_by_runtask(settings, T + "returns_coroutine")
    assert run.status == RunStatus.SUCCESS and run.result == "async"


# --- item 1: outcomes of any size ---------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_failure_bigger_than_a_pipe_is_recorded_cut_with_a_note(settings, clock, mode):
    """100,000 characters of message: once a process run hung until its timeout."""
    run = run_by_scheduler(settings, clock, func_for("big_failure", mode), mode)
    assert run.status == RunStatus.FAIL
    assert len(run.message) == MESSAGE_MAX_CHARS
    assert run.message.startswith("ValueError: eeee")
    assert run.message.endswith("[... cut: 100,012 characters in all]")
    assert len(run.exc_text.encode()) <= traceback_limit(65536)
    assert "bytes cut: the traceback was" in run.exc_text
    assert run.exc_text.startswith("Traceback (most recent call last)")
    assert run.exc_text.rstrip().endswith("eeee")  # the end of the exception line is kept


@pytest.mark.parametrize("mode", MODES)
def test_a_failure_bigger_than_a_pipe_without_a_timeout_still_ends(settings, clock, mode):
    settings.ROCKET_TIMEOUT = None
    run = run_by_scheduler(
        settings, clock, func_for("big_failure", mode), mode, parameters={"size": 1_000_000}
    )
    assert run.status == RunStatus.FAIL
    assert "1,000,012 characters in all" in run.message


@pytest.mark.parametrize("mode", ["main", "thread", "process"])
def test_a_result_inside_the_limit_but_bigger_than_a_pipe_is_kept(settings, clock, mode):
    run = run_by_scheduler(
        settings, clock, T + "result_of", mode, parameters={"size": 65_530}, timeout="1 minute"
    )
    assert run.status == RunStatus.SUCCESS, run.message
    assert run.result == "r" * 65_530
    assert run.message == ""


@pytest.mark.parametrize("mode", ["main", "thread", "process"])
def test_a_result_over_the_limit_is_dropped_with_a_note(settings, clock, mode):
    run = run_by_scheduler(settings, clock, T + "result_of", mode, parameters={"size": 200_000})
    assert run.status == RunStatus.SUCCESS
    assert run.result is None
    assert run.message == "Return value not kept: 200002 bytes is over 65536."


def test_big_outcomes_in_runtask(settings):
    run, said = run_by_runtask(settings, T + "big_failure")
    assert run.status == RunStatus.FAIL
    assert run.message.endswith("[... cut: 100,012 characters in all]")
    assert len(said) < 3 * MESSAGE_MAX_CHARS
    assert "bytes cut: the traceback was" in run.exc_text
    TaskRun.objects.all().delete()
    run, _ = run_by_runtask(settings, T + "result_of", parameters={"size": 65_530})
    assert run.result == "r" * 65_530
    TaskRun.objects.all().delete()
    run, _ = run_by_runtask(settings, T + "result_of", parameters={"size": 70_000})
    assert run.result is None and "over 65536" in run.message


def test_the_traceback_bound_follows_the_result_limit_with_a_floor():
    assert traceback_limit(65536) == 65536
    assert traceback_limit(0) == 4096
    text = "Traceback\n" + "é" * 50_000 + "\nValueError: end\n"
    cut = cut_traceback(text, 10_000)
    assert len(cut.encode()) <= 10_000
    assert cut.startswith("Traceback\n") and cut.endswith("ValueError: end\n")
    assert cut_traceback("short", 10) == "short"


def test_call_task_never_raises_even_when_describing_fails(monkeypatch):
    import django_rocket.executors.outcome as outcome

    def broken(exc):
        raise MemoryError

    monkeypatch.setattr(outcome, "failure", broken)

    def fails():
        raise ValueError("x")

    ending = call_task(fails, {}, 100)
    assert ending["status"] == RunStatus.FAIL
    assert "could not be described" in ending["message"]


def test_encode_result_never_raises():
    class Items(dict):
        def items(self):
            raise KeyboardInterrupt

    result, note = encode_result(Items(a=1), 100)
    assert result is None
    assert note.startswith("Return value not kept: encoding it raised KeyboardInterrupt")


@pytest.mark.slow
def test_a_main_run_that_leaves_autocommit_off_does_not_hold_the_schedulers_writes(
    scheduler_process,
):
    """``main`` runs on the scheduler's own connection; left in autocommit off, every
    later write of the scheduler went into one transaction that never committed."""
    tasks = {
        "careless": {
            "func": "tests.support.tasks.leaves_autocommit_off",
            "start_cond": "true",
            "execution": "main",
        },
        "after": {
            "func": "tests.support.tasks.noop",
            "start_cond": "after_success('careless')",
            "execution": "main",
        },
    }
    proc = scheduler_process(tasks, {}, args=("--duration", "3"))
    assert proc.wait(timeout=60) == 0, proc.output()
    careless = TaskRun.objects.filter(task__name="careless")
    assert careless.filter(status=RunStatus.SUCCESS).count() >= 2, proc.output()
    assert not TaskRun.objects.filter(status=RunStatus.RUNNING).exists()
    assert TaskRun.objects.filter(task__name="after", status=RunStatus.SUCCESS).exists()
    assert "left the database connection with autocommit off" in proc.output()
