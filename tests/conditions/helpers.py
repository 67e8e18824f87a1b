"""Shared helpers for the condition tests: building histories and contexts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, tzinfo

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
