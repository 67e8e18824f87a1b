"""Cron expressions matched against the local wall clock, with croniter as the engine.

croniter parses, validates and iterates the expression on naive wall-clock
times: five fields (minute, hour, day of month, month, day of week), an
optional sixth for seconds and seventh for the year, the ``@daily`` family,
``L``, ``W`` and ``#``, and hashed ``H`` fields, which are seeded by the name
of the task evaluating the condition. When both day fields are restricted a
day matches either of them.

This layer turns wall-clock matches into instants: a match that a
spring-forward gap skips is moved to the first instant after the gap, and a
wall-clock time that a fall-back transition repeats matches its first
occurrence only. It also remembers, per expression (and per task for hashed
ones), the latest stretch of wall-clock time known to hold no match, so that
a scheduler tick asks croniter nothing until a match has passed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache

from croniter import CroniterBadDateError, CroniterError, croniter

from .base import Condition, Context
from .periods import Window, resolve_wall

__all__ = ["Cron", "CronSchedule", "CronTime", "cron", "crontime"]

MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week", "second", "year")
_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
# croniter knows the three-letter names; the long ones are read as those.
_LONG_NAME = re.compile(
    r"\b(?:january|february|march|april|june|july|august|september|october|november"
    r"|december|sunday|monday|tuesday|wednesday|thursday|friday|saturday)\b"
)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_HASHED = re.compile(r"(?<![a-z])h(?![a-z])")
_RANDOM = re.compile(r"(?<![a-z])r(?![a-z])")
_LETTER = re.compile(r"(?<![a-z])[hlw](?![a-z])")
# Whatever the seed, a hashed expression validates the same; this one is only for checking.
_CHECK_SEED = b"django-rocket"
_SYNTAX = (
    "A cron expression has five fields (minute hour day-of-month month day-of-week), "
    "optionally a sixth for the second and a seventh for the year, e.g. '30 2 * * *', "
    "or is one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
)


class CronError(ValueError):
    """An invalid cron expression; ``position`` is the offset of the field at fault."""

    def __init__(self, message: str, position: int = 0) -> None:
        super().__init__(message)
        self.position = position


def _step(normal: str) -> timedelta:
    """Return how long one match lasts: a second with a seconds field, else a minute."""
    return SECOND if not normal.startswith("@") and len(normal.split()) > 5 else MINUTE


def _fields(expr: str) -> list[tuple[int, str]]:
    return [(match.start(), match.group()) for match in re.finditer(r"\S+", expr)]


def _croniter_reason(error: Exception) -> str:
    return str(error).rstrip(".")


def _validate(expr: str) -> tuple[str, bool]:
    """Return the normalised expression and whether it has hashed fields, or raise CronError."""
    parts = _fields(expr)
    normal = _LONG_NAME.sub(
        lambda match: match.group()[:3], " ".join(text for _, text in parts).lower()
    )
    # Names stay lower-case (mon, jan); the letters H, L and W are written as capitals.
    normal = _LETTER.sub(lambda match: match.group().upper(), normal)
    if normal.startswith("@"):
        if normal not in _ALIASES:
            raise CronError(f"{_SYNTAX}; got {expr!r}.", parts[0][0] if parts else 0)
        return normal, False
    if len(parts) not in (5, 6, 7):
        raise CronError(f"{_SYNTAX}; got {expr!r}.", parts[0][0] if parts else 0)
    for position, text in parts:
        if _RANDOM.search(text.lower()):
            raise CronError(
                f"Invalid cron expression {expr!r}: random fields (R) would change at every "
                "start of the scheduler; use H, which is spread by the task's name but stable.",
                position,
            )
    hashed = bool(_HASHED.search(normal.lower()))
    try:
        expanded: Sequence[Sequence[object]]
        if hashed:
            expanded, _ = croniter.expand(normal, hash_id=_CHECK_SEED)
        else:
            # Building the shared engine validates too, and the first tick needs it.
            expanded = _shared_engine(normal, None).iterator.expanded
    except CroniterError as error:
        position, name, text = _field_at_fault(parts, normal.split(), hashed)
        raise CronError(
            f"Invalid cron expression {expr!r}: the {name} field {text!r} is not valid "
            f"(croniter: {_croniter_reason(error)}).",
            position,
        ) from None
    days, months, weekdays = expanded[2], expanded[3], expanded[4]
    if weekdays == ["*"] and not _day_occurs(days, months):
        raise CronError(f"The cron expression {expr!r} names a day that never occurs.", parts[2][0])
    return normal, hashed


def _day_occurs(days: Sequence[object], months: Sequence[object]) -> bool:
    if "*" in days or "l" in days or "L" in days or "*" in months:
        return True
    return any(
        day <= _DAYS_IN_MONTH[month - 1]
        for day in days
        for month in months
        if isinstance(day, int) and isinstance(month, int)
    )


def _field_at_fault(
    parts: list[tuple[int, str]], normal: list[str], hashed: bool
) -> tuple[int, str, str]:
    """Return the offset, name and text of the first field croniter refuses on its own."""
    seed = _CHECK_SEED if hashed else None
    for index, (position, text) in enumerate(parts):
        alone = ["*"] * len(parts)
        alone[index] = normal[index]
        try:
            croniter.expand(" ".join(alone), hash_id=seed)
        except CroniterError:
            return position, _FIELD_NAMES[index], text
    return parts[0][0], "minute", parts[0][1]


def _seed(task: str) -> bytes:
    return task.encode("utf-8", "surrogatepass")


class _Engine:
    """A croniter on naive wall-clock times, with the latest answers remembered.

    ``known`` is (a, a_matches, b): the matches in [a, b] are b, and a itself
    if ``a_matches``; b is None when a matches and the match after it has not
    been asked for yet. Scheduler ticks ask about an instant that moves
    forward, so nearly every question falls in that interval.
    """

    __slots__ = ("exhausted", "iterator", "known", "lock")

    def __init__(self, expr: str, seed: bytes | None) -> None:
        self.iterator = croniter(expr, datetime(2000, 1, 1), hash_id=seed)
        self.lock = threading.Lock()
        self.known: tuple[datetime, bool, datetime | None] | None = None
        # From here on croniter found no match (a year field in the past): not asked again.
        self.exhausted: datetime | None = None

    def _after(self, wall: datetime) -> datetime:
        """Return the first match strictly after ``wall`` (croniter's question)."""
        if self.exhausted is not None and wall >= self.exhausted:
            raise CroniterBadDateError("no match")
        try:
            with self.lock:
                result = self.iterator.get_next(datetime, start_time=wall, update_current=False)
        except CroniterBadDateError:
            self.exhausted = wall if self.exhausted is None else min(wall, self.exhausted)
            raise
        assert isinstance(result, datetime)
        return result

    def at_or_after(self, wall: datetime) -> datetime:
        """Return the first matching wall-clock time at or after ``wall`` (on the step)."""
        known = self.known
        if known is not None and wall >= known[0]:
            first, first_matches, last = known
            if first_matches and wall == first:
                return first
            if last is None:
                # Only now is the match after ``first`` needed.
                last = self._after(first)
                self.known = (first, True, last)
            if wall <= last:
                return last
            # Step on from the known match, so the one just passed stays known.
            following = self._after(last)
            self.known = (last, True, following)
            if wall <= following:
                return following
        result = self._after(wall - _TICK)
        self.known = (wall, True, None) if result == wall else (wall, False, result)
        return result


@lru_cache(maxsize=16384)
def _shared_engine(expr: str, seed: bytes | None) -> _Engine:
    """Return the engine of an expression, shared by every condition that uses it."""
    return _Engine(expr, seed)


@dataclass(frozen=True)
class CronSchedule:
    """The matching minutes (or seconds, with a sixth field) of a cron expression."""

    expr: str
    hashed: bool = field(init=False, repr=False, compare=False)
    step: timedelta = field(init=False, repr=False, compare=False)
    _engines: dict[str | None, _Engine] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        if not isinstance(self.expr, str):
            raise TypeError(f"A cron expression must be a string, got {self.expr!r}.")
        normal, hashed = _validate(self.expr)
        object.__setattr__(self, "expr", normal)
        object.__setattr__(self, "hashed", hashed)
        object.__setattr__(self, "step", _step(normal))
        if not hashed:
            self._engines[None] = _shared_engine(normal, None)

    def _engine(self, seed: str) -> _Engine:
        key = seed if self.hashed else None
        engine = self._engines.get(key)
        if engine is None:
            seeded = None if key is None else _seed(key)
            engine = self._engines.setdefault(key, _shared_engine(self.expr, seeded))
        return engine

    def resolved(self, seed: str) -> str:
        """Return the expression with its hashed fields resolved for the task ``seed``."""
        if not self.hashed:
            return self.expr
        expanded, _ = croniter.expand(self.expr, hash_id=_seed(seed))
        return " ".join(",".join(map(str, values)) for values in expanded)

    def _floor(self, wall: datetime) -> datetime:
        naive = wall.replace(tzinfo=None, microsecond=0)
        return naive.replace(second=0) if self.step == MINUTE else naive

    def _at_or_after(self, wall: datetime, seed: str) -> datetime | None:
        try:
            return self._engine(seed).at_or_after(wall)
        except CroniterBadDateError:
            return None

    def current(self, now: datetime, wall: datetime, tz: tzinfo, seed: str) -> Window | None:
        """Return the matching minute (or second) that contains now, if any."""
        naive = self._floor(wall)
        begin = now - (wall.replace(tzinfo=None) - naive)
        if not wall.fold and self._at_or_after(naive, seed) == naive:
            return Window(begin, begin + self.step)
        gap = _gap_ending_at(begin, naive.date(), tz)
        if gap is not None:
            gap_start, gap_end = gap
            found = self._at_or_after(self._floor(gap_start), seed)
            if found is not None and found < gap_end:
                return Window(begin, begin + self.step)
        return None

    def next_start(self, now: datetime, wall: datetime, tz: tzinfo, seed: str) -> datetime | None:
        """Return the first start of a matching minute strictly after now (None: never)."""
        candidate = self._at_or_after(self._floor(wall) + self.step, seed)
        while candidate is not None:
            instant = resolve_wall(candidate, tz)
            if instant > now:
                return instant
            # The second pass of a repeated hour: its times matched the first time round.
            candidate = self._at_or_after(candidate + self.step, seed)
        return None


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
            return gap_start, gap_end
    return None


class _CronCondition(Condition):
    __slots__ = ()
    schedule: CronSchedule

    def __repr__(self) -> str:
        return self.text()

    def _window(self, ctx: Context) -> Window | None:
        return self.schedule.current(ctx.utc, ctx.wall, ctx.tz, ctx.task)

    def _next(self, ctx: Context) -> datetime | None:
        return self.schedule.next_start(ctx.utc, ctx.wall, ctx.tz, ctx.task)

    def reads_task_name(self) -> bool:
        return self.schedule.hashed  # H fields are spread by the task's name

    def _where(self, ctx: Context) -> dict[str, object]:
        facts: dict[str, object] = {}
        if self.schedule.hashed:
            facts["expression_for_task"] = self.schedule.resolved(ctx.task)
        return facts


@dataclass(frozen=True, repr=False)
class Cron(_CronCondition):
    """True inside a matching minute while the task has not started in it."""

    schedule: CronSchedule

    def _started(self, ctx: Context, window: Window) -> bool:
        # The latest start decides, unless it lies past the window (a start after now).
        last = ctx.history.last_start(ctx.task)
        if last is None or last < window.start:
            return False
        if last < window.end:
            return True
        return ctx.history.count(ctx.task, "start", window.start, window.end) > 0

    def is_true(self, ctx: Context) -> bool:
        window = self._window(ctx)
        return window is not None and not self._started(ctx, window)

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        window = self._window(ctx)
        if window is None:
            return False, self._next(ctx)
        return not self._started(ctx, window), window.end

    def facts(self, ctx: Context) -> dict[str, object]:
        facts = self._where(ctx)
        window = self._window(ctx)
        if window is None:
            facts["next_match"] = self._next(ctx)
        else:
            facts["window"] = window.to_list()
            facts["started_in_window"] = self._started(ctx, window)
        return facts

    def depends_on(self, task: str) -> frozenset[str]:
        return frozenset({task})

    def text(self) -> str:
        return f"cron({self.schedule.expr!r})"


@dataclass(frozen=True, repr=False)
class CronTime(_CronCondition):
    """True inside a matching minute; reads no history."""

    schedule: CronSchedule

    def is_true(self, ctx: Context) -> bool:
        return self._window(ctx) is not None

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        window = self._window(ctx)
        if window is None:
            return False, self._next(ctx)
        return True, window.end

    def facts(self, ctx: Context) -> dict[str, object]:
        facts = self._where(ctx)
        window = self._window(ctx)
        if window is None:
            facts["next_match"] = self._next(ctx)
        else:
            facts["window"] = window.to_list()
        return facts

    def text(self) -> str:
        return f"crontime({self.schedule.expr!r})"


_KEYWORDS = ("minute", "hour", "day_of_month", "month", "day_of_week")


def _schedule(expr: str | None, fields: dict[str, str | int]) -> CronSchedule:
    if expr is not None and fields:
        raise TypeError("Give either a cron expression or its fields by keyword, not both.")
    if expr is not None:
        return CronSchedule(expr)
    values = [str(fields.get(name, "*")) for name in _KEYWORDS]
    try:
        return CronSchedule(" ".join(values))
    except CronError as error:
        # Name the keyword rather than a position in an expression nobody wrote.
        offsets = [match.start() for match in re.finditer(r"\S+", " ".join(values))]
        index = offsets.index(error.position) if error.position in offsets else 0
        raise ValueError(f"The cron field {_KEYWORDS[index]!r} is not valid: {error}") from None


def cron(
    expr: str | None = None,
    *,
    minute: str | int = "*",
    hour: str | int = "*",
    day_of_month: str | int = "*",
    month: str | int = "*",
    day_of_week: str | int = "*",
) -> Cron:
    """Return a condition true once in each minute matching the cron expression.

    The fields may be given by keyword instead, as in Rocketry:
    ``cron(minute="*/5", hour="9-17")`` is ``cron("*/5 9-17 * * *")``.
    """
    fields = _given(minute, hour, day_of_month, month, day_of_week)
    return Cron(_schedule(expr, fields))


def crontime(
    expr: str | None = None,
    *,
    minute: str | int = "*",
    hour: str | int = "*",
    day_of_month: str | int = "*",
    month: str | int = "*",
    day_of_week: str | int = "*",
) -> CronTime:
    """Return a condition true during every minute matching the cron expression."""
    fields = _given(minute, hour, day_of_month, month, day_of_week)
    return CronTime(_schedule(expr, fields))


def _given(*values: str | int) -> dict[str, str | int]:
    return {name: value for name, value in zip(_KEYWORDS, values, strict=True) if value != "*"}
