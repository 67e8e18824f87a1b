"""Argument types shared by the management commands.

Each is an argparse ``type=`` for one kind of value: a bad value becomes a usage
error that names the option and says what to write instead (``CommandError``
through ``call_command``, exit code 2 on the command line). Each kind has bounds
far beyond any real use and well inside what datetime arithmetic and the
database drivers accept, so that no value reaches the code as an overflow, a
NUL that PostgreSQL refuses, or text that UTF-8 cannot encode.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import zoneinfo
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.core.management.base import CommandError
from django.db import DataError

from django_rocket import registry
from django_rocket.conditions import parse_duration
from django_rocket.conf import conf
from django_rocket.models import Task, TaskSource
from django_rocket.ops import RunRefused, oneoff

# Dates and times: the run log holds nothing before 1970, and any window or
# interval a condition adds to a date up to 9000 stays inside datetime's year 9999.
EARLIEST_YEAR = 1970
LATEST_YEAR = 9000
# Durations and seconds: 100 years, so that "now" minus one stays after year 1.
MAX_DURATION = timedelta(days=36_500)
MAX_SECONDS = MAX_DURATION.total_seconds()
# Rows per query: SQLite refuses a statement with more than 32,766 parameters.
MAX_ROWS = 10_000
# Task names: the length of Task.name.
MAX_NAME = Task._meta.get_field("name").max_length or 200
# Free text such as a condition expression.
MAX_TEXT = 10_000
# File paths: Linux's PATH_MAX.
MAX_PATH = 4096
# Characters of a bad value quoted in an error message.
MAX_SHOWN = 60


def iso_datetime(value: str) -> datetime:
    """Read an ISO 8601 date or date and time from 1970 to 9000; without an offset it is naive."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} is not an ISO 8601 date and time; write e.g. 2026-03-02, "
            "2026-03-02T10:15 (local time in ROCKET_TIME_ZONE) or 2026-03-02T10:15:00+01:00."
        ) from None
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} is in the year {moment.year}; give a date from {EARLIEST_YEAR} "
            f"to {LATEST_YEAR}, such as 2026-03-02."
        )
    return moment


def positive_duration(value: str) -> timedelta:
    """Read a duration such as ``"30 days"`` or ``"12:00:00"``, above zero and up to 100 years."""
    try:
        duration = parse_duration(value)
    except (TypeError, ValueError) as exc:
        if len(value) > MAX_SHOWN:  # its message would quote it whole, twice
            raise argparse.ArgumentTypeError(
                f"{quoted(value)} is not a duration; write e.g. '90 days'."
            ) from None
        raise argparse.ArgumentTypeError(str(exc)) from None
    except OverflowError:
        duration = timedelta.max
    if duration <= timedelta(0):
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} is zero; give a duration such as '30 days'."
        )
    if duration > MAX_DURATION:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} is longer than 100 years ({MAX_DURATION.days} days); "
            "give a duration such as '90 days'."
        )
    return duration


def positive_seconds(value: str) -> float:
    """Read a number of seconds, above zero and up to 100 years (3,153,600,000)."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} is not a number of seconds; write e.g. 60."
        ) from None
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} is not a finite number of seconds; write e.g. 60."
        )
    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} is not positive; give a number of seconds above 0, e.g. 60."
        )
    if seconds > MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} is more than 100 years ({MAX_SECONDS:.0f} seconds); write e.g. 60."
        )
    return seconds


def row_count(value: str) -> int:
    """Read a number of rows per query, from 1 to 10,000."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quoted(value)} is not a whole number.") from None
    if not 0 < number <= MAX_ROWS:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} is out of range: the number of rows must be above 0 and at "
            f"most {MAX_ROWS}."
        )
    return number


def task_name(value: str) -> str:
    """Read a task name: UTF-8 text without NUL, not blank, at most as long as ``Task.name``."""
    if not value.strip():
        raise argparse.ArgumentTypeError("The task name is blank; give the name of a task.")
    _check_text(value, "a task name")
    if len(value) > MAX_NAME:
        raise argparse.ArgumentTypeError(
            f"The name {quoted(value)} has {len(value)} characters; a task name has at most "
            f"{MAX_NAME}."
        )
    return value


def text(value: str) -> str:
    """Read free text, such as a condition: UTF-8 without NUL, at most 10,000 characters."""
    _check_text(value, "text")
    if len(value) > MAX_TEXT:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} has {len(value)} characters; the limit is {MAX_TEXT}."
        )
    return value


def file_path(value: str) -> str:
    """Read a file path the operating system can take: not empty, without NUL, 4,096 at most."""
    if not value:
        raise argparse.ArgumentTypeError("The file name is empty; write e.g. runs.csv.")
    if len(value) > MAX_PATH:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} has {len(value)} characters; a file path has at most {MAX_PATH}."
        )
    if "\0" in value:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} contains a NUL character, which no file name can hold."
        )
    try:
        os.fsencode(value)  # a byte that is not UTF-8 arrives surrogate-escaped: that is fine
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} cannot be encoded as a file name on this system."
        ) from None
    return value


def _check_text(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} is not UTF-8 text: character {exc.start + 1} stands for a byte "
            f"that is not UTF-8; give {what} in UTF-8."
        ) from None
    if "\0" in value:
        raise argparse.ArgumentTypeError(
            f"{quoted(value)} contains a NUL character; give {what} without one."
        )


def quoted(value: str, limit: int = MAX_SHOWN) -> str:
    """Return ``repr(value)`` cut to about ``limit`` characters, for an error message."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 5] + "…" + shown[-4:]


def scheduler_zone() -> zoneinfo.ZoneInfo:
    """Return ROCKET_TIME_ZONE, or raise a CommandError for a zone that does not exist.

    The commands that skip the system checks would otherwise meet it as a traceback.
    """
    try:
        return registry.scheduler_zone()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise CommandError(
            f"ROCKET_TIME_ZONE {conf.time_zone!r} is not a known time zone "
            "(django_rocket.E021); use an IANA name such as 'Europe/Berlin' or 'UTC'."
        ) from None


@contextmanager
def reading_history(condition: str) -> Iterator[None]:
    """Turn a condition's number too large for the database into a CommandError."""
    try:
        yield
    except (OverflowError, DataError):
        # retry(n) reads the last n runs: an n past the database's integers overflows.
        raise CommandError(
            f"{condition} holds a number too large to read the run history with; "
            "use a smaller one, such as retry(3)."
        ) from None


def local(value: datetime) -> datetime:
    """Return ``value`` as an aware datetime; a naive one is wall time in ROCKET_TIME_ZONE.

    A wall time that a daylight saving change skips or repeats is read with
    ``fold=0``: the offset in force before the change.
    """
    tz = scheduler_zone()
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


def runnable_spec(name: str) -> registry.TaskSpec:
    """Return the task ``name`` to run by hand: declared, or a runtime task's row.

    Raise a CommandError saying what is wrong: an unknown or invalid task, or a runtime
    task whose function ``ROCKET_TASK_FUNCTIONS`` does not allow (never imported).
    """
    declared = conf.tasks if isinstance(conf.tasks, dict) else {}
    if name not in declared:
        row = Task.objects.filter(name=name, source=TaskSource.RUNTIME).first()
        if row is not None:
            try:
                return oneoff.runtime_task_spec(row)
            except RunRefused as exc:
                raise CommandError(str(exc)) from None
    return declared_spec(name)


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
    known = [str(n) for n in raw] if isinstance(raw, dict) else []
    if conf.task_functions is not None:  # runtime tasks are on: say they were looked at
        raise unknown_task(name, known, "ROCKET_TASKS or among the runtime tasks")
    raise unknown_task(name, known)
