"""Crash recovery names the scheduler that was running a run, whatever ran its function."""

from datetime import UTC, datetime, timedelta

import pytest

from django_rocket.engine.leadership import Here
from django_rocket.engine.recovery import recover_crashed
from django_rocket.models import RunStatus, SchedulerInstance, Task, TaskRun

NOW = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_a_workers_run_is_blamed_on_its_scheduler_not_on_the_worker():
    task = Task.objects.create(name="remote", func="tests.support.tasks.noop")
    gone = SchedulerInstance.objects.create(
        host="sched-host", pid=4242, last_seen=NOW - timedelta(minutes=5)
    )
    # The follower wrote where the function ran: the worker's host and pid.
    run = TaskRun.objects.create(
        task=task,
        status=RunStatus.RUNNING,
        started_at=NOW - timedelta(minutes=6),
        host="worker-host",
        pid=777,
        scheduler=gone,
    )
    recovered = recover_crashed(
        NOW,
        specs={},
        own_runs=set(),
        instance_pk=None,
        here=Here("other-host", 1, "other-boot/pid:1"),
        lease_timeout=timedelta(seconds=30),
    )
    assert recovered.crashed == 1
    run.refresh_from_db()
    assert run.status == RunStatus.CRASH
    assert run.message.startswith("The scheduler sched-host:4242 stopped"), run.message
    assert "777" not in run.message
