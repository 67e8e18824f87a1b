"""Run task functions: in the scheduler's loop, a thread, an event loop, or a child process.

Every run ends as one :class:`Outcome` handed to the ``report`` callback, whatever
happened to it: a return, an exception, a timeout, or a child process that died.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import select
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections
from django.utils.module_loading import import_string

from django_rocket import TaskInaction, TaskTerminated
from django_rocket.executors import logforward

logger = logging.getLogger("django_rocket.scheduler")

SUCCESS, FAIL, TERMINATE, INACTION = "success", "fail", "terminate", "inaction"


@dataclass
class Outcome:
    """How one run ended."""

    run_id: str
    task: str
    status: str
    finished_at: datetime | None = None
    message: str = ""
    exc_text: str = ""
    result: Any = None
    started_at: datetime | None = None


@dataclass
class Launch:
    """What an executor needs to start one run."""

    run_id: str
    task: str
    func: str
    parameters: dict[str, Any] = field(default_factory=dict)
    execution: str = "process"


_local = threading.local()


def current_run_should_stop() -> bool:
    """Return True when the scheduler asked the calling thread run to stop."""
    active = getattr(_local, "run", None)
    return bool(active is not None and active.stop_requested)


def load_function(path: str) -> Callable[..., Any]:
    """Import a task function; one decorated with Django's ``@task`` gives its plain function."""
    from django_rocket.executors.django_tasks import plain_function

    return plain_function(import_string(path))


def _encodable(text: str) -> bool:
    """Whether UTF-8 can encode ``text``: all but lone surrogates (ASCII takes a fast path)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> str:
    """``text`` as every supported database can store it.

    NUL characters are shown as ``\\x00`` (PostgreSQL refuses NUL in text), and lone
    surrogates as ``\\udcff`` (no driver can encode them in UTF-8: Python makes them of
    bytes that were not UTF-8, such as a file name from ``os.listdir``). Either in one
    run's message made the batch of finishes it was written with fail; a lone surrogate
    stopped the scheduler.
    """
    if not _encodable(text):
        text = text.encode(errors="backslashreplace").decode()
    return text.replace("\x00", "\\x00") if "\x00" in text else text


def refused_note(exc: Exception) -> str:
    """The message of a run the database refused as it ended, recorded without the rest."""
    return storable(
        "Recorded without its message, traceback and result, which the database "
        f"refused: {type(exc).__name__}: {exc}"
    )[:2000]


def _unstorable_text(value: Any) -> str:
    """Why a JSON value cannot be stored as it is: a NUL or a lone surrogate in a string."""
    if isinstance(value, str):
        if "\x00" in value:
            return "it contains a NUL character, which PostgreSQL cannot store"
        if not _encodable(value):
            return "it contains a lone surrogate, which UTF-8 cannot encode"
        return ""
    if isinstance(value, dict):
        items: Any = itertools.chain.from_iterable(value.items())
    elif isinstance(value, list):
        items = value
    else:
        return ""
    return next((why for why in map(_unstorable_text, items) if why), "")


def _encode_result(value: Any, max_bytes: int) -> tuple[Any, str]:
    """The return value as the run keeps it (JSON), or None with a note saying why not.

    Refused besides what JSON cannot express: NaN and infinities (not JSON, so neither
    PostgreSQL's ``jsonb`` nor SQLite's JSON check takes them) and NUL characters
    (PostgreSQL's ``jsonb`` does not take them).
    """
    if value is None:
        return None, ""
    try:
        text = json.dumps(value, allow_nan=False)
    except TypeError:
        return None, f"Return value not kept: {type(value).__name__} is not JSON-serialisable."
    except ValueError as exc:  # NaN or an infinity; a circular reference
        return None, f"Return value not kept: it is not JSON-serialisable ({exc})."
    if len(text.encode()) > max_bytes:
        return None, f"Return value not kept: {len(text.encode())} bytes is over {max_bytes}."
    kept = json.loads(text)
    why = _unstorable_text(kept)
    if why:
        return None, f"Return value not kept: {why}."
    return kept, ""


def call_task(func: Callable[..., Any], parameters: dict[str, Any], max_bytes: int) -> dict:
    """Call a task function and describe how it ended (status, message, traceback, result)."""
    try:
        value = func(**parameters)
        if asyncio.iscoroutine(value):
            value = asyncio.run(value)
    except TaskInaction as exc:
        return {"status": INACTION, "message": str(exc)}
    except TaskTerminated as exc:
        return {"status": TERMINATE, "message": str(exc) or "Terminated on request."}
    except BaseException as exc:  # a task's failure is a run outcome, never a scheduler error
        return {
            "status": FAIL,
            "message": f"{type(exc).__name__}: {exc}"[:2000],
            "exc_text": traceback.format_exc(),
        }
    result, note = _encode_result(value, max_bytes)
    return {"status": SUCCESS, "result": result, "message": note}


# --- child processes ------------------------------------------------------------------------


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
    db_names: dict[str, Any],
    max_bytes: int,
    parent_pid: int,
    log_conn: multiprocessing.connection.Connection | None = None,
) -> None:
    _die_with_scheduler(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the scheduler's to handle
    import django

    if not getattr(django, "_rocket_ready", False):
        django.setup()
    if log_conn is not None:
        logforward.forward_to(log_conn)  # records go to the scheduler process's handlers
    for alias, name in db_names.items():
        # The parent may run against a test database the settings module does not name.
        connections.databases[alias]["NAME"] = name
    try:
        func = load_function(launch.func)
        outcome = call_task(func, launch.parameters, max_bytes)
    except BaseException:
        outcome = {
            "status": FAIL,
            "message": "Could not import the task function.",
            "exc_text": traceback.format_exc(),
        }
    finally:
        connections.close_all()
    conn.send(outcome)
    conn.close()


def _signal_group(proc: Any, sig: int) -> None:
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


class _Workers:
    """Worker threads for execution "thread", reused from one run to the next.

    A run never waits for a worker: when none is idle a new one starts, so a long
    run cannot hold up a short one. A worker idle for ``idle_timeout`` seconds
    exits, so a burst of concurrent runs does not leave its threads behind.
    Starting a thread per run cost as much as the rest of a short run's
    bookkeeping together (see bench/RESULTS.md).
    """

    def __init__(self, idle_timeout: float = 60.0) -> None:
        self.idle_timeout = idle_timeout
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for a job, minus jobs already handed to them
        self.started = 0  # threads started over the pool's life (tests read it)
        self._closed = False

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("The scheduler is shutting down; no new thread runs start.")
            if self._idle > 0:
                self._idle -= 1
                self._jobs.put(job)
                return
            self.started += 1
        thread = threading.Thread(target=self._work, args=(job,), name="rocket-worker", daemon=True)
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self.started -= 1
            raise

    def _work(self, job: Callable[[], None] | None) -> None:
        while job is not None:
            try:
                job()
            except BaseException:  # job() reports its own outcome; never lose the worker
                logger.exception("A thread run's bookkeeping raised.")
            with self._lock:
                if self._closed:
                    return
                self._idle += 1
            try:
                job = self._jobs.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    # A job handed over while we timed out is in the queue now: take it.
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._jobs.put(None)


@dataclass
class _Active:
    launch: Launch
    kind: str
    handle: Any = None
    conn: Any = None
    stop_requested: bool = False  # read by current_run_should_stop() in a thread run
    terminate_reason: str = ""


class Runner:
    """Start runs in the requested execution mode and report each outcome exactly once."""

    def __init__(
        self,
        report: Callable[[Outcome], None],
        now: Callable[[], datetime],
        *,
        max_processes: int | None = None,
        result_max_bytes: int = 65536,
        preload: list[str] | None = None,
    ) -> None:
        self._report = report
        self._now = now
        self.max_processes = max_processes or os.cpu_count() or 1
        self.result_max_bytes = result_max_bytes
        self._preload = preload or []
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()
        self._mp: Any = None
        self._monitor: threading.Thread | None = None
        self._monitor_wake_r: Any = None
        self._monitor_wake_w: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._closed = False
        self._logs = logforward.LogListener()
        self._tasks: Any = None  # a TasksFollower, once a run uses execution "tasks"
        self._workers = _Workers()
        self._functions: dict[str, Callable[..., Any]] = {}

    def _function(self, path: str) -> Callable[..., Any]:
        """The task function for a dotted path, imported once per scheduler."""
        func = self._functions.get(path)
        if func is None:
            func = self._functions[path] = load_function(path)
        return func

    # -- bookkeeping

    @property
    def in_flight(self) -> int:
        return len(self._active)

    def process_slots(self) -> int:
        with self._lock:
            used = sum(1 for a in self._active.values() if a.kind == "process")
        return max(self.max_processes - used, 0)

    def is_running(self, run_id: str) -> bool:
        return run_id in self._active

    def _finish(self, run_id: str, data: dict) -> None:
        with self._lock:
            active = self._active.pop(run_id, None)
        if active is None:
            return
        status = data.get("status", FAIL)
        message = data.get("message", "")
        if active.terminate_reason:
            status = TERMINATE
            message = active.terminate_reason + (f" ({message})" if message else "")
        self._report(
            Outcome(
                run_id=run_id,
                task=active.launch.task,
                status=status,
                finished_at=self._now(),
                message=storable(message),
                exc_text=storable(data.get("exc_text") or ""),
                result=data.get("result"),
            )
        )

    # -- launching

    def launch(self, launch: Launch) -> None:
        """Start the run; raise if it cannot be started (the caller records that as a fail)."""
        active = _Active(launch, launch.execution)
        with self._lock:
            self._active[launch.run_id] = active
        try:
            getattr(self, f"_launch_{launch.execution}")(active)
        except BaseException:
            with self._lock:
                self._active.pop(launch.run_id, None)
            raise

    def _launch_main(self, active: _Active) -> None:
        func = self._function(active.launch.func)
        self._finish(
            active.launch.run_id, call_task(func, active.launch.parameters, self.result_max_bytes)
        )

    def _launch_thread(self, active: _Active) -> None:
        func = self._function(active.launch.func)

        def target() -> None:
            thread = threading.current_thread()
            thread.name = f"rocket-{active.launch.task}"
            _local.run = active
            try:
                data = call_task(func, active.launch.parameters, self.result_max_bytes)
            finally:
                connections.close_all()  # those this run opened; a worker outlives its run
                _local.run = None
                thread.name = "rocket-worker"
            self._finish(active.launch.run_id, data)

        self._workers.submit(target)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(
                target=self._loop.run_forever, name="rocket-async", daemon=True
            )
            self._loop_thread.start()
        return self._loop

    def _launch_async(self, active: _Active) -> None:
        func = self._function(active.launch.func)
        loop = self._ensure_loop()

        async def wrapper() -> None:
            try:
                await func(**active.launch.parameters)
                data = {"status": SUCCESS}
            except asyncio.CancelledError:
                data = {"status": TERMINATE, "message": "Cancelled."}
            except TaskInaction as exc:
                data = {"status": INACTION, "message": str(exc)}
            except BaseException as exc:
                data = {
                    "status": FAIL,
                    "message": f"{type(exc).__name__}: {exc}"[:2000],
                    "exc_text": traceback.format_exc(),
                }
            self._finish(active.launch.run_id, data)

        def create() -> None:
            active.handle = loop.create_task(wrapper())

        loop.call_soon_threadsafe(create)

    def _context(self) -> Any:
        if self._mp is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["django_rocket.executors.child", *self._preload])
            self._mp = ctx
        return self._mp

    def _launch_process(self, active: _Active) -> None:
        ctx = self._context()
        parent_conn, child_conn = ctx.Pipe(duplex=False)
        db_names = {alias: connections.databases[alias]["NAME"] for alias in connections}
        log_conn = self._logs.channel()
        proc = ctx.Process(
            target=_child_main,
            args=(child_conn, active.launch, db_names, self.result_max_bytes, os.getpid()),
            kwargs={"log_conn": log_conn},
            name=f"rocket-{active.launch.task}",
            daemon=False,
        )
        proc.start()
        child_conn.close()
        log_conn.close()
        active.handle = proc
        active.conn = parent_conn
        self._ensure_monitor()
        os.write(self._monitor_wake_w, b"x")

    # -- execution "tasks": Django's Tasks framework (django_rocket.executors.django_tasks)

    def _tasks_follower(self) -> Any:
        if self._tasks is None:
            from django_rocket.executors.django_tasks import TasksFollower

            self._tasks = TasksFollower(self._finish, result_max_bytes=self.result_max_bytes)
        return self._tasks

    def _launch_tasks(self, active: _Active) -> None:
        self._tasks_follower().enqueue(active)

    def _ensure_monitor(self) -> None:
        if self._monitor is not None:
            return
        self._monitor_wake_r, self._monitor_wake_w = os.pipe()
        self._monitor = threading.Thread(
            target=self._watch_processes, name="rocket-monitor", daemon=True
        )
        self._monitor.start()

    def _watch_processes(self) -> None:
        while not self._closed:
            with self._lock:
                procs = {
                    a.handle.sentinel: a
                    for a in self._active.values()
                    if a.kind == "process" and a.handle is not None
                }
            ready = multiprocessing.connection.wait([*procs, self._monitor_wake_r])
            for item in ready:
                if item == self._monitor_wake_r:
                    os.read(self._monitor_wake_r, 4096)
                    continue
                self._reap(procs[item])

    def _reap(self, active: _Active) -> None:
        proc = active.handle
        data = None
        try:
            if active.conn.poll():
                data = active.conn.recv()
        except (EOFError, OSError):
            data = None
        proc.join(timeout=5)
        active.conn.close()
        if data is None:
            code = proc.exitcode
            if code is not None and code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = str(-code)
                message = f"The child process was killed by signal {name}."
            else:
                message = f"The child process exited with code {code} before reporting."
            data = {"status": FAIL, "message": message}
        self._finish(active.launch.run_id, data)

    # -- stopping

    def terminate(self, run_id: str, reason: str) -> None:
        """Ask a run to stop: kill a process, cancel a coroutine, flag a thread."""
        active = self._active.get(run_id)
        if active is None or active.terminate_reason:
            return
        if active.kind == "tasks":
            self._tasks_follower().terminate(active, reason)  # cancels if it can; reports
            return
        active.terminate_reason = reason
        active.stop_requested = True
        if active.kind == "process" and active.handle is not None:
            proc = active.handle
            _signal_group(proc, signal.SIGTERM)
            timer = threading.Timer(5.0, lambda: _signal_group(proc, signal.SIGKILL))
            timer.daemon = True
            timer.start()
        elif active.kind == "async" and active.handle is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(active.handle.cancel)

    def abandon(self, reason: str) -> None:
        """Report every run still going as terminated (used when shutdown cannot wait longer)."""
        for run_id in list(self._active):
            active = self._active.get(run_id)
            if active is None:
                continue
            if active.kind == "process" and active.handle is not None:
                _signal_group(active.handle, signal.SIGKILL)
            active.terminate_reason = active.terminate_reason or reason
            self._finish(run_id, {"status": TERMINATE})

    def poll(self, now: datetime) -> float | None:
        """Follow runs executed elsewhere; return seconds until the next poll is due, if any.

        Called once per scheduler tick. Local executions report by themselves; a
        remote execution backend checks its results here, batched, at a bounded rate.
        """
        return self._tasks.poll(now) if self._tasks is not None else None

    def close(self) -> None:
        self._closed = True
        self._workers.close()
        if self._tasks is not None:
            self._tasks.close()
        self._logs.close(timeout=2.0)
        if self._monitor_wake_w is not None:
            os.write(self._monitor_wake_w, b"x")
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
