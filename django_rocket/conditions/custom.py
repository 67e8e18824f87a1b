"""Custom conditions: plain functions registered by name with ``@condition``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from .base import Condition, Context
from .durations import parse_duration

__all__ = ["Custom", "condition", "custom_conditions"]

DEFAULT_RECHECK = timedelta(seconds=1)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REGISTRY: dict[str, Custom] = {}
# Names a custom condition may not take; filled in by the package with its vocabulary.
RESERVED: set[str] = set()


@dataclass(frozen=True, repr=False)
class Custom(Condition):
    """A condition computed by a user function; re-checked every ``recheck``."""

    name: str
    func: Callable[..., object] = field(compare=False)
    recheck: timedelta = DEFAULT_RECHECK
    wants: tuple[str, ...] = ()

    def _call(self, ctx: Context) -> bool:
        arguments = {"task": ctx.task, "now": ctx.now}
        result = self.func(**{name: arguments[name] for name in self.wants})
        if not isinstance(result, bool):
            raise TypeError(
                f"The custom condition {self.name!r} returned {result!r}; "
                "it must return True or False."
            )
        return result

    def is_true(self, ctx: Context) -> bool:
        return self._call(ctx)

    def evaluate(self, ctx: Context) -> tuple[bool, datetime | None]:
        return self._call(ctx), ctx.now + self.recheck

    def reads_task_name(self) -> bool:
        return True  # the function may read it, and is called once per task

    def text(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<custom condition {self.name}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Custom):
            return NotImplemented
        return (self.name, self.func, self.recheck) == (other.name, other.func, other.recheck)

    def __hash__(self) -> int:
        return hash((Custom, self.name))


def _register(func: Callable[..., object], name: str | None, recheck: object) -> Custom:
    if not callable(func):
        raise TypeError(f"@condition decorates a function, not {func!r}.")
    name = name or func.__name__
    if not _NAME.fullmatch(name):
        raise ValueError(f"A condition name must be a Python identifier, got {name!r}.")
    if name in RESERVED:
        raise ValueError(
            f"{name!r} is a built-in condition name; register the function under another name."
        )
    parameters = inspect.signature(func).parameters
    unknown = [
        p
        for p, spec in parameters.items()
        if p not in ("task", "now")
        and spec.default is inspect.Parameter.empty
        and spec.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if unknown:
        raise TypeError(
            f"The condition function {name!r} may only take the parameters 'task' and 'now'; "
            f"it also requires {', '.join(map(repr, unknown))}."
        )
    wants = tuple(p for p in ("task", "now") if p in parameters)
    every = parse_duration(recheck)  # type: ignore[arg-type]
    if every <= timedelta(0):
        raise ValueError(f"The recheck interval of condition {name!r} must be longer than zero.")
    custom = Custom(name, func, every, wants)
    existing = _REGISTRY.get(name)
    if existing is not None and _origin(existing.func) != _origin(func):
        raise ValueError(
            f"A condition named {name!r} is already registered by {_origin(existing.func)}; "
            "pick another name."
        )
    _REGISTRY[name] = custom
    return custom


def _origin(func: Callable[..., object]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def condition(
    func: Callable[..., object] | str | None = None,
    *,
    name: str | None = None,
    recheck: str | timedelta | float = DEFAULT_RECHECK,
) -> Custom | Callable[[Callable[..., object]], Custom]:
    """Turn a function returning a bool into a condition registered by name.

    The function may take ``task`` (the task's name) and ``now`` (the
    evaluation instant). Its value is re-checked every ``recheck`` (one second
    by default) since the scheduler cannot know when it changes. Use as
    ``@condition``, ``@condition("name")`` or ``@condition(name=..., recheck=...)``.
    """
    if callable(func):
        return _register(func, name, recheck)
    if isinstance(func, str):
        name = func

    def decorate(function: Callable[..., object]) -> Custom:
        return _register(function, name, recheck)

    return decorate


def custom_conditions() -> Mapping[str, Custom]:
    """Return a live read-only view of the registered custom conditions by name."""
    return MappingProxyType(_REGISTRY)


def unregister(name: str) -> None:
    """Remove a registered custom condition (for tests)."""
    _REGISTRY.pop(name, None)
