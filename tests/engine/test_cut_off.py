"""A scheduler cut off from its database while its runs end, and another one takes over.

What bench/soak.py found (seed 20261205, 30 minutes): the cut-off scheduler recorded
process runs whose functions had ended as ``terminate`` at its shutdown, 49 s late,
over the ``crash`` the successor had recorded for them, while the successor had already
started the next runs of those tasks. The cut is the scheduler's own connection failing
every statement (as a reset connection does); the successor is played by the test on
the real database: it takes the lease, records the cut-off scheduler's runs as crashed
(its crash recovery) and starts the next run.
"""

import contextlib
import uuid
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.db.models import F

from django_rocket.engine.leadership import Here
from django_rocket.engine.recovery import recover_crashed
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import (
    RunStatus,
    SchedulerInstance,
    SchedulerLease,
    SchedulerRole,
    TaskRun,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CUT_SECONDS = 49  # from the function's end to the scheduler's shutdown, as in the soak


class Cut:
    """While ``on``, every statement on this thread's connection fails as on a cut one."""

    def __init__(self) -> None:
        self.on = False

    @contextlib.contextmanager
    def bypass(self):
        """What the test itself reads and writes, as another process would: never cut."""
        was, self.on = self.on, False
        try:
            yield
        finally:
            self.on = was

    def __call__(self, execute, sql, params, many, context):
        if self.on:
            raise OperationalError("injected: the connection to the database was cut")
        return execute(sql, params, many, context)


@pytest.fixture
def cut_off(settings, tmp_path):
    settings.ROCKET_HEARTBEAT = "1 second"
    settings.ROCKET_LEASE_TIMEOUT = "30 seconds"
    settings.ROCKET_POLL_INTERVAL = 3600
    settings.ROCKET_SHUTDOWN_GRACE = "5 seconds"
    settings.ROCKET_SILENCE_TASK_LOGGING = True  # a long cut must not stop the scheduler
    settings.ROCKET_LOG_RETRY = {"attempts": 3, "backoff": 1, "max_backoff": 2}
    settings.ROCKET_SPOOL_DIR = str(tmp_path / "spool")
    cut = Cut()
    with connection.execute_wrapper(cut):
        yield cut
    (tmp_path / "release").touch()  # nothing of the test lingers after it


def _task(func: str, execution: str, tmp_path) -> dict:
    return {
        "func": func,
        "start_cond": "every('1 hour')",
        "execution": execution,
        "parameters": {"marker": str(tmp_path / "started"), "release": str(tmp_path / "release")},
    }


def _successor_takes_over(scheduler: Scheduler, cut: Cut, now) -> SchedulerInstance:
    """Another scheduler, on its own connection: takes the lease, recovers, starts the next run."""
    with cut.bypass():
        successor = SchedulerInstance.objects.create(
            host="successor-host",
            pid=4242,
            started_at=now,
            last_seen=now,
            role=SchedulerRole.ACTIVE,
        )
        SchedulerLease.objects.update(
            holder=successor, token=F("token") + 1, expires_at=now + timedelta(seconds=30)
        )
        recovered = recover_crashed(
            now,
            specs=scheduler.specs,
            own_runs=set(),
            instance_pk=successor.pk,
            here=Here(successor.host, successor.pid, successor.pid_namespace),
            lease_timeout=scheduler.leadership.lease_timeout,
        )
        assert recovered.crashed == 1  # the cut-off scheduler's heartbeat is 40 s old
        task = TaskRun.objects.get().task
        TaskRun.objects.create(
            task=task,
            run_id=uuid.uuid4(),
            status=RunStatus.RUNNING,
            started_at=now + timedelta(seconds=1),
            host=successor.host,
            pid=successor.pid,
            scheduler=successor,
        )
        return successor


def _ticks(scheduler: Scheduler, clock, seconds: int) -> None:
    for _ in range(seconds):
        clock.advance(1)
        scheduler.tick()


@pytest.mark.parametrize("execution", ["thread", "process"])
def test_a_late_finish_leaves_the_successors_record_as_it_is(
    settings, clock, cut_off, tmp_path, execution, caplog
):
    """The run ended during the cut; the successor recorded it as ``crash`` and started the
    next one. The cut-off scheduler's finish, written when its database is back, must
    change neither row: before, it overwrote the crash (the soak's ``overlapping_runs``)."""
    settings.ROCKET_TASKS = {
        "slow": _task("tests.support.tasks.wait_for_file", execution, tmp_path)
    }
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()
    run = TaskRun.objects.get()
    wait_until((tmp_path / "started").exists, what="the run to start")

    cut_off.on = True
    _ticks(scheduler, clock, 1)
    (tmp_path / "release").touch()
    wait_until(lambda: not scheduler.outcomes.empty(), what="the run to end")
    _ticks(scheduler, clock, 1)
    assert len(scheduler.recorder.pending) == 1  # the finish waits for the database
    _ticks(scheduler, clock, 38)
    successor = _successor_takes_over(scheduler, cut_off, clock.now())
    with cut_off.bypass():
        crashed = TaskRun.objects.get(pk=run.pk)
    assert crashed.status == RunStatus.CRASH
    _ticks(scheduler, clock, CUT_SECONDS - 40)

    cut_off.on = False
    _ticks(scheduler, clock, 5)  # the heartbeat finds the lease taken; the finish is written
    assert not scheduler.active
    assert scheduler.recorder.pending == []
    said = [r.getMessage() for r in caplog.records if "that record stays" in r.getMessage()]
    assert len(said) == 1 and "ended success at" in said[0] and "holds crash" in said[0]
    scheduler.request_stop()
    scheduler.shutdown()

    after = TaskRun.objects.get(pk=run.pk)
    assert (after.status, after.finished_at, after.message) == (
        RunStatus.CRASH,
        crashed.finished_at,
        crashed.message,
    )
    assert "successor-host" in after.message
    following = TaskRun.objects.exclude(pk=run.pk).get()
    assert following.status == RunStatus.RUNNING and following.scheduler_id == successor.pk


def test_a_process_run_that_returned_keeps_its_outcome_and_end_through_a_cut_and_a_shutdown(
    settings, clock, cut_off, tmp_path
):
    """The function returned (its ending is read) but its child has not exited yet; the
    database is cut and the scheduler stops 49 s later. Before, the stop terminated the
    child and recorded ``terminate`` at the stop (the soak's ``finish_time_off``)."""
    settings.ROCKET_TASKS = {
        "lingers": _task("tests.support.tasks.returns_but_lingers", "process", tmp_path)
    }
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()
    run = TaskRun.objects.get()
    wait_until((tmp_path / "started").exists, what="the function to return")
    wait_until(lambda: scheduler.runner.ended(str(run.run_id)), what="its ending to be read")
    ended_at = clock.now()

    cut_off.on = True
    _ticks(scheduler, clock, CUT_SECONDS)
    cut_off.on = False
    scheduler.request_stop()
    scheduler.shutdown()  # the child still lingers: the stop ends it

    run.refresh_from_db()
    assert (run.status, run.result, run.finished_at) == (RunStatus.SUCCESS, "returned", ended_at)


def test_a_process_run_that_returned_is_not_turned_into_a_timeout(settings, clock, tmp_path):
    """A deadline reached after the function returned, while its child lingers, changes
    nothing: the run ended in time, with its own outcome."""
    settings.ROCKET_HEARTBEAT = "1 hour"
    settings.ROCKET_LEASE_TIMEOUT = "2 hours"
    settings.ROCKET_POLL_INTERVAL = 3600
    settings.ROCKET_SHUTDOWN_GRACE = "1 second"
    settings.ROCKET_TASKS = {
        "lingers": {
            **_task("tests.support.tasks.returns_but_lingers", "process", tmp_path),
            "timeout": "10 seconds",
        }
    }
    scheduler = Scheduler(clock=clock)
    try:
        scheduler.startup()
        scheduler.tick()
        run = TaskRun.objects.get()
        wait_until(lambda: scheduler.runner.ended(str(run.run_id)), what="its ending to be read")
        ended_at = clock.now()
        _ticks(scheduler, clock, 15)  # past the timeout
        assert TaskRun.objects.get().status == RunStatus.RUNNING  # recorded when it exits
        (tmp_path / "release").touch()
        wait_until(lambda: not scheduler.outcomes.empty(), what="the child to exit")
        scheduler.tick()
        run.refresh_from_db()
        assert (run.status, run.finished_at) == (RunStatus.SUCCESS, ended_at)
    finally:
        (tmp_path / "release").touch()
        scheduler.request_stop()
        scheduler.shutdown()


def test_a_scheduler_that_lost_the_lease_still_ends_its_runs_at_their_timeout(
    settings, clock, cut_off, tmp_path
):
    """Standing by, it still follows its own local runs: a timeout is not put off until it
    becomes active again or stops (a stop recorded it as ``terminate`` at the stop)."""
    settings.ROCKET_TASKS = {
        "long": {
            "func": "tests.support.tasks.cooperative_wait",
            "start_cond": "every('1 hour')",
            "execution": "thread",
            "timeout": "90 seconds",
            "parameters": {"marker": str(tmp_path / "started")},
        }
    }
    settings.ROCKET_HEARTBEAT = "1 minute"
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()
    run = TaskRun.objects.get()
    started = clock.now()
    wait_until((tmp_path / "started").exists, what="the run to start")
    SchedulerLease.objects.update(token=F("token") + 1)  # another scheduler took the lease
    clock.advance(60)
    assert scheduler.tick() == 30  # lost the lease; wakes up for the deadline, not only to beat
    assert not scheduler.active
    clock.advance(30)
    scheduler.tick()
    wait_until(lambda: not scheduler.outcomes.empty(), what="the run to stop")
    scheduler.tick()
    run.refresh_from_db()
    assert run.status == RunStatus.TERMINATE
    assert run.finished_at == started + timedelta(seconds=90)
    scheduler.request_stop()
    scheduler.shutdown()
