"""The logging handler that queues alert emails, throttled per task, and its sender thread."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from django_rocket.alerts.config import EmailConfig
from django_rocket.alerts.mailer import uses_smtp
from django_rocket.alerts.message import Alert
from django_rocket.alerts.sending import describe_error, send, smtp_sender

if TYPE_CHECKING:
    from redmail.email.sender import EmailSender


logger = logging.getLogger("django_rocket.scheduler")
task_logger = logging.getLogger("django_rocket.task")

QUEUE_SIZE = 100


@dataclass
class _Window:
    ends: float
    count: int = 0
    last: Alert | None = None
    actions: frozenset[str] = frozenset()


_STOP = object()


class EmailAlertHandler(logging.Handler):
    """Queue an email for each record, throttled per task; a thread sends them."""

    def __init__(
        self,
        config: EmailConfig,
        *,
        time_func: Callable[[], float] = time.monotonic,
        poll: float = 1.0,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        super().__init__(config.level)
        self.config = config
        self._time = time_func
        self._poll = poll
        self._queue: queue.Queue[Alert | object] = queue.Queue(maxsize=queue_size)
        self._windows: dict[str, _Window] = {}  # one per alert key; ended ones are deleted
        self._state = threading.Lock()
        self._dropped = 0
        self._stopping = threading.Event()
        self._abandoned = False
        self._sender: EmailSender | None = None
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="rocket-alerts", daemon=True)
        self._thread.start()

    # -- in the logging thread: decide and queue, never block

    def emit(self, record: logging.LogRecord) -> None:
        if self._stopping.is_set():
            return
        try:
            alert = Alert.from_record(record)
            with self._state:
                now = self._time()
                due = self._take_summaries(now)
                if self._admit(alert, now):
                    due.append(alert)
            for item in due:
                self._enqueue(item)
        except Exception:
            self.handleError(record)

    def _admit(self, alert: Alert, now: float) -> bool:
        """Whether the alert is the first in its task's window; count it otherwise."""
        if self.config.throttle <= 0:
            return True
        window = self._windows.get(alert.key)
        if window is None:
            self._windows[alert.key] = _Window(now + self.config.throttle)
            return True
        window.count += 1
        window.last = alert
        window.actions = window.actions | alert.actions
        return False

    def _take_summaries(self, now: float, everything: bool = False) -> list[Alert]:
        """End the windows that are over (all of them at shutdown) and return their summaries."""
        summaries: list[Alert] = []
        for key, window in list(self._windows.items()):
            if window.ends <= now or everything:
                del self._windows[key]
                if window.count and window.last is not None:
                    summaries.append(
                        replace(
                            window.last,
                            count=window.count,
                            actions=window.actions,
                            window=self.config.throttle,
                        )
                    )
        return summaries

    def _enqueue(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            with self._state:
                self._dropped += 1

    # -- in the sender thread

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._seconds_to_next_summary())
            except queue.Empty:
                item = None
            if item is _STOP or self._abandoned:
                return
            if isinstance(item, Alert):
                self._deliver(item)
            with self._state:
                due = self._take_summaries(self._time())
            for summary in due:
                if not self._abandoned:
                    self._deliver(summary)
            self._report_dropped()

    def _seconds_to_next_summary(self) -> float:
        with self._state:
            ends = [w.ends for w in self._windows.values() if w.count]
        if not ends:
            return self._poll
        return min(max(min(ends) - self._time(), 0.01), self._poll)

    def _deliver(self, alert: Alert) -> None:
        try:
            if self._sender is None and uses_smtp(self.config.mailer):
                self._sender = smtp_sender(self.config.timeout, self.config.mailer)
            send(self.config, alert, self._sender)
            self.sent += 1
        except Exception as exc:
            self.failed += 1
            self._sender = None
            logger.error(
                "Could not send the alert email about %s to %s: %s",
                alert.task_name or alert.logger,
                ", ".join(self.config.receivers),
                describe_error(exc),
                exc_info=True,
            )

    def _report_dropped(self) -> None:
        with self._state:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            logger.error(
                "Dropped %d alert email(s): %d were already waiting for the SMTP server.",
                dropped,
                self._queue.maxsize,
            )

    # -- stopping

    def shutdown(self, timeout: float) -> bool:
        """Send what is queued and every pending summary within ``timeout`` seconds.

        Return True when everything was handed to the SMTP server (or failed) in time.
        """
        if self._stopping.is_set():
            return not self._thread.is_alive()
        self._stopping.set()
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._state:
            summaries = self._take_summaries(0, everything=True)
        for summary in summaries:
            self._enqueue(summary)
        stop_queued = False
        while not stop_queued and time.monotonic() < deadline:
            try:
                self._queue.put(_STOP, timeout=max(deadline - time.monotonic(), 0.001))
                stop_queued = True
            except queue.Full:
                continue
        # Not started yet when closed by another thread's dictConfig as this handler is
        # made (logging registers it first): it will find the stop in the queue.
        if self._thread.ident is not None:
            self._thread.join(max(deadline - time.monotonic(), 0.0))
        done = not self._thread.is_alive()
        if not done:
            self._abandoned = True  # the thread exits after the email it is stuck on
            # The one being sent, and those still queued behind it.
            unsent = 1 + self._queue.qsize() - stop_queued
            logger.warning(
                "Stopped waiting for the SMTP server after %.1fs; %d alert email(s) not sent.",
                timeout,
                unsent,
            )
        self._report_dropped()
        return done

    @property
    def stopped(self) -> bool:
        """Whether it was shut down (or closed): it drops every record from then on."""
        return self._stopping.is_set()

    def close(self) -> None:
        # Called by logging.shutdown() at exit when shutdown_alerts() was not: stay brief.
        # Also by logging.config.dictConfig, which closes every handler: see revive_alerts.
        self.shutdown(timeout=2.0)
        super().close()


_installed: EmailAlertHandler | None = None
_install_lock = threading.Lock()


def install_alerts() -> EmailAlertHandler | None:
    """Put the handler ``ROCKET_ALERTS`` describes on ``django_rocket.task``; return it."""
    global _installed
    config = EmailConfig.from_settings()
    with _install_lock:
        previous, _installed = _installed, None
    if previous is not None:
        task_logger.removeHandler(previous)
        previous.shutdown(timeout=0)
    if config is None:
        return None
    handler = EmailAlertHandler(config)
    task_logger.addHandler(handler)
    with _install_lock:
        _installed = handler
    if task_logger.getEffectiveLevel() > config.level:
        logger.warning(
            "Email alerts are set for %s and above, but the django_rocket.task logger only "
            "passes %s and above; set its level in LOGGING.",
            logging.getLevelName(config.level),
            logging.getLevelName(task_logger.getEffectiveLevel()),
        )
    logger.info(
        "Email alerts on: %s and above to %s.",
        logging.getLevelName(config.level),
        ", ".join(config.receivers),
    )
    return handler


def revive_alerts() -> bool:
    """Put ``ROCKET_ALERTS``' handler back if logging was configured again; True if it was.

    ``logging.config.dictConfig`` (which ``django.setup()`` calls, as does a task module
    written as a standalone script) closes every handler, ours too, which then drops
    every record, and may take it off its logger. A new handler takes its place: what
    the old one had queued it sent as it closed.
    """
    with _install_lock:
        handler = _installed
    if handler is None or (not handler.stopped and handler in task_logger.handlers):
        return False
    install_alerts()
    return True


def shutdown_alerts(timeout: float = 10.0) -> bool:
    """Take the handler off ``django_rocket.task`` and send what is queued, within ``timeout``."""
    global _installed
    with _install_lock:
        handler, _installed = _installed, None
    if handler is None:
        return True
    task_logger.removeHandler(handler)
    return handler.shutdown(timeout)
