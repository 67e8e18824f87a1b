"""Argument types shared by the management commands.

Each is an argparse ``type=``: a bad value becomes a usage error that names the
option and says what to write instead (``CommandError`` through
``call_command``, exit code 2 on the command line).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.core.management.base import CommandError

from django_rocket import registry
from django_rocket.conditions import parse_duration
from django_rocket.conf import conf


def iso_datetime(value: str) -> datetime:
    """Read an ISO 8601 date or date and time; a value without an offset stays naive."""
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 date and time; write e.g. 2026-03-02, "
            "2026-03-02T10:15 (local time in ROCKET_TIME_ZONE) or 2026-03-02T10:15:00+01:00."
        ) from None


def positive_duration(value: str) -> timedelta:
    """Read a duration such as ``"30 days"`` or ``"12:00:00"``; it must be longer than zero."""
    try:
        duration = parse_duration(value)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if duration <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{value!r} is zero; give a duration such as '30 days'.")
    return duration


def positive_seconds(value: str) -> float:
    """Read a number of seconds greater than zero."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of seconds; write e.g. 60."
        ) from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be a number of seconds above 0.")
    return seconds


def positive_int(value: str) -> int:
    """Read a whole number greater than zero."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number.") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be above 0.")
    return number


def local(value: datetime) -> datetime:
    """Return ``value`` as an aware datetime; a naive one is wall time in ROCKET_TIME_ZONE.

    A wall time that a daylight saving change skips or repeats is read with
    ``fold=0``: the offset in force before the change.
    """
    tz = registry.scheduler_zone()
    if value.utcoffset() is None:
        return value.replace(tzinfo=tz)
    return value.astimezone(tz)


def unknown_task(name: str, known: Iterable[str], where: str = "ROCKET_TASKS") -> CommandError:
    """Return the error for a task name that is not known, suggesting the closest one."""
    names = sorted(set(known))
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        hint = f"Did you mean {close[0]!r}?"
    elif names:
        shown = ", ".join(repr(n) for n in names[:10]) + (", …" if len(names) > 10 else "")
        hint = f"Known tasks: {shown}."
    else:
        hint = f"{where} declares no task."
    return CommandError(f"There is no task {name!r} in {where}. {hint}")


def declared_spec(name: str) -> registry.TaskSpec:
    """Return the declared task ``name``, or raise a CommandError saying what is wrong."""
    specs, problems = registry.collect()
    if name in specs:
        return specs[name]
    own = [p for p in problems if p.obj == name and p.is_serious()]
    if own:
        lines = "\n".join(f"  {p.id}: {p.msg}" for p in own)
        raise CommandError(
            f"The task {name!r} is declared but invalid; run 'manage.py check' to see the fix.\n"
            f"{lines}"
        )
    raw = conf.tasks
    raise unknown_task(name, [str(n) for n in raw] if isinstance(raw, dict) else ())
