"""The condition base class, the evaluation context, explanations and the operators."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any as AnyType
from typing import ClassVar

from .history import History
from .needs import Needs, merge_needs

__all__ = [
    "All",
    "Any",
    "Condition",
    "Constant",
    "Context",
    "Explanation",
    "Not",
    "false",
    "true",
]

# Binding strength when rendering: a child weaker than its slot is parenthesised.
COMPARE, OR, AND, NOT, ATOM = 0, 1, 2, 3, 4

COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Context:
    """Everything a condition is evaluated against.

    ``utc`` and ``wall`` are derived from ``now``: the same instant in UTC (the
    form histories and windows use) and on the local clock of ``tz``.
    ``scheduler_started_at`` (aware) and ``scheduler_cycles`` describe the
    scheduler evaluating the condition, for ``scheduler_running`` and
    ``scheduler_cycles``; None outside a scheduler, where those are false.
    """

    task: str
    now: datetime
    history: History
    tz: tzinfo
    retry_disabled: bool = False
    scheduler_started_at: datetime | None = None
    scheduler_cycles: int | None = None
    utc: datetime = field(init=False, repr=False, compare=False)
    wall: datetime = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        now = self.now
        if now.utcoffset() is None:
            raise ValueError(f"Context.now must be an aware datetime, got {now!r}.")
        utc = now if now.tzinfo is UTC else now.astimezone(UTC)
        if utc.fold:
            # UTC has no repeated times; a stray fold would read as the second pass of one.
            utc = utc.replace(fold=0)
        object.__setattr__(self, "utc", utc)
        if now.tzinfo is self.tz and not now.fold:
            wall = now
        else:
            # From UTC, so that ``fold`` marks exactly the second pass of a repeated time.
            wall = utc.astimezone(self.tz)
        object.__setattr__(self, "wall", wall)
        started = self.scheduler_started_at
        if started is not None and started.utcoffset() is None:
            raise ValueError(f"Context.scheduler_started_at must be aware, got {started!r}.")

    def for_task(self, task: str) -> Context:
        """The same instant, history and zone for another task, without converting again."""
        ctx = object.__new__(Context)
        ctx.__dict__.update(self.__dict__)
        ctx.__dict__["task"] = task
        return ctx


def _localise(value: AnyType, tz: tzinfo) -> AnyType:
    """Return ``value`` with every datetime in it shown in the zone ``tz``."""
    if isinstance(value, datetime):
        return value.astimezone(tz)
    if isinstance(value, list | tuple):
        return type(value)(_localise(item, tz) for item in value)
    if isinstance(value, dict):
        return {key: _localise(item, tz) for key, item in value.items()}
    return value


def _json(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Explanation:
    """Why a condition has its value at one instant: a tree mirroring the condition."""

    text: str
    value: bool
    facts: dict[str, object] = field(default_factory=dict)
    children: tuple[Explanation, ...] = ()
    next_change: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        """Return the explanation as JSON-able data."""
        return {
            "text": self.text,
            "value": self.value,
            "facts": _json(self.facts),
            "children": [child.to_dict() for child in self.children],
            "next_change": None if self.next_change is None else self.next_change.isoformat(),
        }

    def render(self, indent: str = "") -> str:
        """Return the tree as indented lines of text."""
        facts = ", ".join(f"{key}={_json(value)}" for key, value in self.facts.items())
        line = f"{indent}{'TRUE ' if self.value else 'false'} {self.text}"
        if facts:
            line += f"  [{facts}]"
        return "\n".join([line, *(child.render(indent + "    ") for child in self.children)])


class Condition:
    """A statement about time and run history that is true or false at an instant.

    Conditions are immutable values: equal when built the same way, hashable,
    combined with ``&``, ``|`` and ``~``. ``str(condition)`` is the canonical
    expression text, which :func:`~django_rocket.conditions.parse` reads back.
    """

    __slots__ = ()
    precedence: ClassVar[int] = ATOM

    def is_true(self, ctx: Context) -> bool:
        """Return the value of the condition at ``ctx.now``."""
        raise NotImplementedError

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        """Return the value and the earliest instant after now when it may change.

        None means the value holds until the history changes.
        """
        raise NotImplementedError

    def next_change(self, ctx: Context) -> datetime | None:
        """Return the earliest instant after now at which the value may differ.

        The value is the same at every instant in ``[now, next_change)`` as long
        as the history does not change; None means only a change in the history
        can change it.
        """
        return self.evaluate(ctx)[1]

    def explain(self, ctx: Context) -> Explanation:
        """Return why the condition has its value at ``ctx.now``."""
        value, when = self.evaluate(ctx)
        return Explanation(
            str(self), value, _localise(self.facts(ctx), ctx.tz), (), _localise(when, ctx.tz)
        )

    def facts(self, ctx: Context) -> dict[str, object]:
        """Return the facts that decided the value, for :meth:`explain`."""
        return {}

    def depends_on(self, task: str) -> frozenset[str]:
        """Return the names of the tasks whose history the condition reads for ``task``."""
        return frozenset()

    def has_retry(self) -> bool:
        """Return whether a ``retry`` appears in the condition."""
        return False

    def reads_task_name(self) -> bool:
        """Return whether the value can depend on the evaluating task's name itself.

        False when ``ctx.task`` is only used to look the task's runs up in the history:
        then two tasks the history holds nothing of get the same answer at the same
        instant, and a scheduler evaluates the condition once for all of them. A hashed
        cron (spread by the name) and a custom condition (a user function, called for
        every task) return True; a condition with sub-conditions, whether any of them does.
        """
        return any(child.reads_task_name() for child in self.children())

    def needs(self, task: str) -> dict[str, Needs]:
        """Return, per task name, what history the condition can read when evaluated for ``task``.

        Beyond every task's latest events, which a snapshot always keeps; a
        condition with sub-conditions needs the union of theirs.
        """
        return merge_needs(child.needs(task) for child in self.children())

    def children(self) -> tuple[Condition, ...]:
        """Return the direct sub-conditions."""
        return ()

    # Rendering

    def text(self) -> str:
        """Return the canonical expression, ignoring the surrounding operator."""
        raise NotImplementedError

    def render(self, slot: int = COMPARE) -> str:
        """Return the canonical expression, parenthesised if weaker than ``slot``."""
        text = self.text()
        return f"({text})" if self.precedence < slot else text

    def __str__(self) -> str:
        return self.render()

    # Operators

    def __and__(self, other: object) -> Condition:
        if not isinstance(other, Condition):
            return NotImplemented
        return All(_flatten(All, (self, other)))

    def __or__(self, other: object) -> Condition:
        if not isinstance(other, Condition):
            return NotImplemented
        return Any(_flatten(Any, (self, other)))

    def __invert__(self) -> Condition:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "A condition has no truth value of its own; combine conditions with & | ~ "
            "(not 'and', 'or', 'not') and evaluate one with condition.is_true(context)."
        )


def _flatten(kind: type[All | Any], items: tuple[Condition, ...]) -> tuple[Condition, ...]:
    flat: list[Condition] = []
    for item in items:
        if type(item) is kind:
            flat.extend(item.items)
        else:
            flat.append(item)
    return tuple(flat)


def _earliest(times: list[datetime | None]) -> datetime | None:
    known = [when for when in times if when is not None]
    return min(known) if known else None


def _latest(times: list[datetime | None]) -> datetime | None:
    if any(when is None for when in times):
        return None
    return max(times)  # type: ignore[type-var]


@dataclass(frozen=True, repr=False)
class Constant(Condition):
    """Always true or always false."""

    value: bool

    def is_true(self, ctx: Context) -> bool:
        return self.value

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        return self.value, None

    def text(self) -> str:
        return "true" if self.value else "false"

    def __repr__(self) -> str:
        return self.text()


@dataclass(frozen=True, repr=False)
class _Operands(Condition):
    """What ``&`` and ``|`` share: a tuple of sub-conditions."""

    items: tuple[Condition, ...]

    def explain(self, ctx: Context) -> Explanation:
        children = tuple(item.explain(ctx) for item in self.items)
        value, when = self.evaluate(ctx)
        return Explanation(str(self), value, {}, children, _localise(when, ctx.tz))

    def depends_on(self, task: str) -> frozenset[str]:
        return frozenset().union(*(item.depends_on(task) for item in self.items))

    def has_retry(self) -> bool:
        return any(item.has_retry() for item in self.items)

    def children(self) -> tuple[Condition, ...]:
        return self.items


@dataclass(frozen=True, repr=False)
class All(_Operands):
    """True when every sub-condition is true (``a & b``)."""

    precedence: ClassVar[int] = AND

    def is_true(self, ctx: Context) -> bool:
        return all(item.is_true(ctx) for item in self.items)

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        results = [item.evaluate(ctx) for item in self.items]
        if all(value for value, _ in results):
            # True until the first child may turn false.
            return True, _earliest([when for _, when in results])
        # False until every false child may have turned true.
        return False, _latest([when for value, when in results if not value])

    def text(self) -> str:
        return " & ".join(item.render(AND) for item in self.items)

    def __repr__(self) -> str:
        return f"All({', '.join(map(repr, self.items))})"


@dataclass(frozen=True, repr=False)
class Any(_Operands):
    """True when at least one sub-condition is true (``a | b``)."""

    precedence: ClassVar[int] = OR

    def is_true(self, ctx: Context) -> bool:
        return any(item.is_true(ctx) for item in self.items)

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        results = [item.evaluate(ctx) for item in self.items]
        if any(value for value, _ in results):
            # True until every true child may have turned false.
            return True, _latest([when for value, when in results if value])
        return False, _earliest([when for _, when in results])

    def text(self) -> str:
        return " | ".join(item.render(OR) for item in self.items)

    def __repr__(self) -> str:
        return f"Any({', '.join(map(repr, self.items))})"


@dataclass(frozen=True, repr=False)
class Not(Condition):
    """True when the sub-condition is false (``~a``)."""

    item: Condition
    precedence: ClassVar[int] = NOT

    def is_true(self, ctx: Context) -> bool:
        return not self.item.is_true(ctx)

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        value, when = self.item.evaluate(ctx)
        return not value, when

    def explain(self, ctx: Context) -> Explanation:
        child = self.item.explain(ctx)
        return Explanation(str(self), not child.value, {}, (child,), child.next_change)

    def depends_on(self, task: str) -> frozenset[str]:
        return self.item.depends_on(task)

    def has_retry(self) -> bool:
        return self.item.has_retry()

    def children(self) -> tuple[Condition, ...]:
        return (self.item,)

    def text(self) -> str:
        return f"~{self.item.render(NOT)}"

    def __repr__(self) -> str:
        return f"Not({self.item!r})"


true = Constant(True)
false = Constant(False)


def check_condition(value: AnyType, what: str = "condition") -> Condition:
    """Return ``value`` if it is a condition, else raise a TypeError that says what it is."""
    if not isinstance(value, Condition):
        raise TypeError(f"Expected a {what}, got {type(value).__name__}: {value!r}.")
    return value
