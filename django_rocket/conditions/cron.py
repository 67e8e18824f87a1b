"""Cron expressions matched against the local wall clock.

Fields are minute, hour, day of month, month and day of week, with ``*``,
lists, ranges, steps and English names. When both day fields are restricted
(each leaves out some day) a day matches either of them.

A matching wall-clock minute that a spring-forward gap skips is moved to the
first instant after the gap; a minute that a fall-back transition repeats
matches its first occurrence only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache

from .base import Condition, Context
from .periods import Window, resolve_wall

__all__ = ["Cron", "CronSchedule", "CronTime", "cron", "crontime"]

MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: index + 1 for index, name in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {name: index for index, name in enumerate(_DAYS)}),
)
_ITEM = re.compile(r"(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_SEARCH_DAYS = 366 * 8 + 2


def _parse_field(
    text: str, name: str, low: int, high: int, names: dict[str, int]
) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if not match:
            raise ValueError(f"cannot read {item!r} in the {name} field")
        step = int(match["step"]) if match["step"] else 1
        if step < 1:
            raise ValueError(f"the step in {item!r} must be at least 1")
        if match["range"] == "*":
            first, last = low, high
        else:
            bounds = [_value(part, name, low, high, names) for part in match["range"].split("-")]
            first = bounds[0]
            last = bounds[-1] if len(bounds) == 2 else (high if match["step"] else first)
            if last < first:
                raise ValueError(f"the range {item!r} in the {name} field runs backwards")
        values.update(range(first, last + 1, step))
    if name == "day of week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


def _value(part: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    if part.isdigit():
        value = int(part)
    elif part[:3] in names and (len(part) == 3 or part in _LONG_NAMES):
        value = names[part[:3]]
    else:
        raise ValueError(f"{part!r} is not a valid {name}")
    if not low <= value <= high:
        raise ValueError(f"{part!r} is outside {low}-{high} in the {name} field")
    return value


_LONG_NAMES = frozenset(
    {
        *("january", "february", "march", "april", "june", "july", "august"),
        *("september", "october", "november", "december", "sunday", "monday"),
        *("tuesday", "wednesday", "thursday", "friday", "saturday"),
    }
)


@dataclass(frozen=True)
class CronSchedule:
    """The matching minutes of a cron expression."""

    expr: str
    minutes: frozenset[int] = field(init=False, repr=False, compare=False)
    hours: frozenset[int] = field(init=False, repr=False, compare=False)
    days: frozenset[int] = field(init=False, repr=False, compare=False)
    months: frozenset[int] = field(init=False, repr=False, compare=False)
    weekdays: frozenset[int] = field(init=False, repr=False, compare=False)
    either_day: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = self.expr.lower().split()
        if len(parts) != 5:
            raise ValueError(
                f"A cron expression has five fields (minute hour day-of-month month "
                f"day-of-week), e.g. '30 2 * * *'; got {self.expr!r}."
            )
        try:
            sets = [_parse_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
        except ValueError as error:
            raise ValueError(f"Invalid cron expression {self.expr!r}: {error}.") from None
        object.__setattr__(self, "expr", " ".join(parts))
        for attr, values in zip(
            ("minutes", "hours", "days", "months", "weekdays"), sets, strict=True
        ):
            object.__setattr__(self, attr, values)
        # A day field is restricted when it leaves out some day ("*/2" does, as in croniter).
        either = len(self.days) < 31 and len(self.weekdays) < 7
        object.__setattr__(self, "either_day", either)
        possible = either or any(
            day <= _DAYS_IN_MONTH[month - 1] for month in self.months for day in self.days
        )
        if not possible:
            raise ValueError(f"The cron expression {self.expr!r} names a day that never occurs.")

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        return (in_month or in_week) if self.either_day else (in_month and in_week)

    def matches(self, wall: datetime) -> bool:
        """Return whether a naive wall-clock minute matches."""
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and self.day_matches(wall.date())
        )

    def walls_from(self, start: datetime) -> Iterator[datetime]:
        """Yield the matching naive wall-clock minutes at or after ``start``, ascending."""
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        day = start.date()
        first = start.replace(second=0, microsecond=0)
        if first < start:
            first += MINUTE
        for _ in range(_SEARCH_DAYS):
            if self.day_matches(day):
                for hour in hours:
                    for minute in minutes:
                        candidate = datetime.combine(day, time(hour, minute))
                        if candidate >= first:
                            yield candidate
            day += timedelta(days=1)

    def current(self, now: datetime, wall: datetime, tz: tzinfo) -> Window | None:
        """Return the matching minute that contains now, if any."""
        naive = wall.replace(tzinfo=None, second=0, microsecond=0)
        begin = now - timedelta(seconds=wall.second, microseconds=wall.microsecond)
        if not wall.fold and self.matches(naive):
            return Window(begin, begin + MINUTE)
        gap = _gap_ending_at(begin, naive.date(), tz)
        if gap is not None:
            gap_start, gap_end = gap
            moment = gap_start
            while moment < gap_end:
                if self.matches(moment):
                    return Window(begin, begin + MINUTE)
                moment += MINUTE
        return None

    def next_start(self, now: datetime, wall: datetime, tz: tzinfo) -> datetime:
        """Return the first start of a matching minute strictly after now."""
        naive = wall.replace(tzinfo=None, second=0, microsecond=0)
        for candidate in self.walls_from(naive + MINUTE):
            instant = resolve_wall(candidate, tz)
            if instant > now:
                return instant
        raise ValueError(f"The cron expression {self.expr!r} does not match within eight years.")


@lru_cache(maxsize=1024)
def _transitions(day: date, tz: tzinfo) -> tuple[tuple[datetime, datetime, datetime], ...]:
    """Return the spring-forward gaps of a local date as (instant, gap start, gap end) walls."""
    begin = resolve_wall(datetime.combine(day, time()), tz)
    end = resolve_wall(datetime.combine(day + timedelta(days=1), time()), tz)
    before, after = begin.astimezone(tz).utcoffset(), end.astimezone(tz).utcoffset()
    if before is None or after is None or after <= before:
        return ()
    low, high = begin, end
    while high - low > timedelta(microseconds=1):
        middle = low + (high - low) // 2
        if middle.astimezone(tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    gap_end = high.astimezone(tz).replace(tzinfo=None)
    gap_start = (high - timedelta(microseconds=1)).astimezone(tz).replace(tzinfo=None)
    gap_start += timedelta(microseconds=1)
    return ((high.astimezone(UTC), gap_start, gap_end),)


def _gap_ending_at(instant: datetime, day: date, tz: tzinfo) -> tuple[datetime, datetime] | None:
    # A gap that ends at local midnight belongs to the day before.
    for moment, gap_start, gap_end in _transitions(day, tz) + _transitions(day - _DAY, tz):
        if moment == instant:
            return gap_start.replace(second=0, microsecond=0), gap_end
    return None


class _CronCondition(Condition):
    __slots__ = ()
    schedule: CronSchedule

    def __repr__(self) -> str:
        return self.text()


@dataclass(frozen=True, repr=False)
class Cron(_CronCondition):
    """True inside a matching minute while the task has not started in it."""

    schedule: CronSchedule

    def _started(self, ctx: Context, window: Window) -> bool:
        return len(ctx.history.events(ctx.task, "start", window.start, window.end)) > 0

    def is_true(self, ctx: Context) -> bool:
        window = self.schedule.current(ctx.utc, ctx.wall, ctx.tz)
        return window is not None and not self._started(ctx, window)

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        window = self.schedule.current(ctx.utc, ctx.wall, ctx.tz)
        if window is None:
            return False, self.schedule.next_start(ctx.utc, ctx.wall, ctx.tz)
        return not self._started(ctx, window), window.end

    def facts(self, ctx: Context) -> dict[str, object]:
        window = self.schedule.current(ctx.utc, ctx.wall, ctx.tz)
        if window is None:
            return {"next_match": self.schedule.next_start(ctx.utc, ctx.wall, ctx.tz)}
        return {"window": window.to_list(), "started_in_window": self._started(ctx, window)}

    def depends_on(self, task: str) -> frozenset[str]:
        return frozenset({task})

    def text(self) -> str:
        return f"cron({self.schedule.expr!r})"


@dataclass(frozen=True, repr=False)
class CronTime(_CronCondition):
    """True inside a matching minute; reads no history."""

    schedule: CronSchedule

    def is_true(self, ctx: Context) -> bool:
        return self.schedule.current(ctx.utc, ctx.wall, ctx.tz) is not None

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        window = self.schedule.current(ctx.utc, ctx.wall, ctx.tz)
        if window is None:
            return False, self.schedule.next_start(ctx.utc, ctx.wall, ctx.tz)
        return True, window.end

    def facts(self, ctx: Context) -> dict[str, object]:
        window = self.schedule.current(ctx.utc, ctx.wall, ctx.tz)
        if window is None:
            return {"next_match": self.schedule.next_start(ctx.utc, ctx.wall, ctx.tz)}
        return {"window": window.to_list()}

    def text(self) -> str:
        return f"crontime({self.schedule.expr!r})"


def cron(expr: str) -> Cron:
    """Return a condition true once in each minute matching the cron expression."""
    return Cron(CronSchedule(expr))


def crontime(expr: str) -> CronTime:
    """Return a condition true during every minute matching the cron expression."""
    return CronTime(CronSchedule(expr))
