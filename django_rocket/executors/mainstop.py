"""Stop a ``main`` run at its timeout, or when the scheduler is told to stop (SIGTERM, Ctrl-C).

A ``main`` run calls its function in the scheduler's loop, so the loop cannot wait out
``ROCKET_SHUTDOWN_GRACE`` and then terminate it, as it does a thread or a process run:
a ``main`` run that did not return held ``systemctl stop`` (and any number of Ctrl-C)
until the supervisor killed the process, and crash recovery then recorded the run as
``crash``. The signal handler runs in the main thread, inside the function: the first
signal gives the function the grace (a ``SIGALRM`` timer), the second stops it at once.
Either raises :class:`StopSignal` where the function is; the run is recorded as
``terminate`` with that traceback, after its ``finally`` blocks.

The task's timeout (``ROCKET_TIMEOUT`` or its own) is enforced the same way: the loop
that stops other runs at theirs is the one the function holds, so a ``SIGALRM`` timer
set for the timeout raises :class:`StopSignal` in it ("Timed out after ..."). A process
that uses ``SIGALRM`` itself (its handler installed, or a timer running, when the run
starts) keeps it: the timeout is then not enforced, and a warning says so. A function
that swallows the exception is given it again every ``STOP_AGAIN_AFTER`` seconds.

A handler runs only once the interpreter has control: MySQLdb holds it until the
statement it waits for returns. On MySQL and MariaDB a watchdog thread
(:mod:`~django_rocket.executors.statementwatch`) ends that statement at the timer's
instants. The handler that sets a stop's instants is held too, so the watchdog also
hears SIGTERM, SIGINT and SIGHUP themselves and ends the statement once the grace has passed
since the signal, or at once at a second.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django_rocket.conditions import parse_duration
from django_rocket.conf import conf
from django_rocket.executors.outcome import StopSignal
from django_rocket.executors.statementwatch import STOP_AGAIN_AFTER, Killer, StatementWatch

logger = logging.getLogger("django_rocket.scheduler")


# A call that returns this long after its timeout's instant, unstopped, had its timer
# taken: the timer fires at the instant, and its handler raises at once.
MISSED_AFTER = 0.5


def shutdown_grace() -> tuple[float, str]:
    """``ROCKET_SHUTDOWN_GRACE`` in seconds, and as the settings say it."""
    raw = conf.shutdown_grace
    grace = parse_duration(raw).total_seconds()
    return grace, raw if isinstance(raw, str) else f"{grace:g} seconds"


class MainRunStop:
    """The ``main`` run being called, and how a stop request ends it."""

    def __init__(self, killer: Killer | None = None) -> None:
        # Gives what ends a statement the function waits for (local.statement_killer).
        self.killer = killer
        self.watch: StatementWatch | None = None  # the call's watchdog (MySQL)
        self.calling: str | None = None  # the task whose function is being called
        self.armed = False  # the timer and this handler of SIGALRM are in place
        self.stopping = False  # a stop request's grace has begun
        self.heard_at: float | None = None  # when the watchdog heard the first stop signal
        self.deadline: float | None = None  # when the timeout's timer should fire (monotonic)
        self.fired = False  # the timer raised StopSignal during this call
        # How many stop signals it heard during the call: two that came while a
        # statement held the handler run it once (the scheduler counts them as two).
        self.heard = 0
        self.reason = ""
        self.previous_alarm: Any = None

    def wrap(
        self, task: str, func: Callable[..., Any], timeout: timedelta | None = None
    ) -> Callable[..., Any]:
        """``func``, marked as being called while it runs (a stop may then end it).

        With a ``timeout``, the call is stopped once it has lasted that long.
        """

        def call(**parameters: Any) -> Any:
            self.calling = task
            try:
                self.watch = StatementWatch.start(self.killer, self._heard)
                if timeout is not None:
                    self._arm_timeout(task, timeout)
                return func(**parameters)
            finally:
                self.calling = None
                self._missed(task, timeout)
                self.disarm()

        return call

    def _arm_timeout(self, task: str, timeout: timedelta) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only there does a handler run inside the function
        handler = signal.getsignal(signal.SIGALRM)
        free = handler in (signal.SIG_DFL, signal.SIG_IGN, None)  # no one's handler
        if signal.getitimer(signal.ITIMER_REAL)[0] > 0 or not free:
            logger.warning(
                "Task %r runs in the scheduler's loop (execution 'main') with a timeout of "
                "%s, but this process uses SIGALRM already (%s): the timeout is not "
                "enforced. Run the task as a 'process' or 'thread' to have it stopped.",
                task,
                timeout,
                "a timer is running" if free else handler,
            )
            return
        self.reason = f"Timed out after {timeout}."
        self._set_alarm(max(timeout.total_seconds(), 0.001))
        self.deadline = time.monotonic() + timeout.total_seconds()

    def _missed(self, task: str, timeout: timedelta | None) -> None:
        """Warn if the call outlasted its timeout unstopped: its function took SIGALRM."""
        deadline, self.deadline = self.deadline, None
        if deadline is None or self.fired or time.monotonic() < deadline + MISSED_AFTER:
            return
        logger.warning(
            "Task %r ran past its timeout (%s) in the scheduler's loop (execution 'main') "
            "and was not stopped: its function set SIGALRM's handler or timer itself (a "
            "signal-based timeout, say), which replaced the scheduler's. Run the task as a "
            "'process' or 'thread' to have its timeout enforced.",
            task,
            timeout,
        )

    def _set_alarm(self, seconds: float) -> None:
        if not self.armed:
            self.previous_alarm = signal.signal(signal.SIGALRM, self._alarm)
            self.armed = True
        signal.setitimer(signal.ITIMER_REAL, seconds, STOP_AGAIN_AFTER)
        if self.watch is not None:
            self.watch.kill_at = time.monotonic() + seconds

    def _heard(self, watch: StatementWatch, number: int) -> None:
        """In the watchdog: a stop signal came while the main thread may wait in C."""
        if self.calling is None:
            return
        now = time.monotonic()
        self.heard += 1
        at = now  # a second signal: at once
        if self.heard_at is None:
            self.heard_at = now
            grace, text = shutdown_grace()
            at = now + max(grace, 0.0)
            if not self.stopping:  # the handler has not run: a statement holds it?
                logger.warning(
                    "Received %s while task %r runs in the scheduler's loop (execution "
                    "'main'); if it waits for a statement, the statement is ended once "
                    "ROCKET_SHUTDOWN_GRACE (%s) has passed, or at a second signal.",
                    signal.Signals(number).name,
                    self.calling,
                    text,
                )
        if watch.kill_at is None or at < watch.kill_at:
            watch.kill_at = at

    def signalled(self, name: str, *, again: bool, grace: float, grace_text: str) -> None:
        """From the scheduler's signal handler: end the ``main`` run now, or after the grace.

        Does nothing when no ``main`` function is being called, or off the main thread
        (only there does a handler run inside the function).
        """
        task = self.calling
        if task is None or threading.current_thread() is not threading.main_thread():
            return
        if again:
            raise StopSignal(
                f"Stopped by {name}: the scheduler was told a second time to stop while "
                "this main run went on."
            )
        if grace <= 0:
            raise StopSignal(f"Stopped by {name}: ROCKET_SHUTDOWN_GRACE is {grace_text}.")
        if self.stopping:
            return
        self.stopping = True
        logger.warning(
            "Stopping (received %s) while task %r runs in the scheduler's loop (execution "
            "'main'): it has ROCKET_SHUTDOWN_GRACE (%s) to return, then it is stopped. "
            "A second Ctrl-C or SIGTERM stops it now.",
            name,
            task,
            grace_text,
        )
        # Counted from the signal: the watchdog heard it earlier if a statement held this.
        heard_at = self.heard_at
        if heard_at is not None:
            grace -= time.monotonic() - heard_at
        left = signal.getitimer(signal.ITIMER_REAL)[0] if self.armed else 0.0
        if 0 < left <= grace:
            return  # its timeout comes first, and stops it as a timeout
        self.reason = (
            f"Stopped by {name}: the main run did not return within ROCKET_SHUTDOWN_GRACE "
            f"({grace_text})."
        )
        if grace <= 0:
            raise StopSignal(self.reason)
        self._set_alarm(grace)

    def _alarm(self, signum: int, frame: object) -> None:
        if self.calling is not None:
            self.fired = True
            raise StopSignal(self.reason)

    def disarm(self) -> None:
        """Cancel the timer (timeout or grace), and give ``SIGALRM`` back its handler."""
        self.stopping = False
        self.fired = False
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous_alarm or signal.SIG_DFL)
            self.armed = False
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.end()
        self.heard_at = None  # after the watchdog's end: it writes them
        self.heard = 0
