"""The instant a tick starts runs at is no earlier than any finish the tick has seen.

A tick read the clock as it began, then drained the runs that had ended. A run that
ended in between (during the tick's heartbeat write, say) finished later than the
instant the tick then started runs at. ``after_success('etl')`` is true while etl's
latest success is strictly later than the task's latest start (SEMANTICS.md), so it
held again at the next tick, and "report" ran twice for one success of etl.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from django_rocket import registry
from django_rocket.clock import FakeClock
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun
from tests.conftest import wait_until
from tests.support import tasks as support_tasks

pytestmark = pytest.mark.django_db(transaction=True)


class TickClock(FakeClock):
    """A FakeClock that runs ``then`` once, just after the next ``now()`` has been read."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.then: Callable[[], None] | None = None

    def now(self) -> datetime:
        value = super().now()
        then, self.then = self.then, None
        if then is not None:
            then()
        return value


@pytest.fixture
def gate():
    support_tasks.GATES["etl"] = event = threading.Event()
    yield event
    event.set()
    support_tasks.GATES.pop("etl", None)


def test_a_run_that_ends_as_the_tick_begins_makes_its_dependants_run_once(settings, gate):
    settings.ROCKET_TASKS = {
        "etl": {
            "func": "tests.support.tasks.thread_identity",
            "parameters": {"gate": "etl"},
            "start_cond": "every('1 hour')",
            "execution": "thread",
        },
        "report": {
            "func": "tests.support.tasks.noop",
            "start_cond": "after_success('etl')",
            "execution": "thread",
        },
    }
    clock = TickClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    scheduler = Scheduler(registry.tasks(), clock=clock)
    scheduler.startup()
    try:
        scheduler.tick()  # etl starts, and waits at its gate
        (etl,) = TaskRun.objects.filter(task__name="etl")
        clock.advance(1)

        def etl_ends_now() -> None:  # the tick has read the instant it began
            clock.advance(0.001)
            gate.set()
            wait_until(lambda: not scheduler.runner.is_running(str(etl.run_id)), 10, "etl")

        clock.then = etl_ends_now
        scheduler.tick()  # drains etl's success, and starts report
        for _ in range(3):
            clock.advance(1)
            scheduler.tick()
            wait_until(lambda: scheduler.runner.in_flight == 0, 10, "report to end")
        scheduler.tick()
    finally:
        scheduler.request_stop()
        scheduler.shutdown()
    etl.refresh_from_db()
    reports = list(TaskRun.objects.filter(task__name="report"))
    assert etl.status == RunStatus.SUCCESS
    assert len(reports) == 1, [(r.started_at, r.status) for r in reports]
    assert reports[0].started_at >= etl.finished_at


def test_an_end_stamped_ahead_of_the_schedulers_clock_starts_its_dependants_once(settings, clock):
    """``runtask etl`` on a host whose clock runs 50 ms ahead: its end, read by the poll
    (at once on PostgreSQL, which notifies), was later than the instant "report" then
    started at, so after_success('etl') held again at the next look."""
    settings.ROCKET_EXECUTION = "main"
    settings.ROCKET_POLL_INTERVAL = 1
    settings.ROCKET_HEARTBEAT = "1 hour"
    settings.ROCKET_LEASE_TIMEOUT = "2 hours"
    settings.ROCKET_TASKS = {
        "etl": {"func": "tests.support.tasks.noop", "start_cond": "false"},
        "report": {"func": "tests.support.tasks.noop", "start_cond": "after_success('etl')"},
    }
    scheduler = Scheduler(registry.tasks(), clock=clock)
    scheduler.startup()
    try:
        scheduler.tick()
        clock.advance(1)
        ended = clock.now() + timedelta(milliseconds=50)
        TaskRun.objects.create(
            task=Task.objects.get(name="etl"),
            status=RunStatus.SUCCESS,
            trigger=RunTrigger.MANUAL,
            started_at=clock.now() - timedelta(seconds=5),
            finished_at=ended,
            host="elsewhere",
            pid=1,
        )
        scheduler.tick()  # the poll reads etl's end
        for _ in range(3):
            clock.advance(1)
            scheduler.tick()
    finally:
        scheduler.request_stop()
        scheduler.shutdown()
    reports = list(TaskRun.objects.filter(task__name="report"))
    assert len(reports) == 1, [(r.started_at, r.status) for r in reports]
    assert reports[0].started_at >= ended
