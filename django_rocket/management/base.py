"""The base class of django-rocket's management commands."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from django_rocket.engine.connection import migrate_hint, unapplied_migrations
from django_rocket.executors.outcome import describe


class RocketCommand(BaseCommand):
    """A management command whose every option holds the single value it was given."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        for dest, value in options.items():
            # Python 3.11's argparse reads "--option=--" as an empty list, without calling
            # the option's type: it would reach handle() as a value of the wrong kind.
            if isinstance(value, list):
                option = "--" + dest.replace("_", "-")
                raise CommandError(f"{option} needs a value; '--' is not one.")
        try:
            return super().execute(*args, **options)
        except DatabaseError as exc:
            # "no such table: django_rocket_task" is a database without our migrations.
            missing = unapplied_migrations()
            if missing:
                raise CommandError(migrate_hint(missing)) from exc
            # One line, as every other error of these commands (--traceback shows it all).
            raise CommandError(f"The database could not be used: {first_line(exc)}.") from exc


def first_line(exc: BaseException) -> str:
    """``exc`` as one line: its class and the first line of its text (drivers add hints)."""
    lines = describe(exc).splitlines()
    return lines[0].rstrip(" .") if lines else type(exc).__name__
