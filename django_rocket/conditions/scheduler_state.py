"""Conditions about the scheduler itself: how long it has run and how many cycles it made.

They read ``Context.scheduler_started_at`` and ``Context.scheduler_cycles``,
which the scheduler fills in; outside a scheduler (an explanation in the
admin, a test without them) they are false.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .base import Condition, Context
from .durations import format_duration, parse_duration
from .timing import TICK

__all__ = ["SchedulerCycles", "SchedulerRunning", "scheduler_cycles", "scheduler_running"]


def _count(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"scheduler_cycles({name}=...) takes a whole number >= 0, got {value!r}.")
    return value


@dataclass(frozen=True, repr=False)
class SchedulerRunning(Condition):
    """True while the scheduler has been running for between ``more_than`` and ``less_than``.

    Both ends are inclusive, as in Rocketry; either may be None (no bound).
    """

    more_than: timedelta | None = None
    less_than: timedelta | None = None

    def __post_init__(self) -> None:
        low, high = self.more_than, self.less_than
        if low is not None and high is not None and low > high:
            raise ValueError("scheduler_running(more_than, less_than): more_than must be shorter.")

    def __call__(
        self,
        more_than: str | timedelta | float | None = None,
        less_than: str | timedelta | float | None = None,
    ) -> SchedulerRunning:
        if self != SchedulerRunning():
            raise TypeError(f"{self} already has its bounds.")
        return SchedulerRunning(
            None if more_than is None else parse_duration(more_than),
            None if less_than is None else parse_duration(less_than),
        )

    def past(self, period: str | timedelta | float) -> SchedulerRunning:
        """Return the condition that the scheduler started within the last ``period``."""
        return self(less_than=period)

    def _age(self, ctx: Context) -> timedelta | None:
        started = ctx.scheduler_started_at
        return None if started is None else ctx.utc - started

    def is_true(self, ctx: Context) -> bool:
        age = self._age(ctx)
        if age is None or age < timedelta(0):
            return False
        low, high = self.more_than, self.less_than
        return (low is None or age >= low) and (high is None or age <= high)

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        value = self.is_true(ctx)
        started = ctx.scheduler_started_at
        if started is None:
            return value, None
        changes = [
            when
            for when in (
                None if self.more_than is None else started + self.more_than,
                None if self.less_than is None else started + self.less_than + TICK,
            )
            if when is not None and when > ctx.utc
        ]
        return value, min(changes) if changes else None

    def facts(self, ctx: Context) -> dict[str, object]:
        return {"scheduler_started_at": ctx.scheduler_started_at}

    def text(self) -> str:
        arguments = [
            f"{name}={format_duration(value)!r}"
            for name, value in (("more_than", self.more_than), ("less_than", self.less_than))
            if value is not None
        ]
        return f"scheduler_running({', '.join(arguments)})" if arguments else "scheduler_running"

    def __repr__(self) -> str:
        return self.text()


@dataclass(frozen=True, repr=False)
class SchedulerCycles(Condition):
    """True while the number of cycles the scheduler has completed is in range.

    ``more_than`` and ``less_than`` are strict, as in Rocketry; ``exactly``
    asks for one number. A cycle is one pass over the tasks: the first pass
    sees 0. The count only moves when the scheduler wakes, so the condition
    never wakes it.
    """

    more_than: int | None = None
    less_than: int | None = None
    exactly: int | None = None

    def __post_init__(self) -> None:
        for name in ("more_than", "less_than", "exactly"):
            _count(getattr(self, name), name)
        if self.exactly is not None and (self.more_than, self.less_than) != (None, None):
            raise TypeError("scheduler_cycles() takes exactly, or more_than and less_than.")

    def is_true(self, ctx: Context) -> bool:
        cycles = ctx.scheduler_cycles
        if cycles is None:
            return False
        if self.exactly is not None:
            return cycles == self.exactly
        return (self.more_than is None or cycles > self.more_than) and (
            self.less_than is None or cycles < self.less_than
        )

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        return self.is_true(ctx), None

    def facts(self, ctx: Context) -> dict[str, object]:
        return {"scheduler_cycles": ctx.scheduler_cycles}

    def text(self) -> str:
        arguments = [
            f"{name}={value}"
            for name, value in (
                ("more_than", self.more_than),
                ("less_than", self.less_than),
                ("exactly", self.exactly),
            )
            if value is not None
        ]
        return f"scheduler_cycles({', '.join(arguments)})"

    def __repr__(self) -> str:
        return self.text()


scheduler_running = SchedulerRunning()


def scheduler_cycles(
    more_than: int | None = None, less_than: int | None = None, exactly: int | None = None
) -> SchedulerCycles:
    """Return a condition on the number of cycles the scheduler has completed."""
    return SchedulerCycles(more_than, less_than, exactly)
