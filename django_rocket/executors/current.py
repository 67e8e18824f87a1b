"""Which run the calling thread executes, so that the run can ask whether to stop.

Django-free on purpose: ``django_rocket/__init__.py`` imports it for
:func:`django_rocket.check_terminate`, and ``import django_rocket.conditions`` runs that
``__init__``; the conditions must never pull in Django.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Stoppable(Protocol):
    """A run the scheduler can ask to stop."""

    stop_requested: bool


_local = threading.local()


def set_current_run(run: Stoppable | None) -> None:
    """Mark ``run`` as the one the calling thread executes (None when it is done)."""
    _local.run = run


def current_run_should_stop() -> bool:
    """Return True when the scheduler asked the calling thread run to stop."""
    active: Stoppable | None = getattr(_local, "run", None)
    return bool(active is not None and active.stop_requested)
