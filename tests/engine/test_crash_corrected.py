"""A ``runtask`` run given up as ``crash`` whose own finish lands later reaches the conditions.

Crash recovery gives up on a ``runtask`` run whose heartbeat has not reached the
database for longer than the lease (a partition on its host, a paused container). The
process may be alive: when its function returns it writes the run's outcome over the
``crash``, and that outcome is the truth. The scheduler had taken the crash into its
snapshot and kept it until it restarted, so ``after_success`` of that task never fired
and a retry counted a failure that was none. The poll now watches such runs and reads
the snapshot again when one of them ends otherwise.
"""

from datetime import timedelta

import pytest

from django_rocket.engine import poller as poller_module
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun

pytestmark = pytest.mark.django_db(transaction=True)


def task(cond: str) -> dict:
    return {"func": "tests.support.tasks.noop", "start_cond": cond, "execution": "main"}


@pytest.fixture
def tasks(settings):
    """'a' runs only by hand (runtask); 'b' after each success of 'a'."""
    settings.ROCKET_TASKS = {"a": task("false"), "b": task("after_success('a')")}
    settings.ROCKET_POLL_INTERVAL = 1
    settings.ROCKET_HEARTBEAT = "5 seconds"
    settings.ROCKET_LEASE_TIMEOUT = "30 seconds"


def by_hand(clock, **fields) -> TaskRun:
    """A row as ``runtask`` on another host writes it for task 'a'."""
    values = {
        "status": RunStatus.RUNNING,
        "trigger": RunTrigger.MANUAL,
        "started_at": clock.now(),
        "host": "batch-host",
        "pid": 1,
        "last_seen": clock.now(),
        **fields,
    }
    a, _ = Task.objects.get_or_create(
        name="a", defaults={"func": "tests.support.tasks.noop", "start_cond": "false"}
    )
    return TaskRun.objects.create(task=a, **values)


def b_runs() -> int:
    return TaskRun.objects.filter(task__name="b").count()


def test_a_finish_over_a_crash_this_scheduler_recorded_reaches_the_conditions(tasks, clock, caplog):
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()
    external = by_hand(clock)
    clock.advance(1)
    scheduler.tick()  # the poll follows it
    for _ in range(8):  # no beat for 40 s: past the lease, crash recovery gives it up
        clock.advance(5)
        scheduler.tick()
    external.refresh_from_db()
    assert external.status == RunStatus.CRASH
    clock.advance(1)
    scheduler.tick()
    assert b_runs() == 0
    assert list(scheduler.poller.crashed) == [external.pk]
    # The runtask process was alive all along: its finish overwrites the crash.
    external.finish(RunStatus.SUCCESS, clock.now())
    clock.advance(1)
    scheduler.tick()
    scheduler.tick()
    assert b_runs() == 1
    assert scheduler.poller.crashed == {}
    assert f"Run {external.run_id} of task 'a', recorded as crash" in caplog.text
    assert "has ended since as success: its process was alive." in caplog.text
    scheduler.request_stop()
    scheduler.shutdown()


def test_a_crash_recorded_before_the_scheduler_started_is_watched_too(tasks, clock):
    """Another scheduler, since stopped, gave the run up; this one starts from the log."""
    external = by_hand(
        clock,
        status=RunStatus.CRASH,
        started_at=clock.now() - timedelta(hours=2),
        finished_at=clock.now() - timedelta(hours=1),
    )
    old = by_hand(  # given up longer ago than the poll watches: left alone
        clock,
        status=RunStatus.CRASH,
        started_at=clock.now() - timedelta(days=3),
        finished_at=clock.now() - timedelta(days=2),
    )
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()
    assert set(scheduler.poller.crashed) == {external.pk}
    assert b_runs() == 0
    external.finish(RunStatus.SUCCESS, clock.now())
    clock.advance(1)
    scheduler.tick()
    scheduler.tick()
    assert b_runs() == 1
    assert old.pk not in scheduler.poller.crashed
    scheduler.request_stop()
    scheduler.shutdown()


def test_a_crash_that_stays_a_crash_is_watched_for_a_day_then_dropped(tasks, clock):
    external = by_hand(clock, status=RunStatus.CRASH, finished_at=clock.now())
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()
    assert set(scheduler.poller.crashed) == {external.pk}
    clock.advance(poller_module.WATCH_CRASHED.total_seconds() - 10)
    scheduler.tick()
    assert set(scheduler.poller.crashed) == {external.pk}
    clock.advance(20)
    scheduler.tick()
    assert scheduler.poller.crashed == {}
    assert b_runs() == 0
    scheduler.request_stop()
    scheduler.shutdown()


def test_the_watch_is_bounded_and_lets_the_oldest_go(tasks, clock, monkeypatch):
    monkeypatch.setattr(poller_module, "WATCH_CRASHED_MAX", 3)
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    for pk in range(1, 6):
        scheduler.poller._watch_crashed(pk, 60)
    assert list(scheduler.poller.crashed) == [3, 4, 5]


def test_finishes_not_yet_written_survive_the_new_snapshot(tasks, settings, clock):
    """Drained finishes wait in the recorder; the log still says ``running`` for them."""
    settings.ROCKET_TASKS = {**settings.ROCKET_TASKS, "c": task("every('1 hour')")}
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()  # c ran (main); its finish waits for the next write
    scheduler.recorder.next_write_attempt = float("inf")  # and waits on
    clock.advance(1)
    scheduler.tick()
    (pending,) = scheduler.recorder.pending
    assert pending.task == "c"
    assert TaskRun.objects.get(task__name="c").status == RunStatus.RUNNING
    scheduler._reload_history(clock.now())
    history = scheduler.planner.history
    assert history is not None
    assert not history.running("c")  # as before the reload, not as the log says yet
    assert history.last_finish("c", frozenset({RunStatus.SUCCESS})) == pending.finished_at
    scheduler.recorder.next_write_attempt = 0.0
    scheduler.request_stop()
    scheduler.shutdown()
    assert TaskRun.objects.get(task__name="c").status == RunStatus.SUCCESS
