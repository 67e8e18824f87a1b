"""Wake an idle scheduler at once when someone asks for a run: PostgreSQL LISTEN/NOTIFY.

``queue_run`` (Run now, Retry, ``runtask``) sends a notification in the transaction
that queues the run (:func:`notify_schedulers`); PostgreSQL delivers it when that
transaction commits, and drops it if it rolls back. Each scheduler listens on a
connection of its own, outside Django's, in a thread that sets the loop's wake-up
event: the loop polls at once instead of at its next ``ROCKET_POLL_INTERVAL``.

The poll stays the fallback: on other databases, and while the listening connection
is down. The thread reconnects with backoff and, once listening again, has the loop
poll once for whatever it may have missed meanwhile. A server that closes idle sessions
(``idle_session_timeout``) would close the listening one, which only waits: the thread
sends a trivial statement every half of that limit.

Each time it starts listening, the thread checks that notifications reach it: it sends
one, marked as a probe, through the run log's own connection settings (as
:func:`notify_schedulers` sends) and waits for it. A pooler in transaction mode
(PgBouncer) between the listener and PostgreSQL drops notifications without an error;
the probe turns that into a warning, and ``ROCKET_LISTEN_DATABASE`` names a direct
connection to listen on instead. A hot standby refuses LISTEN ("during recovery"; a
read-only transaction does not), and never sees the primary's notifications anyway:
that is said once, as an error naming the setting.
"""

from __future__ import annotations

import logging
import select
import threading
import time
import uuid
from typing import Any

from django.db import connection, connections

from django_rocket.conf import conf
from django_rocket.executors.local import server_idle_limit

logger = logging.getLogger("django_rocket.scheduler")

CHANNEL = "django_rocket"
# The listening connection's name in pg_stat_activity.
APPLICATION_NAME = "django_rocket listener"
# How long one wait for notifications lasts: bounds how late the thread sees a stop.
WAIT_SECONDS = 0.5
MAX_BACKOFF = 30.0
# A notification whose payload starts with this is a probe, never a run request.
PROBE = "probe:"
# How long the listener waits for its probe before it warns that notifications are lost.
PROBE_SECONDS = 10.0


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

    def __init__(
        self,
        wakeup: threading.Event,
        params: dict[str, Any],
        notify_params: dict[str, Any] | None = None,
        alias: str = "default",
    ) -> None:
        """Listen with the connection ``params``; probe with ``notify_params`` (None: don't).

        ``alias`` is the ``DATABASES`` entry ``params`` come from, for the messages.
        """
        self._wakeup = wakeup
        self._alias = alias
        self._params = {"application_name": APPLICATION_NAME, **params, "autocommit": True}
        self._notify_params = (
            None if notify_params is None else {**notify_params, "autocommit": True}
        )
        self._heard = threading.Event()
        self._stopping = threading.Event()
        self.listening = threading.Event()
        # Whether this connection's probe arrived: None until it did or PROBE_SECONDS passed.
        self.delivers: bool | None = None
        self._probe = ""
        self._thread = threading.Thread(target=self._run, name="rocket-listener", daemon=True)

    @classmethod
    def start_for_database(cls, wakeup: threading.Event) -> Listener | None:
        """Start listening if the run log is on PostgreSQL; None elsewhere (the poll decides).

        It listens on the connection settings of ``ROCKET_LISTEN_DATABASE`` (None: it does
        not listen) and probes with the run log's, which send the run requests.
        """
        alias = conf.listen_database
        if connection.vendor != "postgresql" or alias is None:
            return None
        listen = connections[alias]
        if listen.vendor != "postgresql":  # check E035 says so
            return None
        listener = cls(
            wakeup, listen.get_connection_params(), connection.get_connection_params(), alias
        )
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

    def _notified(self, payload: str) -> None:
        if not payload.startswith(PROBE):
            self._hear()
        elif payload == self._probe:
            if self.delivers is False:
                logger.info("The probe notification arrived after all: listening works.")
            self.delivers = True
        # Another scheduler's probe: not a run request.

    def _send_probe(self) -> float | None:
        """Send a probe as run requests are sent; return by when it must arrive."""
        import psycopg

        if self._notify_params is None:
            return None
        self._probe = f"{PROBE}{uuid.uuid4()}"
        self.delivers = None
        try:
            with psycopg.connect(**self._notify_params) as conn:
                conn.execute("SELECT pg_notify(%s, %s)", [CHANNEL, self._probe])
        except Exception:
            # The run log's database is unreachable: the loop has its own errors to tell.
            logger.debug("Could not send the listener's probe notification.", exc_info=True)
            return None
        return time.monotonic() + PROBE_SECONDS

    def _probe_lost(self) -> None:
        self.delivers = False
        logger.warning(
            "Run requests do not reach this scheduler by LISTEN/NOTIFY: a probe notification "
            "sent with the run log's connection settings did not arrive within %g seconds. "
            "A connection pooler in transaction mode (PgBouncer, for one) drops "
            "notifications. Run now, Retry and runtask wait for the poll "
            "(ROCKET_POLL_INTERVAL) instead. Set ROCKET_LISTEN_DATABASE to a DATABASES "
            "entry that connects to the same PostgreSQL database directly, or to None to "
            "not listen.",
            PROBE_SECONDS,
        )

    def _where(self) -> str:
        return f"ROCKET_LISTEN_DATABASE {self._alias!r}"

    def _refused_by_standby(self, exc: Exception) -> None:
        logger.error(
            "%s refuses LISTEN (%s): the server is a hot standby. Notifications are "
            "delivered only on the primary, where run requests are written. Run now, Retry "
            "and runtask wait for the poll (ROCKET_POLL_INTERVAL) instead. Point "
            "ROCKET_LISTEN_DATABASE at the primary, or set it to None to not listen.",
            self._where(),
            str(exc).strip(),
        )

    def _run(self) -> None:
        import psycopg  # only on PostgreSQL, where Django already needs it

        delay = 0.5
        failing = False
        on_standby = False
        while not self._stopping.is_set():
            try:
                with psycopg.connect(**self._params) as conn:
                    conn.add_notify_handler(lambda notify: self._notified(notify.payload))
                    try:
                        conn.execute(f"LISTEN {CHANNEL}")
                    except psycopg.errors.ReadOnlySqlTransaction as exc:
                        if not on_standby:
                            self._refused_by_standby(exc)
                        on_standby = failing = True
                        conn.close()
                        self._stopping.wait(MAX_BACKOFF)  # a failover may promote it
                        continue
                    if on_standby:
                        logger.info("%s accepts LISTEN now.", self._where())
                        on_standby = False
                    self.listening.set()
                    if failing:
                        logger.info("Listening for run requests again.")
                        self._hear()  # a request may have come while nobody listened
                    failing, delay = False, 0.5
                    # A server that closes idle sessions (idle_session_timeout) would close
                    # this one, which only waits: a statement every half of that keeps it.
                    with conn.cursor() as cursor:
                        limit = server_idle_limit(cursor, "postgresql")
                    said = time.monotonic()
                    probe_by = self._send_probe()
                    while not self._stopping.is_set():
                        # Readable: a notification (or the server closing the connection)
                        # is waiting; a trivial statement reads it and runs the handler,
                        # or raises for a dead connection. Any psycopg 3 does this.
                        readable, _, _ = select.select([conn.fileno()], [], [], WAIT_SECONDS)
                        if readable or (limit and time.monotonic() - said >= limit / 2):
                            conn.execute("SELECT 1")
                            said = time.monotonic()
                        lost = probe_by is not None and time.monotonic() >= probe_by
                        if lost and self.delivers is None:
                            self._probe_lost()
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
