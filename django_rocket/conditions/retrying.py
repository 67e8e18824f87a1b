"""``retry``: the condition, and the arithmetic of waiting retries (backoff,
deterministic jitter, matching exceptions)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .base import Condition, Context
from .durations import format_duration, parse_duration
from .needs import WHOLE_CHAIN, Needs

__all__ = [
    "DEFAULT_JITTER",
    "Retry",
    "check_backoff",
    "check_count",
    "check_delay",
    "check_exception_names",
    "check_jitter",
    "exception_matches",
    "format_number",
    "jitter_offset",
    "retry",
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


def check_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(
            f"A condition can only be compared with a whole number >= 0, got {value!r}."
        )
    return value


@dataclass(frozen=True, repr=False)
class Retry(Condition):
    """True after a failure while the chain of failed runs is at most ``n`` long.

    The chain counts consecutive failed runs back to and including the latest
    run not itself started as a retry, so every fresh run gets its own ``n``
    retries. ``n`` None is unlimited. With a ``delay``, retry k becomes true
    ``delay * backoff**(k-1)`` (capped by ``max_delay``, spread by ``jitter``)
    after the failed run finished; with ``on``, only after those exceptions.
    """

    n: int | None = None
    delay: timedelta | None = None
    backoff: float = 1.0
    max_delay: timedelta | None = None
    jitter: float = 0.0
    on: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.n is not None:
            check_count(self.n)

    def __call__(
        self,
        n: int | None = None,
        delay: str | timedelta | float | None = None,
        backoff: float = 1.0,
        max_delay: str | timedelta | float | None = None,
        jitter: bool | float = False,
        on: Sequence[str] | None = None,
    ) -> Retry:
        if self != Retry():
            raise TypeError(f"{self} already has a limit.")
        return Retry(
            None if n is None else check_count(n),
            check_delay("delay", delay),
            check_backoff(backoff),
            check_delay("max_delay", max_delay),
            check_jitter(jitter),
            None if on is None else check_exception_names(on),
        )

    def is_true(self, ctx: Context) -> bool:
        return self.evaluate(ctx)[0]

    def due(self, ctx: Context) -> tuple[int, datetime] | None:
        """Return (the number of the next retry, when it is due), or None if none is coming."""
        if ctx.retry_disabled:
            return None
        chain = ctx.history.retry_chain(ctx.task)
        if chain is None or (self.n is not None and chain > self.n):
            return None
        latest = ctx.history.last_run(ctx.task)
        if latest is None or latest.finished_at is None:
            return None
        if self.on is not None and not exception_matches(self.on, latest.exception_types):
            return None
        wait = retry_wait(
            chain, self.delay, self.backoff, self.max_delay, self.jitter, latest.run_id
        )
        return chain, latest.finished_at + wait

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        due = self.due(ctx)
        if due is None:
            return False, None
        if ctx.utc >= due[1]:
            return True, None
        return False, due[1]

    def facts(self, ctx: Context) -> dict[str, object]:
        facts: dict[str, object] = {"failed_in_chain": ctx.history.retry_chain(ctx.task)}
        if ctx.retry_disabled:
            facts["retry_disabled"] = True
        due = self.due(ctx)
        if due is not None and self.delay is not None:
            facts["retry"] = due[0]
            facts["due"] = due[1]
        if self.on is not None:
            latest = ctx.history.last_run(ctx.task)
            facts["exception"] = latest.exception_types[:1] if latest is not None else ()
        return facts

    def depends_on(self, task: str) -> frozenset[str]:
        return frozenset({task})

    def needs(self, task: str) -> dict[str, Needs]:
        # retry(n) is decided by the n + 1 latest runs: a chain cut off there is longer than n.
        return {task: Needs(chain=WHOLE_CHAIN if self.n is None else self.n + 1)}

    def has_retry(self) -> bool:
        return True

    def text(self) -> str:
        options = [] if self.n is None else [str(self.n)]
        if self.delay is not None:
            options.append(f"delay={format_duration(self.delay)!r}")
        if self.backoff != 1.0:
            options.append(f"backoff={format_number(self.backoff)}")
        if self.max_delay is not None:
            options.append(f"max_delay={format_duration(self.max_delay)!r}")
        if self.jitter:
            jitter = "True" if self.jitter == DEFAULT_JITTER else format_number(self.jitter)
            options.append(f"jitter={jitter}")
        if self.on is not None:
            options.append(f"on=[{', '.join(map(repr, self.on))}]")
        return f"retry({', '.join(options)})" if options else "retry"

    def __repr__(self) -> str:
        return self.text()


retry = Retry()
