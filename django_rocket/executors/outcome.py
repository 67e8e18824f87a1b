"""What every executor shares: a run to start, how it ended, and the task function's call.

Every run ends as one :class:`Outcome` handed to the runner's ``report`` callback,
whatever happened to it: a return, an exception, a timeout, or a child process that died.
An executor describes the end first as an :class:`Ending`, plain data that crosses
process pipes and task queues.
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import itertools
import json
import multiprocessing.connection
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from multiprocessing.process import BaseProcess
from typing import Any, TypedDict

from django.utils.module_loading import import_string

from django_rocket import TaskInaction, TaskTerminated
from django_rocket.executors.django_tasks.framework import plain_function
from django_rocket.models import RunStatus


class Ending(TypedDict, total=False):
    """How a run ended, as an executor reports it."""

    status: str  # a RunStatus value, a plain str: it crosses pipes and queues as it is
    message: str
    exc_text: str
    result: Any
    exception_types: list[str]  # a failure's class and bases, see exception_types()
    run_id: str  # these three: where a Tasks framework worker ran it
    host: str
    pid: int
    finished_at: datetime  # when a worker finished it (the runner's clock otherwise)


@dataclass(slots=True)
class Outcome:
    """How one run ended."""

    run_id: str
    task: str
    status: str
    finished_at: datetime | None = None
    message: str = ""
    exc_text: str = ""
    result: Any = None
    started_at: datetime | None = None
    exception_types: tuple[str, ...] = ()


@dataclass(slots=True)
class Launch:
    """What an executor needs to start one run."""

    run_id: str
    task: str
    func: str
    parameters: dict[str, Any] = field(default_factory=dict)
    execution: str = "process"
    # Execution 'tasks': the TASKS alias and queue to enqueue on ("": the default).
    backend: str = ""
    queue: str = ""
    # Execution 'main': the task's timeout, enforced in the loop (executors/mainstop.py).
    timeout: timedelta | None = None


Report = Callable[[Outcome], None]
"""Receives each run's outcome, exactly once (the scheduler records it)."""
Finish = Callable[[str, Ending], None]
"""Receives a run id and its ending from an executor (the runner makes it an outcome)."""


@dataclass(slots=True)
class ActiveRun:
    """A run started and not yet reported, with what its executor needs to stop it."""

    launch: Launch
    kind: str
    process: BaseProcess | None = None
    conn: multiprocessing.connection.Connection | None = None
    coroutine: asyncio.Task[None] | None = None
    stop_requested: bool = False  # read by current_run_should_stop() in a thread run
    terminate_reason: str = ""
    ending: Ending | None = None  # a process run's ending, read from its pipe as it comes
    reader: threading.Thread | None = None  # the thread reading it
    # When the process run's function ended: its ending came, or its pipe closed unread
    # (the child died). The run ended then, however late its child exits or is reaped.
    ended_at: datetime | None = None


def load_function(path: str) -> Callable[..., Any]:
    """Import a task function; one decorated with Django's ``@task`` gives its plain function."""
    func: Callable[..., Any] = plain_function(import_string(path))
    return func


def _encodable(text: str) -> bool:
    """Whether UTF-8 can encode ``text``: all but lone surrogates (ASCII takes a fast path)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> str:
    """``text`` as every supported database can store it.

    NUL characters are shown as ``\\x00`` (PostgreSQL refuses NUL in text), and lone
    surrogates as ``\\udcff`` (no driver can encode them in UTF-8: Python makes them of
    bytes that were not UTF-8, such as a file name from ``os.listdir``). Either in one
    run's message made the batch of finishes it was written with fail; a lone surrogate
    stopped the scheduler.
    """
    if not _encodable(text):
        text = text.encode(errors="backslashreplace").decode()
    return text.replace("\x00", "\\x00") if "\x00" in text else text


def refused_note(exc: Exception) -> str:
    """The message of a run the database refused as it ended, recorded without the rest."""
    return storable(
        "Recorded without its message, traceback and result, which the database "
        f"refused: {type(exc).__name__}: {exc}"
    )[:2000]


def unstorable_text(value: object) -> str:
    """Why a JSON value cannot be stored as it is: a NUL or a lone surrogate in a string.

    Strings are looked at in order, keys before their values, with a stack rather than
    by recursion: whatever depth ``json.dumps`` took, this takes too.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "it contains a NUL character, which PostgreSQL cannot store"
            if not _encodable(item):
                return "it contains a lone surrogate, which UTF-8 cannot encode"
        elif isinstance(item, dict):
            stack.extend(reversed([*itertools.chain.from_iterable(item.items())]))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
    return ""


MESSAGE_MAX_CHARS = 2000
"""A run's message is cut to this many characters, with a note saying so."""
TRACEBACK_MIN_BYTES = 4096
"""A traceback is cut to ROCKET_RESULT_MAX_BYTES bytes of UTF-8, but never below this."""


def safe_text(value: object) -> str:
    """``str(value)`` as a plain ``str``, whatever its ``__str__`` or ``__repr__`` does."""
    for show in (str, repr):
        try:
            return str.__str__(show(value))  # a str subclass becomes a plain (picklable) str
        except BaseException:  # a hostile __str__ may raise anything; the run must end
            continue
    return f"<{type(value).__name__} object: its str() and repr() raised>"


def describe(exc: BaseException) -> str:
    """One line naming an exception: its class, and its text when it has one."""
    text = safe_text(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def format_traceback(exc: BaseException) -> str:
    """The traceback of ``exc``, or a line saying why it could not be formatted."""
    try:
        return "".join(traceback.format_exception(exc))
    except BaseException as error:
        return f"{describe(exc)}\n(Its traceback could not be formatted: {describe(error)}.)\n"


def cut_message(text: str) -> str:
    """``text`` in at most :data:`MESSAGE_MAX_CHARS` characters, with a note when cut."""
    if len(text) <= MESSAGE_MAX_CHARS:
        return text
    note = f" [... cut: {len(text):,} characters in all]"
    return text[: MESSAGE_MAX_CHARS - len(note)] + note


def traceback_limit(max_bytes: int) -> int:
    """How many bytes of a run's traceback are kept (see ROCKET_RESULT_MAX_BYTES)."""
    return max(max_bytes, TRACEBACK_MIN_BYTES)


def cut_traceback(text: str, max_bytes: int) -> str:
    """``text`` in at most ``traceback_limit(max_bytes)`` bytes: its start and its end.

    The start names the outermost frames; the end, the innermost ones and the exception.
    A note between them says how much was cut.
    """
    limit = traceback_limit(max_bytes)
    if len(text) * 4 <= limit:  # UTF-8 takes at most 4 bytes a character
        return text
    data = storable(text).encode()
    if len(data) <= limit:
        return text
    note = (
        f"\n[... {{cut:,}} bytes cut: the traceback was {len(data):,} bytes, "
        f"over the limit of {limit:,} (ROCKET_RESULT_MAX_BYTES) ...]\n"
    )
    budget = max(limit - len(note) - 16, 0)
    head, tail = data[: budget // 2], data[len(data) - (budget - budget // 2) :]
    cut = len(data) - len(head) - len(tail)
    return head.decode(errors="ignore") + note.format(cut=cut) + tail.decode(errors="ignore")


def bounded(ending: Ending, max_bytes: int) -> Ending:
    """``ending`` with its message and traceback cut to their bounds, as plain strings."""
    ending = ending.copy()
    if "message" in ending:
        ending["message"] = cut_message(safe_text(ending["message"]))
    if ending.get("exc_text"):
        ending["exc_text"] = cut_traceback(safe_text(ending["exc_text"]), max_bytes)
    return ending


def encode_result(value: object, max_bytes: int) -> tuple[Any, str]:
    """The return value as the run keeps it (JSON), or None with a note saying why not.

    Refused besides what JSON cannot express: NaN and infinities (not JSON, so neither
    PostgreSQL's ``jsonb`` nor SQLite's JSON check takes them) and NUL characters
    (PostgreSQL's ``jsonb`` does not take them). Never raises: a value that breaks the
    encoder (nested too deep, a hostile ``__class__`` or ``items()``) is not kept, and
    the note says why.
    """
    try:
        return _encode_result(value, max_bytes)
    except BaseException as exc:  # a hostile value; the run's outcome must still be recorded
        return None, cut_message(f"Return value not kept: encoding it raised {describe(exc)}.")


def _encode_result(value: object, max_bytes: int) -> tuple[Any, str]:
    if value is None:
        return None, ""
    try:
        text = json.dumps(value, allow_nan=False)
    except TypeError:
        return None, f"Return value not kept: {type(value).__name__} is not JSON-serialisable."
    except RecursionError:
        return None, "Return value not kept: it is nested too deep to encode as JSON."
    except ValueError as exc:  # NaN or an infinity; a circular reference
        return None, f"Return value not kept: it is not JSON-serialisable ({exc})."
    size = len(text.encode(errors="surrogatepass"))
    if size > max_bytes:
        return None, f"Return value not kept: {size} bytes is over {max_bytes}."
    kept = json.loads(text)
    why = unstorable_text(kept)
    if why:
        return None, f"Return value not kept: {why}."
    return kept, ""


def exception_types(exc: BaseException) -> list[str]:
    """The qualified names of ``exc``'s class and its bases, most derived first.

    What ``retry(on=[...])`` matches, kept by name so that the scheduler decides
    without importing the task's modules (or reading a traceback).
    """
    try:
        return [f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__[:-1]]
    except Exception:  # a hostile class (a __module__ that is not text…): match nothing
        return []


def failure(exc: BaseException) -> Ending:
    """Describe a run that raised ``exc``: its class and text, and its traceback."""
    return {
        "status": RunStatus.FAIL.value,
        "message": describe(exc),
        "exc_text": format_traceback(exc),
        "exception_types": exception_types(exc),
    }


NOT_RUN = (
    "The task function returned {what} instead of running: its body never ran. "
    "Make it a plain function (return, not yield), or declare an 'async def' with "
    "execution 'async'."
)


def _unstarted(value: object) -> str:
    """What a sync function returned that holds its body unrun: a generator; else ''."""
    kind = type(value)
    if issubclass(kind, collections.abc.Generator):
        return "a generator"
    if issubclass(kind, collections.abc.AsyncGenerator):
        return "an async generator"
    return ""


def _close(value: object) -> None:
    """Close an unrun generator quietly (so no warning says it was never started)."""
    try:
        close = getattr(value, "close", None)
        if callable(close):
            result = close()
            if inspect.iscoroutine(result):  # an async generator's aclose() is awaitable
                result.close()
    except BaseException:
        pass


def settle(value: object, max_bytes: int) -> Ending:
    """The ending of a call that returned ``value``."""
    if value is None:  # most task functions
        return {"status": RunStatus.SUCCESS.value, "result": None, "message": ""}
    unstarted = _unstarted(value)
    if unstarted:
        _close(value)
        return {"status": RunStatus.FAIL.value, "message": NOT_RUN.format(what=unstarted)}
    result, note = encode_result(value, max_bytes)
    return {"status": RunStatus.SUCCESS.value, "result": result, "message": note}


class StopSignal(BaseException):
    """Raised into a function that ``runtask`` runs when its process is told to stop.

    A ``BaseException``, as ``KeyboardInterrupt``: a task's ``except Exception`` does
    not swallow it, and its ``finally`` blocks run. The run ends ``terminate``.
    """


def stopped(exc: StopSignal) -> Ending:
    """A run its process was told to stop: ``terminate``, with where the function was."""
    return {
        "status": RunStatus.TERMINATE.value,
        "message": safe_text(exc),
        "exc_text": format_traceback(exc),
    }


def _raised(exc: BaseException) -> Ending:
    """The ending of a call that raised ``exc`` (call it in its ``except`` block)."""
    if isinstance(exc, TaskInaction):
        return {"status": RunStatus.INACTION.value, "message": safe_text(exc)}
    if isinstance(exc, StopSignal):
        return stopped(exc)
    if isinstance(exc, TaskTerminated):
        return {
            "status": RunStatus.TERMINATE.value,
            "message": safe_text(exc) or "Terminated on request.",
        }
    return failure(exc)


def _last_resort(exc: BaseException) -> Ending:
    return {
        "status": RunStatus.FAIL.value,
        "message": "The run's outcome could not be described: "
        + type(exc).__name__
        + " while recording it.",
    }


def call_task(func: Callable[..., Any], parameters: dict[str, Any], max_bytes: int) -> Ending:
    """Call a task function and describe how it ended (status, message, traceback, result).

    Never raises, whatever the function raises or returns: every ending is a status with
    a readable message, its text cut to its bounds. A coroutine returned by a plain
    function is run to its end; a generator is refused (its body would never run).
    """
    try:
        try:
            value = func(**parameters)
            if value is not None and issubclass(type(value), collections.abc.Coroutine):
                value = asyncio.run(value)
        except BaseException as exc:  # a task's failure is a run outcome, never ours
            ending = _raised(exc)
        else:
            ending = settle(value, max_bytes)
        return bounded(ending, max_bytes)
    except BaseException as exc:
        return _last_resort(exc)


async def call_task_async(
    func: Callable[..., Any], parameters: dict[str, Any], max_bytes: int
) -> Ending:
    """Like :func:`call_task`, for a coroutine function; a cancellation propagates."""
    try:
        try:
            value = await func(**parameters)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            ending = _raised(exc)
        else:
            ending = settle(value, max_bytes)
        return bounded(ending, max_bytes)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return _last_resort(exc)
