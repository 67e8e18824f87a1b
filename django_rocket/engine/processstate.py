"""What one run can change for every other run of the process: its working directory.

Thread runs, ``main`` runs and the scheduler share one process, and ``os.chdir`` changes
the working directory of all of them at once. A relative SQLite path (``NAME``, which
django-environ's ``sqlite:///db.sqlite3`` gives) was resolved against it at every new
connection: after a run moved elsewhere, the next thread run's connection, or the
scheduler's own after an error, opened another file (an empty one, created there), and
every query failed with "no such table".

:func:`pin_sqlite_paths` makes those paths absolute when the process starts, in the
settings every thread's connection is made from. :class:`WorkingDirectoryWatch` says
when a run has moved the process elsewhere; it never moves it back, since the run may
still be working there with relative paths of its own.
"""

from __future__ import annotations

import logging
import os

from django.db import connections

logger = logging.getLogger("django_rocket.scheduler")


def pin_sqlite_paths() -> None:
    """Make each relative SQLite database path absolute, from the current directory.

    In place, in ``connections.settings``: the dictionary every thread's connection is
    made from (and ``settings.DATABASES``). In-memory databases and ``file:`` URIs are
    left alone.
    """
    for alias in connections:
        settings_dict = connections.settings[alias]
        if not settings_dict.get("ENGINE", "").endswith("sqlite3"):
            continue
        name = settings_dict.get("NAME")
        if not name:
            continue
        text = os.fspath(name)
        if text == ":memory:" or text.startswith("file:") or os.path.isabs(text):
            continue
        settings_dict["NAME"] = os.path.abspath(text)


class WorkingDirectoryWatch:
    """Warn, once per new directory, when the process's working directory changes."""

    def __init__(self) -> None:
        self.started_in = self.seen = os.getcwd()

    def check(self) -> None:
        try:
            now = os.getcwd()
        except OSError:  # the directory was removed under the process
            now = "(a directory that no longer exists)"
        if now == self.seen:
            return
        self.seen = now
        if now == self.started_in:
            logger.info("The process is back in the directory it started in, %s.", now)
            return
        logger.warning(
            "The working directory of this process changed to %s (a run called "
            "os.chdir?): it is every run's, and relative paths in all of them now resolve "
            "there. It started in %s; the database and the spool directory stay where they "
            "were. Give tasks absolute paths, or subprocess's cwd= argument, instead.",
            now,
            self.started_in,
        )
