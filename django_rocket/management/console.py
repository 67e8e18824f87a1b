"""What ``runscheduler`` prints when the project's ``LOGGING`` says nothing about it.

Django's default logging configures its own loggers only, so without this a scheduler
started by hand is silent until something goes wrong (Python's last-resort handler
prints warnings and errors, without time or level). Like ``runserver``, the command
should say that it started, what it is doing and when it stops. Where the project
routes django-rocket's records anywhere (a handler on ``django_rocket``, or on the root
logger), nothing is added: the project's configuration decides.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Loggers whose level the console story lowers, by --verbosity, while it is attached. A
# logger the project gave a level keeps it. django_rocket.task stays at WARNING at the
# default verbosity: an INFO record for every run would flood the console (and cost CPU
# on every run) on a busy scheduler.
LEVELS = {
    1: {"django_rocket.scheduler": logging.INFO, "django_rocket.services": logging.INFO},
    2: {
        "django_rocket.scheduler": logging.INFO,
        "django_rocket.services": logging.INFO,
        "django_rocket.task": logging.INFO,
    },
    3: {"django_rocket": logging.DEBUG},
}


@contextmanager
def console_story(verbosity: int) -> Iterator[logging.Handler | None]:
    """Print django-rocket's records on stderr while the block runs, if nothing else does.

    ``verbosity`` is the command's ``--verbosity``: 0 adds nothing (warnings and errors
    still reach Python's last-resort handler); 1 prints the scheduler's story (start-up,
    role, pauses, outages, shutdown) and every run that fails, is terminated or crashed;
    2 every run event too; 3 debug records. Yields the handler it added, or ``None``.
    """
    top = logging.getLogger("django_rocket")
    if verbosity <= 0 or top.hasHandlers():
        yield None
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    lowered: list[logging.Logger] = []
    for name, level in LEVELS[min(verbosity, 3)].items():
        target = logging.getLogger(name)
        if target.level == logging.NOTSET:
            target.setLevel(level)
            lowered.append(target)
    top.addHandler(handler)
    try:
        yield handler
    finally:
        top.removeHandler(handler)
        for target in lowered:
            target.setLevel(logging.NOTSET)
