"""Tasks that change at runtime: the admin's condition overrides and ``schedule()``'s rows.

A runtime task's function must be on ``ROCKET_TASK_FUNCTIONS``, checked before
anything is imported (:func:`function_refusal`), and again, imported, before every
run (:func:`loaded_refusal`). Rows are validated by :func:`runtime_problems` when they
are written and turned into a :class:`TaskSpec` by :func:`runtime_spec` when the
scheduler loads them.
"""

from __future__ import annotations

import functools
import json
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.utils.module_loading import import_string

from django_rocket.conditions import Condition, custom_conditions, parse
from django_rocket.conf import EXECUTIONS, conf, parse_timeout
from django_rocket.executors.django_tasks.framework import plain_function
from django_rocket.registry.declared import (
    OVERRIDE,
    RUNTIME,
    Problems,
    TaskSpec,
    error,
    parse_condition,
    task_spec,
)

# Each segment a Python identifier: no "..", no spaces, nothing import_string could misread.
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
RUNTIME_OFF = (
    "Runtime tasks are off: ROCKET_TASK_FUNCTIONS is not set. List the functions runtime "
    "tasks may call in settings.py, e.g. ROCKET_TASK_FUNCTIONS = ['myapp.reminders.*']."
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


def _allowing_entry(path: str, allowlist: Sequence[str]) -> str | None:
    """Return the ``ROCKET_TASK_FUNCTIONS`` entry that allows ``path``, or None."""
    if not _DOTTED.fullmatch(path):
        return None
    for entry in allowlist:
        if entry == path:
            return entry
        if entry.endswith(".*"):
            prefix = entry[:-2]
            rest = path[len(prefix) + 1 :].split(".") if path.startswith(prefix + ".") else []
            # A private name is not meant to be called from outside its module.
            if rest and not any(part.startswith("_") for part in rest):
                return entry
    return None


def function_refusal(path: str) -> str:
    """Return why a runtime task may not call ``path``, or "" if it may; never imports."""
    allowlist = conf.task_functions
    if allowlist is None:
        return RUNTIME_OFF
    if _allowing_entry(path, allowlist) is None:
        return (
            f"The function {path!r} is not allowed by ROCKET_TASK_FUNCTIONS, so runtime tasks "
            "may not call it; it was not imported. Add its dotted path (or 'its.module.*') "
            "to ROCKET_TASK_FUNCTIONS."
        )
    return ""


def loaded_refusal(path: str) -> str:
    """Like :func:`function_refusal`, then import an allowed ``path`` and check what it is.

    A ``module.*`` entry allows the functions defined in that module, not a function it
    imported from elsewhere (``from subprocess import run`` in it does not allow ``run``).
    """
    why = function_refusal(path)
    if why:
        return why
    try:
        target = import_string(path)
    except Exception as exc:
        return f"The function {path!r} cannot be imported: {type(exc).__name__}: {exc}."
    func = plain_function(target)
    if not callable(func):
        return f"{path!r} is not callable."
    entry = _allowing_entry(path, conf.task_functions or [])
    assert entry is not None
    module = getattr(func, "__module__", None) or ""
    prefix = entry[:-2]
    if entry.endswith(".*") and module != prefix and not module.startswith(prefix + "."):
        return (
            f"{path!r} is defined in {module or 'an unknown module'!r}, outside {entry!r}; "
            "a 'module.*' entry allows only the functions defined in that module. "
            "List its own dotted path in ROCKET_TASK_FUNCTIONS to allow it."
        )
    return ""


# The field of ``schedule()`` each task problem is about (by check ID).
_PROBLEM_FIELDS = {
    "django_rocket.E005": "func",
    "django_rocket.E006": "start_cond",
    "django_rocket.E008": "end_cond",
    "django_rocket.E009": "execution",
    "django_rocket.E013": "execution",
    "django_rocket.E010": "timeout",
    "django_rocket.E011": "parameters",
    "django_rocket.E055": "parameters",
    "django_rocket.E012": "enabled",
}


def runtime_problems(name: str, entry: dict[str, Any]) -> dict[str, list[str]]:
    """Validate a runtime task as :func:`collect` validates a declared one, by field.

    ``entry`` holds the keys of a ``ROCKET_TASKS`` entry. The function is checked
    against ``ROCKET_TASK_FUNCTIONS`` before it is imported; the name must not be a
    declared task's. Return each field's messages ("__all__" for the others).
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors.setdefault("name", []).append(
            f"{name!r} is not a task name: use 1 to 200 characters, not only spaces."
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
            errors.setdefault(_PROBLEM_FIELDS.get(problem.id or "", "__all__"), []).append(
                str(problem.msg)
            )
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
    custom: CustomKey | None = None,
) -> TaskSpec:
    """Return the spec of a runtime task's row, without importing its function.

    A blank ``timeout`` is ``default_timeout`` (None: ``ROCKET_TIMEOUT``, read now);
    ``custom`` is :func:`custom_key` if the caller read it for many rows.

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
