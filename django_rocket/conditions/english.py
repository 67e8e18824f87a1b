"""Rocketry's English condition phrases, each built from the Python vocabulary.

Every phrase is translated into calls of the public API, so it means exactly
what its Python form means: ``daily between 10:00 and 12:00`` *is*
``daily.between("10:00", "12:00")``. The grammar, with ``V`` a value (quoted,
or bare text running to the next ``& | ( ) ~`` or the end) and ``'t'`` a task
name in quotes::

    true | false | always true | always false
    secondly|minutely|hourly|daily|weekly|monthly [WINDOW]
    every V
    cron V
    time of minute|hour|day|week|month WINDOW
    after task 't' [succeeded|failed|finished]
    after tasks 't', 't'... [succeeded|failed|finished]
    after any tasks 't', 't'... [succeeded|failed|finished]
    [task 't'] has succeeded|failed|started|finished|terminated|inacted [SPAN]
    [while] task 't' is running [AGE]
    is running [AGE]
    scheduler started V ago | scheduler has run over V
    scheduler has [more than | less than] N cycles
    retry [N times | once] [after V] [with backoff X] [up to V] [with jitter [X]]
          [on NAME, NAME...]

    WINDOW := between V and V | after V | before V | starting V | on V | at V
    SPAN   := (today | this hour|minute|week|month) [WINDOW] | [in] past V
    AGE    := more than V | less than V | between V and V
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .parser import Parser

__all__ = ["LEADING_WORDS", "parse_phrase"]

PERIODS = ("secondly", "minutely", "hourly", "daily", "weekly", "monthly")
WINDOWS = ("between", "after", "before", "starting", "on", "at")
TIME_UNITS = ("minute", "hour", "day", "week", "month")
EVENTS = ("succeeded", "failed", "started", "finished", "terminated", "inacted")
THIS_UNITS = ("hour", "minute", "week", "month")
OUTCOMES = {"succeeded": "success", "failed": "fail", "finished": "finish"}

_END = "&, | or the end of the condition"
_WINDOW_CHOICES = "between, after, before, starting, on or at"
_TASK_NAME = "a task name in quotes, such as 'etl'"
_DURATION = "a duration, such as 10 minutes"
_EXCEPTIONS = "exception names, such as ConnectionError, TimeoutError"
_RETRY_WORDS = ("after", "with", "up", "on")


def parse_phrase(parser: Parser, word: str) -> Any:
    """Parse the English phrase starting with ``word`` at the parser's position."""
    parser.advance()
    return _PHRASES[word](parser, word)


def _constant(parser: Parser, word: str) -> Any:
    return parser.builtin(word)


def _always(parser: Parser, word: str) -> Any:
    value = parser.expect_word("true", "false", expected="true or false")
    return parser.builtin(value)


def _period(parser: Parser, word: str) -> Any:
    return _window(parser, parser.builtin(word), word, required=False)


def _every(parser: Parser, word: str) -> Any:
    return _call_with_value(parser, parser.builtin("every"), "every", _DURATION)


def _cron(parser: Parser, word: str) -> Any:
    expected = "a cron expression, such as 0 10 * * 1-5"
    return _call_with_value(parser, parser.builtin("cron"), "cron", expected)


def _time_of(parser: Parser, word: str) -> Any:
    parser.expect_word("of", expected="'of', as in time of day between 10:00 and 12:00")
    unit = parser.expect_word(*TIME_UNITS, expected="minute, hour, day, week or month")
    name = f"time_of_{unit}"
    return _window(parser, parser.builtin(name), name, required=True)


def _after(parser: Parser, word: str) -> Any:
    kind = parser.expect_word("task", "tasks", "any", expected="task, tasks or any tasks")
    if kind == "any":
        parser.expect_word("tasks", expected="tasks")
    names = _task_names(parser, several=kind != "task")
    given = parser.accept_word(*OUTCOMES)
    _expect_end(parser, "" if given else "succeeded, failed, finished")
    outcome = given or "succeeded"
    prefix = {"task": "after", "tasks": "after_all", "any": "after_any"}[kind]
    name = f"{prefix}_{OUTCOMES[outcome]}"
    return parser.call(parser.builtin(name), name, [n for n, _ in names], {}, list(names))


def _has(parser: Parser, word: str) -> Any:
    return _event(parser, task=None)


def _task(parser: Parser, word: str) -> Any:
    task = _task_names(parser, several=False)[0]
    verb = parser.expect_word("has", "is", expected="has or is, as in task 'etl' has failed")
    if verb == "has":
        return _event(parser, task=task)
    parser.expect_word("running", expected="running")
    return _running(parser, task=task)


def _while(parser: Parser, word: str) -> Any:
    parser.expect_word("task", expected="task, as in while task 'etl' is running")
    task = _task_names(parser, several=False)[0]
    parser.expect_word("is", expected="is")
    parser.expect_word("running", expected="running")
    return _running(parser, task=task)


def _is(parser: Parser, word: str) -> Any:
    parser.expect_word("running", expected="running")
    return _running(parser, task=None)


def _event(parser: Parser, task: tuple[str, int] | None) -> Any:
    event = parser.expect_word(*EVENTS, expected=", ".join(EVENTS[:-1]) + " or " + EVENTS[-1])
    condition, described = _for_task(parser, event, task)
    if parser.accept_word("in"):
        parser.expect_word("past", expected="past, as in has failed in past 10 minutes")
        return _past(parser, condition, described)
    if parser.accept_word("past"):
        return _past(parser, condition, described)
    if parser.accept_word("today"):
        attribute = "today"
    elif parser.accept_word("this"):
        unit = parser.expect_word(*THIS_UNITS, expected="hour, minute, week or month")
        attribute = f"this_{unit}"
    else:
        _expect_end(parser, "today, this hour, this minute, this week, this month, past")
        return condition
    span = _method(parser, condition, described, attribute)
    return _window(parser, span, f"{described}.{attribute}", required=False)


def _past(parser: Parser, condition: Any, described: str) -> Any:
    past = _method(parser, condition, described, "past")
    return _call_with_value(parser, past, f"{described}.past", _DURATION)


def _running(parser: Parser, task: tuple[str, int] | None) -> Any:
    condition, described = _for_task(parser, "running", task)
    which = parser.accept_word("more", "less")
    if which is not None:
        parser.expect_word("than", expected="than")
        method = f"{which}_than"
        age = _method(parser, condition, described, method)
        return _call_with_value(parser, age, f"{described}.{method}")
    if parser.accept_word("between"):
        between = _method(parser, condition, described, "between")
        return _between(parser, between, f"{described}.between", _DURATION, "1 minute and 1 hour")
    _expect_end(parser, "more than, less than, between")
    return condition


def _for_task(parser: Parser, name: str, task: tuple[str, int] | None) -> tuple[Any, str]:
    """Return the vocabulary entry, called with the task name if there is one."""
    condition = parser.builtin(name)
    if task is None:
        return condition, name
    return parser.call(condition, name, [task[0]], {}, [task]), f"{name}({task[0]!r})"


def _window(parser: Parser, condition: Any, described: str, required: bool) -> Any:
    keyword = parser.accept_word(*WINDOWS)
    if keyword is None:
        if required:
            parser.fail_expected(_WINDOW_CHOICES)
        _expect_end(parser, _WINDOW_CHOICES.replace(" or ", ", "))
        return condition
    method = _method(parser, condition, described, keyword)
    if keyword == "between":
        return _between(
            parser, method, f"{described}.between", "a time, such as 10:00", "10:00 and 12:00"
        )
    return _call_with_value(parser, method, f"{described}.{keyword}", "a time, such as 10:00")


def _method(parser: Parser, condition: Any, described: str, name: str) -> Any:
    """Return an attribute of the condition API; ``name`` is fixed here, never user text."""
    try:
        method = getattr(condition, name)
    except AttributeError:
        method = None
    if method is None:
        parser.fail(f"{described} has no {name!r}.", parser.previous.start, _END)
    return method


def _between(parser: Parser, method: Any, described: str, expected: str, example: str) -> Any:
    start = parser.read_value(expected, stop_word="and")
    parser.expect_word("and", expected=f"'and', as in between {example}")
    end = parser.read_value(expected)
    return parser.call(method, described, [start[0], end[0]], {}, [start, end])


def _call_with_value(parser: Parser, method: Any, described: str, expected: str = _DURATION) -> Any:
    value = parser.read_value(expected)
    return parser.call(method, described, [value[0]], {}, [value])


def _task_names(parser: Parser, several: bool) -> list[tuple[str, int]]:
    names = []
    while True:
        column = parser.column
        names.append((parser.read_string(_TASK_NAME), column))
        if not several or not parser.accept(","):
            return names


def _scheduler(parser: Parser, word: str) -> Any:
    verb = parser.expect_word("started", "has", expected="started or has")
    running = parser.builtin("scheduler_running")
    if verb == "started":
        value = parser.read_value(_DURATION, stop_word="ago")
        parser.expect_word("ago", expected="'ago', as in scheduler started 10 minutes ago")
        return parser.call(running.past, "scheduler_running.past", [value[0]], {}, [value])
    if parser.accept_word("run"):
        parser.expect_word("over", expected="over, as in scheduler has run over 10 minutes")
        value = parser.read_value(_DURATION)
        started = parser.call(running.past, "scheduler_running.past", [value[0]], {}, [value])
        return parser.combine(operator.inv, started, None, value[1])
    keyword = "exactly"
    which = parser.accept_word("more", "less")
    if which is not None:
        parser.expect_word("than", expected="than")
        keyword = f"{which}_than"
    column = parser.column
    number = parser.read_number("a number of cycles")
    parser.expect_word("cycles", expected="cycles")
    cycles = parser.builtin("scheduler_cycles")
    return parser.call(cycles, "scheduler_cycles", [], {keyword: number}, [(number, column)])


def _retry(parser: Parser, word: str) -> Any:
    """``retry 3 times after 5 minutes with backoff 2 up to 1 hour with jitter on E, F``."""
    args: list[object] = []
    kwargs: dict[str, object] = {}
    columns: list[tuple[object, int]] = []
    keyword_columns: dict[str, int] = {}

    def keep(name: str, value: object, column: int) -> None:
        if name in kwargs:
            parser.fail(f"retry's {name} is given twice.", column, "each option once")
        kwargs[name] = value
        keyword_columns[name] = column
        columns.append((value, column))

    column = parser.column
    if parser.accept_word("once"):
        args.append(1)
        columns.append((1, column))
    elif parser.token.kind == "number":
        args.append(parser.read_number("a number of retries"))
        columns.append((args[0], column))
        parser.expect_word("times", "time", expected="times, as in retry 3 times")
    while True:
        column = parser.column
        clause = parser.accept_word("after", "with", "up", "on")
        if clause is None:
            break
        if clause == "after":
            value = parser.read_value(_DURATION, stop_word=_RETRY_WORDS)
            keep("delay", *value)
        elif clause == "up":
            parser.expect_word("to", expected="to, as in up to 1 hour")
            value = parser.read_value(_DURATION, stop_word=_RETRY_WORDS)
            keep("max_delay", *value)
        elif clause == "on":
            text, column = parser.read_value(_EXCEPTIONS, stop_word=_RETRY_WORDS)
            keep("on", [name.strip() for name in text.split(",")], column)
        else:
            which = parser.expect_word("backoff", "jitter", expected="backoff or jitter")
            column = parser.column
            if which == "backoff":
                keep("backoff", parser.read_number("a number >= 1, such as 2"), column)
            elif parser.token.kind == "number":
                keep("jitter", parser.read_number("a fraction, such as 0.1"), column)
            else:
                keep("jitter", True, column)
    _expect_end(parser, "after, with, up to or on")
    retry = parser.builtin("retry")
    return parser.call(retry, "retry", args, kwargs, columns or [(None, column)], keyword_columns)


def _session_parameters(parser: Parser, word: str) -> Any:
    parser.fail(
        f"Rocketry's {word!r} conditions read its session parameters, which django-rocket "
        "does not have; write a custom condition (@condition) that reads your settings.",
        parser.previous.start,
        "a condition",
    )


def _expect_end(parser: Parser, choices: str) -> None:
    """Fail if a word follows a complete phrase: only an operator may."""
    if parser.peek() not in ("", "&", "|", ")"):
        parser.fail_expected(f"{choices}, {_END}" if choices else _END)


_PHRASES = {
    "true": _constant,
    "false": _constant,
    "always": _always,
    **dict.fromkeys(PERIODS, _period),
    "every": _every,
    "cron": _cron,
    "time": _time_of,
    "after": _after,
    "has": _has,
    "task": _task,
    "while": _while,
    "is": _is,
    "scheduler": _scheduler,
    "retry": _retry,
    "env": _session_parameters,
    "param": _session_parameters,
}

#: Words that start an English phrase when another word follows them.
LEADING_WORDS = frozenset(_PHRASES)
