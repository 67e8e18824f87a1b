"""Tasks that change at runtime: the admin's condition overrides and ``schedule()``'s rows.

A runtime task's function must be on ``ROCKET_TASK_FUNCTIONS``
(:mod:`django_rocket.executors.allowlist`, where a Tasks framework worker checks it
too). Rows are validated by :func:`runtime_problems` when they are written and turned
into a :class:`TaskSpec` by :func:`runtime_spec` when the scheduler loads them.
"""

from __future__ import annotations

import functools
import json
import zoneinfo
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.core import checks

from django_rocket.conditions import Condition, custom_conditions, parse
from django_rocket.conf import EXECUTIONS, conf, parse_timeout
from django_rocket.executors.allowlist import loaded_refusal
from django_rocket.executors.outcome import unstorable_text
from django_rocket.registry.declared import (
    NAME_MAX,
    OVERRIDE,
    RUNTIME,
    STORED_TEXT,
    Problems,
    TaskSpec,
    error,
    parse_condition,
    shown,
    task_spec,
    unstorable,
)


def with_overrides(spec: TaskSpec, start_override: str, end_override: str) -> TaskSpec:
    """Return ``spec`` with the admin's condition overrides applied (blank: the declared one).

    Raises ConditionSyntaxError if an override does not parse.
    """
    if not start_override and not end_override:
        return spec
    return replace(
        spec,
        start_cond=parse(start_override) if start_override else spec.start_cond,
        end_cond=parse(end_override) if end_override else spec.end_cond,
        condition_source=OVERRIDE,
    )


# The field of ``schedule()`` each task problem is about (by check ID).
_PROBLEM_FIELDS = {
    "django_rocket.E005": "func",
    "django_rocket.E006": "start_cond",
    "django_rocket.E008": "end_cond",
    "django_rocket.E009": "execution",
    "django_rocket.E013": "execution",
    "django_rocket.E050": "execution",
    "django_rocket.E056": "execution",
    "django_rocket.E010": "timeout",
    "django_rocket.E011": "parameters",
    "django_rocket.E055": "parameters",
    "django_rocket.E051": "backend",
    "django_rocket.E053": "backend",
    "django_rocket.E052": "queue",
}


def _problem_field(problem: checks.CheckMessage, entry: dict[str, Any]) -> str:
    """The field a problem is about; "__all__" for one about none in particular."""
    if problem.id == "django_rocket.E054":  # backend or queue without execution 'tasks'
        return "backend" if "backend" in entry else "queue"
    if problem.id == "django_rocket.E012":  # a flag that is not a bool: which one it names
        return "multilaunch" if ": multilaunch must be" in str(problem.msg) else "enabled"
    if problem.id == "django_rocket.E016":  # text the database cannot store: which field
        return next((k for k in STORED_TEXT if f": {k} " in str(problem.msg)), "__all__")
    return _PROBLEM_FIELDS.get(problem.id or "", "__all__")


def runtime_problems(name: str, entry: dict[str, Any]) -> dict[str, list[str]]:
    """Validate a runtime task as :func:`collect` validates a declared one, by field.

    ``entry`` holds the keys of a ``ROCKET_TASKS`` entry. The function is checked
    against ``ROCKET_TASK_FUNCTIONS`` before it is imported; the name must not be a
    declared task's. Return each field's messages ("__all__" for the others).
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip():
        errors.setdefault("name", []).append(
            f"{name!r} is not a task name: use 1 to {NAME_MAX} characters, not only spaces."
        )
    elif why := unstorable(name, NAME_MAX):
        errors.setdefault("name", []).append(
            f"{shown(name)} is not a task name: {why}. Use 1 to {NAME_MAX} characters of "
            "text, without NUL characters."
        )
    elif isinstance(conf.tasks, dict) and name in conf.tasks:
        errors.setdefault("name", []).append(
            f"{name!r} is declared in ROCKET_TASKS; a runtime task cannot take a declared "
            "task's name. Choose another name (its conditions can be overridden in the admin)."
        )
    func = entry.get("func")
    why = (
        loaded_refusal(func) if isinstance(func, str) else f"func must be a dotted path: {func!r}."
    )
    problems: Problems = []
    if why:
        errors.setdefault("func", []).append(why)
        for key, error_id in (
            ("start_cond", "django_rocket.E006"),
            ("end_cond", "django_rocket.E008"),
        ):
            if entry.get(key) not in (None, ""):
                parse_condition(str(name), key, entry[key], problems, error_id)
    else:
        task_spec(str(name) if isinstance(name, str) and name.strip() else "task", entry, problems)
    parameters = entry.get("parameters")
    try:
        json.dumps(parameters, allow_nan=False)
        if why := unstorable_text(parameters):  # PostgreSQL's jsonb refuses either
            raise ValueError(f"a string in them: {why}")
    except (TypeError, ValueError) as exc:
        problems.append(
            error(
                "django_rocket.E011",
                f"parameters must be JSON values, as they are stored in the database: {exc}.",
                "Pass numbers, strings, lists and dicts (ids, not model instances).",
            )
        )
    for problem in problems:
        if problem.is_serious():
            errors.setdefault(_problem_field(problem, entry), []).append(str(problem.msg))
    return errors


@functools.lru_cache(maxsize=1 << 16)
def _parse_runtime(text: str, custom: frozenset[tuple[str, object]]) -> Condition:
    return parse(text)


CustomKey = frozenset[tuple[str, object]]


def custom_key() -> CustomKey:
    """Return the registered custom conditions as part of a parse cache's key."""
    return frozenset(custom_conditions().items())


def parse_runtime(text: str, custom: CustomKey | None = None) -> Condition:
    """Parse a runtime task's condition, cached: 100,000 tasks share a few thousand texts.

    Conditions are immutable; the registered custom conditions are part of the key
    (``custom``: :func:`custom_key`, if the caller read it already).
    """
    return _parse_runtime(text, custom_key() if custom is None else custom)


def runtime_spec(
    name: str,
    func: str,
    start_cond: str,
    end_cond: str,
    execution: str,
    timeout: str,
    parameters: Any,
    *,
    default_timeout: Any = None,
    multilaunch: bool = False,
    backend: str = "",
    queue: str = "",
    description: str = "",
    custom: CustomKey | None = None,
) -> TaskSpec:
    """Return the spec of a runtime task's row, without importing its function.

    A blank ``timeout`` is ``default_timeout`` (None: ``ROCKET_TIMEOUT``, read now);
    ``custom`` is :func:`custom_key` if the caller read it for many rows.
    ``backend`` and ``queue`` (execution 'tasks'; blank: the default) are checked when
    the row is written (:func:`runtime_problems`); the backend refuses a bad one here
    at enqueue time, and the run is then ``fail``.

    Raises ValueError (a ConditionSyntaxError for a condition) for a row no scheduler can
    follow; whether its function may run is decided at each launch (:func:`loaded_refusal`).
    """
    if not isinstance(parameters, dict):
        raise ValueError(f"parameters must be a dict, not {type(parameters).__name__}")
    if execution not in EXECUTIONS:
        raise ValueError(f"execution {execution!r} is not one of {', '.join(EXECUTIONS)}")
    return TaskSpec(
        name=name,
        func=func,
        start_cond=parse_runtime(start_cond, custom),
        end_cond=parse_runtime(end_cond, custom) if end_cond else None,
        execution=execution,
        timeout=_timeout(timeout or (conf.timeout if default_timeout is None else default_timeout)),
        parameters=parameters,
        multilaunch=bool(multilaunch),
        description=description,
        backend=backend,
        queue=queue,
        source=RUNTIME,
        condition_source=RUNTIME,
    )


def _timeout(value: Any) -> timedelta | None:
    if isinstance(value, str):
        return _cached_timeout(value)
    return parse_timeout(value)


@functools.lru_cache(maxsize=1024)
def _cached_timeout(text: str) -> timedelta | None:
    return parse_timeout(text)


def scheduler_zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(conf.time_zone)
