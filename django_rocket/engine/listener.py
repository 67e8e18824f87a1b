"""Wake an idle scheduler at once when someone asks for a run: PostgreSQL LISTEN/NOTIFY.

``queue_run`` (Run now, Retry, ``runtask``) sends a notification in the transaction
that queues the run (:func:`notify_schedulers`); PostgreSQL delivers it when that
transaction commits, and drops it if it rolls back. Each scheduler listens on a
connection of its own, outside Django's, in a thread that sets the loop's wake-up
event: the loop polls at once instead of at its next ``ROCKET_POLL_INTERVAL``.

The poll stays the fallback: on other databases, and while the listening connection
is down. The thread reconnects with backoff and, once listening again, has the loop
poll once for whatever it may have missed meanwhile.
"""

from __future__ import annotations

import logging
import select
import threading
from typing import Any

from django.db import connection

logger = logging.getLogger("django_rocket.scheduler")

CHANNEL = "django_rocket"
# The listening connection's name in pg_stat_activity.
APPLICATION_NAME = "django_rocket listener"
# How long one wait for notifications lasts: bounds how late the thread sees a stop.
WAIT_SECONDS = 0.5
MAX_BACKOFF = 30.0


def notify_schedulers() -> None:
    """Tell listening schedulers that a request is waiting (PostgreSQL; elsewhere nothing).

    Call it inside the transaction that writes the request: the notification is
    delivered when it commits, so a scheduler never wakes before the row is visible.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])


class Listener:
    """A thread listening for notifications on its own PostgreSQL connection."""

    def __init__(self, wakeup: threading.Event, params: dict[str, Any]) -> None:
        self._wakeup = wakeup
        self._params = {"application_name": APPLICATION_NAME, **params, "autocommit": True}
        self._heard = threading.Event()
        self._stopping = threading.Event()
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rocket-listener", daemon=True)

    @classmethod
    def start_for_database(cls, wakeup: threading.Event) -> Listener | None:
        """Start listening if the database is PostgreSQL; None elsewhere (the poll decides)."""
        if connection.vendor != "postgresql":
            return None
        listener = cls(wakeup, connection.get_connection_params())
        listener._thread.start()
        return listener

    def heard(self) -> bool:
        """Whether a notification arrived since the last call: then the loop polls now."""
        if not self._heard.is_set():
            return False
        self._heard.clear()
        return True

    def close(self) -> None:
        """Stop listening; the thread ends within one wait."""
        self._stopping.set()
        self._thread.join(timeout=WAIT_SECONDS * 4)

    def _hear(self) -> None:
        self._heard.set()
        self._wakeup.set()

    def _run(self) -> None:
        import psycopg  # only on PostgreSQL, where Django already needs it

        delay = 0.5
        failing = False
        while not self._stopping.is_set():
            try:
                with psycopg.connect(**self._params) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if failing:
                        logger.info("Listening for run requests again.")
                        self._hear()  # a request may have come while nobody listened
                    failing, delay = False, 0.5
                    conn.add_notify_handler(lambda _: self._hear())
                    while not self._stopping.is_set():
                        # Readable: a notification (or the server closing the connection)
                        # is waiting; a trivial statement reads it and runs the handler,
                        # or raises for a dead connection. Any psycopg 3 does this.
                        readable, _, _ = select.select([conn.fileno()], [], [], WAIT_SECONDS)
                        if readable:
                            conn.execute("SELECT 1")
            except Exception:
                self.listening.clear()
                if not failing:
                    logger.warning(
                        "Lost the connection that listens for run requests; polling every "
                        "ROCKET_POLL_INTERVAL until it is back.",
                        exc_info=True,
                    )
                failing = True
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
