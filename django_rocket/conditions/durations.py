"""Parse and render durations such as ``"1 hour 30 minutes"``."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_UNITS: dict[str, timedelta] = {}
for _names, _delta in (
    (("w", "week", "weeks"), timedelta(weeks=1)),
    (("d", "day", "days"), timedelta(days=1)),
    (("h", "hr", "hrs", "hour", "hours"), timedelta(hours=1)),
    (("m", "min", "mins", "minute", "minutes"), timedelta(minutes=1)),
    (("s", "sec", "secs", "second", "seconds"), timedelta(seconds=1)),
    (("ms", "millisecond", "milliseconds"), timedelta(milliseconds=1)),
    (("us", "microsecond", "microseconds"), timedelta(microseconds=1)),
):
    for _name in _names:
        _UNITS[_name] = _delta

_CLOCK = re.compile(
    r"(?:(?P<days>\d+)\s*days?,?\s+)?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d{1,6})?)"
)
_TERM = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>[a-z]+)\s*,?", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

_HELP = (
    "Write a duration like '10 seconds', '1 hour 30 minutes', '2 days' or '01:30:00' "
    "(hours:minutes:seconds), or pass a timedelta or a number of seconds."
)


def parse_duration(value: str | timedelta | float) -> timedelta:
    """Return the timedelta that a duration text, timedelta or number of seconds means."""
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, bool):
        raise TypeError(f"A duration cannot be a bool ({value!r}). {_HELP}")
    elif isinstance(value, int | float):
        delta = timedelta(seconds=value)
    elif isinstance(value, str):
        delta = _parse_text(value)
    else:
        raise TypeError(f"A duration cannot be a {type(value).__name__} ({value!r}). {_HELP}")
    if delta < timedelta(0):
        raise ValueError(f"A duration cannot be negative ({value!r}). {_HELP}")
    return delta


def _parse_text(text: str) -> timedelta:
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"The duration is empty. {_HELP}")
    if _NUMBER.fullmatch(stripped):
        return timedelta(seconds=float(stripped))
    clock = _CLOCK.fullmatch(stripped)
    if clock:
        return timedelta(
            days=int(clock["days"] or 0),
            hours=int(clock["h"]),
            minutes=int(clock["m"]),
            seconds=float(clock["s"]),
        )
    total = timedelta(0)
    position = 0
    while position < len(stripped):
        match = _TERM.match(stripped, position)
        if not match:
            raise ValueError(
                f"Cannot read the duration {text!r} at {stripped[position:]!r}. {_HELP}"
            )
        unit = _UNITS.get(match["unit"].lower())
        if unit is None:
            raise ValueError(
                f"Unknown time unit {match['unit']!r} in the duration {text!r}. {_HELP}"
            )
        total += unit * float(match["number"])
        position = match.end()
    return total


_RENDER_UNITS = (
    ("day", timedelta(days=1)),
    ("hour", timedelta(hours=1)),
    ("minute", timedelta(minutes=1)),
    ("second", timedelta(seconds=1)),
    ("millisecond", timedelta(milliseconds=1)),
    ("microsecond", timedelta(microseconds=1)),
)


def format_duration(delta: timedelta) -> str:
    """Render a timedelta in the canonical text form, e.g. ``"1 hour 30 minutes"``."""
    if delta <= timedelta(0):
        return "0 seconds"
    parts = []
    rest = delta
    for name, unit in _RENDER_UNITS:
        count, rest = divmod(rest, unit)
        if count:
            parts.append(f"{count} {name}{'' if count == 1 else 's'}")
    return " ".join(parts)
