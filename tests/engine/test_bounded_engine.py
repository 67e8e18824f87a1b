"""Thousands of runs through the whole scheduler: no structure of the engine grows with them.

tests/engine/test_bounded_snapshot.py drives the planner alone; this drives the
scheduler's loop (poller, recorder, runner, planner and its snapshot) on the real
database with the fake clock, and reads every structure that holds runs as it goes.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from django_rocket.clock import FakeClock
from django_rocket.engine.poller import POLL_LOOKBACK
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import TaskRun

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = 10
SECONDS = 300


class SamplingClock(FakeClock):
    """A fake clock that reads the scheduler's structures each time the loop waits."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.scheduler: Scheduler | None = None
        self.samples: list[dict[str, int]] = []

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if self.scheduler is not None and self.scheduler.planner.history is not None:
            self.samples.append(sizes(self.scheduler))
        self.waits.clear()  # the test clock's own record of waits would grow instead
        return super().wait(event, timeout)


def sizes(scheduler: Scheduler) -> dict[str, int]:
    planner, poller = scheduler.planner, scheduler.poller
    assert planner.history is not None
    return {
        "snapshot": planner.history.size(),
        "wakes": len(planner.wakes),
        "versions": len(planner.versions),
        "dirty": len(planner.dirty),
        "queued": sum(len(q) for q in planner.queued.values()),
        "running": len(planner.running),
        "running_by_task": len(planner.running_by_task),
        "end_wakes": len(planner.end_wakes),
        "last_failed": len(planner.last_failed),
        "pending_finishes": len(scheduler.recorder.pending),
        "outcomes": scheduler.outcomes.qsize(),
        "in_flight": scheduler.runner.in_flight,
        "external_seen": len(poller.external_seen),
        "external_open": len(poller.external_open),
    }


def test_no_engine_structure_grows_with_the_number_of_runs(settings):
    settings.ROCKET_TASKS = {
        f"t{i}": {
            "func": "tests.support.tasks.fails" if i % 3 == 0 else "tests.support.tasks.noop",
            "start_cond": "every('1 second')",
            "execution": "main",
        }
        for i in range(TASKS)
    }
    clock = SamplingClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    scheduler = Scheduler(clock=clock, duration=SECONDS)
    clock.scheduler = scheduler
    assert scheduler.run() == 0
    runs = TaskRun.objects.count()
    assert runs >= TASKS * SECONDS * 0.9
    samples = clock.samples
    assert len(samples) >= SECONDS
    half = len(samples) // 2
    for key in samples[0]:
        first = max(s[key] for s in samples[:half])
        later = max(s[key] for s in samples[half:])
        # Thousands of runs later, never more than after the first few hundred...
        assert later <= first, (key, first, later)
        # ...and that is a few per task (wake-ups: at most two per task and 64 spare),
        # or the poll's look-back window of ids.
        assert later <= max(8 * TASKS, 2 * TASKS + 64, POLL_LOOKBACK), (key, later)
