"""Preloaded by the fork server: Django is set up once, and each run forks from here.

A run's child does not run the scheduler's ``__main__`` script again. The standard
library prepares every child of a fork server as it would a spawned process: it runs
the parent's main script under the name ``__mp_main__``, for the functions it may
define. A run needs none of them (its target is importable from here), and a
``manage.py`` without the ``if __name__ == "__main__":`` guard would start a second
scheduler inside every run's child. Other users of the fork server are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from multiprocessing import spawn
from typing import Any

import django

RUN_NAME_PREFIX = "rocket-"
"""Every run's child process is named ``rocket-<task>`` (see ProcessExecutor.start)."""
MAIN_KEYS = ("init_main_from_path", "init_main_from_name")


def without_main(
    prepare: Callable[[Mapping[str, Any]], None],
) -> Callable[[Mapping[str, Any]], None]:
    """Wrap ``multiprocessing.spawn.prepare`` so that a run's child skips the main script."""

    def prepare_run(data: Mapping[str, Any]) -> None:
        if str(data.get("name", "")).startswith(RUN_NAME_PREFIX):
            data = {key: value for key, value in data.items() if key not in MAIN_KEYS}
        prepare(data)

    prepare_run.__wrapped__ = prepare  # type: ignore[attr-defined]
    return prepare_run


if not hasattr(spawn.prepare, "__wrapped__"):
    spawn.prepare = without_main(spawn.prepare)  # type: ignore[assignment]

if os.environ.get("DJANGO_SETTINGS_MODULE"):
    django.setup()
    from django.db import connections

    # A fork must never share a database connection with its parent.
    connections.close_all()
    django._rocket_ready = True  # type: ignore[attr-defined]
