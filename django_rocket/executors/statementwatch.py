"""End the MySQL statement a stopped function waits for, from a thread of its own.

A function called in the main thread (a ``main`` run, ``runtask``'s function) is
stopped by an exception raised from a signal handler, and a Python handler runs only
once the interpreter has control. psycopg waits for an answer in a way that lets it run;
MySQLdb waits in C and retries when a signal interrupts it, so a timeout, SIGTERM or
Ctrl-C waited for the statement, however long it was. :class:`StatementWatch` is a
thread that ends that statement (``KILL QUERY``, local.statement_killer) at
:attr:`~StatementWatch.kill_at`, and again every ``STOP_AGAIN_AFTER`` seconds while the
call lasts.

The signals themselves are held too, so the thread hears them on its own: through the
interpreter's wakeup file descriptor (``signal.set_wakeup_fd``), where no one else has
set it (an event loop may have), it is told the number of every signal that has a
Python handler, and passes SIGTERM, SIGINT and SIGHUP on to ``hear``, in the thread,
which may bring :attr:`~StatementWatch.kill_at` forward.
"""

from __future__ import annotations

import logging
import select
import signal
import socket
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("django_rocket.scheduler")

# A function that swallows the StopSignal (``except BaseException``) gets it again after
# this many seconds, and so on until it returns: a process run gets SIGKILL five seconds
# after its SIGTERM, and a main run must not hold the loop for good either.
STOP_AGAIN_AFTER = 5.0
# How often the watchdog looks whether a statement must end.
WATCH_EVERY = 0.1
# The signals that stop a function, passed on to ``hear``.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
# How long ending the watch waits for a ``KILL QUERY`` in progress to be done with.
JOIN_WITHIN = 5.0

Killer = Callable[[], Callable[[], None] | None]


class StatementWatch:
    """The watchdog of one call: ends its statement at :attr:`kill_at` (monotonic)."""

    def __init__(
        self, kill: Callable[[], None], hear: Callable[[StatementWatch, int], None]
    ) -> None:
        self.kill = kill
        self.hear = hear
        self.kill_at: float | None = None
        self.wakeup_taken = False  # the interpreter tells it the signals
        self._over = threading.Event()
        self._wake: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def start(
        cls, killer: Killer | None, hear: Callable[[StatementWatch, int], None]
    ) -> StatementWatch | None:
        """Start watching the call about to begin; from the main thread, as it begins.

        Never from a signal handler: one may have interrupted threading's own locks.
        None off the main thread (no handler runs inside the function there), or where
        ``killer`` finds no MySQL connection a statement could hold it on.
        """
        if killer is None or threading.current_thread() is not threading.main_thread():
            return None
        kill = killer()  # reads the connections' ids here: MySQLdb refuses it elsewhere
        if kill is None:
            return None
        watch = cls(kill, hear)
        watch._begin()
        return watch

    def _begin(self) -> None:
        listening, told = socket.socketpair()
        listening.setblocking(False)
        told.setblocking(False)
        previous = signal.set_wakeup_fd(told.fileno(), warn_on_full_buffer=False)
        if previous == -1:
            self.wakeup_taken = True
            self._wake = told
        else:  # someone else's (an event loop's): it stays theirs; the handlers still stop
            signal.set_wakeup_fd(previous)
            listening.close()
            told.close()
            listening = told = None  # type: ignore[assignment]
        self._thread = threading.Thread(
            target=self._watch, args=(listening, told), name="rocket-statement-watch", daemon=True
        )
        self._thread.start()

    def _watch(self, listening: socket.socket | None, told: socket.socket | None) -> None:
        try:
            while not self._over.is_set():
                if listening is None:
                    self._over.wait(WATCH_EVERY)
                elif select.select([listening], [], [], WATCH_EVERY)[0]:
                    self._pass_on(listening)
                at = self.kill_at
                if self._over.is_set() or at is None or time.monotonic() < at:
                    continue
                self.kill_at = at + STOP_AGAIN_AFTER
                self.kill()
        finally:
            if listening is not None and told is not None:
                listening.close()
                told.close()

    def _pass_on(self, listening: socket.socket) -> None:
        try:
            numbers = listening.recv(64)
        except OSError:
            return
        for number in numbers:
            if number in STOP_SIGNALS and not self._over.is_set():
                try:
                    self.hear(self, number)
                except Exception:
                    # Never the end of this thread: its socket is the wakeup fd until end().
                    logger.warning(
                        "Could not act on signal %d in a watchdog.", number, exc_info=True
                    )

    def end(self) -> None:
        """As the call ends (main thread): give the wakeup fd back, and wait for the thread.

        Waited for, so that a ``KILL QUERY`` it is sending is done with before the caller
        runs its next statement on the same connection.
        """
        self.kill_at = None
        if self.wakeup_taken:
            signal.set_wakeup_fd(-1)
            self.wakeup_taken = False
        self._over.set()
        if self._wake is not None:
            try:
                self._wake.send(b"\0")  # out of its select at once
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(JOIN_WITHIN)
