"""On PostgreSQL a requested run reaches an idle scheduler at once (LISTEN/NOTIFY), long
before its next poll; when the listening connection is killed, it reconnects.

Bounded waits well under ROCKET_POLL_INTERVAL, never a timing assertion: the latency
itself is measured by bench/notify_latency.py.
"""

import pytest
from django.db import connection

from django_rocket.engine.listener import APPLICATION_NAME
from django_rocket.models import RunStatus, SchedulerInstance, Task, TaskRun
from django_rocket.ops import queue_run
from tests.conftest import wait_until

pytestmark = [pytest.mark.slow]

POLL_INTERVAL = 60.0  # the poll alone would take this long
WELL_BEFORE = 15.0
TASKS = {
    "manual": {"func": "tests.support.tasks.noop", "start_cond": "false", "execution": "thread"}
}
SETTINGS = {"ROCKET_POLL_INTERVAL": POLL_INTERVAL, "ROCKET_HEARTBEAT": "0.2 seconds"}


def listener_pids() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
            [APPLICATION_NAME, connection.settings_dict["NAME"]],
        )
        return [row[0] for row in cursor.fetchall()]


def idle_after_its_first_poll(scheduler) -> None:
    """Wait until the scheduler is active and has polled once (its next poll is far away)."""
    scheduler.wait_for_output("now active")
    seen = SchedulerInstance.objects.get(pid=scheduler.proc.pid).last_seen
    # Two heartbeats later, the first active tick (and its poll) is long over.
    wait_until(
        lambda: SchedulerInstance.objects.filter(
            pid=scheduler.proc.pid, last_seen__gt=seen
        ).exists(),
        what="a heartbeat",
    )


def run_now_starts_promptly(task: Task) -> None:
    run, created = queue_run(task)
    assert created
    wait_until(
        lambda: TaskRun.objects.filter(pk=run.pk, status=RunStatus.SUCCESS).exists(),
        WELL_BEFORE,
        "the requested run to be started and recorded before the next poll",
    )


def test_run_now_reaches_an_idle_scheduler_at_once_and_after_the_listener_is_killed(
    scheduler_process,
):
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; elsewhere the poll picks requests up")
    scheduler = scheduler_process(TASKS, SETTINGS)
    idle_after_its_first_poll(scheduler)
    task = Task.objects.get(name="manual")
    run_now_starts_promptly(task)

    (old,) = wait_until(listener_pids, what="the listening connection")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [old])
    wait_until(lambda: listener_pids() not in ([], [old]), what="the listener to reconnect")
    scheduler.wait_for_output("Listening for run requests again")
    run_now_starts_promptly(task)
    assert TaskRun.objects.filter(status=RunStatus.SUCCESS).count() == 2
    assert "Lost the connection that listens for run requests" in scheduler.output()
