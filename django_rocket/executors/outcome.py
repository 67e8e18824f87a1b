"""What every executor shares: a run to start, how it ended, and the task function's call.

Every run ends as one :class:`Outcome` handed to the runner's ``report`` callback,
whatever happened to it: a return, an exception, a timeout, or a child process that died.
An executor describes the end first as an :class:`Ending`, plain data that crosses
process pipes and task queues.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing.connection
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
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


@dataclass
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


@dataclass
class Launch:
    """What an executor needs to start one run."""

    run_id: str
    task: str
    func: str
    parameters: dict[str, Any] = field(default_factory=dict)
    execution: str = "process"


Report = Callable[[Outcome], None]
"""Receives each run's outcome, exactly once (the scheduler records it)."""
Finish = Callable[[str, Ending], None]
"""Receives a run id and its ending from an executor (the runner makes it an outcome)."""


@dataclass
class ActiveRun:
    """A run started and not yet reported, with what its executor needs to stop it."""

    launch: Launch
    kind: str
    process: BaseProcess | None = None
    conn: multiprocessing.connection.Connection | None = None
    coroutine: asyncio.Task[None] | None = None
    stop_requested: bool = False  # read by current_run_should_stop() in a thread run
    terminate_reason: str = ""


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


def _unstorable_text(value: object) -> str:
    """Why a JSON value cannot be stored as it is: a NUL or a lone surrogate in a string."""
    if isinstance(value, str):
        if "\x00" in value:
            return "it contains a NUL character, which PostgreSQL cannot store"
        if not _encodable(value):
            return "it contains a lone surrogate, which UTF-8 cannot encode"
        return ""
    items: Iterable[object]
    if isinstance(value, dict):
        items = itertools.chain.from_iterable(value.items())
    elif isinstance(value, list):
        items = value
    else:
        return ""
    return next((why for why in map(_unstorable_text, items) if why), "")


def encode_result(value: object, max_bytes: int) -> tuple[Any, str]:
    """The return value as the run keeps it (JSON), or None with a note saying why not.

    Refused besides what JSON cannot express: NaN and infinities (not JSON, so neither
    PostgreSQL's ``jsonb`` nor SQLite's JSON check takes them) and NUL characters
    (PostgreSQL's ``jsonb`` does not take them).
    """
    if value is None:
        return None, ""
    try:
        text = json.dumps(value, allow_nan=False)
    except TypeError:
        return None, f"Return value not kept: {type(value).__name__} is not JSON-serialisable."
    except ValueError as exc:  # NaN or an infinity; a circular reference
        return None, f"Return value not kept: it is not JSON-serialisable ({exc})."
    if len(text.encode()) > max_bytes:
        return None, f"Return value not kept: {len(text.encode())} bytes is over {max_bytes}."
    kept = json.loads(text)
    why = _unstorable_text(kept)
    if why:
        return None, f"Return value not kept: {why}."
    return kept, ""


def exception_types(exc: BaseException) -> list[str]:
    """The qualified names of ``exc``'s class and its bases, most derived first.

    What ``retry(on=[...])`` matches, kept by name so that the scheduler decides
    without importing the task's modules (or reading a traceback).
    """
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__[:-1]]


def failure(exc: BaseException) -> Ending:
    """Describe a run that raised ``exc``; call it in its ``except`` block (for the traceback)."""
    return {
        "status": RunStatus.FAIL.value,
        "message": f"{type(exc).__name__}: {exc}"[:2000],
        "exc_text": traceback.format_exc(),
        "exception_types": exception_types(exc),
    }


def call_task(func: Callable[..., Any], parameters: dict[str, Any], max_bytes: int) -> Ending:
    """Call a task function and describe how it ended (status, message, traceback, result)."""
    try:
        value = func(**parameters)
        if asyncio.iscoroutine(value):
            value = asyncio.run(value)
    except TaskInaction as exc:
        return {"status": RunStatus.INACTION.value, "message": str(exc)}
    except TaskTerminated as exc:
        return {
            "status": RunStatus.TERMINATE.value,
            "message": str(exc) or "Terminated on request.",
        }
    except BaseException as exc:  # a task's failure is a run outcome, never a scheduler error
        return failure(exc)
    result, note = encode_result(value, max_bytes)
    return {"status": RunStatus.SUCCESS.value, "result": result, "message": note}
