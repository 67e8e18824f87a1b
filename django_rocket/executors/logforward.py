"""Carry log records from task child processes to the scheduler process's handlers.

A process run executes in a child of the fork server, whose logging was configured
from settings before the scheduler installed anything (the alert handler, for one).
So the child must not act on its records itself: :func:`forward_to` makes every
record it logs travel through one pipe to the scheduler process, where a
:class:`LogListener` thread hands it to the logger of the same name. The scheduler
process's loggers, filters and handlers then decide what happens to it, exactly as
for a record logged in a thread run.

In the scheduler process::

    listener = LogListener()
    conn = listener.channel()  # one per child; pass it to the child, then close it here
    ...
    listener.close(timeout=2.0)

In the child, first thing::

    forward_to(conn)

Each child has its own pipe, so a child killed mid-write corrupts nothing shared;
the listener sees the end of that pipe and drops it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import pickle
import threading
import time

__all__ = ["LogListener", "PipeHandler", "forward_to"]

logger = logging.getLogger("django_rocket.scheduler")

_formatter = logging.Formatter()


def _portable(record: logging.LogRecord) -> bytes:
    """Pickle a record's facts: the message rendered, the traceback as text, no live objects."""
    data = dict(record.__dict__)
    data["msg"] = record.getMessage()
    data["args"] = None
    if record.exc_info:
        data["exc_text"] = record.exc_text or _formatter.formatException(record.exc_info)
    data["exc_info"] = None
    data.pop("message", None)
    try:
        return pickle.dumps(data)
    except Exception:
        # Some ``extra`` value cannot cross a process boundary; send its repr instead.
        for key, value in data.items():
            try:
                pickle.dumps(value)
            except Exception:
                data[key] = repr(value)
        return pickle.dumps(data)


class PipeHandler(logging.Handler):
    """Send each record through a pipe to a :class:`LogListener` in another process."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        super().__init__()
        self.conn = conn
        self.broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.broken:
            return
        try:
            payload = _portable(record)
        except Exception:
            self.handleError(record)
            return
        try:
            self.conn.send_bytes(payload)
        except OSError:
            # The scheduler is gone; nobody is left to read what this child logs.
            self.broken = True


def forward_to(conn: multiprocessing.connection.Connection) -> PipeHandler:
    """Route every record this process logs to ``conn`` instead of this process's handlers.

    Loggers keep their levels and filters (they are configured from the same
    settings as the scheduler's), so a record is only sent when the scheduler
    process would have created it too.
    """
    root = logging.getLogger()
    known = logging.Logger.manager.loggerDict.values()
    loggers = [root, *(item for item in known if isinstance(item, logging.Logger))]
    for item in loggers:
        for handler in list(item.handlers):
            item.removeHandler(handler)
        # The scheduler process applies ``propagate`` when it handles the record.
        item.propagate = True
    handler = PipeHandler(conn)
    root.addHandler(handler)
    return handler


class LogListener:
    """Receive records from child processes and hand them to this process's loggers."""

    def __init__(self) -> None:
        self._conns: list[multiprocessing.connection.Connection] = []  # removed at EOF
        self._lock = threading.Lock()
        self._wake_r: multiprocessing.connection.Connection | None = None
        self._wake_w: multiprocessing.connection.Connection | None = None
        self._closing = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def channel(self) -> multiprocessing.connection.Connection:
        """Return the sending end of a new pipe for one child process.

        The caller passes it to the child and closes its own copy once the child has
        started, so that the listener sees the pipe end when the child exits.
        """
        if self._closing:
            raise RuntimeError("The log listener is closed.")
        receiving, sending = multiprocessing.Pipe(duplex=False)
        with self._lock:
            self._conns.append(receiving)
        self._start()
        self._wake()
        return sending

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            # Created with the first child, so a runner that never forks holds no pipes.
            self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
            self._thread = threading.Thread(target=self._run, name="rocket-logs", daemon=True)
            self._thread.start()

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send_bytes(b"")

    def _run(self) -> None:
        assert self._wake_r is not None
        while not self._stopped:
            with self._lock:
                conns = list(self._conns)
            if self._closing and not conns:
                break
            try:
                ready = multiprocessing.connection.wait([*conns, self._wake_r], timeout=1.0)
            except (OSError, ValueError):  # a pipe closed by close() after its timeout
                continue
            for conn in ready:
                if conn is self._wake_r:
                    self._wake_r.recv_bytes()
                    continue
                try:
                    payload = conn.recv_bytes()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    self._drop(conn)  # type: ignore[arg-type]
                    continue
                self._dispatch(payload)

    def _drop(self, conn: multiprocessing.connection.Connection) -> None:
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)
        conn.close()

    def _dispatch(self, payload: bytes) -> None:
        try:
            record = logging.makeLogRecord(pickle.loads(payload))
            name = None if record.name == "root" else record.name
            logging.getLogger(name).handle(record)
        except Exception:
            with contextlib.suppress(Exception):
                logger.error("A record forwarded from a child process was lost.", exc_info=True)

    def close(self, timeout: float = 2.0) -> bool:
        """Handle what the children still send, for at most ``timeout`` seconds.

        Return True when every child's pipe was read to its end in time.
        """
        self._closing = True
        thread = self._thread
        if thread is None:
            return True
        self._wake()
        thread.join(timeout)
        if not thread.is_alive():
            for conn in (self._wake_r, self._wake_w):
                if conn is not None:
                    conn.close()
            return True
        # A child still holds its pipe open (or a handler is stuck): stop reading.
        self._stopped = True
        self._wake()
        with self._lock:
            left, self._conns = self._conns, []
        for conn in left:
            conn.close()
        logger.warning(
            "Stopped reading the logs of %d child process(es) that were still writing.",
            len(left),
        )
        return False

    @property
    def open_channels(self) -> int:
        with self._lock:
            return len(self._conns)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every child's pipe has ended; return whether that happened in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.open_channels:
                return True
            time.sleep(0.01)
        return not self.open_channels
