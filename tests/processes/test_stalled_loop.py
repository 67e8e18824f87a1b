"""A scheduler whose loop is stuck says so, and where, instead of looking alive and silent.

Two ways a tick stops for good: a ``main`` run whose function does not return, and a
database that stops answering without closing the connection (a network partition; the
test's proxy holds every byte and resets nothing). Either way the process stayed up,
wrote no heartbeat, started nothing and logged nothing. Now, once a tick outlasts
``ROCKET_LEASE_TIMEOUT``, it logs an error with the loop's stack, and when the tick
ends, how long it took; the runs are recorded as ever.
"""

import itertools
import signal
from datetime import timedelta

import pytest
from django.db import connection

from django_rocket.models import RunStatus, TaskRun
from tests.conftest import wait_until

pytestmark = [pytest.mark.slow]

STUCK = "has lasted"  # "The scheduler's tick has lasted 2 s, longer than ROCKET_LEASE_TIMEOUT"
WENT_ON = "The scheduler's tick went on after"
SETTINGS = {"ROCKET_HEARTBEAT": "0.5 seconds", "ROCKET_LEASE_TIMEOUT": "2 seconds"}
EVERY = {
    "func": "tests.support.tasks.noop",
    "start_cond": "every('1 second')",
    "execution": "thread",
}


def stuck_message(output: str) -> str:
    """The stall's error: its line and the stack lines under it, up to the next record."""
    lines = output.splitlines()
    first = next(i for i, line in enumerate(lines) if STUCK in line)
    end = next((i for i in range(first + 1, len(lines)) if lines[i][:4].isdigit()), len(lines))
    return "\n".join(lines[first:end])


def successes(name: str) -> int:
    return TaskRun.objects.filter(task__name=name, status=RunStatus.SUCCESS).count()


def no_slot_twice(name: str) -> None:
    """No two runs of an ``every('1 second')`` task started less than a second apart."""
    starts = list(
        TaskRun.objects.filter(task__name=name)
        .order_by("started_at")
        .values_list("started_at", flat=True)
    )
    close = [(a, b) for a, b in itertools.pairwise(starts) if b - a < timedelta(seconds=0.99)]
    assert close == [], close


def test_a_main_run_that_does_not_return_is_reported_with_where_it_waits(
    scheduler_process, tmp_path
):
    tasks = {
        "hangs": {
            "func": "tests.support.tasks.wait_for_file",
            "start_cond": "every('1 hour')",
            "execution": "main",
            "parameters": {
                "marker": str(tmp_path / "started"),
                "release": str(tmp_path / "release"),
                "limit": 60,
            },
        },
        "every": EVERY,
    }
    proc = scheduler_process(tasks, SETTINGS)
    wait_until((tmp_path / "started").exists, 30, "the main run to start")
    proc.wait_for_output(STUCK, 30)
    (tmp_path / "release").write_text("go")
    proc.wait_for_output(WENT_ON, 30)
    wait_until(lambda: successes("every") >= 2, 30, "runs of 'every' after the stall")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    output = proc.output()
    message = stuck_message(output)
    assert " ERROR django_rocket.scheduler: The scheduler's tick has lasted " in message, message
    assert "longer than ROCKET_LEASE_TIMEOUT (2 s): it is stuck." in message
    assert "in wait_for_file" in message  # the task's function, where the loop waits
    assert "a `main` run holds it until its function returns" in message
    assert output.count(STUCK) == 1, output  # once per stuck tick
    assert successes("hangs") == 1
    no_slot_twice("every")


def test_a_database_that_stops_answering_is_reported_and_nothing_is_lost(
    scheduler_process, proxy, tmp_path
):
    proc = scheduler_process({"every": EVERY}, SETTINGS, db_port=proxy.port)
    wait_until(lambda: successes("every") >= 2, 30, "runs before the partition")
    proxy.pause()
    try:
        proc.wait_for_output(STUCK, 30)
    finally:
        proxy.resume()
    proc.wait_for_output(WENT_ON, 30)
    after = successes("every")
    wait_until(lambda: successes("every") >= after + 2, 30, "runs after the partition")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    output = proc.output()
    message = stuck_message(output)
    driver = "psycopg" if connection.vendor == "postgresql" else "MySQLdb"
    assert driver in message, message  # it waits for the database's answer
    assert "tcp_user_timeout" in message
    assert not TaskRun.objects.filter(status=RunStatus.RUNNING).exists()
    no_slot_twice("every")
