"""Shared helpers for the condition tests: building histories and contexts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, tzinfo

from django_rocket.conditions import Context, MemoryHistory, RunRecord

_ids = itertools.count()


def at(text: str, tz: tzinfo = UTC) -> datetime:
    """Return the aware instant for local ``"YYYY-MM-DD HH:MM[:SS]"`` in ``tz``."""
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def run(
    started: datetime,
    finished: datetime | None = None,
    outcome: str | None = None,
    task: str = "t",
    trigger: str = "scheduled",
) -> RunRecord:
    """Return a run record with a fresh id."""
    return RunRecord(task, next(_ids), started, finished, outcome, trigger)


def ctx(
    now: datetime,
    *runs: RunRecord,
    tz: tzinfo = UTC,
    task: str = "t",
    history: MemoryHistory | None = None,
) -> Context:
    """Return a context at ``now`` over a history made of ``runs``."""
    if history is None:
        history = MemoryHistory(runs)
    return Context(task=task, now=now, history=history, tz=tz)


def day_bounds(day: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """Return the instants that begin and end the local calendar day ``day`` in ``tz``."""
    from django_rocket.conditions.periods import resolve_wall

    first = datetime.fromisoformat(day)
    return (
        resolve_wall(first, tz).astimezone(UTC),
        resolve_wall(first + timedelta(days=1), tz).astimezone(UTC),
    )


def simulate(condition, start: datetime, end: datetime, tz: tzinfo, task: str = "t") -> list:
    """Run a minimal scheduler from ``start`` to ``end`` and return the start instants.

    Whenever the condition is true a run starts and finishes at once; otherwise
    time jumps to the condition's next change, which must lie in the future.
    """
    history = MemoryHistory()
    starts: list[datetime] = []
    now = start
    for _ in range(100_000):
        if now >= end:
            return starts
        context = Context(task=task, now=now, history=history, tz=tz)
        if condition.is_true(context):
            assert not starts or starts[-1] != now, f"{condition} still true after a run at {now}"
            history.record_start(RunRecord(task, len(starts), now, now, "success"))
            starts.append(now)
            continue
        following = condition.next_change(context)
        if following is None:
            return starts
        assert following > now, f"{condition}: next change {following} is not after {now}"
        now = following
    raise AssertionError("The simulation did not finish.")


def step_simulate(condition, start: datetime, end: datetime, tz: tzinfo, step: timedelta) -> list:
    """Like :func:`simulate`, but polling every ``step`` instead of trusting next_change."""
    history = MemoryHistory()
    starts: list[datetime] = []
    now = start
    while now < end:
        if condition.is_true(Context(task="t", now=now, history=history, tz=tz)):
            history.record_start(RunRecord("t", len(starts), now, now, "success"))
            starts.append(now)
        now += step
    return starts
