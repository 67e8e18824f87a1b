"""Task functions the tests schedule."""

import os
import threading
import time
from pathlib import Path

from django.db import connections

from django_rocket import TaskInaction, check_terminate

CALLS: list[str] = []


def noop() -> None:
    CALLS.append("noop")


# The database connections of the runs of queries_the_database, to see them closed.
QUERIED: list[object] = []


def queries_the_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
    QUERIED.append(connections["default"])


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


def wait_then_fail(marker: str, release: str, limit: float = 60.0) -> None:
    """:func:`wait_for_file`, then fail as :func:`fails` does."""
    wait_for_file(marker, release, limit)
    fails()


def sets_django_up_again() -> None:
    """What a task module written as a standalone script does at import: ``django.setup()``.

    Django configures logging again: ``dictConfig`` closes every handler (the email
    alerts' too) and disables the loggers LOGGING does not name, unless it says
    ``"disable_existing_loggers": False``.
    """
    import django

    django.setup()


def changes_directory(path: str) -> str:
    """A task that moves into a directory of its own, for the whole process."""
    os.chdir(path)
    return path


def changes_directory_and_closes_its_connection(path: str) -> str:
    """As a long task does to spare the database an idle session: the next use reconnects."""
    os.chdir(path)
    connections["default"].close()
    return path


def disables_logging() -> None:
    """A task that silences a noisy library the blunt way, for the whole process."""
    import logging

    logging.disable(logging.CRITICAL)


def sets_django_up_again_then_fails() -> None:
    sets_django_up_again()
    fails()


def returns_but_lingers(marker: str, release: str, limit: float = 60.0) -> str:
    """Return at once, leaving a non-daemon thread that keeps the process alive until
    ``release`` exists: in a process run, the function has ended (and reported) while its
    child has not exited yet (``multiprocessing`` joins such threads before exiting)."""

    def linger() -> None:
        deadline = time.monotonic() + limit
        while not Path(release).exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    threading.Thread(target=linger, name="lingers", daemon=False).start()
    Path(marker).write_text(str(os.getpid()))
    return "returned"


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


# --- Hostile task functions (issue 17): every way a task can fail, or fool the wrapper ---


class UnprintableError(Exception):
    """An exception whose str() and repr() raise."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ raised on purpose")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ raised on purpose")


def raises_unprintable() -> None:
    raise UnprintableError("hidden")


def returns_deeply_nested(depth: int = 100_000) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def raises_unpicklable() -> None:
    class LocalError(Exception):  # a class pickle cannot find by name
        pass

    raise LocalError("a local exception class")


def raises_base(kind: str) -> None:
    raise {"exit": SystemExit(3), "interrupt": KeyboardInterrupt(), "genexit": GeneratorExit()}[
        kind
    ]


class Hostile:
    """An object whose comparison, hash and class attribute all raise."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__ raised on purpose")

    def __hash__(self) -> int:
        raise RuntimeError("__hash__ raised on purpose")

    @property  # type: ignore[misc]
    def __class__(self):
        raise RuntimeError("__class__ raised on purpose")


def returns_hostile() -> object:
    return Hostile()


def returns_generator():  # a plain function that yields: its body never runs
    yield 1


def returns_coroutine() -> object:
    return async_noop()


async def async_raises_unprintable() -> None:
    raise UnprintableError("hidden")


async def async_returns_deeply_nested() -> list:
    return returns_deeply_nested()


async def async_raises_base(kind: str) -> None:
    raises_base(kind)


async def async_returns_hostile() -> object:
    return Hostile()


async def async_big_failure(size: int = 100_000) -> None:
    raise ValueError("e" * size)


def big_failure(size: int = 100_000) -> None:
    raise ValueError("e" * size)


def result_of(size: int) -> str:
    """A string result whose JSON (two quotes) is ``size`` + 2 bytes."""
    return "r" * size


def refuses_connection() -> None:
    raise ConnectionRefusedError("the report server is down")


async def async_refuses_connection() -> None:
    raise ConnectionRefusedError("the report server is down")


def stopped_cleanly(marker: str, release: str, cleaned: str, limit: float = 60.0) -> str:
    """Wait like :func:`wait_for_file`, swallowing every ``Exception``; note its ``finally``."""
    try:
        Path(marker).write_text(str(os.getpid()))
        deadline = time.monotonic() + limit
        while not Path(release).exists() and time.monotonic() < deadline:
            try:
                time.sleep(0.02)
            except Exception:  # what careless task code does: a stop must get through
                pass
        return "released"
    finally:
        Path(cleaned).write_text("cleaned up")


def leaves_autocommit_off() -> str:
    """Turn the thread's connection's autocommit off and return, as a careless task might."""
    from django.db import transaction

    transaction.set_autocommit(False)
    return "left it off"


def sleeps_in_the_database(marker: str, seconds: float = 3.0) -> str:
    """Announce start through ``marker``, then ask the database to sleep: a statement in flight."""
    Path(marker).write_text(str(os.getpid()))
    connection = connections["default"]
    sleep = "SELECT pg_sleep(%s)" if connection.vendor == "postgresql" else "SELECT SLEEP(%s)"
    with connection.cursor() as cursor:
        cursor.execute(sleep, [seconds])
    return "slept"
