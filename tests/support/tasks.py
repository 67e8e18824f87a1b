"""Task functions the tests schedule."""

import os
import threading
import time
from pathlib import Path

from django_rocket import TaskInaction, check_terminate

CALLS: list[str] = []


def noop() -> None:
    CALLS.append("noop")


def returns_value(n: int = 1) -> dict:
    return {"n": n, "items": list(range(n))}


def fails() -> None:
    raise ValueError("boom: the task failed on purpose")


def nothing_to_do() -> None:
    raise TaskInaction("No new files.")


def write_marker(path: str) -> str:
    Path(path).write_text(str(os.getpid()))
    return path


def wait_for_file(marker: str, release: str, limit: float = 60.0) -> str:
    """Announce start through ``marker``, then wait until ``release`` exists (or the limit)."""
    Path(marker).write_text(str(os.getpid()))
    deadline = time.monotonic() + limit
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "released"


def cooperative_wait(marker: str, limit: float = 60.0) -> None:
    Path(marker).write_text(str(os.getpid()))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        check_terminate()
        time.sleep(0.01)


def exit_hard(code: int = 3) -> None:
    os._exit(code)


def kill_self() -> None:
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


async def async_noop() -> str:
    return "async"


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def big_result() -> str:
    return "x" * 100_000


def unserialisable() -> object:
    return object()


def wait_and_count(marker: str, release: str) -> str:
    """Like wait_for_file, but appends a line per run so overlapping runs can be counted."""
    with open(marker, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    deadline = time.monotonic() + 30
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "done"


def raising_condition_module_marker() -> None:
    """Referenced by tests that need an importable but unused function."""


# In-process gates for thread-run tests: a run blocks on GATES[name] until the test sets it.
GATES: dict[str, "threading.Event"] = {}


def thread_identity(gate: str = "") -> dict:
    """Return which thread ran this, after waiting on ``GATES[gate]`` when one is named."""
    if gate:
        GATES[gate].wait(30)
    return {"ident": threading.get_ident(), "name": threading.current_thread().name}


def returns_not_a_number() -> dict:
    return {"ratio": float("nan")}


def returns_nul() -> str:
    return "before\x00after"


def fails_with_nul() -> None:
    raise ValueError("bad byte \x00 in the input")


# A file name that is not UTF-8, as os.listdir() gives it on Linux: a lone surrogate.
NOT_UTF8_NAME = b"caf\xe9.csv".decode(errors="surrogateescape")


def returns_not_utf8() -> list:
    return [NOT_UTF8_NAME]


def fails_with_not_utf8() -> None:
    raise FileExistsError(f"cannot import {NOT_UTF8_NAME}")


def fails_with(text: str) -> None:
    raise ValueError(text)


def refuses_connection() -> None:
    raise ConnectionRefusedError("the report server is down")


async def async_refuses_connection() -> None:
    raise ConnectionRefusedError("the report server is down")
