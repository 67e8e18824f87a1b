"""100,000 runs through the planner and its snapshot: the snapshot's size per task stays flat.

No database: the planner decides from its snapshot and a fake clock, as the
scheduler drives it (due, started, finished, and now and then forget_before).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django_rocket.clock import FakeClock
from django_rocket.conditions.bounded import BoundedHistory
from django_rocket.conditions.parser import parse
from django_rocket.engine.planner import Planner
from django_rocket.models import RunStatus
from django_rocket.registry import TaskSpec

# One task per kind of history a condition reads; each is due every second.
KINDS = {
    "latest": "every('1 second')",
    "chain": "every('1 second') | retry(3)",
    "calendar": "every('1 second') & (failed.today < 1000000000) & (started.this_hour >= 0)",
    "sliding": (
        "every('1 second') & (started.past('10 seconds') >= 0) & (failed.past('1 minute') < 100)"
    ),
    "past_window": "every('1 second') & (failed.today.between('00:00', '01:00') < 1000000000)",
    # Looked at again whenever "latest" ends, each time with a wake-up at midnight.
    "dependent": "daily | after_success('latest')",
}
# The most each task's snapshot may hold: its latest start and its latest success and
# failure, its latest run (twice: the run and its place in start order), and then
# 4 runs for retry(3); 2 counts per period (the current occurrence and, for a moment,
# the one before); the starts of the last 10 seconds and the failures of the last minute.
LATEST = 1 + 2 + 2
BOUND = {
    "latest": LATEST,
    "chain": 1 + 2 + 2 * 4,
    "calendar": LATEST + 2 * 2,
    "sliding": LATEST + 11 + 61,
    "past_window": LATEST + 2,
    "dependent": LATEST,
}
RUNS = 100_000
TZ = ZoneInfo("Europe/Berlin")
# 23:30 in Berlin the night the clocks go forward: the runs cross midnight and the DST change.
START = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)


def test_the_snapshot_per_task_stays_flat_over_100_000_runs() -> None:
    clock = FakeClock(START)
    specs = {
        name: TaskSpec(name, "tests.support.tasks.noop", parse(cond), None, execution="main")
        for name, cond in KINDS.items()
    }
    planner = Planner(specs, TZ, poll_every=1.0)
    planner.prepare_conditions()
    planner.enabled = dict.fromkeys(specs, True)
    bounded = BoundedHistory(planner.needs, TZ)
    planner.activate(bounded, {}, [], clock.now())
    rng = random.Random(23)
    sizes: dict[str, list[int]] = {name: [] for name in specs}
    done = 0
    run_ids = iter(range(10**9))
    while done < RUNS:
        now = clock.now()
        for spec, trigger, _ in planner.due(now, slots=0):
            run_id = str(next(run_ids))
            planner.started(spec, run_id, trigger, now)
            status = RunStatus.FAIL if rng.random() < 0.3 else RunStatus.SUCCESS
            planner.finished(run_id, now, status)
            done += 1
        if done % 5_000 < len(specs):
            planner.forget_before(now)
            for name in specs:
                sizes[name].append(bounded.size(name))
            # Wake-ups replaced by later ones do not pile up either.
            assert len(planner.wakes) <= 2 * len(specs) + 64
        clock.advance(1)
    assert done >= RUNS
    for name, seen in sizes.items():
        # Never more than what the kind of condition can read, however many runs went by.
        assert len(seen) >= 20
        assert max(seen) <= BOUND[name], (name, seen)
    # (tests/conditions/test_bounded_history.py shows the answers are the full history's.)
