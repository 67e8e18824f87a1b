"""Clocks that disagree: the wall clock steps (NTP, a resumed VM), or differs from the server's.

The scheduler goes on through a step and loses nothing, and the log says what happened
and what it does to conditions; a machine whose clock differs from the database
server's is named at start-up.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from django_rocket.clock import FakeClock
from django_rocket.engine import clocks
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, TaskRun

pytestmark = pytest.mark.django_db(transaction=True)

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TASKS = {
    execution: {
        "func": "tests.support.tasks.noop",
        "start_cond": "every('1 minute')",
        "execution": execution,
    }
    for execution in ("main", "thread")
}


class SteppingClock(FakeClock):
    """A fake clock whose wall time steps by ``step`` once, ``after`` seconds in."""

    def __init__(self, start: datetime, after: float, step: timedelta) -> None:
        super().__init__(start)
        self.after, self.step, self.stepped = after, step, False

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if not self.stepped and self.monotonic() - 1000.0 >= self.after:
            self._now += self.step  # wall time only: the monotonic clock goes on
            self.stepped = True
        return super().wait(event, timeout)


def starts(name: str) -> list[datetime]:
    return list(
        TaskRun.objects.filter(task__name=name).order_by("id").values_list("started_at", flat=True)
    )


def test_a_step_back_is_survived_logged_and_waited_out(settings, caplog):
    settings.ROCKET_TASKS = TASKS
    clock = SteppingClock(START, after=600, step=timedelta(hours=-1))
    with caplog.at_level(logging.WARNING, "django_rocket.scheduler"):
        assert Scheduler(clock=clock, duration=7200).run() == 0
    steps = [r.getMessage() for r in caplog.records if "wall clock stepped" in r.getMessage()]
    assert len(steps) == 1, steps
    assert steps[0].startswith("The wall clock stepped back by 1:00:00 between two heartbeats")
    assert not TaskRun.objects.exclude(status=RunStatus.SUCCESS).exists()
    for name in TASKS:
        found = starts(name)
        # Ten runs, then the clock reads 08:10: nothing until it passes 09:10 again (an
        # hour later by the monotonic clock), then one a minute up to the end, 09:59.
        assert found[9] == START + timedelta(minutes=9, microseconds=found[9].microsecond)
        assert found[10] - found[9] == timedelta(minutes=1, microseconds=1), found[9:11]
        assert len(found) == 60, len(found)
        assert all(b > a for a, b in itertools.pairwise(found))  # none twice


def test_a_step_forward_runs_what_fell_due_once(settings, caplog):
    settings.ROCKET_TASKS = TASKS
    clock = SteppingClock(START, after=600, step=timedelta(hours=2))
    with caplog.at_level(logging.WARNING, "django_rocket.scheduler"):
        assert Scheduler(clock=clock, duration=1800).run() == 0
    steps = [r.getMessage() for r in caplog.records if "wall clock stepped" in r.getMessage()]
    assert len(steps) == 1 and steps[0].startswith("The wall clock stepped forward by 2:00:00")
    for name in TASKS:
        found = starts(name)
        gaps = [b - a for a, b in itertools.pairwise(found)]
        # One two-hour gap (the step), none of the 120 slots in it run on catching up.
        assert sum(g > timedelta(minutes=2) for g in gaps) == 1, gaps
        assert min(gaps) >= timedelta(minutes=1), gaps
        assert len(found) == 30, len(found)


def test_no_step_no_warning(settings, caplog):
    settings.ROCKET_TASKS = TASKS
    with caplog.at_level(logging.WARNING, "django_rocket.scheduler"):
        assert Scheduler(clock=FakeClock(START), duration=600).run() == 0
    assert not [r for r in caplog.records if "clock" in r.getMessage()]


class Skewed:
    """This machine's clock, off by ``by`` seconds (the time module's ``time`` only)."""

    def __init__(self, by: float) -> None:
        self.by = by

    def time(self) -> float:
        return time.time() + self.by


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite reads this machine's clock")
def test_a_machine_clock_off_from_the_servers_is_named_at_start_up(settings, caplog, monkeypatch):
    settings.ROCKET_TASKS = TASKS
    monkeypatch.setattr(clocks, "time", Skewed(-45.0))
    with caplog.at_level(logging.WARNING, "django_rocket.scheduler"):
        assert Scheduler(clock=FakeClock(START), once=True).run() == 0
    (warning,) = [r.getMessage() for r in caplog.records if "database server" in r.getMessage()]
    assert warning.startswith("This machine's clock is 45.0 s behind the clock of the database")
    assert "keep their clocks in sync (NTP)" in warning
