"""The tasks declared in ``ROCKET_TASKS``, validated into :class:`TaskSpec`.

No ORM here: the system checks and the scheduler both read tasks through
:func:`collect`, so a task that passes ``manage.py check`` is exactly a task
the scheduler can run. Runtime tasks and overrides are in :mod:`.runtime`.
"""

from __future__ import annotations

import asyncio
import builtins
import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_rocket.conditions import (
    Condition,
    ConditionSyntaxError,
    Custom,
    Every,
    Retry,
    Running,
    TaskEvent,
    format_duration,
    parse,
)
from django_rocket.conf import EXECUTIONS, TASK_KEYS, conf, parse_timeout
from django_rocket.executors.django_tasks.checks import task_problems
from django_rocket.executors.django_tasks.framework import plain_function
from django_rocket.executors.outcome import load_function
from django_rocket.models import Task


@dataclass(frozen=True)
class TaskSpec:
    """One declared task, with its conditions parsed and its options resolved."""

    name: str
    func: str
    start_cond: Condition
    end_cond: Condition | None = None
    execution: str = "process"
    timeout: timedelta | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    multilaunch: bool = False
    enabled: bool = True
    description: str = ""
    # Execution 'tasks': the TASKS alias and queue to enqueue on ("": the default).
    backend: str = ""
    queue: str = ""
    # "settings" (ROCKET_TASKS) or "runtime" (schedule()); where the condition came from:
    # "settings", "override" (the admin's override of a declared task) or "runtime".
    source: str = "settings"
    condition_source: str = "settings"

    def load_function(self) -> Callable[..., Any]:
        """Import the task function."""
        return load_function(self.func)


# Where a task comes from (TaskSpec.source) and where its condition came from
# (TaskSpec.condition_source: the admin's override of a declared task is OVERRIDE).
SETTINGS, RUNTIME, OVERRIDE = "settings", "runtime", "override"

Problems = list[checks.CheckMessage]

# Bounds of the numbers a condition may hold (check E014). The snapshot reads the
# ``n + 1`` latest runs of every task for ``retry(n)``; a count above a million runs
# in one period is a typo; and a duration past 100 years overflows the dates the
# scheduler computes with it (``now - every``), as commands' durations would.
MAX_RETRY = 1000
MAX_COUNT = 1_000_000
MAX_DURATION = timedelta(days=36_500)


def error(id: str, msg: str, hint: str, task: str | None = None) -> checks.CheckMessage:
    return checks.Error(msg, hint=hint, obj=task, id=id)


# The Task columns a declaration fills, with how many characters each holds (None: any),
# read off the model.
NAME_MAX: int = Task._meta.get_field("name").max_length or 200
STORED_TEXT: dict[str, int | None] = {
    key: getattr(Task._meta.get_field(key), "max_length", None)
    for key in ("func", "description", "backend", "queue")
}


def unstorable(text: str, limit: int | None) -> str:
    """Why the database could not store ``text`` in a column of ``limit`` characters, or "".

    PostgreSQL and MySQL refuse a value longer than its column (SQLite keeps it), and
    PostgreSQL refuses the NUL character in text; no database takes a lone surrogate
    (what Python makes of bytes that are not UTF-8) as UTF-8. The scheduler writes the
    declared tasks at start-up, so such a value stopped it there, in a loop that took
    the database's refusal for an outage.
    """
    if limit is not None and len(text) > limit:
        return f"it is {len(text):,} characters long, and the column holds {limit}"
    if "\x00" in text:
        return "it holds a NUL character (\\x00), which PostgreSQL cannot store in text"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"it holds {text[exc.start : exc.end]!r}, a lone surrogate (bytes that were not "
            "UTF-8), which no database can store as text"
        )
    return ""


def shown(text: str, width: int = 60) -> str:
    """``text`` quoted, cut to ``width`` characters for a message (its length said then)."""
    if len(text) <= width:
        return repr(text)
    return f"{text[:width]!r}... ({len(text):,} characters)"


def import_condition_modules() -> Problems:
    """Import the modules in ``ROCKET_CONDITION_MODULES``; return an error for each failure."""
    problems: Problems = []
    for module in conf.condition_modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            problems.append(
                error(
                    "django_rocket.E020",
                    f"ROCKET_CONDITION_MODULES lists {module!r}, which cannot be imported: "
                    f"{type(exc).__name__}: {exc}.",
                    "List importable module paths such as 'myapp.conditions'.",
                )
            )
    return problems


def parse_condition(
    name: str, key: str, text: Any, problems: Problems, error_id: str
) -> Condition | None:
    if isinstance(text, Condition):
        return text
    if not isinstance(text, str):
        problems.append(
            error(
                error_id,
                f"Task {name!r}: {key} must be a condition string or object, "
                f"not {type(text).__name__} ({text!r}).",
                f'Write it as text, e.g. "{key}": "daily | retry(3)".',
                task=name,
            )
        )
        return None
    try:
        return parse(text)
    except ConditionSyntaxError as exc:
        problems.append(
            error(
                error_id,
                f"Task {name!r}: {key} does not parse:\n{exc}",
                "Fix the condition text; docs/reference/conditions lists every condition "
                "and docs/reference/condition-syntax the grammar.",
                task=name,
            )
        )
        return None


def _out_of_bounds(cond: Condition) -> list[tuple[Condition, str, str]]:
    """Each node of ``cond`` holding a number past its bound: (node, what, the fix)."""
    found: list[tuple[Condition, str, str]] = []
    if isinstance(cond, Retry) and cond.n is not None and cond.n > MAX_RETRY:
        found.append(
            (
                cond,
                f"a retry limit above {MAX_RETRY}",
                f"Write retry(n) with n at most {MAX_RETRY}, or retry without a limit.",
            )
        )
    compare = getattr(cond, "compare", None) if isinstance(cond, TaskEvent | Running) else None
    if compare is not None and compare[1] > MAX_COUNT:
        found.append(
            (
                cond,
                f"a count above {MAX_COUNT:,} runs",
                f"Compare with a number of runs at most {MAX_COUNT:,}.",
            )
        )
    durations: list[tuple[str, timedelta | None]] = []
    if isinstance(cond, Every):
        durations.append(("a period", cond.period))
    elif isinstance(cond, TaskEvent) and isinstance(cond.period, timedelta):
        durations.append(("a window", cond.period))
    elif isinstance(cond, Running):
        durations += [("an age", cond.min_age), ("an age", cond.max_age)]
    elif isinstance(cond, Custom):
        durations.append(("a recheck interval", cond.recheck))
    elif isinstance(cond, Retry):
        durations += [("a retry delay", cond.delay), ("a retry max_delay", cond.max_delay)]
    for what, duration in durations:
        if duration is not None and duration > MAX_DURATION:
            found.append(
                (
                    cond,
                    f"{what} of {format_duration(duration)}, longer than 100 years "
                    f"({MAX_DURATION.days:,} days)",
                    f"Write a duration of at most 100 years ({MAX_DURATION.days:,} days).",
                )
            )
    for child in cond.children():
        found += _out_of_bounds(child)
    return found


def _check_bounds(name: str, key: str, cond: Condition, problems: Problems, text: Any) -> bool:
    """Add an E014 for each number of ``cond`` out of bounds; return whether there was none."""
    written = text if isinstance(text, str) else str(cond)
    found = _out_of_bounds(cond)
    for node, what, fix in found:
        problems.append(
            error(
                "django_rocket.E014",
                f"Task {name!r}: {key} {written!r} has {what} in {_quote(node)}.",
                f"{fix} docs/reference/checks lists the bounds.",
                task=name,
            )
        )
    return not found


def _retry_exceptions(name: str, key: str, cond: Condition) -> Problems:
    """An E015 or W003 for each ``retry(on=[...])`` name that is not a known exception class."""
    problems: Problems = []
    if isinstance(cond, Retry):
        for exception in cond.on or ():
            found = _exception_problem(exception)
            if found is None:
                continue
            id, reason, hint = found
            message = f"Task {name!r}: {key} {_quote(cond)} retries on {exception!r}, {reason}"
            if id.endswith("E015"):
                problems.append(error(id, message, hint, task=name))
            else:
                problems.append(checks.Warning(message, hint=hint, obj=name, id=id))
    for child in cond.children():
        problems += _retry_exceptions(name, key, child)
    return problems


def _exception_problem(exception: str) -> tuple[str, str, str] | None:
    """What is wrong with an exception name of ``retry(on=...)``: (id, why, fix), or None."""
    dotted = "e.g. 'requests.exceptions.ConnectionError'"
    if "." not in exception:
        found = getattr(builtins, exception, None)
        if found is None:
            return (
                "django_rocket.W003",
                "which is not a built-in exception, so it cannot be checked: it matches "
                "any exception class of that name.",
                f"Write its dotted path, {dotted}, or silence django_rocket.W003.",
            )
    else:
        try:
            found = import_string(exception)
        except ImportError as exc:
            return (
                "django_rocket.W003",
                f"which cannot be imported here ({exc}).",
                f"Check the dotted path, {dotted}; the run log matches it by name.",
            )
    if isinstance(found, type) and issubclass(found, BaseException):
        return None
    return (
        "django_rocket.E015",
        f"which is not an exception class ({type(found).__name__}).",
        "Name an exception class, such as 'ConnectionError' or 'requests.exceptions.Timeout'.",
    )


def _quote(cond: Condition) -> str:
    text = str(cond) if not isinstance(cond, Custom) else f"the custom condition {cond.name!r}"
    return text if len(text) <= 200 else f"{text[:200]}..."


def task_spec(name: Any, entry: Any, problems: Problems) -> TaskSpec | None:
    if not isinstance(name, str) or not name.strip():
        problems.append(
            error(
                "django_rocket.E002",
                f"ROCKET_TASKS has a key {name!r} that is not a task name.",
                "Use a non-empty string naming the task as the key.",
            )
        )
        return None
    why = unstorable(name, NAME_MAX)
    if why:
        problems.append(
            error(
                "django_rocket.E002",
                f"ROCKET_TASKS has a key {shown(name)} that cannot be a task name: {why}.",
                f"Name the task with at most {NAME_MAX} characters of text, without NUL "
                "characters.",
                task=shown(name),
            )
        )
        return None
    if not isinstance(entry, dict):
        problems.append(
            error(
                "django_rocket.E002",
                f"Task {name!r}: its entry must be a dict, not {type(entry).__name__} ({entry!r}).",
                # A bare dotted path is the usual slip: keep it as the func.
                f'Declare it as "{name}": {{"func": '
                f'"{entry if isinstance(entry, str) and "." in entry else f"app.tasks.{name}"}", '
                '"start_cond": "daily"} (with the condition you need).',
                task=name,
            )
        )
        return None
    ok = True
    unknown = sorted(set(entry) - set(TASK_KEYS), key=str)
    for key in unknown:
        close = difflib.get_close_matches(str(key), TASK_KEYS, n=1)
        suggestion = f"Did you mean {close[0]!r}? " if close else ""
        problems.append(
            error(
                "django_rocket.E003",
                f"Task {name!r}: unknown key {key!r}.",
                f"{suggestion}Known keys: {', '.join(TASK_KEYS)}.",
                task=name,
            )
        )
        ok = False
    for key in ("func", "start_cond"):
        if key not in entry:
            problems.append(
                error(
                    "django_rocket.E004",
                    f"Task {name!r}: the required key {key!r} is missing.",
                    f"Add {key!r}: {TASK_KEYS[key]}.",
                    task=name,
                )
            )
            ok = False
    func_path = entry.get("func")
    func = None
    target = None  # what func names: a function, or a Django Task for execution 'tasks'
    if "func" in entry:
        if not isinstance(func_path, str):
            problems.append(
                error(
                    "django_rocket.E005",
                    f"Task {name!r}: func must be a dotted path string, not {func_path!r}.",
                    "Write the path to the function, e.g. 'myapp.tasks.send_report'.",
                    task=name,
                )
            )
            ok = False
        else:
            try:
                func = import_string(func_path)
            except Exception as exc:
                problems.append(
                    error(
                        "django_rocket.E005",
                        f"Task {name!r}: func {func_path!r} cannot be imported: "
                        f"{type(exc).__name__}: {exc}.",
                        "Check the module and function name; the path must be importable "
                        "from the project, e.g. 'myapp.tasks.send_report'.",
                        task=name,
                    )
                )
                ok = False
            else:
                target, func = func, plain_function(func)
                if not callable(func):
                    problems.append(
                        error(
                            "django_rocket.E005",
                            f"Task {name!r}: func {func_path!r} is not callable.",
                            "Point func at a function.",
                            task=name,
                        )
                    )
                    func = None
                    ok = False
    start_cond = None
    if "start_cond" in entry:
        start_cond = parse_condition(
            name, "start_cond", entry["start_cond"], problems, "django_rocket.E006"
        )
        ok = ok and start_cond is not None
        if start_cond is not None:
            ok = _check_bounds(name, "start_cond", start_cond, problems, entry["start_cond"]) and ok
            found = _retry_exceptions(name, "start_cond", start_cond)
            problems += found
            ok = ok and not any(problem.is_serious() for problem in found)
    end_cond = None
    if entry.get("end_cond") not in (None, ""):
        end_cond = parse_condition(
            name, "end_cond", entry["end_cond"], problems, "django_rocket.E008"
        )
        ok = ok and end_cond is not None
        if end_cond is not None:
            ok = _check_bounds(name, "end_cond", end_cond, problems, entry["end_cond"]) and ok
    execution = entry.get("execution", conf.execution)
    if execution not in EXECUTIONS:
        problems.append(
            error(
                "django_rocket.E009",
                f"Task {name!r}: execution {execution!r} is not one of {', '.join(EXECUTIONS)}.",
                "Use 'process' (isolated, can be killed on timeout), 'thread', "
                "'async' (coroutine functions), 'main' or 'tasks' (Django's Tasks framework).",
                task=name,
            )
        )
        ok = False
    elif func is not None:
        is_coroutine = asyncio.iscoroutinefunction(func)
        if execution == "async" and not is_coroutine:
            problems.append(
                error(
                    "django_rocket.E013",
                    f"Task {name!r}: execution 'async' needs a coroutine function, "
                    f"but {func_path!r} is a plain function.",
                    "Define it with 'async def', or use execution 'thread' or 'process'.",
                    task=name,
                )
            )
            ok = False
    timeout = None
    raw_timeout = entry.get("timeout", conf.timeout)
    try:
        timeout = parse_timeout(raw_timeout)
    except (ValueError, TypeError) as exc:
        problems.append(
            error(
                "django_rocket.E010",
                f"Task {name!r}: timeout {raw_timeout!r} is not a duration ({exc}).",
                "Use text like '10 minutes' or '1 hour 30 minutes', a number of seconds, "
                "or 'never'.",
                task=name,
            )
        )
        ok = False
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters):
        problems.append(
            error(
                "django_rocket.E011",
                f"Task {name!r}: parameters must be a dict of keyword arguments, "
                f"not {parameters!r}.",
                'Write e.g. "parameters": {"days": 7}.',
                task=name,
            )
        )
        ok = False
    elif func is not None:
        try:
            inspect.signature(func).bind(**parameters)
        except TypeError as exc:
            problems.append(
                error(
                    "django_rocket.E011",
                    f"Task {name!r}: parameters {parameters!r} do not fit the signature of "
                    f"{func_path!r}: {exc}.",
                    "Make the keys match the function's keyword arguments.",
                    task=name,
                )
            )
            ok = False
    if execution in EXECUTIONS:
        remote = task_problems(name, entry, execution, target)
        problems.extend(remote)
        ok = ok and not any(p.is_serious() for p in remote)
    flags = {}
    for key, default in (("multilaunch", False), ("enabled", True)):
        value = entry.get(key, default)
        if not isinstance(value, bool):
            problems.append(
                error(
                    "django_rocket.E012",
                    f"Task {name!r}: {key} must be True or False, not {value!r}.",
                    f'Write "{key}": {default}.',
                    task=name,
                )
            )
            ok = False
        flags[key] = value
    description = entry.get("description", "")
    for key, limit in STORED_TEXT.items():
        value = entry.get(key)
        if not isinstance(value, str):
            continue  # not text: E005 (func) says so; the others are taken as str()
        why = unstorable(value, limit)
        if why:
            problems.append(
                error(
                    "django_rocket.E016",
                    f"Task {name!r}: {key} {shown(value)} cannot be stored: {why}.",
                    f"Write {key} as text"
                    + (f" of at most {limit} characters" if limit else "")
                    + ", without NUL characters.",
                    task=name,
                )
            )
            ok = False
    if not ok or start_cond is None or not isinstance(func_path, str):
        return None
    return TaskSpec(
        name=name,
        func=func_path,
        start_cond=start_cond,
        end_cond=end_cond,
        execution=execution,
        timeout=timeout,
        parameters=dict(parameters),
        multilaunch=flags["multilaunch"],
        enabled=flags["enabled"],
        description=str(description),
        backend=str(entry.get("backend") or ""),
        queue=str(entry.get("queue") or ""),
    )


def collect() -> tuple[dict[str, TaskSpec], Problems]:
    """Validate ``ROCKET_TASKS``; return the good tasks and every problem found."""
    problems = import_condition_modules()
    raw = conf.tasks
    if not isinstance(raw, dict):
        problems.append(
            error(
                "django_rocket.E001",
                f"ROCKET_TASKS must be a dict of task name to task entry, "
                f"not {type(raw).__name__}.",
                'Write ROCKET_TASKS = {"report": {"func": "myapp.tasks.report", '
                '"start_cond": "daily"}}.',
            )
        )
        return {}, problems
    specs: dict[str, TaskSpec] = {}
    for name, entry in raw.items():
        spec = task_spec(name, entry, problems)
        if spec is not None:
            specs[name] = spec
    known = set(raw)
    for spec in specs.values():
        for key, cond in (("start_cond", spec.start_cond), ("end_cond", spec.end_cond)):
            if cond is None:
                continue
            for other in sorted(cond.depends_on(spec.name) - known):
                problems.append(
                    error(
                        "django_rocket.E007",
                        f"Task {spec.name!r}: {key} {str(cond)!r} refers to the task "
                        f"{other!r}, which is not in ROCKET_TASKS.",
                        f"Declare {other!r} in ROCKET_TASKS or fix the task name.",
                        task=spec.name,
                    )
                )
    return specs, problems


def tasks() -> dict[str, TaskSpec]:
    """Return the declared tasks, raising ImproperlyConfigured if any is invalid."""
    specs, problems = collect()
    errors = [p for p in problems if p.is_serious()]
    if errors:
        lines = "\n".join(f"{p.id}: {p.msg} HINT: {p.hint}" for p in errors)
        raise ImproperlyConfigured(f"ROCKET_TASKS is invalid; run 'manage.py check'.\n{lines}")
    return specs
