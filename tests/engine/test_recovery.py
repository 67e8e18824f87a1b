"""Crash recovery names the scheduler that was running a run, whatever ran its function."""

from datetime import UTC, datetime, timedelta

import pytest

from django_rocket import registry
from django_rocket.conditions import parse
from django_rocket.engine import recovery
from django_rocket.engine.leadership import Here
from django_rocket.engine.recovery import recover_crashed
from django_rocket.models import RunStatus, SchedulerInstance, Task, TaskRun

NOW = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)


def recover_elsewhere(specs: dict | None = None):
    """Crash recovery at NOW by a scheduler on another host, with a 30-second lease."""
    return recover_crashed(
        NOW,
        specs=specs or {},
        own_runs=set(),
        instance_pk=None,
        here=Here("other-host", 1, "other-boot/pid:1"),
        lease_timeout=timedelta(seconds=30),
    )


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
    recovered = recover_elsewhere()
    assert recovered.crashed == 1
    run.refresh_from_db()
    assert run.status == RunStatus.CRASH
    assert run.message.startswith("The scheduler sched-host:4242 stopped"), run.message
    assert "777" not in run.message


def runtask_run_on_another_host(started_at) -> TaskRun:
    """A run ``runtask`` made on batch-host (pid 31): no scheduler follows it."""
    task = Task.objects.create(name="by-hand", func="tests.support.tasks.noop")
    return TaskRun.objects.create(
        task=task, status=RunStatus.RUNNING, started_at=started_at, host="batch-host", pid=31
    )


@pytest.mark.django_db
def test_a_runtask_run_on_another_host_names_its_timeout_when_given_up():
    run = runtask_run_on_another_host(started_at=NOW - timedelta(minutes=11))
    spec = registry.TaskSpec(
        name="by-hand",
        func="tests.support.tasks.noop",
        start_cond=parse("false"),
        timeout=timedelta(minutes=10),
    )
    recovered = recover_elsewhere({"by-hand": spec})
    assert recovered.crashed == 1
    run.refresh_from_db()
    assert run.message.startswith(
        "Its process batch-host:31 (runtask) could not be seen from here (another host or "
        "PID namespace), and the run started more than 10 min 30 s ago (its timeout, plus "
        "the lease)"
    ), run.message


@pytest.mark.django_db
def test_a_finish_written_after_recovery_read_the_row_is_not_overwritten(monkeypatch, caplog):
    """The runtask process ends just as recovery gives up on it: its finish is the truth."""
    run = runtask_run_on_another_host(started_at=NOW - timedelta(days=2))
    judge = recovery._orphaned

    def finishing_meanwhile(row, *args, **kwargs):
        cause = judge(row, *args, **kwargs)
        # What the runtask process writes on its own connection as it ends.
        TaskRun.objects.filter(pk=row.pk).update(
            status=RunStatus.SUCCESS, finished_at=NOW, message="done"
        )
        return cause

    monkeypatch.setattr(recovery, "_orphaned", finishing_meanwhile)
    recovered = recover_elsewhere()
    assert recovered.crashed == 0
    run.refresh_from_db()
    assert (run.status, run.message) == (RunStatus.SUCCESS, "done")
    assert "crash" not in caplog.text


@pytest.mark.django_db
def test_crash_changes_only_a_run_still_running():
    task = Task.objects.create(name="t", func="tests.support.tasks.noop")
    run = TaskRun.objects.create(task=task, status=RunStatus.RUNNING, started_at=NOW)
    TaskRun.objects.filter(pk=run.pk).update(status=RunStatus.FAIL, message="it failed")
    assert run.crash(NOW + timedelta(minutes=1), "gone") is False
    assert run.status == RunStatus.RUNNING  # the instance is left as it was read
    assert TaskRun.objects.values_list("status", "message").get() == (RunStatus.FAIL, "it failed")
    other = TaskRun.objects.create(task=task, status=RunStatus.RUNNING, started_at=NOW)
    assert other.crash(NOW + timedelta(minutes=1), "gone") is True
    other.refresh_from_db()
    assert (other.status, other.message, other.runtime) == (
        RunStatus.CRASH,
        "gone",
        timedelta(minutes=1),
    )
