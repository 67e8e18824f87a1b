"""The task functions of the soak test (bench/soak.py): well-behaved, failing and hostile.

Every function first appends one line to the soak's ledger, a file outside the
database (``ROCKET_SOAK_LEDGER``), so that the soak can compare what really ran
with what the run log says. A line is JSON: the run id, the pid, the time, the task's
name, the ``every`` slot (start time // period) and the phase (``start``, and
``end`` when the function returns or raises normally). It is written with
``O_APPEND`` in one ``write`` and fsync'd, so a kill -9 right after it keeps it.

django-rocket does not hand the run id to a task function (no parameter, no
environment variable, no public accessor). :func:`current_run_id` finds it on the
call stack, in the executor frame that called the function: the ``ActiveRun`` of
thread, async and main runs, the ``Launch`` of a process run's child, and the
``run_id`` argument of the Tasks framework worker's entry point. That is a test-only
trick; a public ``django_rocket.current_run_id()`` would be the real fix.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from django_rocket import TaskInaction, check_terminate

LEDGER_ENV = "ROCKET_SOAK_LEDGER"


def current_run_id() -> str:
    """The run id of the run executing this call, read from the executor's frame ('' if none)."""
    frame = sys._getframe(1)
    while frame is not None:
        local = frame.f_locals
        active = local.get("active")
        if active is not None and hasattr(active, "launch"):
            return str(active.launch.run_id)
        launch = local.get("launch")
        if launch is not None and hasattr(launch, "run_id"):
            return str(launch.run_id)
        if frame.f_code.co_name == "_call_in_worker" and isinstance(local.get("run_id"), str):
            return str(local["run_id"])
        frame = frame.f_back  # type: ignore[assignment]
    return ""


def record(task: str, phase: str, period: float, run_id: str = "") -> str:
    """Append one ledger line (one write, O_APPEND, fsync); return the run id it names."""
    run_id = run_id or current_run_id()
    path = os.environ.get(LEDGER_ENV)
    if path:
        now = time.time()
        line = {
            "run": run_id,
            "pid": os.getpid(),
            "t": now,
            "task": task,
            "slot": int(now // period) if period else None,
            "phase": phase,
        }
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    return run_id


class _Ledgered:
    """Write the start line on entry and the end line when the body returns or raises."""

    def __init__(self, task: str, period: float) -> None:
        self.task, self.period, self.run_id = task, period, ""

    def __enter__(self) -> _Ledgered:
        self.run_id = record(self.task, "start", self.period)
        return self

    def __exit__(self, *exc: object) -> None:
        record(self.task, "end", self.period, self.run_id)


# -- well-behaved and plainly failing


def ok(task: str, period: float, sleep: float = 0.0, **_: Any) -> dict[str, Any]:
    with _Ledgered(task, period):
        if sleep:
            time.sleep(sleep)
        return {"task": task, "pid": os.getpid()}


def fails(task: str, period: float, **_: Any) -> None:
    with _Ledgered(task, period):
        raise ValueError(f"{task}: failed on purpose")


def inaction(task: str, period: float, **_: Any) -> None:
    with _Ledgered(task, period):
        raise TaskInaction("Nothing to do.")


def past_timeout(task: str, period: float, limit: float = 60.0, **_: Any) -> None:
    """Runs until terminated (cooperatively in a thread, by signal in a process; in the
    loop, by the StopSignal its timeout raises)."""
    with _Ledgered(task, period):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            check_terminate()
            time.sleep(0.05)


def flood_stdout(task: str, period: float, megabytes: float = 2.0, **_: Any) -> str:
    with _Ledgered(task, period):
        line = "flood " * 16 + "\n"
        for _line in range(int(megabytes * 1_000_000 / len(line))):
            sys.stdout.write(line)
        sys.stdout.flush()
        return "flooded"


# -- hostile outcomes


def huge_result(task: str, period: float, size: int = 200_000, **_: Any) -> str:
    """A result over ROCKET_RESULT_MAX_BYTES (or just under it, with size=65_530)."""
    with _Ledgered(task, period):
        return "x" * size


def huge_exception(task: str, period: float, **_: Any) -> None:
    with _Ledgered(task, period):
        raise ValueError("e" * 100_000)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")


def unprintable_exception(task: str, period: float, **_: Any) -> None:
    with _Ledgered(task, period):
        raise _Unprintable()


def deep_result(task: str, period: float, depth: int = 100_000, **_: Any) -> list[Any]:
    """A result nested too deep to encode (RecursionError in json.dumps)."""
    with _Ledgered(task, period):
        value: list[Any] = []
        for _level in range(depth):
            value = [value]
        return value


HOSTILE_VALUES: list[Any] = [
    {"ratio": float("nan")},
    "before\x00after",
    ["caf\udce9.csv"],
    {"nested": ["\x00"]},
    float("inf"),
]


def hostile_value(task: str, period: float, **_: Any) -> Any:
    """NaN, NUL, a lone surrogate, an infinity: values no database takes as they are."""
    with _Ledgered(task, period):
        return HOSTILE_VALUES[int(time.time()) % len(HOSTILE_VALUES)]


def hostile_message(task: str, period: float, **_: Any) -> None:
    with _Ledgered(task, period):
        raise OSError("bad byte \x00 and caf\udce9 in the message")


def unserialisable(task: str, period: float, **_: Any) -> object:
    with _Ledgered(task, period):
        return object()


def exit_hard(task: str, period: float, **_: Any) -> None:
    """os._exit in a process run's child: the run ends without reporting."""
    record(task, "start", period)
    os._exit(3)


# -- coroutines (execution "async")


async def ok_async(task: str, period: float, sleep: float = 0.0, **_: Any) -> dict[str, Any]:
    with _Ledgered(task, period):
        if sleep:
            await asyncio.sleep(sleep)
        return {"task": task}


async def fails_async(task: str, period: float, **_: Any) -> None:
    with _Ledgered(task, period):
        raise ValueError(f"{task}: failed on purpose")


async def inaction_async(task: str, period: float, **_: Any) -> None:
    with _Ledgered(task, period):
        raise TaskInaction("Nothing to do.")


async def past_timeout_async(task: str, period: float, limit: float = 60.0, **_: Any) -> None:
    with _Ledgered(task, period):
        await asyncio.sleep(limit)


async def huge_result_async(task: str, period: float, size: int = 200_000, **_: Any) -> str:
    with _Ledgered(task, period):
        return "x" * size


async def unprintable_exception_async(task: str, period: float, **_: Any) -> None:
    with _Ledgered(task, period):
        raise _Unprintable()


async def hostile_value_async(task: str, period: float, **_: Any) -> Any:
    with _Ledgered(task, period):
        return HOSTILE_VALUES[int(time.time()) % len(HOSTILE_VALUES)]
