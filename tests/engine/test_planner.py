"""The planner decides what is due from a snapshot and a clock alone: no database here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from django_rocket.clock import FakeClock
from django_rocket.conditions import MemoryHistory, RunRecord
from django_rocket.conditions.custom import condition, unregister
from django_rocket.conditions.parser import parse
from django_rocket.engine.planner import ConditionFailed, Planner
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun
from django_rocket.registry import TaskSpec

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the clock fixture's start


def planner_of(*specs: TaskSpec, at: datetime = START) -> Planner:
    planner = Planner({s.name: s for s in specs}, UTC, poll_every=1.0)
    planner.prepare_conditions()
    planner.enabled = {s.name: True for s in specs}
    planner.activate(MemoryHistory(), {}, [], at)
    return planner


def spec(
    name: str, start: str, *, end: str | None = None, timeout: timedelta | None = None
) -> TaskSpec:
    return TaskSpec(
        name,
        "tests.support.tasks.noop",
        parse(start),
        parse(end) if end else None,
        execution="main",
        timeout=timeout,
    )


def names(starts: list[tuple[TaskSpec, str, TaskRun | None]]) -> list[tuple[str, str]]:
    return [(s.name, trigger) for s, trigger, _ in starts]


def test_a_task_becomes_due_and_wakes_up_at_its_next_change(clock: FakeClock) -> None:
    planner = planner_of(spec("t", "every('10 seconds')"))
    assert names(planner.due(clock.now(), slots=0)) == [("t", RunTrigger.SCHEDULED)]
    planner.started(planner.specs["t"], "r1", RunTrigger.SCHEDULED, clock.now())
    planner.finished("r1", clock.now(), RunStatus.SUCCESS)
    assert names(planner.due(clock.now(), slots=0)) == []
    wake = planner.wakes[0].at
    assert timedelta(seconds=10) <= wake - clock.now() < timedelta(seconds=11)
    assert planner.seconds_to_next_change(clock.now()) == [(wake - clock.now()).total_seconds()]
    clock.advance(9)
    assert names(planner.due(clock.now(), slots=0)) == []
    clock.set(wake)
    assert names(planner.due(clock.now(), slots=0)) == [("t", RunTrigger.SCHEDULED)]


def test_only_tasks_that_changed_or_woke_up_are_evaluated(clock: FakeClock) -> None:
    planner = planner_of(spec("a", "every('1 hour')"), spec("b", "after task 'a' succeeded"))
    assert names(planner.due(clock.now(), slots=0)) == [("a", RunTrigger.SCHEDULED)]
    assert not planner.busy()
    planner.started(planner.specs["a"], "r1", RunTrigger.SCHEDULED, clock.now())
    clock.advance(1)
    planner.finished("r1", clock.now(), RunStatus.SUCCESS)
    assert planner.dirty == {"a", "b"}  # b's condition reads a's runs
    assert names(planner.due(clock.now(), slots=0)) == [("b", RunTrigger.SCHEDULED)]


def test_a_paused_task_is_not_evaluated_and_a_queued_run_still_starts(clock: FakeClock) -> None:
    planner = planner_of(spec("t", "every('1 minute')"))
    assert planner.set_enabled("t", False)
    assert names(planner.due(clock.now(), slots=0)) == []
    queued = TaskRun(pk=7, task=Task(name="t"), status=RunStatus.QUEUED)
    assert planner.add_queued(queued)
    assert not planner.add_queued(queued)  # followed once
    assert planner.due(clock.now(), slots=0) == [(planner.specs["t"], RunTrigger.MANUAL, queued)]


def test_a_deadline_terminates_the_run_once(clock: FakeClock) -> None:
    planner = planner_of(spec("t", "every('1 hour')", timeout=timedelta(seconds=5)))
    planner.started(planner.specs["t"], "r1", RunTrigger.SCHEDULED, clock.now())
    assert planner.seconds_to_next_change(clock.now())[-1] == 5.0
    terminated: list[tuple[str, str]] = []
    clock.advance(4)
    planner.enforce_deadlines(clock.now(), lambda run_id, why: terminated.append((run_id, why)))
    assert terminated == []
    clock.advance(1)
    planner.enforce_deadlines(clock.now(), lambda run_id, why: terminated.append((run_id, why)))
    planner.enforce_deadlines(clock.now(), lambda run_id, why: terminated.append((run_id, why)))
    assert terminated == [("r1", "Timed out after 0:00:05.")]


def test_an_end_condition_fires_for_the_runs_of_its_task(clock: FakeClock) -> None:
    planner = planner_of(spec("t", "every('1 hour')", end="running.more_than('30 seconds')"))
    planner.started(planner.specs["t"], "r1", RunTrigger.SCHEDULED, clock.now())
    terminated: list[str] = []
    planner.check_end_conditions(clock.now(), lambda run_id, why: terminated.append(run_id))
    assert terminated == []
    assert planner.end_wakes["t"] > clock.now()
    clock.set(planner.end_wakes["t"])
    planner.check_end_conditions(clock.now(), lambda run_id, why: terminated.append(run_id))
    assert terminated == ["r1"]
    planner.finished("r1", clock.now(), RunStatus.TERMINATE)
    assert "t" not in planner.end_wakes


def test_a_condition_that_raises_stops_the_planner_unless_silenced(clock, settings) -> None:
    def boom() -> bool:
        raise RuntimeError("boom")

    condition(name="planner_boom")(boom)
    try:
        planner = planner_of(spec("t", "planner_boom"))
        settings.ROCKET_SILENCE_COND_CHECK = True
        assert planner.due(clock.now(), slots=0) == []  # treated as false, looked at again
        assert planner.wakes[0].at == clock.now() + timedelta(seconds=1)
        settings.ROCKET_SILENCE_COND_CHECK = False
        clock.advance(1)
        with pytest.raises(ConditionFailed, match="the condition of task 't' raised"):
            planner.due(clock.now(), slots=0)
    finally:
        unregister("planner_boom")


def test_scheduler_conditions_read_when_the_scheduler_became_active_and_its_passes(
    clock: FakeClock,
) -> None:
    planner = planner_of(
        spec("up", "scheduler_running(more_than='10 minutes')"),
        spec("warm", "scheduler_cycles(more_than=2)"),
        at=clock.now(),
    )
    assert names(planner.due(clock.now(), slots=0)) == []  # pass 0
    planner.dirty.update({"up", "warm"})
    assert names(planner.due(clock.now(), slots=0)) == []  # pass 1
    planner.dirty.update({"up", "warm"})
    assert names(planner.due(clock.now(), slots=0)) == []  # pass 2
    planner.dirty.update({"up", "warm"})
    assert names(planner.due(clock.now(), slots=0)) == [("warm", RunTrigger.SCHEDULED)]
    clock.advance(11 * 60)
    planner.dirty.add("up")
    assert names(planner.due(clock.now(), slots=0)) == [("up", RunTrigger.SCHEDULED)]


def test_a_task_added_at_runtime_is_due_and_a_new_spec_replaces_its_wake_up(
    clock: FakeClock,
) -> None:
    planner = planner_of()
    planner.put_task(spec("r", "every('1 hour')"), enabled=True)
    assert names(planner.due(clock.now(), slots=0)) == [("r", RunTrigger.SCHEDULED)]
    planner.started(planner.specs["r"], "r1", RunTrigger.SCHEDULED, clock.now())
    planner.finished("r1", clock.now(), RunStatus.SUCCESS)
    assert names(planner.due(clock.now(), slots=0)) == []
    # A new condition is looked at at once, not at the old condition's wake-up an hour away.
    planner.put_task(spec("r", "every('1 minute')"), enabled=True)
    assert planner.busy()
    assert names(planner.due(clock.now(), slots=0)) == []
    wake = next(w.at for w in planner.wakes if planner.versions["r"] == w.version)
    assert timedelta(minutes=1) <= wake - clock.now() < timedelta(minutes=2)
    clock.set(wake)
    assert names(planner.due(clock.now(), slots=0)) == [("r", RunTrigger.SCHEDULED)]


def test_a_removed_task_is_not_due_and_its_running_run_still_times_out(clock: FakeClock) -> None:
    planner = planner_of(spec("r", "every('1 minute')", end="false", timeout=timedelta(seconds=5)))
    assert names(planner.due(clock.now(), slots=0)) == [("r", RunTrigger.SCHEDULED)]
    planner.started(planner.specs["r"], "r1", RunTrigger.SCHEDULED, clock.now())
    assert planner.remove_task("r")
    assert not planner.remove_task("r")
    clock.advance(3600)
    assert names(planner.due(clock.now(), slots=0)) == []
    terminated: list[str] = []
    planner.check_end_conditions(clock.now(), lambda run_id, why: terminated.append(why))
    planner.enforce_deadlines(clock.now(), lambda run_id, why: terminated.append(why))
    assert terminated == ["Timed out after 0:00:05."]
    planner.finished("r1", clock.now(), RunStatus.TERMINATE)
    # Added back, an old wake-up of the same name does not fire for it twice.
    planner.put_task(spec("r", "every('1 hour')"), enabled=False)
    assert names(planner.due(clock.now(), slots=0)) == []


def test_a_run_queued_for_later_starts_at_its_instant_not_before(clock: FakeClock) -> None:
    planner = planner_of(spec("t", "false"))
    assert names(planner.due(clock.now(), slots=0)) == []
    due_at = clock.now() + timedelta(hours=3)
    later = TaskRun(pk=8, task=Task(name="t"), status=RunStatus.QUEUED, due_at=due_at)
    assert planner.add_queued(later)
    assert planner.due(clock.now(), slots=0) == []
    # The condition never changes, yet the loop wakes for the queued run's instant.
    assert planner.seconds_to_next_change(clock.now()) == [3 * 3600.0]
    clock.advance(3 * 3600 - 1)
    assert planner.due(clock.now(), slots=0) == []
    clock.set(due_at)
    assert planner.due(clock.now(), slots=0) == [(planner.specs["t"], RunTrigger.MANUAL, later)]
    assert planner.queued["t"] == []


def test_a_run_now_is_not_held_back_by_a_run_queued_for_later(clock: FakeClock) -> None:
    planner = planner_of(spec("t", "false"))
    later = TaskRun(
        pk=8, task=Task(name="t"), status=RunStatus.QUEUED, due_at=clock.now() + timedelta(days=1)
    )
    now = TaskRun(pk=9, task=Task(name="t"), status=RunStatus.QUEUED)
    planner.add_queued(later)
    planner.add_queued(now)
    assert planner.due(clock.now(), slots=0) == [(planner.specs["t"], RunTrigger.MANUAL, now)]
    assert planner.queued["t"] == [later]


def test_runs_still_going_when_the_lease_comes_back_can_finish(clock: FakeClock) -> None:
    """Lost the lease, won it back: a run started before is not in the new snapshot.

    Another scheduler recorded it as crash and ran the task again meanwhile, so the
    snapshot of the second activation does not read its row. Its finish raised
    KeyError and stopped the scheduler (bench/soak.py, seed 20261204, a SIGTERM after
    a database cut).
    """
    planner = planner_of(spec("t", "every('10 seconds')"))
    planner.started(planner.specs["t"], "r1", RunTrigger.SCHEDULED, clock.now())
    clock.advance(30)
    fresh = MemoryHistory()  # the second activation's snapshot: r1's row is not in it
    planner.activate(fresh, {}, [], clock.now())
    assert fresh.running("t")  # still going, as far as the conditions can tell
    assert names(planner.due(clock.now(), slots=0)) == []  # and so not due again
    clock.advance(1)
    assert planner.finished("r1", clock.now(), RunStatus.SUCCESS) is not None
    assert fresh.last_finish("t", frozenset({RunStatus.SUCCESS})) == clock.now()
    # A run the snapshot does hold (its row still running) is not added twice.
    planner.started(planner.specs["t"], "r2", RunTrigger.SCHEDULED, clock.now())
    again = MemoryHistory(planner.history.runs("t"))
    planner.activate(again, {}, [], clock.now())
    assert len(again.running("t")) == 1


def test_a_finish_the_snapshot_holds_as_ended_does_not_stop_the_planner(clock: FakeClock) -> None:
    """A run another scheduler recorded (as crash) while this one was cut off, then
    re-read into the snapshot as ended, still finishes here without a KeyError."""
    planner = planner_of(spec("t", "every('1 hour')"))
    planner.started(planner.specs["t"], "r1", RunTrigger.SCHEDULED, clock.now())
    assert planner.history is not None
    snapshot_now = MemoryHistory(
        [
            RunRecord(
                "t", "r1", clock.now(), clock.now() + timedelta(seconds=1), "crash", "scheduled"
            )
        ]
    )
    planner.history = snapshot_now
    clock.advance(5)
    state = planner.finished("r1", clock.now(), RunStatus.SUCCESS)
    assert state is not None and "r1" not in planner.running
    # And one the snapshot never saw is taken as it ended.
    planner.started(planner.specs["t"], "r2", RunTrigger.SCHEDULED, clock.now())
    planner.history = MemoryHistory()
    assert planner.finished("r2", clock.now(), RunStatus.FAIL) is not None
    assert planner.history.last_run("t").outcome == "fail"


def test_deadlines_come_up_earliest_first_and_ended_runs_are_forgotten(clock: FakeClock) -> None:
    planner = planner_of(
        spec("short", "every('1 hour')", timeout=timedelta(seconds=5)),
        spec("long", "every('1 hour')", timeout=timedelta(seconds=50)),
        spec("none", "every('1 hour')"),
    )
    for name in ("long", "short", "none"):
        planner.started(planner.specs[name], f"r-{name}", RunTrigger.SCHEDULED, clock.now())
    assert planner.seconds_to_next_change(clock.now()) == [5.0]
    planner.finished("r-short", clock.now(), RunStatus.SUCCESS)  # ended before its deadline
    assert planner.seconds_to_next_change(clock.now()) == [50.0]
    terminated: list[str] = []
    clock.advance(60)
    planner.enforce_deadlines(clock.now(), lambda run_id, why: terminated.append(run_id))
    planner.enforce_deadlines(clock.now(), lambda run_id, why: terminated.append(run_id))
    assert terminated == ["r-long"]
    assert planner.seconds_to_next_change(clock.now()) == []
    # Runs that end keep no entry for long: the heap stays about the size of the runs.
    for i in range(500):
        planner.started(planner.specs["short"], f"s{i}", RunTrigger.SCHEDULED, clock.now())
        planner.finished(f"s{i}", clock.now(), RunStatus.SUCCESS)
    assert len(planner.deadlines.heap) <= 2 * len(planner.running) + 65


def test_a_task_given_an_end_condition_while_running_has_it_checked(clock: FakeClock) -> None:
    planner = planner_of(spec("t", "every('1 hour')"))
    planner.started(planner.specs["t"], "r1", RunTrigger.SCHEDULED, clock.now())
    terminated: list[str] = []
    planner.check_end_conditions(clock.now(), lambda run_id, why: terminated.append(run_id))
    planner.put_task(spec("t", "every('1 hour')", end="true"), enabled=True)
    planner.check_end_conditions(clock.now(), lambda run_id, why: terminated.append(run_id))
    assert terminated == ["r1"]
    planner.finished("r1", clock.now(), RunStatus.TERMINATE)
    planner.put_task(spec("t", "every('1 hour')"), enabled=True)  # the end condition gone
    planner.started(planner.specs["t"], "r2", RunTrigger.SCHEDULED, clock.now())
    planner.check_end_conditions(clock.now(), lambda run_id, why: terminated.append(run_id))
    assert terminated == ["r1"]


@pytest.mark.parametrize(
    ("end", "other_ends"),
    [
        ("after_success('up')", RunStatus.SUCCESS),  # when another task's run finishes
        ("running('up')", None),  # as soon as another task's run starts
    ],
)
def test_an_end_condition_that_reads_another_task_is_checked_when_that_task_runs(
    clock: FakeClock, end: str, other_ends: str | None
) -> None:
    """It has no time in it: nothing but the other task's runs can make it true."""
    planner = planner_of(spec("watch", "every('1 hour')", end=end), spec("up", "false"))
    planner.started(planner.specs["watch"], "w1", RunTrigger.SCHEDULED, clock.now())
    terminated: list[str] = []
    planner.check_end_conditions(clock.now(), lambda run_id, why: terminated.append(run_id))
    assert terminated == []
    clock.advance(5)
    planner.started(planner.specs["up"], "u1", RunTrigger.SCHEDULED, clock.now())
    if other_ends:
        planner.check_end_conditions(clock.now(), lambda run_id, why: terminated.append(run_id))
        assert terminated == []  # running, not yet succeeded
        clock.advance(5)
        planner.finished("u1", clock.now(), other_ends)
    planner.check_end_conditions(clock.now(), lambda run_id, why: terminated.append(run_id))
    assert terminated == ["w1"]


def test_a_task_without_an_end_condition_is_not_checked_for_one_as_its_runs_change(
    clock: FakeClock,
) -> None:
    planner = planner_of(spec("t", "every('1 hour')"), spec("e", "every('1 hour')", end="false"))
    planner.started(planner.specs["t"], "r1", RunTrigger.SCHEDULED, clock.now())
    planner.started(planner.specs["e"], "r2", RunTrigger.SCHEDULED, clock.now())
    assert planner.end_dirty == {"e"}
    planner.put_task(spec("t", "every('1 hour')", end="true"), enabled=True)
    planner.check_end_conditions(clock.now(), lambda run_id, why: None)
    planner.history_changed("t")  # given an end condition at runtime, it is followed
    assert planner.end_dirty == {"t"}
