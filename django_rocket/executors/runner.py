"""Start runs in their execution mode and report each outcome exactly once.

The :class:`Runner` is what the scheduler talks to. It dispatches each launch to its
executor, :mod:`~django_rocket.executors.local` (main, thread, async),
:mod:`~django_rocket.executors.process` or
:mod:`~django_rocket.executors.django_tasks` (Django's Tasks framework), and turns
every ending into one :class:`~django_rocket.executors.outcome.Outcome`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django_rocket.executors.django_tasks.follower import TasksFollower
from django_rocket.executors.local import (
    EventLoop,
    ThreadWorkers,
    autocommit_again,
    revive_idle_connection,
    settle_connections,
    statement_killer,
    thread_job,
)
from django_rocket.executors.mainstop import MainRunStop
from django_rocket.executors.outcome import (
    ActiveRun,
    Ending,
    Launch,
    Outcome,
    Report,
    bounded,
    call_task,
    load_function,
    storable,
)
from django_rocket.executors.process import ProcessExecutor, with_end
from django_rocket.models import RunStatus


class Runner:
    """Start runs in the requested execution mode and report each outcome exactly once."""

    def __init__(
        self,
        report: Report,
        now: Callable[[], datetime],
        *,
        max_processes: int | None = None,
        max_threads: int | None = None,
        on_thread_free: Callable[[], None] | None = None,
        result_max_bytes: int = 65536,
        preload: list[str] | None = None,
    ) -> None:
        self._report = report
        self._now = now
        self.max_processes = max_processes or os.cpu_count() or 1
        self.max_threads = max_threads  # None: no limit
        self.result_max_bytes = result_max_bytes
        self._active: dict[str, ActiveRun] = {}  # runs in progress: popped as they finish
        self._lock = threading.Lock()
        self._processes = ProcessExecutor(
            self._finish,
            self._process_runs,
            now=now,
            max_bytes=result_max_bytes,
            preload=preload or [],
        )
        self._loop = EventLoop()
        self._tasks: TasksFollower | None = None  # once a run uses execution "tasks"
        # Told when a thread frees only if threads are capped: otherwise no one waits for one.
        self._workers = ThreadWorkers(on_free=on_thread_free if max_threads else None)
        self._functions: dict[str, Callable[..., Any]] = {}  # one per task function path
        # What a timeout or a stop request does to a main run in progress.
        self.main_stop = MainRunStop(statement_killer)
        self._launchers: dict[str, Callable[[ActiveRun], None]] = {
            "main": self._launch_main,
            "thread": self._launch_thread,
            "async": self._launch_async,
            "process": self._launch_process,
            "tasks": self._launch_tasks,
        }

    def _function(self, path: str) -> Callable[..., Any]:
        """The task function for a dotted path, imported once per scheduler."""
        func = self._functions.get(path)
        if func is None:
            func = self._functions[path] = load_function(path)
        return func

    # -- bookkeeping

    @property
    def in_flight(self) -> int:
        """Count the runs started and not yet reported."""
        return len(self._active)

    def _process_runs(self) -> list[ActiveRun]:
        with self._lock:
            return [a for a in self._active.values() if a.kind == "process"]

    def process_slots(self) -> int:
        """Return how many more process runs may start now."""
        return max(self.max_processes - len(self._process_runs()), 0)

    def thread_slots(self) -> int | None:
        """Return how many more thread runs may start now; None if ROCKET_MAX_THREADS is None.

        Counted in threads, not runs: a run whose timeout or end condition flagged it but
        whose function goes on keeps its thread, and its slot, until the function returns.
        """
        if self.max_threads is None:
            return None
        return max(self.max_threads - self._workers.busy, 0)

    def is_running(self, run_id: str) -> bool:
        """Return True while the run is started and not yet reported."""
        return run_id in self._active

    def ended(self, run_id: str) -> bool:
        """Whether a process run's function has ended while its child is still to be reaped."""
        active = self._active.get(run_id)
        return active is not None and active.ended_at is not None

    def _finish(self, run_id: str, ending: Ending) -> None:
        with self._lock:
            active = self._active.pop(run_id, None)
        if active is None:
            return
        ending = bounded(ending, self.result_max_bytes)
        status = ending.get("status", RunStatus.FAIL.value)
        message = ending.get("message", "")
        if active.terminate_reason:
            status = RunStatus.TERMINATE.value
            message = active.terminate_reason + (f" ({message})" if message else "")
        now = self._now()
        self._report(
            Outcome(
                run_id=run_id,
                task=active.launch.task,
                status=status,
                finished_at=min(ending.get("finished_at") or now, now),
                message=storable(message),
                exc_text=storable(ending.get("exc_text") or ""),
                result=ending.get("result"),
                exception_types=tuple(ending.get("exception_types") or ()),
            )
        )

    # -- launching

    def launch(self, launch: Launch) -> None:
        """Start the run; raise if it cannot be started (the caller records that as a fail)."""
        active = ActiveRun(launch, launch.execution)
        with self._lock:
            self._active[launch.run_id] = active
        try:
            self._launchers[launch.execution](active)
        except BaseException:
            with self._lock:
                self._active.pop(launch.run_id, None)
            raise

    def _launch_main(self, active: ActiveRun) -> None:
        launch = active.launch
        func = self.main_stop.wrap(launch.task, self._function(launch.func), launch.timeout)
        ending = call_task(func, launch.parameters, self.result_max_bytes)
        stopped = ending.get("status") == RunStatus.TERMINATE  # perhaps mid-statement
        settle_connections(launch.task, stopped=stopped)
        autocommit_again(launch.task)  # it ran on the scheduler's own connection
        revive_idle_connection()  # which sat idle while it ran
        self._finish(launch.run_id, ending)

    def _launch_thread(self, active: ActiveRun) -> None:
        func = self._function(active.launch.func)
        self._workers.submit(thread_job(active, func, self.result_max_bytes, self._finish))

    def _launch_async(self, active: ActiveRun) -> None:
        self._loop.start(
            active, self._function(active.launch.func), self.result_max_bytes, self._finish
        )

    def _launch_process(self, active: ActiveRun) -> None:
        self._processes.start(active)

    def _tasks_follower(self) -> TasksFollower:
        if self._tasks is None:
            self._tasks = TasksFollower(self._finish, result_max_bytes=self.result_max_bytes)
        return self._tasks

    def _launch_tasks(self, active: ActiveRun) -> None:
        self._tasks_follower().enqueue(active)

    def adopt(self, launch: Launch, backend: str, queue: str, result_id: str) -> None:
        """Follow a run another scheduler handed to a Tasks framework backend."""
        active = ActiveRun(launch, "tasks")
        with self._lock:
            self._active[launch.run_id] = active
        self._tasks_follower().adopt(active, backend, queue, result_id)

    def flush(self) -> None:
        """Note where the runs just handed to backends went (one statement for the batch)."""
        if self._tasks is not None:
            self._tasks.flush()

    def leave_remote(self) -> list[str]:
        """Stop following the runs on worker backends, leaving them running; return their ids.

        The next active scheduler adopts them.
        """
        if self._tasks is None:
            return []
        left = self._tasks.leave()
        with self._lock:
            for run_id in left:
                self._active.pop(run_id, None)
        return left

    def local_runs(self) -> list[str]:
        """Return the ids of the runs this process executes itself."""
        with self._lock:
            return [run_id for run_id, a in self._active.items() if a.kind != "tasks"]

    # -- stopping

    def terminate(self, run_id: str, reason: str) -> None:
        """Ask a run to stop: kill a process, cancel a coroutine, flag a thread."""
        active = self._active.get(run_id)
        if active is None or active.terminate_reason or active.ended_at is not None:
            # Ended already: a process run whose function returned (or whose child died)
            # keeps its own outcome while its child exits; stopping it now would be a lie.
            return
        if active.kind == "tasks":
            self._tasks_follower().terminate(active, reason)  # cancels if it can; reports
            return
        active.terminate_reason = reason
        active.stop_requested = True
        if active.kind == "process":
            self._processes.terminate(active)
        elif active.kind == "async":
            self._loop.cancel(active)

    def abandon(self, reason: str) -> None:
        """Report every run still going as terminated (used when shutdown cannot wait longer)."""
        for run_id in list(self._active):
            active = self._active.get(run_id)
            if active is None:
                continue
            if active.kind == "process":
                self._processes.kill(active)
            if active.ended_at is not None:
                # Its function had ended; only its child was still exiting.
                ending = active.ending or {
                    "status": RunStatus.FAIL.value,
                    "message": "The child process ended without reporting.",
                }
                self._finish(run_id, with_end(active, ending))
                continue
            active.terminate_reason = active.terminate_reason or reason
            self._finish(run_id, {"status": RunStatus.TERMINATE.value})

    def poll(self, now: datetime) -> float | None:
        """Follow runs executed elsewhere; return seconds until the next poll is due, if any.

        Called once per scheduler tick. Local executions report by themselves; a
        remote execution backend checks its results here, batched, at a bounded rate.
        """
        return self._tasks.poll(now) if self._tasks is not None else None

    def close(self) -> None:
        """Stop the workers, the follower, the process monitor and the event loop."""
        self._workers.close()
        if self._tasks is not None:
            self._tasks.close()
        self._processes.close()
        self._loop.stop()
