"""Conditions about time: once per period, elapsed time, time-of windows and cron."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import ClassVar

from .base import Condition, Context
from .durations import format_duration, parse_duration
from .periods import Span, resolve_wall

__all__ = [
    "During",
    "Every",
    "PeriodRun",
    "TimeOf",
    "daily",
    "during",
    "every",
    "hourly",
    "minutely",
    "monthly",
    "secondly",
    "time_of_day",
    "time_of_hour",
    "time_of_minute",
    "time_of_month",
    "time_of_second",
    "time_of_week",
    "time_of_year",
    "weekly",
    "yearly",
]

# The finishes that "use up" a period: a run still going or a crash does not.
PERIOD_OUTCOMES = frozenset({"success", "fail", "terminate", "inaction"})
TICK = timedelta(microseconds=1)


class _Narrowable(Condition):
    """A condition over a span that ``.between()`` and friends narrow."""

    __slots__ = ()
    span: Span
    names: ClassVar[dict[str, str]]

    def _narrow(self, method: str, *values: object) -> Condition:
        if self.span.method is not None:
            raise TypeError(
                f"{self} is already narrowed; write the whole window in one call, "
                f"e.g. {self.names[self.span.unit]}.between(start, end)."
            )
        return replace(self, span=Span.make(self.span.unit, method, *values))  # type: ignore[type-var]

    def between(self, start: object, end: object) -> Condition:
        """Narrow to the window from start to end (wrapping past the cycle end if needed)."""
        return self._narrow("between", start, end)

    def before(self, end: object) -> Condition:
        """Narrow to the window from the cycle start to end."""
        return self._narrow("before", end)

    def after(self, start: object) -> Condition:
        """Narrow to the window from start to the cycle end."""
        return self._narrow("after", start)

    def at(self, value: object) -> Condition:
        """Narrow to one unit of the cycle, e.g. the hour from 10:00 or all of Monday."""
        return self._narrow("at", value)

    def on(self, value: object) -> Condition:
        """Narrow to one unit of the cycle, e.g. all of Monday (the same as at)."""
        return self._narrow("at", value)

    def starting(self, value: object) -> Condition:
        """Shift the cycle to begin at value, e.g. a week from Friday 18:00."""
        return self._narrow("starting", value)

    def text(self) -> str:
        return self.names[self.span.unit] + self.span.suffix()

    def __repr__(self) -> str:
        return self.text()


@dataclass(frozen=True, repr=False)
class PeriodRun(_Narrowable):
    """True inside the window of the period while the task has not finished in it."""

    span: Span
    names: ClassVar[dict[str, str]] = {
        "second": "secondly",
        "minute": "minutely",
        "hour": "hourly",
        "day": "daily",
        "week": "weekly",
        "month": "monthly",
        "year": "yearly",
    }

    def _finished(self, ctx: Context, start: datetime, end: datetime) -> datetime | None:
        history = ctx.history
        last = history.last_finish(ctx.task, PERIOD_OUTCOMES)
        if last is None or last < start:
            return None
        if last < end:
            return last
        found = [
            events[-1]
            for outcome in PERIOD_OUTCOMES
            if (events := history.events(ctx.task, outcome, start, end))
        ]
        return max(found) if found else None

    def is_true(self, ctx: Context) -> bool:
        window = self.span.current(ctx.utc, ctx.wall, ctx.tz)
        return window is not None and self._finished(ctx, *window) is None

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        now, wall, tz = ctx.utc, ctx.wall, ctx.tz
        window = self.span.current(now, wall, tz)
        if window is None:
            return False, self.span.next_start(now, wall, tz)
        return self._finished(ctx, *window) is None, window.end

    def facts(self, ctx: Context) -> dict[str, object]:
        window = self.span.current(ctx.utc, ctx.wall, ctx.tz)
        if window is None:
            return {"window": None, "next_window": self.span.next_start(ctx.utc, ctx.wall, ctx.tz)}
        return {"window": window.to_list(), "finished_in_window": self._finished(ctx, *window)}

    def depends_on(self, task: str) -> frozenset[str]:
        return frozenset({task})


@dataclass(frozen=True, repr=False)
class TimeOf(_Narrowable):
    """True while now is inside the window; reads no history."""

    span: Span
    names: ClassVar[dict[str, str]] = {
        "second": "time_of_second",
        "minute": "time_of_minute",
        "hour": "time_of_hour",
        "day": "time_of_day",
        "week": "time_of_week",
        "month": "time_of_month",
        "year": "time_of_year",
    }

    def is_true(self, ctx: Context) -> bool:
        if self.span.is_full:
            return True
        return self.span.current(ctx.utc, ctx.wall, ctx.tz) is not None

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        if self.span.is_full:
            return True, None
        now, wall, tz = ctx.utc, ctx.wall, ctx.tz
        window = self.span.current(now, wall, tz)
        if window is None:
            return False, self.span.next_start(now, wall, tz)
        return True, window.end

    def facts(self, ctx: Context) -> dict[str, object]:
        if self.span.is_full:
            return {}
        window = self.span.current(ctx.utc, ctx.wall, ctx.tz)
        if window is None:
            return {"window": None, "next_window": self.span.next_start(ctx.utc, ctx.wall, ctx.tz)}
        return {"window": window.to_list()}


_EVERY_OUTCOMES = {
    "success": frozenset({"success"}),
    "fail": frozenset({"fail"}),
    "finish": PERIOD_OUTCOMES,
}


@dataclass(frozen=True, repr=False)
class Every(Condition):
    """True when the task has not started (or finished) within the last ``period``."""

    period: timedelta
    based: str = "run"

    def __post_init__(self) -> None:
        if self.based not in ("run", *_EVERY_OUTCOMES):
            raise ValueError(
                f"every(based={self.based!r}) is not supported; "
                "use 'run', 'success', 'fail' or 'finish'."
            )

    def _last(self, ctx: Context) -> datetime | None:
        if self.based == "run":
            return ctx.history.last_start(ctx.task)
        return ctx.history.last_finish(ctx.task, _EVERY_OUTCOMES[self.based])

    def is_true(self, ctx: Context) -> bool:
        last = self._last(ctx)
        return last is None or last < ctx.utc - self.period

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        last = self._last(ctx)
        if last is None or last < ctx.utc - self.period:
            return True, None
        # The run at ``last`` counts for ``period`` inclusive, so it stops counting a tick later.
        return False, last + self.period + TICK

    def facts(self, ctx: Context) -> dict[str, object]:
        return {"last_start" if self.based == "run" else f"last_{self.based}": self._last(ctx)}

    def depends_on(self, task: str) -> frozenset[str]:
        return frozenset({task})

    def text(self) -> str:
        based = "" if self.based == "run" else f", based={self.based!r}"
        return f"every({format_duration(self.period)!r}{based})"

    def __repr__(self) -> str:
        return self.text()


def every(period: str | timedelta | float, based: str = "run") -> Every:
    """Return a condition true when the task has not run within the last ``period``.

    ``based`` chooses the event: "run" (a start, the default), "success",
    "fail" or "finish" (success, fail, terminate or inaction).
    """
    if based == "start":
        based = "run"
    return Every(parse_duration(period), based)


def _instant_text(value: object, side: str) -> str:
    """Return the canonical text of a fixed instant, or raise ValueError."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not a valid {side} for during(); write a date or a date and "
                "time such as '2026-12-24' or '2026-12-24 18:00'."
            ) from None
    else:
        raise TypeError(f"during() takes dates, datetimes or ISO text, got {value!r}.")
    if moment.utcoffset() is not None:
        return moment.isoformat(sep=" ")
    text = moment.isoformat(sep=" ")
    return text[:-9] if text.endswith(" 00:00:00") else text.removesuffix(":00")


def _resolve(text: str, tz: tzinfo) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.utcoffset() is not None:
        return moment.astimezone(UTC)
    return resolve_wall(moment, tz)


@dataclass(frozen=True, repr=False)
class During(Condition):
    """True from a fixed instant to another (Rocketry's StaticInterval); reads no history.

    ``start`` and ``end`` are ISO text; naive ones are local wall-clock times of
    the scheduler's time zone. None leaves that side open.
    """

    start: str | None = None
    end: str | None = None

    def _bounds(self, ctx: Context) -> tuple[datetime | None, datetime | None]:
        start = None if self.start is None else _resolve(self.start, ctx.tz)
        end = None if self.end is None else _resolve(self.end, ctx.tz)
        return start, end

    def is_true(self, ctx: Context) -> bool:
        return self.evaluate(ctx)[0]

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        start, end = self._bounds(ctx)
        now = ctx.utc
        if start is not None and now < start:
            return False, start
        if end is not None and now >= end:
            return False, None
        return True, end

    def facts(self, ctx: Context) -> dict[str, object]:
        start, end = self._bounds(ctx)
        return {"window": [start, end]}

    def text(self) -> str:
        if self.end is None:
            return f"during(start={self.start!r})" if self.start is not None else "during()"
        if self.start is None:
            return f"during(end={self.end!r})"
        return f"during({self.start!r}, {self.end!r})"

    def __repr__(self) -> str:
        return self.text()


def during(start: object = None, end: object = None) -> During:
    """Return a condition true from ``start`` (inclusive) to ``end`` (exclusive).

    Each is a date (its midnight), a datetime or ISO text such as
    ``"2026-12-24 18:00"``; naive ones are local times. None leaves a side open.
    """
    first = None if start is None else _instant_text(start, "start")
    last = None if end is None else _instant_text(end, "end")
    if first is not None and last is not None:
        a, b = datetime.fromisoformat(first), datetime.fromisoformat(last)
        if (a.utcoffset() is None) == (b.utcoffset() is None) and a >= b:
            raise ValueError(f"during({first!r}, {last!r}): the start must be before the end.")
    return During(first, last)


secondly = PeriodRun(Span("second"))
minutely = PeriodRun(Span("minute"))
hourly = PeriodRun(Span("hour"))
daily = PeriodRun(Span("day"))
weekly = PeriodRun(Span("week"))
monthly = PeriodRun(Span("month"))
yearly = PeriodRun(Span("year"))

time_of_second = TimeOf(Span("second"))
time_of_minute = TimeOf(Span("minute"))
time_of_hour = TimeOf(Span("hour"))
time_of_day = TimeOf(Span("day"))
time_of_week = TimeOf(Span("week"))
time_of_month = TimeOf(Span("month"))
time_of_year = TimeOf(Span("year"))
