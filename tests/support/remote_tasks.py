"""Task functions that workers run through execution "tasks" (Django's Tasks framework)."""

import os
import time
from pathlib import Path

from django_rocket import TaskInaction

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task


def add(a: int, b: int) -> int:
    return a + b


async def add_later(a: int, b: int) -> int:
    return a + b


def fails() -> None:
    raise ValueError("boom: the task failed on a worker")


def nothing_to_do() -> None:
    raise TaskInaction("No new files.")


def returns_set() -> set:
    return {1, 2}


@task(takes_context=True)
def greet(context, name: str) -> dict:
    """A function already decorated with Django's @task, taking the task context."""
    return {"greeting": f"hello {name}", "attempt": context.attempt}


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def hang_the_first_time(marker: str) -> str:
    """Hang on the first call, after writing the worker's pid to ``marker``; return after."""
    path = Path(marker)
    if not path.exists():
        # Whole or not at all: a test waiting for the marker reads the pid, never an empty
        # file created but not yet written.
        partial = path.with_name(path.name + ".partial")
        partial.write_text(str(os.getpid()))
        os.replace(partial, path)
        time.sleep(120)
    return "done on the second try"


@task()
def double(n: int) -> int:
    """A function decorated with Django's @task that a local execution calls directly."""
    return 2 * n


def ledger_entry(ledger: str, seconds: float) -> str:
    """Append this execution's pid to ``ledger`` (one line per execution), then work."""
    with open(ledger, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return "written once"
