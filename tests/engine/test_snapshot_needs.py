"""Start-up reads what the conditions need from the run log, and they answer as from all of it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from django_rocket.conditions import Context, MemoryHistory
from django_rocket.conditions.bounded import BoundedHistory
from django_rocket.engine import snapshot
from django_rocket.models import RunStatus, Task, TaskRun
from tests.conditions.test_bounded_history import NEEDS, TASKS, VOCABULARY

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 30, 11, 17, 30, tzinfo=UTC)  # a Monday, the day after Berlin's change
STATUSES = ["success", "fail", "fail", "terminate", "inaction", "crash"]


def write_log(seed: int) -> None:
    """40 days of runs of both tasks, denser near now, a few still running."""
    rng = random.Random(seed)
    rows = []
    for name in TASKS:
        task = Task.objects.create(name=name, func="tests.support.tasks.noop", start_cond="daily")
        for _ in range(300):
            age = timedelta(seconds=rng.choice([60, 600, 3600, 6 * 3600, 86_400, 40 * 86_400]))
            started = NOW - age * rng.random()
            length = timedelta(seconds=rng.choice([0, 5, 300, 7200]))
            status = rng.choice(STATUSES)
            finished = started + length
            if finished > NOW:
                status, finished = RunStatus.RUNNING, None
            rows.append(
                TaskRun(
                    task=task,
                    status=status,
                    trigger=rng.choice(["scheduled", "retry", "retry", "manual"]),
                    started_at=started,
                    finished_at=finished,
                )
            )
        # One that began before every window and ended inside them, then a later failure.
        for started, finished in [(timedelta(days=12), 20), (timedelta(minutes=2), 1)]:
            rows.append(
                TaskRun(
                    task=task,
                    status=RunStatus.FAIL,
                    trigger="scheduled",
                    started_at=NOW - started,
                    finished_at=NOW - timedelta(minutes=finished),
                )
            )
        rows.append(TaskRun(task=task, status=RunStatus.QUEUED))
    TaskRun.objects.bulk_create(rows)


def assert_same_counts(
    loaded: BoundedHistory, whole: MemoryHistory, task: str, at: datetime, tz: ZoneInfo
) -> None:
    """Every count the conditions read, compared directly (not only through a threshold)."""
    needs = NEEDS[task]
    for kind, length in needs.windows:
        assert list(loaded.events(task, kind, at - length, None)) == list(
            whole.events(task, kind, at - length, None)
        ), (task, kind, length)
    for kind, span in needs.periods:
        window = span.around(at, at.astimezone(tz), tz)[1]
        counted = loaded.count(task, kind, window.start, window.end)
        assert counted == whole.count(task, kind, window.start, window.end), (task, kind, span)
    for kind in needs.totals:
        assert loaded.count(task, kind, None, None) == whole.count(task, kind, None, None), kind


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_loaded_snapshot_answers_every_condition_as_the_whole_log(seed: int) -> None:
    write_log(seed)
    tz = ZoneInfo("Europe/Berlin")
    loaded, _ = snapshot.load(NOW, needs=NEEDS, tz=tz, recent=snapshot.RECENT_RUNS_PER_TASK)
    whole = MemoryHistory(
        snapshot.record_of(run, run.task.name)
        for run in TaskRun.objects.select_related("task").order_by("started_at", "id")
        if run.started_at is not None
    )
    for at in (NOW, NOW + timedelta(minutes=1), NOW + timedelta(hours=2)):
        loaded.trim(at)
        for task in TASKS:
            full = Context(task=task, now=at, history=whole, tz=tz)
            kept = Context(task=task, now=at, history=loaded, tz=tz)
            for cond in VOCABULARY:
                assert cond.evaluate(kept) == cond.evaluate(full), (cond, task, at)
            assert_same_counts(loaded, whole, task, at, tz)
    # What it holds is what the conditions read, not the 600 runs of the log.
    assert loaded.size() < TaskRun.objects.count()


def test_a_task_whose_conditions_read_only_the_latest_events_loads_a_handful() -> None:
    write_log(4)
    loaded, _ = snapshot.load(NOW, needs={}, tz=UTC, recent=0)
    # Latest start, latest finish per outcome (five), the runs in progress: per task.
    for task in TASKS:
        running = len(loaded.running(task))
        assert loaded.size(task) <= 1 + 5 + 2 * (running + 1)
