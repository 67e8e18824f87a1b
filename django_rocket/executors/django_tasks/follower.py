"""Enqueue runs on Tasks framework backends and turn their results into endings."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils.module_loading import import_string

from django_rocket.conf import conf
from django_rocket.executors.django_tasks.celery_reader import CeleryReader
from django_rocket.executors.django_tasks.checks import task_options
from django_rocket.executors.django_tasks.framework import (
    FAILED,
    MISSING_FRAMEWORK,
    RUNNING,
    SUCCESSFUL,
    framework,
)
from django_rocket.executors.django_tasks.readers import (
    DatabaseReader,
    Remote,
    ResultReader,
    RQReader,
    Seen,
    seen_from_result,
)
from django_rocket.executors.django_tasks.worker import TYPES_NOTE, WORKER_NOTE, worker_task
from django_rocket.executors.outcome import ActiveRun, Ending, Finish, encode_result, storable
from django_rocket.models import RunStatus, TaskRun

logger = logging.getLogger("django_rocket.scheduler")

RunRow = tuple[str, int | None, str, str, str, str]  # host, pid, message, backend, queue, id
ROW_FIELDS = ("host", "pid", "message", "remote_backend", "remote_queue", "remote_id")


class TasksFollower:
    """Enqueue runs on Django Tasks backends and turn their results into outcomes."""

    def __init__(self, finish: Finish, *, result_max_bytes: int) -> None:
        self._finish = finish
        self.result_max_bytes = result_max_bytes
        # Bounded: runs in progress (popped as they end), one reader and one failing flag
        # per backend alias, and row updates not yet written (deleted once written).
        self.remote: dict[str, Remote] = {}
        self._readers: dict[str, ResultReader] = {}
        self._next_read: datetime | None = None
        self._rows: dict[str, RunRow] = {}
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._failing: set[str] = set()

    # -- starting

    def enqueue(self, active: ActiveRun) -> None:
        """Enqueue one run; raise if the backend refuses it (the run is then a fail)."""
        launch = active.launch
        api = framework()
        if api is None:
            raise ImportError(MISSING_FRAMEWORK)
        target = import_string(launch.func)
        entry = {"backend": launch.backend, "queue": launch.queue}
        backend, queue, priority = task_options(entry, target)
        result = worker_task(backend, queue, priority).enqueue(
            run_id=launch.run_id,
            func=launch.func,
            parameters=launch.parameters,
            max_bytes=self.result_max_bytes,
        )
        remote = Remote(active, backend, queue, str(result.id))
        self.remote[remote.run_id] = remote
        # Noted on the run's row at once (see flush): from then on, the run is the
        # cluster's, and whichever scheduler is active follows it.
        self._row(remote, f"Enqueued ({remote.where()}); waiting for a worker.")
        if result.is_finished:  # a backend that runs at enqueue time (ImmediateBackend)
            self._settle(remote, seen_from_result(result))

    def adopt(self, active: ActiveRun, backend: str, queue: str, result_id: str) -> None:
        """Follow a run another scheduler enqueued, from what its row says of where it went.

        A backend no longer configured cannot be asked: the run is then ``crash``.
        """
        remote = Remote(active, backend, queue, result_id)
        self.remote[remote.run_id] = remote
        self._next_read = None  # read it at the next poll
        try:
            self._reader(backend)
        except Exception as exc:
            self._end(
                remote,
                RunStatus.CRASH.value,
                f"This run was enqueued on task backend {backend!r}, which is no longer "
                f"configured ({type(exc).__name__}: {exc}), so how it ended is unknown.",
            )

    # -- following

    def poll(self, now: datetime) -> float | None:
        """Read results in flight if due; record what changed; return seconds until due."""
        if self.remote and (self._next_read is None or now >= self._next_read):
            self._next_read = now + timedelta(seconds=conf.poll_interval)
            self._read_all()
        self._write_rows()
        if not self.remote or self._next_read is None:
            return None
        return max((self._next_read - now).total_seconds(), 0.0)

    def _reader(self, alias: str) -> ResultReader:
        reader = self._readers.get(alias)
        if reader is None:
            api = framework()
            if api is None:
                raise ImportError(MISSING_FRAMEWORK)
            reader = self._readers[alias] = reader_for(api.backends[alias], api.no_result)
        return reader

    def _read_all(self) -> None:
        by_backend: dict[str, list[Remote]] = {}
        for remote in self.remote.values():
            by_backend.setdefault(remote.backend, []).append(remote)
        for alias, remotes in by_backend.items():
            try:
                seen = self._reader(alias).read(remotes)
            except Exception:
                # The timeout still applies; say so once per outage, not once per poll.
                if alias not in self._failing:
                    logger.warning(
                        "Could not read results from task backend %r; will retry.",
                        alias,
                        exc_info=True,
                    )
                self._failing.add(alias)
                continue
            if alias in self._failing:
                self._failing.discard(alias)
                logger.info("Task backend %r answers again.", alias)
            for remote in remotes:
                if remote.result_id in seen:
                    self._update(remote, seen[remote.result_id])

    def _update(self, remote: Remote, seen: Seen | None) -> None:
        if seen is None:
            # Gone from the backend (deleted, expired, a queue lost): twice in a row, to be sure.
            remote.missing += 1
            if remote.missing >= 2:
                self._end(
                    remote,
                    RunStatus.CRASH.value,
                    f"The backend no longer knows this run's result ({remote.where()}): it was "
                    "deleted, expired or lost with its queue, so how the run ended is unknown.",
                )
            return
        remote.missing = 0
        if seen.status in (SUCCESSFUL, FAILED):
            self._settle(remote, seen)
        elif seen.status == RUNNING and not remote.started:
            remote.started = True
            worker = f"worker {seen.worker}" if seen.worker else "a worker"
            self._row(remote, f"Running on {worker} ({remote.where()}).")

    def _settle(self, remote: Remote, seen: Seen) -> None:
        """Turn a finished result into the run's outcome."""
        host: str
        pid: int | None
        if seen.status == SUCCESSFUL:
            report: dict[str, Any] = seen.value if isinstance(seen.value, dict) else {}
            if report.get("run_id") != remote.run_id:
                # A plain task's return value, as its backend kept it: kept by the same rules.
                result, note = encode_result(seen.value, self.result_max_bytes)
                report = {"status": RunStatus.SUCCESS.value, "result": result, "message": note}
            host = str(report.get("host") or "")
            pid = report.get("pid") if isinstance(report.get("pid"), int) else None
            ending: Ending = {
                "status": report.get("status", RunStatus.SUCCESS.value),
                "message": report.get("message", ""),
                "result": report.get("result"),
            }
        else:
            host, pid = "", None
            match = WORKER_NOTE.search(seen.traceback or "")
            if match and match.group(1) == remote.run_id:
                host, pid = match.group(2), int(match.group(3))
            types = TYPES_NOTE.search(seen.traceback or "")
            ending = {
                "status": RunStatus.FAIL.value,
                "message": _failure_line(seen, remote),
                "exc_text": seen.traceback,
                # Without the note (a plain @task's failure): the class the backend kept.
                "exception_types": (
                    types.group(1).split(", ") if types else [seen.exception] * bool(seen.exception)
                ),
            }
        if seen.finished_at is not None:
            # The worker's time, not this scheduler's: a run adopted after a long outage
            # keeps its true runtime.
            ending["finished_at"] = seen.finished_at
        self._end(remote, ending["status"], ending.get("message", ""), ending, host, pid)

    def _end(
        self,
        remote: Remote,
        status: str,
        message: str,
        ending: Ending | None = None,
        host: str = "",
        pid: int | None = None,
    ) -> None:
        self.remote.pop(remote.run_id, None)
        message = storable(message)
        pending = self._rows.get(remote.run_id)
        if host:
            self._rows[remote.run_id] = (host, pid, message, *remote.ref())
        elif pending is not None:
            # Not yet noted on the row: note where it went, with the final message (the
            # finish writes the message too; this write must not undo it).
            self._rows[remote.run_id] = (pending[0], pending[1], message, *remote.ref())
        self._finish(remote.run_id, {**(ending or {}), "status": status, "message": message})

    # -- stopping

    def terminate(self, active: ActiveRun, reason: str) -> None:
        """Stop following a run: withdraw or stop its work if the backend can, and report it.

        Stopped or withdrawn, the run is ``terminate``. Started on a worker that cannot be
        told to stop (or that is gone), nobody can say how it ends: the run is ``crash``.
        """
        remote = self.remote.get(active.launch.run_id)
        if remote is None:
            return
        try:
            done = self._reader(remote.backend).cancel(remote, reason)
        except Exception:
            logger.warning("Could not cancel %s.", remote.where(), exc_info=True)
            done = ""
        if done:
            active.terminate_reason = reason  # the runner puts the reason first
            self._end(remote, RunStatus.TERMINATE.value, f"{done}; {remote.where()}")
            return
        self._end(
            remote,
            RunStatus.CRASH.value,
            f"{reason} No result arrived from {remote.where()}, and the backend cannot stop "
            "its work: the worker may have died, or may still finish it (a late result is "
            "ignored).",
        )

    def leave(self) -> list[str]:
        """Stop following every run, without ending any; return their run ids.

        Their rows stay ``running`` with where they went, and the next active scheduler
        adopts them (see :mod:`django_rocket.engine.recovery`).
        """
        left = list(self.remote)
        self.remote.clear()
        self._write_rows()
        return left

    # -- the run rows

    def _row(self, remote: Remote, message: str) -> None:
        self._rows[remote.run_id] = (self._host, self._pid, message, *remote.ref())

    def flush(self) -> None:
        """Note the runs just enqueued on their rows, so another scheduler can adopt them."""
        self._write_rows()

    def _write_rows(self) -> None:
        """Write pending host/message changes of run rows in one statement."""
        if not self._rows:
            return
        rows = dict(self._rows)
        try:
            write_run_rows(rows)
        except DatabaseError:
            logger.warning("Could not update %d run row(s); will retry.", len(rows), exc_info=True)
            return
        for run_id, values in rows.items():
            if self._rows.get(run_id) == values:
                del self._rows[run_id]

    def close(self) -> None:
        """Write the run rows still pending."""
        self._write_rows()


def _failure_line(seen: Seen, remote: Remote) -> str:
    lines = [
        line.strip()
        for line in (seen.traceback or "").strip().splitlines()
        if line.strip()
        and not WORKER_NOTE.match(line.strip())
        and not TYPES_NOTE.match(line.strip())
    ]
    if lines:
        return lines[-1][:2000]
    return f"The worker reported a failure ({seen.exception or 'no details'}; {remote.where()})."


def write_run_rows(rows: dict[str, RunRow]) -> None:
    """Set host, pid, message and where they went of runs by run id, in one ``executemany``."""
    fields: list[Any] = [TaskRun._meta.get_field(name) for name in ROW_FIELDS]
    key: Any = TaskRun._meta.get_field("run_id")
    qn = connection.ops.quote_name
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        qn(TaskRun._meta.db_table),
        ", ".join(f"{qn(f.column)} = %s" for f in fields),
        qn(key.column),
    )
    params = [
        [
            *(f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True)),
            key.get_db_prep_save(run_id, connection),
        ]
        for run_id, values in rows.items()
    ]
    with transaction.atomic(), connection.cursor() as cursor:  # one commit, not one per row
        cursor.executemany(sql, params)


def reader_for(backend: object, no_result: type[Exception]) -> ResultReader:
    """Pick the cheapest way to follow a backend's results."""
    module = type(backend).__module__
    if module.startswith("django_tasks_db."):
        return DatabaseReader(backend, no_result)
    if module.startswith("django_tasks_rq."):
        return RQReader(backend, no_result)
    if module.startswith("django_tasks_celery."):
        return CeleryReader(backend, no_result)
    return ResultReader(backend, no_result)
