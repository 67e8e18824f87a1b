"""Conditions about run history: events in a period, runs in progress, retries, pipelines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import ClassVar

from .base import ATOM, COMPARE, COMPARISONS, Condition, Context
from .durations import format_duration, parse_duration
from .needs import Needs
from .periods import Span
from .retrying import Retry, check_count, retry
from .timing import TICK

__all__ = [
    "After",
    "Retry",
    "Running",
    "TaskEvent",
    "after_all_fail",
    "after_all_finish",
    "after_all_success",
    "after_any_fail",
    "after_any_finish",
    "after_any_success",
    "after_fail",
    "after_finish",
    "after_success",
    "failed",
    "finished",
    "inacted",
    "retry",
    "running",
    "started",
    "succeeded",
    "terminated",
]


def _check_task(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"A task name must be a non-empty string, got {name!r}.")
    return name


class _Countable(Condition):
    """A condition that counts something and can be compared: ``failed.today >= 3``."""

    __slots__ = ()
    compare: tuple[str, int] | None

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return COMPARE if self.compare is not None else ATOM

    def _compared(self, op: str, value: object) -> Condition:
        if self.compare is not None:
            raise TypeError(f"{self} is already a comparison; it cannot be compared again.")
        return replace(self, compare=(op, check_count(value)))  # type: ignore[type-var]

    def __ge__(self, value: object) -> Condition:
        return self._compared(">=", value)

    def __gt__(self, value: object) -> Condition:
        return self._compared(">", value)

    def __le__(self, value: object) -> Condition:
        return self._compared("<=", value)

    def __lt__(self, value: object) -> Condition:
        return self._compared("<", value)

    def _holds(self, count: int) -> bool:
        if self.compare is None:
            return count >= 1
        op, value = self.compare
        return COMPARISONS[op](count, value)

    def _compare_text(self, text: str) -> str:
        return text if self.compare is None else f"{text} {self.compare[0]} {self.compare[1]}"

    def __repr__(self) -> str:
        return self.text()


# The outcomes each event kind counts.
EVENT_KINDS: dict[str, tuple[str, ...]] = {
    "start": ("start",),
    "success": ("success",),
    "fail": ("fail",),
    "finish": ("success", "fail", "terminate"),
    "terminate": ("terminate",),
    "inaction": ("inaction",),
}
EVENT_NAMES = {
    "start": "started",
    "success": "succeeded",
    "fail": "failed",
    "finish": "finished",
    "terminate": "terminated",
    "inaction": "inacted",
}
_PERIOD_NAMES = {
    "minute": "this_minute",
    "hour": "this_hour",
    "day": "today",
    "week": "this_week",
    "month": "this_month",
}


@dataclass(frozen=True, repr=False)
class TaskEvent(_Countable):
    """True when such an event happened in the period: ``failed.today``, ``started('etl')``.

    ``period`` is None (ever), a :class:`Span` (the current window of a
    calendar period, or the latest one when now is outside every window) or a
    timedelta (a sliding window: the last that long, inclusive).
    """

    kind: str
    task: str | None = None
    period: Span | timedelta | None = None
    compare: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"Unknown event kind {self.kind!r}.")

    # Building

    def __call__(self, task: str) -> TaskEvent:
        if self.task is not None or self.period is not None or self.compare is not None:
            raise TypeError(f"Name the task first: {EVENT_NAMES[self.kind]}({task!r}).today")
        return replace(self, task=_check_task(task))

    def _with_period(self, period: Span | timedelta) -> TaskEvent:
        if self.period is not None or self.compare is not None:
            raise TypeError(f"{self} already has a period.")
        return replace(self, period=period)

    @property
    def this_minute(self) -> TaskEvent:
        return self._with_period(Span("minute"))

    @property
    def this_hour(self) -> TaskEvent:
        return self._with_period(Span("hour"))

    @property
    def today(self) -> TaskEvent:
        return self._with_period(Span("day"))

    this_day = today

    @property
    def this_week(self) -> TaskEvent:
        return self._with_period(Span("week"))

    @property
    def this_month(self) -> TaskEvent:
        return self._with_period(Span("month"))

    def past(self, period: str | timedelta | float) -> TaskEvent:
        """Look at the sliding window of the last ``period`` (inclusive)."""
        return self._with_period(parse_duration(period))

    def _narrow(self, method: str, *values: object) -> TaskEvent:
        span = self.period
        if not isinstance(span, Span) or span.method is not None or self.compare is not None:
            raise TypeError(
                f"Narrow a calendar period, e.g. {EVENT_NAMES[self.kind]}.today.{method}(...)."
            )
        return replace(self, period=Span.make(span.unit, method, *values))

    def between(self, start: object, end: object) -> TaskEvent:
        return self._narrow("between", start, end)

    def before(self, end: object) -> TaskEvent:
        return self._narrow("before", end)

    def after(self, start: object) -> TaskEvent:
        return self._narrow("after", start)

    def at(self, value: object) -> TaskEvent:
        return self._narrow("at", value)

    def on(self, value: object) -> TaskEvent:
        return self._narrow("at", value)

    def starting(self, value: object) -> TaskEvent:
        return self._narrow("starting", value)

    # Evaluating

    def _range(self, ctx: Context) -> tuple[datetime | None, datetime | None, datetime | None]:
        """Return (since, until, next change of the range) for the events to count."""
        period = self.period
        if period is None:
            return None, None, None
        if isinstance(period, timedelta):
            return ctx.utc - period, None, None
        _, latest = period.around(ctx.utc, ctx.wall, ctx.tz)
        return latest.start, latest.end, period.next_start(ctx.utc, ctx.wall, ctx.tz)

    def _events(
        self, ctx: Context, since: datetime | None, until: datetime | None
    ) -> list[Sequence[datetime]]:
        task = self.task or ctx.task
        return [ctx.history.events(task, kind, since, until) for kind in EVENT_KINDS[self.kind]]

    def _count(self, ctx: Context, since: datetime | None, until: datetime | None) -> int:
        task = self.task or ctx.task
        return sum(ctx.history.count(task, kind, since, until) for kind in EVENT_KINDS[self.kind])

    def is_true(self, ctx: Context) -> bool:
        if self.period is None and self.compare is None:
            return self._last(ctx) is not None
        since, until, _ = self._range(ctx)
        return self._holds(self._count(ctx, since, until))

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        if self.period is None:
            return self.is_true(ctx), None
        since, until, when = self._range(ctx)
        if isinstance(self.period, Span):
            return self._holds(self._count(ctx, since, until)), when
        found = self._events(ctx, since, until)
        # The count drops when the oldest counted event leaves the sliding window.
        oldest = [events[0] for events in found if events]
        when = min(oldest) + self.period + TICK if oldest else None
        return self._holds(sum(map(len, found))), when

    def needs(self, task: str) -> dict[str, Needs]:
        kinds = EVENT_KINDS[self.kind]
        period = self.period
        if isinstance(period, timedelta):
            needs = Needs(windows=frozenset((kind, period) for kind in kinds))
        elif isinstance(period, Span):
            needs = Needs(periods=frozenset((kind, period) for kind in kinds))
        elif self.compare is not None:
            needs = Needs(totals=frozenset(kinds))
        else:
            return {}  # the latest events, always kept
        return {self.task or task: needs}

    def _last(self, ctx: Context) -> datetime | None:
        task = self.task or ctx.task
        if self.kind == "start":
            return ctx.history.last_start(task)
        return ctx.history.last_finish(task, frozenset(EVENT_KINDS[self.kind]))

    def facts(self, ctx: Context) -> dict[str, object]:
        if self.period is None and self.compare is None:
            return {"last": self._last(ctx)}  # what it reads: no count is kept for it
        since, until, _ = self._range(ctx)
        facts: dict[str, object] = {"count": self._count(ctx, since, until)}
        if since is not None:
            facts["window"] = [since, until]
        return facts

    def depends_on(self, task: str) -> frozenset[str]:
        return frozenset({self.task or task})

    def text(self) -> str:
        text = EVENT_NAMES[self.kind]
        if self.task is not None:
            text += f"({self.task!r})"
        period = self.period
        if isinstance(period, timedelta):
            text += f".past({format_duration(period)!r})"
        elif isinstance(period, Span):
            text += f".{_PERIOD_NAMES[period.unit]}{period.suffix()}"
        return self._compare_text(text)


@dataclass(frozen=True, repr=False)
class Running(_Countable):
    """True while a run of the task is in progress, optionally of a certain age.

    Ages are inclusive: ``running.more_than("1 hour")`` holds from the moment a
    run is one hour old. ``period`` limits the runs to those that started in
    the current window of a calendar period (``running.today``), or in the
    latest one when now is outside every window, as for task events.
    """

    task: str | None = None
    min_age: timedelta | None = None
    max_age: timedelta | None = None
    compare: tuple[str, int] | None = None
    period: Span | None = None

    def __call__(
        self,
        task: str | None = None,
        more_than: str | timedelta | float | None = None,
        less_than: str | timedelta | float | None = None,
    ) -> Running:
        if self != Running():
            raise TypeError(f"Name the task first: running({task!r}).more_than(...)")
        named = self if task is None else replace(self, task=_check_task(task))
        if more_than is None and less_than is None:
            return named
        # Rocketry's deprecated form, running(more_than=..., less_than=...), still reads one way.
        return named._aged(more_than, less_than)

    def _aged(self, min_age: object, max_age: object) -> Running:
        if (
            self.min_age is not None
            or self.max_age is not None
            or self.compare is not None
            or self.period is not None
        ):
            raise TypeError(f"{self} already has an age or a period.")
        low = None if min_age is None else parse_duration(min_age)  # type: ignore[arg-type]
        high = None if max_age is None else parse_duration(max_age)  # type: ignore[arg-type]
        if low is not None and high is not None and low > high:
            raise ValueError(
                f"running.between({min_age!r}, {max_age!r}): the first must be shorter."
            )
        return replace(self, min_age=low, max_age=high)

    def more_than(self, age: str | timedelta | float) -> Running:
        """Count runs at least ``age`` old."""
        return self._aged(age, None)

    def less_than(self, age: str | timedelta | float) -> Running:
        """Count runs at most ``age`` old."""
        return self._aged(None, age)

    def between(self, first: object, second: object) -> Running:
        """Count runs between the two ages old (inclusive), or narrow the period's window."""
        if self.period is not None:
            return self._narrow("between", first, second)
        return self._aged(first, second)

    # The runs that started in a period: running.today, running.this_hour.between(...)

    def _with_period(self, unit: str) -> Running:
        if self.period is not None or self.compare is not None or self._has_age():
            raise TypeError(f"{self} already has an age or a period.")
        return replace(self, period=Span(unit))

    def _has_age(self) -> bool:
        return self.min_age is not None or self.max_age is not None

    @property
    def this_minute(self) -> Running:
        return self._with_period("minute")

    @property
    def this_hour(self) -> Running:
        return self._with_period("hour")

    @property
    def today(self) -> Running:
        return self._with_period("day")

    @property
    def this_week(self) -> Running:
        return self._with_period("week")

    @property
    def this_month(self) -> Running:
        return self._with_period("month")

    def _narrow(self, method: str, *values: object) -> Running:
        span = self.period
        if span is None or span.method is not None or self.compare is not None:
            raise TypeError(f"Narrow a calendar period, e.g. running.today.{method}(...).")
        return replace(self, period=Span.make(span.unit, method, *values))

    def before(self, end: object) -> Running:
        return self._narrow("before", end)

    def after(self, start: object) -> Running:
        return self._narrow("after", start)

    def at(self, value: object) -> Running:
        return self._narrow("at", value)

    def on(self, value: object) -> Running:
        return self._narrow("at", value)

    def starting(self, value: object) -> Running:
        return self._narrow("starting", value)

    def _starts(self, ctx: Context) -> list[datetime]:
        starts = ctx.history.running(self.task or ctx.task)
        if self.period is not None:
            _, latest = self.period.around(ctx.utc, ctx.wall, ctx.tz)
            return [start for start in starts if latest.start <= start < latest.end]
        if self.min_age is None and self.max_age is None:
            return list(starts)
        now = ctx.utc
        return [
            start
            for start in starts
            if (self.min_age is None or now - start >= self.min_age)
            and (self.max_age is None or now - start <= self.max_age)
        ]

    def is_true(self, ctx: Context) -> bool:
        return self._holds(len(self._starts(ctx)))

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        value = self._holds(len(self._starts(ctx)))
        if self.period is not None:
            # The runs counted change when the next window begins.
            return value, self.period.next_start(ctx.utc, ctx.wall, ctx.tz)
        now = ctx.utc
        changes = []
        for start in ctx.history.running(self.task or ctx.task):
            if self.min_age is not None and start + self.min_age > now:
                changes.append(start + self.min_age)
            if self.max_age is not None and start + self.max_age + TICK > now:
                changes.append(start + self.max_age + TICK)
        return value, min(changes) if changes else None

    def facts(self, ctx: Context) -> dict[str, object]:
        facts: dict[str, object] = {
            "running_since": list(ctx.history.running(self.task or ctx.task))
        }
        if self.period is not None:
            _, latest = self.period.around(ctx.utc, ctx.wall, ctx.tz)
            facts["window"] = latest.to_list()
        return facts

    def depends_on(self, task: str) -> frozenset[str]:
        return frozenset({self.task or task})

    def text(self) -> str:
        text = "running" if self.task is None else f"running({self.task!r})"
        low, high = self.min_age, self.max_age
        if self.period is not None:
            text += f".{_PERIOD_NAMES[self.period.unit]}{self.period.suffix()}"
        elif low is not None and high is not None:
            text += f".between({format_duration(low)!r}, {format_duration(high)!r})"
        elif low is not None:
            text += f".more_than({format_duration(low)!r})"
        elif high is not None:
            text += f".less_than({format_duration(high)!r})"
        return self._compare_text(text)


AFTER_OUTCOMES = {
    "success": frozenset({"success"}),
    "fail": frozenset({"fail"}),
    "finish": frozenset({"success", "fail"}),
}


@dataclass(frozen=True, repr=False)
class After(Condition):
    """True when the other tasks finished (that way) after this task last started.

    ``mode`` is "one" (``after_success('a')``), "all" or "any".
    """

    kind: str
    tasks: tuple[str, ...]
    mode: str = "one"
    names: ClassVar[dict[str, str]] = {"one": "after", "all": "after_all", "any": "after_any"}

    def __post_init__(self) -> None:
        if self.kind not in AFTER_OUTCOMES or self.mode not in self.names:
            raise ValueError(f"Unknown dependency {self.kind!r}/{self.mode!r}.")
        if not self.tasks or (self.mode == "one" and len(self.tasks) != 1):
            raise TypeError(f"{self.names[self.mode]}_{self.kind}() needs the task names.")
        for task in self.tasks:
            _check_task(task)

    def is_true(self, ctx: Context) -> bool:
        return self.evaluate(ctx)[0]

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        last_start = ctx.history.last_start(ctx.task)
        outcomes = AFTER_OUTCOMES[self.kind]
        new = [
            end
            for end in (ctx.history.last_finish(task, outcomes) for task in self.tasks)
            if end is not None and (last_start is None or end > last_start)
        ]
        # An end later than now (written by a process whose clock runs ahead of this
        # one's) counts from its own instant. Counted now, it would make a run start
        # before it, and still be later than that start at the next look: a second run.
        seen = sum(1 for end in new if end <= ctx.now)
        if seen == len(self.tasks) or (seen and self.mode != "all"):
            return True, None
        coming = [end for end in new if end > ctx.now]
        return False, min(coming) if coming else None

    def facts(self, ctx: Context) -> dict[str, object]:
        outcomes = AFTER_OUTCOMES[self.kind]
        facts: dict[str, object] = {"last_start": ctx.history.last_start(ctx.task)}
        for task in self.tasks:
            facts[f"last_{self.kind}[{task}]"] = ctx.history.last_finish(task, outcomes)
        return facts

    def depends_on(self, task: str) -> frozenset[str]:
        return frozenset({task, *self.tasks})

    def text(self) -> str:
        return f"{self.names[self.mode]}_{self.kind}({', '.join(map(repr, self.tasks))})"

    def __repr__(self) -> str:
        return self.text()


started = TaskEvent("start")
succeeded = TaskEvent("success")
failed = TaskEvent("fail")
finished = TaskEvent("finish")
terminated = TaskEvent("terminate")
inacted = TaskEvent("inaction")
running = Running()


def after_success(task: str) -> After:
    """Return a condition true when ``task`` succeeded after this task last started."""
    return After("success", (task,))


def after_fail(task: str) -> After:
    """Return a condition true when ``task`` failed after this task last started."""
    return After("fail", (task,))


def after_finish(task: str) -> After:
    """Return a condition true when ``task`` succeeded or failed after this task last started."""
    return After("finish", (task,))


def after_all_success(*tasks: str) -> After:
    """Return a condition true when every one of ``tasks`` succeeded since this task started."""
    return After("success", tasks, "all")


def after_all_fail(*tasks: str) -> After:
    """Return a condition true when every one of ``tasks`` failed since this task started."""
    return After("fail", tasks, "all")


def after_all_finish(*tasks: str) -> After:
    """Return a condition true when every one of ``tasks`` finished since this task started."""
    return After("finish", tasks, "all")


def after_any_success(*tasks: str) -> After:
    """Return a condition true when one of ``tasks`` succeeded since this task started."""
    return After("success", tasks, "any")


def after_any_fail(*tasks: str) -> After:
    """Return a condition true when one of ``tasks`` failed since this task started."""
    return After("fail", tasks, "any")


def after_any_finish(*tasks: str) -> After:
    """Return a condition true when one of ``tasks`` finished since this task started."""
    return After("finish", tasks, "any")
