"""Tasks sharing one condition object (runtime tasks do: their texts are parsed once).

The planner works out what such a condition reads once, and at one instant evaluates it
once for all the tasks the snapshot holds no run of; the answers must be those of
evaluating it task by task. No database here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from django_rocket.clock import FakeClock
from django_rocket.conditions import Condition, Context, MemoryHistory, RunRecord
from django_rocket.conditions.custom import condition, unregister
from django_rocket.conditions.parser import parse
from django_rocket.engine.planner import Planner
from django_rocket.models import RunStatus, RunTrigger
from django_rocket.registry import TaskSpec


@dataclass(frozen=True, repr=False)
class Counting(Condition):
    """Evaluates ``inner`` and counts how often (a condition object tasks can share)."""

    inner: Condition
    calls: list[str]

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        self.calls.append(ctx.task)
        return self.inner.evaluate(ctx)

    def is_true(self, ctx: Context) -> bool:
        return self.inner.is_true(ctx)

    def children(self) -> tuple[Condition, ...]:
        return (self.inner,)

    def text(self) -> str:
        return self.inner.text()


def planner_with(cond: Condition, names: list[str], history: MemoryHistory, now: datetime):
    specs = {n: TaskSpec(n, "tests.support.tasks.noop", cond, execution="main") for n in names}
    planner = Planner({}, UTC, poll_every=1.0)
    planner.prepare_conditions()
    for spec in specs.values():
        planner.put_task(spec, True)
    planner.activate(history, {}, [], now)
    return planner


def ran(history: MemoryHistory, task: str, at: datetime, status: str = "success") -> None:
    history.record_start(RunRecord(task=task, run_id=f"{task}-{at}", started_at=at))
    history.record_finish(task, f"{task}-{at}", at + timedelta(seconds=1), status)


def test_tasks_with_no_runs_share_one_evaluation_and_the_others_get_their_own(
    clock: FakeClock,
) -> None:
    now = clock.now()
    calls: list[str] = []
    hourly = Counting(parse("every('1 hour')"), calls)
    history = MemoryHistory()
    ran(history, "ran", now - timedelta(minutes=10))
    planner = planner_with(hourly, ["a", "b", "c", "ran"], history, now)
    started = [spec.name for spec, _, _ in planner.due(now, slots=0)]
    assert started == ["a", "b", "c"]  # "ran" started 10 minutes ago: not due
    assert calls == ["a", "ran"]  # b and c took a's answer; "ran" has a history of its own
    wake = {w.task: w.at for w in planner.wakes if planner.versions[w.task] == w.version}
    assert timedelta(minutes=50) <= wake["ran"] - now < timedelta(minutes=50, seconds=1)
    # a has a run now; b's answer is not a's, and is worked out again at the next instant.
    planner.started(planner.specs["a"], "r1", RunTrigger.SCHEDULED, now)
    planner.history_changed("b")
    started = [spec.name for spec, _, _ in planner.due(now + timedelta(seconds=1), slots=0)]
    assert started == ["b"]  # a started a second ago
    assert calls == ["a", "ran", "a", "b"]


def test_a_retry_is_told_apart_for_each_task(clock: FakeClock) -> None:
    clock.advance(30 * 60)
    now = clock.now()
    cond = parse("daily.at('09:00') | retry(2)")
    history = MemoryHistory()
    ran(history, "failed", now - timedelta(minutes=1), RunStatus.FAIL)
    ran(history, "fine", now - timedelta(minutes=1))
    planner = planner_with(cond, ["failed", "fine", "new", "newer"], history, now)
    triggers = {spec.name: trigger for spec, trigger, _ in planner.due(now, slots=0)}
    assert triggers == {
        "failed": RunTrigger.RETRY,
        "new": RunTrigger.SCHEDULED,
        "newer": RunTrigger.SCHEDULED,
    }


@pytest.fixture
def only_b():
    condition(name="only_b")(lambda task: task == "b")
    yield
    unregister("only_b")


def test_a_condition_reading_the_task_name_is_evaluated_for_each_task(
    clock: FakeClock, only_b: None
) -> None:
    now = clock.now()
    planner = planner_with(parse("only_b"), ["a", "b", "c"], MemoryHistory(), now)
    assert [spec.name for spec, _, _ in planner.due(now, slots=0)] == ["b"]


def test_which_conditions_read_the_task_name(only_b: None) -> None:
    assert not parse("every('1 hour') & after task 'x' succeeded").reads_task_name()
    assert not parse("cron('0 9 * * *')").reads_task_name()
    assert parse("cron('H 9 * * *')").reads_task_name()  # spread by the task's name
    assert parse("daily & only_b").reads_task_name()


@pytest.mark.parametrize(
    "text",
    [
        "every('1 hour') | retry(3)",
        "after task 'x' succeeded & every('1 hour')",
        "succeeded.this_hour >= 2",
        "(succeeded.past('1 hour') >= 2) | (started >= 3)",
        "after task 'a' succeeded",  # names one of the tasks sharing it
    ],
)
def test_what_a_shared_condition_reads_is_kept_for_each_task(text: str) -> None:
    cond = parse(text)
    shared = planner_with(cond, ["a", "b"], MemoryHistory(), datetime(2026, 3, 2, tzinfo=UTC))
    # Worked out task by task, from separately parsed (equal, not identical) objects:
    one_by_one = Planner(
        {n: TaskSpec(n, "tests.support.tasks.noop", parse(text)) for n in ["a", "b"]},
        UTC,
        poll_every=1.0,
    )
    one_by_one.prepare_conditions()
    assert shared.needs == one_by_one.needs
    assert shared.dependents == one_by_one.dependents
    assert shared.recent_runs == one_by_one.recent_runs
