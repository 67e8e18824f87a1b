"""Say where the scheduler's loop is stuck when one tick lasts longer than the lease.

A tick takes milliseconds. One that lasts longer than ``ROCKET_LEASE_TIMEOUT`` is stuck:
on a database that stopped answering without closing the connection (a network
partition: the driver waits until the operating system gives up on TCP, about 15
minutes on Linux), or in a ``main`` run whose function does not return. Meanwhile no run
starts or is recorded and no heartbeat is written, so a standby takes the lease over;
yet the process looks alive to its supervisor, and said nothing.

:class:`StallWatch` is a thread that looks at the loop once a second. Once per stuck
tick it logs an error with where the loop waits (its stack), and when the tick ends, how
long it took.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

logger = logging.getLogger("django_rocket.scheduler")

# The innermost frames shown of the stuck thread's stack.
STACK_FRAMES = 12


class StallWatch:
    """Watch one thread's steps; report a step that lasts longer than ``limit`` seconds."""

    def __init__(
        self,
        limit: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        every: float = 1.0,
    ) -> None:
        self.limit = limit
        self._monotonic = monotonic
        self._every = every
        self._lock = threading.Lock()
        self._since: float | None = None  # when the step in progress began
        self._what = ""
        self._thread_id = 0
        self.reported = 0  # stuck steps reported (tests read it)
        self._reported_this = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def enter(self, what: str) -> None:
        """A step of the calling thread begins (``what`` names it in the messages)."""
        self._thread_id = threading.get_ident()
        self._what = what
        self._since = self._monotonic()

    def leave(self) -> None:
        """The step ends; if it was reported stuck, say that it went on."""
        with self._lock:
            since, self._since = self._since, None
            reported, self._reported_this = self._reported_this, False
        if reported and since is not None:
            logger.info(
                "The scheduler's %s went on after %.0f s.", self._what, self._monotonic() - since
            )

    def check(self) -> bool:
        """Report the step in progress if it lasts too long (once); True if reported now."""
        with self._lock:
            since = self._since
            if since is None or self._reported_this:
                return False
            lasted = self._monotonic() - since
            if lasted < self.limit:
                return False
            self._reported_this = True
            self.reported += 1
            frame = sys._current_frames().get(self._thread_id)
        where = (
            "".join(traceback.format_stack(frame)[-STACK_FRAMES:])
            if frame is not None
            else "  (its stack could not be read)\n"
        )
        logger.error(
            "The scheduler's %s has lasted %.0f s, longer than ROCKET_LEASE_TIMEOUT (%g s): "
            "it is stuck. Until it ends no run starts or is recorded and no heartbeat is "
            "written, so a standby scheduler may take the lease over. It waits here:\n%s"
            "A database that stopped answering without closing the connection holds it "
            "until the operating system gives up on TCP (about 15 minutes on Linux; the "
            "connection options tcp_user_timeout and keepalives_interval on PostgreSQL, "
            "read_timeout and connect_timeout on MySQL and MariaDB, bound that: see "
            "'Networks that drop packets' in the deployment guide); a `main` run holds it "
            "until its function returns.",
            self._what,
            lasted,
            self.limit,
            where,
        )
        return True

    def __enter__(self) -> StallWatch:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rocket-stall-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=self._every * 2)

    def _run(self) -> None:
        while not self._stopped.wait(self._every):
            try:
                self.check()
            except Exception:  # the watch must never take the scheduler down
                logger.debug("The stall watch failed once.", exc_info=True)
