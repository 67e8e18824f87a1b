"""Run task functions in child processes forked from a fork server, and reap them.

The fork server preloads :mod:`django_rocket.executors.child` (Django set up once);
each run's child leads its own process group, dies with the scheduler, and sends its
log records to the scheduler process through :mod:`~django_rocket.executors.logforward`.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess

import django
from django.db import connections

from django_rocket.executors import logforward
from django_rocket.executors.outcome import (
    ActiveRun,
    Ending,
    Finish,
    Launch,
    bounded,
    call_task,
    describe,
    format_traceback,
    load_function,
)
from django_rocket.models import RunStatus

CHILD_BOOTSTRAP = "django_rocket.executors.child"


def _die_with_scheduler(scheduler_pid: int) -> None:
    """Kill this run's process group as soon as the scheduler process is gone.

    The fork server keeps itself alive while its children live, so the kernel's
    parent-death signal would never fire; the child watches the scheduler itself.
    """
    os.setpgrp()  # the run and anything it spawns form one group, killed together

    def watch() -> None:
        try:
            fd = os.pidfd_open(scheduler_pid)
        except ProcessLookupError:
            os.killpg(0, signal.SIGKILL)
            return
        except (AttributeError, OSError):
            while True:  # no pidfd (old kernel or not Linux): poll instead
                try:
                    os.kill(scheduler_pid, 0)
                except ProcessLookupError:
                    os.killpg(0, signal.SIGKILL)
                threading.Event().wait(0.5)
        select.select([fd], [], [])
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="rocket-watchdog", daemon=True).start()


def _child_main(
    conn: multiprocessing.connection.Connection,
    launch: Launch,
    db_names: dict[str, str],
    max_bytes: int,
    parent_pid: int,
    log_conn: multiprocessing.connection.Connection | None = None,
) -> None:
    _die_with_scheduler(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the scheduler's to handle
    if not getattr(django, "_rocket_ready", False):
        django.setup()
    if log_conn is not None:
        logforward.forward_to(log_conn)  # records go to the scheduler process's handlers
    for alias, name in db_names.items():
        # The parent may run against a test database the settings module does not name.
        connections.databases[alias]["NAME"] = name
    ending: Ending
    try:
        func = load_function(launch.func)
    except BaseException as exc:
        ending = {
            "status": RunStatus.FAIL.value,
            "message": f"Could not import the task function: {describe(exc)}",
            "exc_text": format_traceback(exc),
        }
    else:
        ending = call_task(func, launch.parameters, max_bytes)  # never raises
    try:
        connections.close_all()
    except Exception:
        pass  # the child exits now; its connections go with it
    _send(conn, bounded(ending, max_bytes))


def _send(conn: multiprocessing.connection.Connection, ending: Ending) -> None:
    """Send the ending to the scheduler, which reads it as it comes (any size)."""
    try:
        conn.send(ending)
    except Exception as exc:  # not picklable after all: send what can be
        conn.send(
            {
                "status": RunStatus.FAIL.value,
                "message": f"The run's ending could not be sent: {describe(exc)}",
            }
        )
    conn.close()


def _read_ending(
    active: ActiveRun, conn: multiprocessing.connection.Connection, now: Callable[[], datetime]
) -> None:
    """Receive a process run's ending into ``active.ending``, and note when the run ended.

    The run ends when its ending comes, or when the pipe closes without one (the child
    died): not when its child exits or is reaped, which can be much later (a thread the
    function left behind keeps the child alive; a scheduler cut off from its database
    stopped such runs as ``terminate`` at its shutdown, found by bench/soak.py).
    """
    try:
        ending = conn.recv()
    except BaseException:  # EOF: the child died first; or what it sent cannot be read
        ending = None
    if isinstance(ending, dict):
        active.ending = ending  # type: ignore[assignment]
    active.ended_at = now()


def with_end(active: ActiveRun, ending: Ending) -> Ending:
    """The ending with the time the run ended, if its reader noted it."""
    if active.ended_at is None:
        return ending
    return {**ending, "finished_at": active.ended_at}


def signal_group(proc: BaseProcess, sig: int) -> None:
    """Signal a run's whole process group (the child leads it); ignore one already gone."""
    if proc.pid is None or proc.exitcode is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass


class ProcessExecutor:
    """Start process runs and report each one's ending when its child exits."""

    def __init__(
        self,
        finish: Finish,
        running: Callable[[], list[ActiveRun]],
        *,
        now: Callable[[], datetime],
        max_bytes: int,
        preload: list[str],
    ) -> None:
        self._finish = finish
        self._now = now
        self._running = running  # the process runs in flight, a snapshot
        self._max_bytes = max_bytes
        self._preload = preload
        self._context: ForkServerContext | None = None
        self._logs = logforward.LogListener()
        self._monitor: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._closed = False

    def _fork_server(self) -> ForkServerContext:
        if self._context is None:
            context = multiprocessing.get_context("forkserver")
            # Never "__main__": the fork server would run the scheduler's script again.
            modules = [m for m in self._preload if m not in ("__main__", "__mp_main__")]
            context.set_forkserver_preload([CHILD_BOOTSTRAP, *modules])
            self._context = context
        return self._context

    def start(self, active: ActiveRun) -> None:
        """Fork the run's child; its ending is reported when it exits."""
        context = self._fork_server()
        parent_conn, child_conn = context.Pipe(duplex=False)
        db_names = {alias: connections.databases[alias]["NAME"] for alias in connections}
        log_conn = self._logs.channel()
        proc = context.Process(
            target=_child_main,
            args=(child_conn, active.launch, db_names, self._max_bytes, os.getpid()),
            kwargs={"log_conn": log_conn},
            name=f"rocket-{active.launch.task}",  # child.RUN_NAME_PREFIX: skips __main__
            daemon=False,
        )
        proc.start()
        child_conn.close()
        log_conn.close()
        active.process = proc
        active.conn = parent_conn
        # Read the ending while the child runs: a child blocks sending one bigger than
        # the pipe's buffer (64 KiB) until it is read, so it could never exit first.
        active.reader = threading.Thread(
            target=_read_ending,
            args=(active, parent_conn, self._now),
            name="rocket-ending",
            daemon=True,
        )
        active.reader.start()
        self._ensure_monitor()
        os.write(self._wake_w, b"x")

    def _ensure_monitor(self) -> None:
        if self._monitor is not None:
            return
        self._wake_r, self._wake_w = os.pipe()
        self._monitor = threading.Thread(target=self._watch, name="rocket-monitor", daemon=True)
        self._monitor.start()

    def _watch(self) -> None:
        while not self._closed:
            procs = {a.process.sentinel: a for a in self._running() if a.process is not None}
            ready = multiprocessing.connection.wait([*procs, self._wake_r])
            for item in ready:
                if item == self._wake_r:
                    os.read(self._wake_r, 4096)
                    continue
                assert isinstance(item, int)
                self._reap(procs[item])

    def _reap(self, active: ActiveRun) -> None:
        proc, conn = active.process, active.conn
        assert proc is not None and conn is not None
        if active.reader is not None:
            # The child has exited, so its ending is read or never comes; a grandchild
            # that kept the pipe open must not hold up the others' reaping for long.
            active.reader.join(timeout=5)
        ending = active.ending
        proc.join(timeout=5)
        if active.reader is None or not active.reader.is_alive():
            conn.close()
        if ending is None:
            code = proc.exitcode
            if code is not None and code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = str(-code)
                message = f"The child process was killed by signal {name}."
            else:
                message = f"The child process exited with code {code} before reporting."
            ending = {"status": RunStatus.FAIL.value, "message": message}
        self._finish(active.launch.run_id, with_end(active, ending))

    def terminate(self, active: ActiveRun) -> None:
        """Send the run's process group SIGTERM, and SIGKILL five seconds later."""
        proc = active.process
        if proc is None:
            return
        signal_group(proc, signal.SIGTERM)
        timer = threading.Timer(5.0, lambda: signal_group(proc, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    def kill(self, active: ActiveRun) -> None:
        """Send the run's process group SIGKILL."""
        if active.process is not None:
            signal_group(active.process, signal.SIGKILL)

    def close(self) -> None:
        """Stop forwarding child log records and stop watching children."""
        self._closed = True
        self._logs.close(timeout=2.0)
        if self._wake_w != -1:
            os.write(self._wake_w, b"x")
