"""The arithmetic of waiting retries: backoff, deterministic jitter, matching exceptions."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import timedelta

from .durations import parse_duration

__all__ = [
    "DEFAULT_JITTER",
    "check_backoff",
    "check_delay",
    "check_exception_names",
    "check_jitter",
    "exception_matches",
    "format_number",
    "jitter_offset",
    "retry_wait",
]

#: The spread ``jitter=True`` means: each wait moves by up to ±25 %.
DEFAULT_JITTER = 0.25
# Longer than any wait worth computing (and than check E014 lets through): the
# exponent of a long chain is capped here instead of overflowing.
_LONGEST = timedelta(days=36_500 * 2)
_NAME = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*")


def jitter_offset(run_id: object) -> float:
    """Return a number in [-1, 1) fixed by the run id: the direction and size of the jitter.

    A hash rather than :mod:`random`, so the same run always gets the same value
    on every scheduler, and after a restart, and in ``explaintask``.
    """
    digest = hashlib.sha256(str(run_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**63 - 1.0


def retry_wait(
    attempt: int,
    delay: timedelta | None,
    backoff: float = 1.0,
    max_delay: timedelta | None = None,
    jitter: float = 0.0,
    run_id: object = None,
) -> timedelta:
    """Return how long retry number ``attempt`` (1 for the first) waits after the failure.

    ``delay * backoff**(attempt - 1)``, capped by ``max_delay``, then moved by up
    to ``jitter`` of itself in the direction :func:`jitter_offset` gives for the
    failed run ``run_id``. Whole microseconds, so the due instant is exact.
    """
    if delay is None or delay <= timedelta(0):
        return timedelta(0)
    longest = _LONGEST if max_delay is None else min(max_delay, _LONGEST)
    try:
        factor = backoff ** (attempt - 1)
    except OverflowError:
        factor = float("inf")
    micros = delay / timedelta(microseconds=1) * factor
    wait = longest if micros >= longest / timedelta(microseconds=1) else delay * factor
    if jitter:
        wait = wait * (1.0 + jitter * jitter_offset(run_id))
    return timedelta(microseconds=round(wait / timedelta(microseconds=1)))


def exception_matches(wanted: Iterable[str], exception_types: Iterable[str]) -> bool:
    """Return whether a failed run's exception is one of ``wanted`` or a subclass of one.

    ``exception_types`` are the qualified names of the exception's class and its
    bases (``builtins.ConnectionError``, ``builtins.OSError``, ...). A wanted name
    with a dot must equal one of them; a bare name (``ConnectionError``) matches
    any class of that name, whatever its module.
    """
    names = set(exception_types)
    short = {name.rpartition(".")[2] for name in names}
    return any(name in (names if "." in name else short) for name in wanted)


def check_exception_names(on: object) -> tuple[str, ...]:
    """Return ``on`` as a tuple of exception names, or raise saying what is wrong."""
    if isinstance(on, str):
        raise TypeError(f"on must be a list of exception names, such as on=[{on!r}], not a string.")
    if not isinstance(on, list | tuple | set | frozenset):
        raise TypeError(
            f"on must be a list of exception names, such as on=['ConnectionError'], "
            f"not {type(on).__name__} ({on!r})."
        )
    names = tuple(on)
    if not names:
        raise ValueError("on is empty: name at least one exception, or leave on out.")
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"on lists {name!r}, which is not an exception name: write a class name "
                "such as 'ConnectionError' or a dotted path such as "
                "'requests.exceptions.Timeout'."
            )
    return names


def check_delay(name: str, value: str | timedelta | float | None) -> timedelta | None:
    if value is None:
        return None
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError(f"retry {name} must be a positive duration, got {value!r}.")
    return duration


def check_backoff(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"retry backoff must be a number >= 1, such as 2, not {value!r}.")
    if not 1 <= value < float("inf"):
        raise ValueError(f"retry backoff must be a number >= 1, such as 2, got {value!r}.")
    return float(value)


def check_jitter(value: object) -> float:
    if value is True:
        return DEFAULT_JITTER
    if value is False or value is None:
        return 0.0
    if not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(
            f"retry jitter must be True (±25 %) or a fraction from 0 to below 1, got {value!r}."
        )
    return float(value)


def format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)
