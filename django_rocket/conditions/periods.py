"""Calendar periods and the windows inside them, as instants in a time zone.

A :class:`Span` is a window inside a repeating cycle (a minute, an hour, a
day, a week, a month), such as "10:00 to 12:00 of every day". Offsets are
microseconds of local wall-clock time from the start of the cycle.

Cycles of a day or longer follow the local calendar: a wall-clock time on a
given date becomes the first instant at which the clock shows it, and a time
that falls in a spring-forward gap becomes the first instant after the gap.
Shorter cycles follow elapsed time, so an hour is always sixty minutes and a
fall-back night has twenty-five hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import NamedTuple

__all__ = ["UNITS", "Span", "Window", "local_wall", "resolve_wall"]

US = 1
MS = 1_000
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
MONTH = 31 * DAY  # the longest month; shorter months are clamped
YEAR = 366 * DAY  # a leap year; Feb 29 is clamped to Mar 1 in other years

UNITS = ("second", "minute", "hour", "day", "week", "month", "year")
CYCLE = {
    "second": SECOND,
    "minute": MINUTE,
    "hour": HOUR,
    "day": DAY,
    "week": WEEK,
    "month": MONTH,
    "year": YEAR,
}
# One unit of a value within the cycle: what ``.at(x)`` lasts and what an integer end is ceiled to.
# A year's unit is a month, whose length varies: see _year_step.
STEP = {
    "second": MS,
    "minute": SECOND,
    "hour": MINUTE,
    "day": HOUR,
    "week": DAY,
    "month": DAY,
    "year": DAY,
}
CALENDAR_UNITS = frozenset({"day", "week", "month", "year"})

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NAMES = {name.lower(): index for index, name in enumerate(MONTHS)}
_MONTH_NAMES.update(
    (name, index)
    for index, name in enumerate(
        (
            *("january", "february", "march", "april", "may", "june", "july"),
            *("august", "september", "october", "november", "december"),
        )
    )
)
# Where each month begins in a leap year, in microseconds; the last is the year's end.
_MONTH_STARTS = tuple(
    day * DAY for day in (0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335, 366)
)

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WEEKDAY_NAMES = {name.lower(): index for index, name in enumerate(WEEKDAYS)}
_WEEKDAY_NAMES.update(
    (name, index)
    for index, name in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    )
)

# Fractions of a second: digits past the sixth are cut off, as Rocketry does.
_CLOCK = re.compile(r"(?P<h>\d{1,2}):(?P<m>\d\d)(?::(?P<s>\d\d)(?:\.(?P<f>\d+))?)?")
_MINUTE_SECOND = re.compile(r"(?P<m>\d{1,2}):(?P<s>\d\d)(?:\.(?P<f>\d+))?")
# Rocketry reads a minute-cycle value written "SS:00" as SS seconds.
_SECOND = re.compile(r"(?P<s>\d{1,2})(?::00)?(?:\.(?P<f>\d+))?")
_QUARTER = re.compile(r"(?P<n>[0-4])\s*(?:quarters?|q)", re.IGNORECASE)
# The keys a window value given as a dict may use, per cycle, as in Rocketry.
_DICT_KEYS = {
    "minute": ("second", "microsecond"),
    "hour": ("minute", "second", "microsecond"),
    "day": ("hour", "minute", "second", "microsecond"),
    "week": ("day", "hour", "minute", "second", "microsecond"),
}
_KEY_LENGTH = {"day": DAY, "hour": HOUR, "minute": MINUTE, "second": SECOND, "microsecond": US}
_MILLISECOND = re.compile(r"(?P<ms>\d{1,4})(?:\.(?P<f>\d{1,3}))?")
_WEEKDAY = re.compile(r"(?P<day>[A-Za-z]+)(?:\s+(?P<time>\S.*))?")
_MONTHDAY = re.compile(r"(?P<day>\d{1,2})(?:st|nd|rd|th|\.)?(?:\s+(?P<time>\S.*))?", re.IGNORECASE)
_YEARDAY = re.compile(r"(?P<month>[A-Za-z]+)(?:\s+(?P<rest>\S.*))?")

# Formats in placeholders only, so that a message names no value but the bad one.
_FORMATS = {
    "second": "milliseconds as text 'NNN' (or a whole number of milliseconds)",
    "minute": "seconds as text 'SS' (or a whole number of seconds)",
    "hour": "minutes and seconds as text 'MM:SS' or quarters such as '1 quarter' (or a whole "
    "number of minutes)",
    "day": "a time 'HH:MM' or 'HH:MM:SS' (or a whole hour)",
    "week": "a weekday name, optionally followed by a time 'HH:MM' (or a weekday number, "
    "Monday being one)",
    "month": "a day of the month such as 'Nth', optionally followed by a time 'HH:MM' "
    "(or a whole day number)",
    "year": "a month name, optionally followed by a day 'Nth' and a time 'HH:MM' (or a "
    "month number, January being one)",
}


def _fraction(text: str | None) -> int:
    return int(text[:6].ljust(6, "0")) if text else 0


def _clock_offset(text: str, allow_end: bool) -> int:
    match = _CLOCK.fullmatch(text.strip())
    if not match:
        raise ValueError
    h, m, s = int(match["h"]), int(match["m"]), int(match["s"] or 0)
    offset = h * HOUR + m * MINUTE + s * SECOND + _fraction(match["f"])
    if m > 59 or s > 59 or offset > DAY or (offset == DAY and not allow_end):
        raise ValueError
    return offset


def parse_value(unit: str, value: object, side: str) -> int:
    """Return the offset, in microseconds from the cycle start, that a window value means.

    An integer, a weekday name and a day of the month are whole units: as an
    end they are ceiled to the end of that unit. Other strings are points.
    """
    end = side == "end"
    cycle = CYCLE[unit]
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int) and unit == "year":
            if not 1 <= value <= 12:
                raise ValueError
            return _MONTH_STARTS[value] if end else _MONTH_STARTS[value - 1]
        if isinstance(value, int):
            offset = _parse_int(unit, value)
            return offset + STEP[unit] if end else offset
        if isinstance(value, dict):
            offset = _parse_dict(unit, value)
            if offset > cycle or (offset == cycle and not end):
                raise ValueError
            return offset
        if not isinstance(value, str):
            raise ValueError
        offset = _parse_str(unit, value.strip(), end)
    except ValueError:
        raise _bad_value(
            value, f"{value!r} is not a valid {'end' if end else 'start'} for a time of {unit}"
        ) from None
    if offset > cycle or (offset == cycle and not end):
        raise _bad_value(value, f"{value!r} is outside the {unit}")
    return offset


def _bad_value(value: object, reason: str) -> ValueError:
    unit = reason.rsplit(" ", 1)[-1]
    error = ValueError(f"{reason}; use {_FORMATS[unit]}.")
    # Lets a parser point at the argument at fault.
    error.bad_value = value  # type: ignore[attr-defined]
    return error


def _parse_dict(unit: str, value: dict[str, int]) -> int:
    """Return the offset of a value such as ``{"hour": 10, "minute": 30}`` (a point)."""
    keys = _DICT_KEYS.get(unit, ())
    if not value or any(key not in keys for key in value):
        raise ValueError
    offset = 0
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValueError
        offset += number * _KEY_LENGTH[key]
    return offset


def _parse_int(unit: str, value: int) -> int:
    low, high = {
        "second": (0, 999),
        "minute": (0, 59),
        "hour": (0, 59),
        "day": (0, 23),
        "week": (1, 7),
        "month": (1, 31),
    }[unit]
    if not low <= value <= high:
        raise ValueError
    return (value - low) * STEP[unit]


def _parse_str(unit: str, text: str, end: bool) -> int:
    if unit == "second":
        match = _MILLISECOND.fullmatch(text)
        if not match:
            raise ValueError
        return int(match["ms"]) * MS + int((match["f"] or "").ljust(3, "0"))
    if unit == "minute":
        match = _SECOND.fullmatch(text)
        if not match or int(match["s"]) > 60 or (int(match["s"]) == 60 and match["f"]):
            raise ValueError
        return int(match["s"]) * SECOND + _fraction(match["f"])
    if unit == "hour":
        quarter = _QUARTER.fullmatch(text)
        if quarter:
            return int(quarter["n"]) * 15 * MINUTE
        match = _MINUTE_SECOND.fullmatch(text)
        if not match or int(match["s"]) > 59 or int(match["m"]) > 60:
            raise ValueError
        return int(match["m"]) * MINUTE + int(match["s"]) * SECOND + _fraction(match["f"])
    if unit == "day":
        return _clock_offset(text, allow_end=end)
    if unit == "year":
        return _year_offset(text, end)
    if unit == "week":
        match = _WEEKDAY.fullmatch(text)
        if not match or match["day"].lower() not in _WEEKDAY_NAMES:
            raise ValueError
        day = _WEEKDAY_NAMES[match["day"].lower()]
        if match["time"] is None:
            return (day + 1) * DAY if end else day * DAY
        return day * DAY + _clock_offset(match["time"], allow_end=False)
    match = _MONTHDAY.fullmatch(text)
    if not match or not 1 <= int(match["day"]) <= 31:
        raise ValueError
    day = int(match["day"]) - 1
    if match["time"] is None:
        return (day + 1) * DAY if end else day * DAY
    return day * DAY + _clock_offset(match["time"], allow_end=False)


def _year_offset(text: str, end: bool) -> int:
    match = _YEARDAY.fullmatch(text)
    if not match or match["month"].lower() not in _MONTH_NAMES:
        raise ValueError
    month = _MONTH_NAMES[match["month"].lower()]
    if match["rest"] is None:
        return _MONTH_STARTS[month + 1] if end else _MONTH_STARTS[month]
    within = _parse_str("month", match["rest"], end)
    length = _MONTH_STARTS[month + 1] - _MONTH_STARTS[month]
    if within > length or (within == length and not end):
        raise ValueError
    return _MONTH_STARTS[month] + within


def _year_step(offset: int) -> int:
    """Return how long ``.at()`` lasts from an offset in the year: a month from its start."""
    if offset in _MONTH_STARTS:
        index = _MONTH_STARTS.index(offset)
        return _MONTH_STARTS[index + 1] - offset
    return DAY


def _render_year(offset: int, end: bool) -> str:
    if end and offset in _MONTH_STARTS:
        # A bare month as an end means the end of that month.
        return MONTHS[_MONTH_STARTS.index(offset) - 1]
    month = max(index for index, start in enumerate(_MONTH_STARTS[:-1]) if start <= offset)
    rest = offset - _MONTH_STARTS[month]
    if rest == 0:
        return MONTHS[month]
    return f"{MONTHS[month]} {render_value('month', rest, 'end' if end else 'start')}"


def _render_clock(offset: int) -> str:
    h, rest = divmod(offset, HOUR)
    m, rest = divmod(rest, MINUTE)
    s, us = divmod(rest, SECOND)
    if us:
        return f"{h:02d}:{m:02d}:{s:02d}.{us:06d}".rstrip("0")
    if s:
        return f"{h:02d}:{m:02d}:{s:02d}"
    return f"{h:02d}:{m:02d}"


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def render_value(unit: str, offset: int, side: str) -> str:
    """Render an offset as the canonical string that :func:`parse_value` reads back."""
    end = side == "end"
    if unit == "second":
        ms, us = divmod(offset, MS)
        return f"{ms}.{us:03d}".rstrip("0") if us else str(ms)
    if unit == "minute":
        s, us = divmod(offset, SECOND)
        return f"{s:02d}.{us:06d}".rstrip("0") if us else f"{s:02d}"
    if unit == "hour":
        m, rest = divmod(offset, MINUTE)
        s, us = divmod(rest, SECOND)
        return f"{m:02d}:{s:02d}.{us:06d}".rstrip("0") if us else f"{m:02d}:{s:02d}"
    if unit == "day":
        return _render_clock(offset)
    if unit == "year":
        return _render_year(offset, end)
    day, rest = divmod(offset, DAY)
    if rest == 0 and end:
        # A bare day name as an end means the end of that day.
        return WEEKDAYS[day - 1] if unit == "week" else _ordinal(day)
    name = WEEKDAYS[day] if unit == "week" else _ordinal(day + 1)
    return name if rest == 0 else f"{name} {_render_clock(rest)}"


class Window(NamedTuple):
    """One occurrence of a span: the instants [start, end), in UTC."""

    start: datetime
    end: datetime

    def __contains__(self, instant: object) -> bool:
        return isinstance(instant, datetime) and self.start <= instant < self.end

    def to_list(self) -> list[datetime]:
        return [self.start, self.end]


_METHODS = ("between", "before", "after", "at", "starting")


@dataclass(frozen=True, slots=True)
class Span:
    """A window repeated in every cycle of a unit, e.g. 10:00-12:00 of every day.

    ``start`` and ``end`` are offsets in microseconds; ``end <= start`` wraps
    into the next cycle (``end == start`` is a full cycle beginning at start).
    ``method`` is how it was written: None (the whole cycle) or one of
    between, before, after, at, starting.
    """

    unit: str
    method: str | None = None
    start: int = 0
    end: int = 0

    def __post_init__(self) -> None:
        if self.unit not in CYCLE:
            raise ValueError(f"Unknown period unit {self.unit!r}.")
        if self.method is None:
            object.__setattr__(self, "end", CYCLE[self.unit])
        elif self.method not in _METHODS:
            raise ValueError(f"Unknown window method {self.method!r}.")

    @classmethod
    def make(cls, unit: str, method: str, *values: object) -> Span:
        """Build a span from the values a user wrote, e.g. ``("between", "10:00", "12:00")``."""
        cycle = CYCLE[unit]
        if method == "on":
            method = "at"
        if method == "between":
            start, end = parse_value(unit, values[0], "start"), parse_value(unit, values[1], "end")
        elif method == "before":
            start, end = 0, parse_value(unit, values[0], "end")
        elif method == "after":
            start, end = parse_value(unit, values[0], "start"), cycle
        elif method == "at":
            start = parse_value(unit, values[0], "start")
            end = start + (_year_step(start) if unit == "year" else STEP[unit])
            if end > cycle:
                end -= cycle
        elif method == "starting":
            start = parse_value(unit, values[0], "start")
            end = start
        else:
            raise ValueError(f"Unknown window method {method!r}.")
        if end == 0:
            # The end of the cycle, written as its start ("00:00"): the same window.
            end = cycle
        return cls(unit, method, start, end)

    @property
    def is_full(self) -> bool:
        return self.start == self.end or (self.start == 0 and self.end == CYCLE[self.unit])

    def suffix(self) -> str:
        """Return the method call that narrows a period to this span, e.g. ``.at('10:00')``."""
        unit, method = self.unit, self.method
        if method is None:
            return ""
        start = repr(render_value(unit, self.start, "start"))
        if method == "between":
            return f".between({start}, {render_value(unit, self.end, 'end')!r})"
        if method == "before":
            return f".before({render_value(unit, self.end, 'end')!r})"
        if method == "at":
            return f".{'on' if unit in ('week', 'month', 'year') else 'at'}({start})"
        return f".{method}({start})"

    def describe(self) -> str:
        """Return the span in words, for explanations."""
        if self.method is None:
            return f"every {self.unit}"
        start = render_value(self.unit, self.start, "start")
        end = render_value(self.unit, self.end, "end")
        return f"{start} to {end}" if not self.is_full else f"full {self.unit} from {start}"

    # Occurrences

    def occurrence(self, cycle: object, tz: tzinfo) -> Window:
        """Return the occurrence of the span in the cycle that starts at ``cycle``.

        ``cycle`` is a local date for calendar units and a UTC instant otherwise.
        """
        if self.unit in CALENDAR_UNITS:
            return _calendar_occurrence(self.unit, self.start, self.end, cycle, tz)
        begin: datetime = cycle  # type: ignore[assignment]
        end = self.end if self.start < self.end else self.end + CYCLE[self.unit]
        return Window(
            begin + timedelta(microseconds=self.start), begin + timedelta(microseconds=end)
        )

    def cycles(self, now: datetime, wall: datetime, tz: tzinfo, offsets: range) -> list[Window]:
        """Return the occurrences in the cycles at the given offsets from the cycle of ``now``."""
        unit = self.unit
        if unit in CALENDAR_UNITS:
            base = _cycle_date(unit, wall.date())
            return [self.occurrence(_shift_date(unit, base, k), tz) for k in offsets]
        position = wall.microsecond
        if unit != "second":
            position += wall.second * SECOND
            if unit != "minute":
                position += wall.minute * MINUTE
        begin = now - timedelta(microseconds=position)
        return [_elapsed_occurrence(unit, self.start, self.end, begin, k) for k in offsets]

    def around(self, now: datetime, wall: datetime, tz: tzinfo) -> tuple[Window | None, Window]:
        """Return (the occurrence containing now or None, the latest occurrence begun by now)."""
        if self.unit in CALENDAR_UNITS:
            # The hot path of every evaluation: one cache lookup per local date.
            previous, current = _calendar_pair(self.unit, self.start, self.end, wall.date(), tz)
        else:
            previous, current = self.cycles(now, wall, tz, range(-1, 1))
        if current.start <= now:
            return (current if now < current.end else None), current
        return (previous if now < previous.end else None), previous

    def current(self, now: datetime, wall: datetime, tz: tzinfo) -> Window | None:
        """Return the occurrence that contains now, if any."""
        return self.around(now, wall, tz)[0]

    def next_start(self, now: datetime, wall: datetime, tz: tzinfo) -> datetime:
        """Return the first start of an occurrence strictly after now."""
        if self.unit in CALENDAR_UNITS:
            upcoming = _calendar_upcoming(self.unit, self.start, self.end, wall.date(), tz)
        else:
            upcoming = tuple(self.cycles(now, wall, tz, range(0, 4)))
        later = [window for window in upcoming if window.start > now]
        # Skip occurrences that a short month (or a DST gap) leaves empty.
        return next((window.start for window in later if window.start < window.end), later[0].start)


def _cycle_date(unit: str, day: date) -> date:
    if unit == "year":
        return day.replace(month=1, day=1)
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day


def _shift_date(unit: str, base: date, k: int) -> date:
    if unit == "day":
        return base + timedelta(days=k)
    if unit == "week":
        return base + timedelta(weeks=k)
    if unit == "year":
        return date(base.year + k, 1, 1)
    month = base.year * 12 + base.month - 1 + k
    return date(month // 12, month % 12 + 1, 1)


@lru_cache(maxsize=4096)
def _elapsed_occurrence(unit: str, start: int, end: int, begin: datetime, k: int) -> Window:
    """Return the occurrence in the ``k``-th cycle after the one that begins at ``begin``."""
    length = CYCLE[unit]
    first = begin + timedelta(microseconds=k * length)
    last = end if start < end else end + length
    return Window(first + timedelta(microseconds=start), first + timedelta(microseconds=last))


@lru_cache(maxsize=16384)
def _calendar_pair(unit: str, start: int, end: int, day: date, tz: tzinfo) -> tuple[Window, Window]:
    """Return the occurrences in the cycle before the one containing ``day`` and in that one."""
    base = _cycle_date(unit, day)
    return (
        _calendar_occurrence(unit, start, end, _shift_date(unit, base, -1), tz),
        _calendar_occurrence(unit, start, end, base, tz),
    )


@lru_cache(maxsize=16384)
def _calendar_upcoming(
    unit: str, start: int, end: int, day: date, tz: tzinfo
) -> tuple[Window, ...]:
    """Return the occurrences in the cycle containing ``day`` and the three after it."""
    base = _cycle_date(unit, day)
    return tuple(
        _calendar_occurrence(unit, start, end, _shift_date(unit, base, k), tz) for k in range(4)
    )


@lru_cache(maxsize=4096)
def _calendar_occurrence(unit: str, start: int, end: int, cycle: date, tz: tzinfo) -> Window:
    following = _shift_date(unit, cycle, 1)
    begin = _wall_in_cycle(unit, cycle, start)
    finish = _wall_in_cycle(unit, cycle if start < end else following, end)
    start_at, end_at = resolve_wall(begin, tz), resolve_wall(finish, tz)
    if start_at == end_at and begin < finish:
        # The whole window falls in a spring-forward gap: it runs after the gap instead.
        end_at = start_at + (finish - begin)
    return Window(start_at, end_at)


def _wall_in_cycle(unit: str, cycle: date, offset: int) -> datetime:
    """Return the naive wall-clock time ``offset`` into the cycle, cut at the cycle's end."""
    following = datetime.combine(_shift_date(unit, cycle, 1), time())
    if unit != "year":
        return min(datetime.combine(cycle, time()) + timedelta(microseconds=offset), following)
    if offset >= YEAR:
        return following
    month = max(index for index, start in enumerate(_MONTH_STARTS[:-1]) if start <= offset)
    first = datetime(cycle.year, month + 1, 1)
    month_end = datetime.combine(_shift_date("month", first.date(), 1), time())
    return min(first + timedelta(microseconds=offset - _MONTH_STARTS[month]), month_end)


def local_wall(now: datetime, tz: tzinfo) -> datetime:
    """Return the local wall-clock time of an instant (aware, with ``fold`` set)."""
    return now.astimezone(tz)


def resolve_wall(wall: datetime, tz: tzinfo) -> datetime:
    """Return the first instant at which the local clock shows ``wall`` (naive), in UTC.

    A time that occurs twice (fall-back) gives its first occurrence; a time
    skipped by a spring-forward gap gives the first instant after the gap.
    """
    instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    # In a gap: ``instant`` lies after the transition (read with the old offset);
    # the same wall time read with the new offset lies before it.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = instant
    after = instant.astimezone(tz).utcoffset()
    step = timedelta(microseconds=1)
    while high - low > step:
        middle = low + (high - low) // 2
        if middle.astimezone(tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high
