"""A real ``runscheduler``: a ``main`` run past its timeout is stopped, and the loop goes on."""

import signal
from pathlib import Path

import pytest
from django.db import connection

from django_rocket.models import RunStatus, TaskRun
from tests.conftest import statements_sleeping, wait_until, waiting_task

pytestmark = [pytest.mark.slow]

# Runs every second while the loop is free: it shows the loop goes on after a stuck run.
TICKING = {
    "func": "tests.support.tasks.noop",
    "start_cond": "every('1 second')",
    "execution": "thread",
}


def sleeping_main_task(marker: Path, **options: str) -> dict:
    """A ``main`` task whose function waits 30 s for the database server's answer.

    Skips the test on SQLite, which has no statement that sleeps in a server.
    """
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no statement that sleeps in a server")
    return {
        "func": "tests.support.tasks.sleeps_in_the_database",
        "start_cond": "every('1 hour')",
        "execution": "main",
        "parameters": {"marker": str(marker), "seconds": 30},
        **options,
    }


def test_a_main_run_past_its_timeout_is_terminated_and_the_loop_goes_on(
    scheduler_process, tmp_path
):
    """Before, the run held the loop until its function returned (here: 60 s), nothing
    else started meanwhile, and the timeout was looked at only after it."""
    stuck = {**waiting_task(tmp_path, "main"), "timeout": "1 second"}
    proc = scheduler_process({"stuck": stuck, "ticking": TICKING})
    wait_until(
        lambda: TaskRun.objects.filter(task__name="ticking").count() >= 3,
        limit=30,
        what="the loop to start other runs again",
    )
    run = TaskRun.objects.get(task__name="stuck")
    assert (run.status, run.message) == (RunStatus.TERMINATE, "Timed out after 0:00:01.")
    assert "in wait_for_file" in run.exc_text  # where it was
    assert run.runtime is not None and run.runtime.total_seconds() < 10
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.output()


def test_a_main_run_timed_out_in_a_statement_leaves_the_connection_usable(
    scheduler_process, tmp_path
):
    """Its function waits in the driver for the server's answer when the timeout fires.

    PostgreSQL: before, psycopg left the scheduler's connection mid-statement (it cancels
    only for KeyboardInterrupt): the poll failed with "another command is already in
    progress", and the server slept on. MySQLdb waits in C, so the stop waited for the
    statement (30 s), and could then leave its result unread ("Commands out of sync"):
    now the statement is ended by KILL QUERY from another connection.
    """
    mysql = connection.vendor == "mysql"
    stuck = sleeping_main_task(tmp_path / "started", timeout="1 second")
    proc = scheduler_process({"stuck": stuck, "ticking": TICKING})
    wait_until(
        lambda: TaskRun.objects.filter(task__name="stuck").exclude(status="running").exists(),
        limit=20,
        what="the stuck run to end",
    )
    run = TaskRun.objects.get(task__name="stuck")
    assert (run.status, run.message) == (RunStatus.TERMINATE, "Timed out after 0:00:01."), (
        proc.output()
    )
    assert run.runtime is not None and run.runtime.total_seconds() < 4
    # The statement was cancelled in the server, not left to sleep out its 30 s ...
    wait_until(lambda: statements_sleeping() == 0, limit=5, what="the statement to end")
    # ... and the scheduler's connection, which the run used, serves the loop again.
    count = TaskRun.objects.filter(task__name="ticking").count()
    wait_until(
        lambda: TaskRun.objects.filter(task__name="ticking", status="success").count() >= count + 2,
        limit=15,
        what="runs recorded after it",
    )
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.output()
    output = proc.output()
    assert "interrupted a tick" not in output and "failed; will retry" not in output, output
    said = "Ended the statement a stopped function" if mysql else "statement is cancelled"
    assert said in output, output


@pytest.mark.parametrize("signals", [1, 2])
def test_a_stop_reaches_a_main_run_waiting_for_a_statement(scheduler_process, tmp_path, signals):
    """SIGTERM while a ``main`` run's function waits for the server's answer (30 s).

    MySQLdb waits in C, and a Python handler runs only once it returns: the scheduler
    heard the signal, and the grace began, when the statement ended 30 s later, and a
    second signal did not stop it sooner. Now the watchdog hears the signals through the
    wakeup fd and ends the statement (KILL QUERY) once the grace has passed, or at the
    second. PostgreSQL's driver lets the handler run during the wait: the same holds.
    """
    mysql = connection.vendor == "mysql"
    stuck = sleeping_main_task(tmp_path / "sleeping")
    grace = "1 second" if signals == 1 else "1 hour"
    # Started first (tasks start in name order): a thread run the grace would wait for.
    tasks = {"a_waits": waiting_task(tmp_path, "thread"), "z_stuck": stuck}
    proc = scheduler_process(tasks, {"ROCKET_SHUTDOWN_GRACE": grace})
    wait_until(lambda: statements_sleeping() == 1, limit=20, what="the statement to sleep")
    wait_until((tmp_path / "started").exists, limit=10, what="the thread run to start")
    proc.proc.send_signal(signal.SIGTERM)
    if signals == 2:
        # Said by the watchdog on MySQL (the handler waits), else by the handler. The two
        # signals run a held handler once: they must still count as two, for every run.
        proc.wait_for_output("a second signal" if mysql else "A second Ctrl-C or SIGTERM")
        proc.proc.send_signal(signal.SIGTERM)
    else:
        (tmp_path / "release").write_text("go")  # the thread run ends within the grace
    assert proc.wait(timeout=10) == 0, proc.output()
    waits = TaskRun.objects.get(task__name="a_waits")
    assert waits.status == (RunStatus.SUCCESS if signals == 1 else RunStatus.TERMINATE)
    run = TaskRun.objects.get(task__name="z_stuck")
    assert run.status == RunStatus.TERMINATE, proc.output()
    if signals == 1:
        assert run.message == (
            "Stopped by SIGTERM: the main run did not return within ROCKET_SHUTDOWN_GRACE "
            "(1 second)."
        )
    else:
        assert run.message.startswith("Stopped by SIGTERM: the scheduler was told a second time")
    assert run.runtime is not None and run.runtime.total_seconds() < 8
    wait_until(lambda: statements_sleeping() == 0, limit=5, what="the statement to end")
