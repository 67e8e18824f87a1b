"""Hand runs to Django's Tasks framework and follow their results, batched.

A task declared with ``"execution": "tasks"`` is enqueued through ``django.tasks``
(Django >= 6.0) or the ``django-tasks`` backport (Django 5.2), so whatever worker
fleet serves that backend runs it. Every run is one call of :data:`call_in_worker`,
which receives the run id, the function's dotted path and its parameters, runs the
function in the worker, and returns how it ended (and where).

The scheduler's :class:`~django_rocket.executors.execution.Runner` asks :class:`TasksFollower`
to look at every result in flight at most once per ``ROCKET_POLL_INTERVAL``: one
query for all of them on django-tasks-db, one pipelined round trip on RQ, and a
bounded number of ``get_result()`` calls on any other backend. Finished results
become outcomes; the run row is updated with the worker's host in one statement.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from django.utils.module_loading import import_string

from django_rocket import TaskInaction, TaskTerminated, conf

logger = logging.getLogger("django_rocket.scheduler")

SUCCESS, FAIL, TERMINATE, INACTION, CRASH = "success", "fail", "terminate", "inaction", "crash"
READY, RUNNING, SUCCESSFUL, FAILED = "READY", "RUNNING", "SUCCESSFUL", "FAILED"
DEFAULT_ALIAS = DEFAULT_QUEUE = "default"
# Ids per look-up query: far below SQLite's and PostgreSQL's parameter limits.
DB_CHUNK = 900
# Results a backend without a batch look-up is asked about per poll.
GENERIC_PER_POLL = 50
MISSING_FRAMEWORK = (
    "execution 'tasks' needs Django's Tasks framework: django.tasks (Django >= 6.0) or, "
    "on Django 5.2, the django-tasks backport."
)
WORKER_NOTE = re.compile(r"^django-rocket: run (\S+) ran on (\S+) \(pid (\d+)\)\.$", re.MULTILINE)


# --- which Tasks framework -------------------------------------------------------------------


@functools.cache
def framework() -> SimpleNamespace | None:
    """Return Django's Tasks framework (``django.tasks`` or the backport), or None if absent."""
    for name in ("django.tasks", "django_tasks"):
        try:
            api = importlib.import_module(name)
            errors = importlib.import_module(f"{name}.exceptions")
            importlib.import_module(f"{name}.signals")  # resets backends when TASKS changes
        except ImportError:
            continue
        return SimpleNamespace(
            name=name,
            backends=api.task_backends,
            # The backport kept the names these errors had before Django adopted them.
            invalid_task=getattr(errors, "InvalidTask", None) or errors.InvalidTaskError,
            invalid_backend=(
                getattr(errors, "InvalidTaskBackend", None) or errors.InvalidTaskBackendError
            ),
            no_result=errors.TaskResultDoesNotExist,
        )
    return None


def django_task(obj: Any) -> Any | None:
    """Return ``obj`` if it is a Django Task (a function decorated with ``@task``), else None."""
    classes = tuple(
        module.Task
        for module in (sys.modules.get("django.tasks.base"), sys.modules.get("django_tasks.base"))
        if module is not None
    )
    return obj if classes and isinstance(obj, classes) else None


def plain_function(obj: Any) -> Any:
    """Return what a Django Task calls, as its parameters must fit it, or ``obj`` itself."""
    declared = django_task(obj)
    if declared is None:
        return obj
    # Django passes the context first; the declared parameters are the rest.
    return functools.partial(declared.func, None) if declared.takes_context else declared.func


def _is_immediate(backend: Any) -> bool:
    return type(backend).__name__ == "ImmediateBackend"


# --- what runs in the worker -----------------------------------------------------------------


def _call_in_worker(
    context: Any, run_id: str, func: str, parameters: dict[str, Any], max_bytes: int
) -> dict[str, Any]:
    """Run one django-rocket run in a worker; return how it ended, with the worker's host."""
    from asgiref.sync import async_to_sync

    from django_rocket.executors.execution import _encode_result

    where = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid()}
    try:
        target = import_string(func)
        declared = django_task(target)
        if declared is not None and declared.takes_context:
            value = declared.call(context, **parameters)
        elif declared is not None:
            value = declared.call(**parameters)
        elif inspect.iscoroutinefunction(target):
            value = async_to_sync(target)(**parameters)
        else:
            value = target(**parameters)
    except TaskInaction as exc:
        return {**where, "status": INACTION, "message": str(exc)}
    except TaskTerminated as exc:
        return {**where, "status": TERMINATE, "message": str(exc) or "Terminated on request."}
    except BaseException as exc:
        # The backend records the failure with this traceback; the note tells where it ran.
        exc.add_note(f"django-rocket: run {run_id} ran on {where['host']} (pid {where['pid']}).")
        raise
    result, note = _encode_result(value, max_bytes)
    return {**where, "status": SUCCESS, "result": result, "message": note}


# The backend finds a task by its function's dotted path and expects a Task object there.
# Building it on first access (module __getattr__) keeps TASKS untouched at import time.
_call_in_worker.__name__ = _call_in_worker.__qualname__ = "call_in_worker"


def __getattr__(name: str) -> Any:
    if name == "call_in_worker":
        return worker_task()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def worker_task(backend: str | None = None, queue: str | None = None, priority: int = 0) -> Any:
    """Return the Task that runs django-rocket runs, bound to a backend alias and queue."""
    api = framework()
    if api is None:
        raise ImportError(MISSING_FRAMEWORK)
    if backend is None:
        configured = list(api.backends.settings)
        backend = DEFAULT_ALIAS if DEFAULT_ALIAS in configured or not configured else configured[0]
    instance = api.backends[backend]
    if queue is None:
        queues = instance.queues
        queue = DEFAULT_QUEUE if not queues or DEFAULT_QUEUE in queues else sorted(queues)[0]
    return instance.task_class(
        func=_call_in_worker,
        backend=backend,
        queue_name=queue,
        priority=priority,
        takes_context=True,
    )


# --- options and checks ----------------------------------------------------------------------


def task_options(entry: dict[str, Any], target: Any) -> tuple[str, str, int]:
    """Return the backend alias, queue and priority a task's runs are enqueued with."""
    declared = django_task(target)
    backend = entry.get("backend") or (declared.backend if declared else DEFAULT_ALIAS)
    queue = entry.get("queue") or (declared.queue_name if declared else DEFAULT_QUEUE)
    priority = declared.priority if declared else 0
    return backend, queue, priority


def task_problems(name: str, entry: dict[str, Any], execution: str, target: Any) -> list[Any]:
    """Validate what execution 'tasks' needs of one task entry; return registry Problems."""
    from django_rocket.registry import Problem, parse_timeout

    def problem(id: str, msg: str, hint: str, warning: bool = False) -> Problem:
        return Problem(id, f"Task {name!r}: {msg}", hint, task=name, warning=warning)

    if execution != "tasks":
        found = []
        given = [key for key in ("backend", "queue") if key in entry]
        if given:
            found.append(
                problem(
                    "django_rocket.E054",
                    f"{' and '.join(given)} only apply to execution 'tasks', "
                    f"but its execution is {execution!r}.",
                    'Add "execution": "tasks", or remove the key.',
                )
            )
        if django_task(target) is not None:
            found.append(
                problem(
                    "django_rocket.E056",
                    f"func {entry.get('func')!r} is a Django Task (decorated with @task), "
                    f"which only execution 'tasks' can run; its execution is {execution!r}.",
                    'Add "execution": "tasks", or point func at an undecorated function.',
                )
            )
        return found
    api = framework()
    if api is None:
        return [
            problem(
                "django_rocket.E050",
                MISSING_FRAMEWORK,
                "Upgrade to Django 6.0 or later, or install the backport with "
                "'pip install django-tasks' (plus a backend such as django-tasks-db).",
            )
        ]
    found = []
    for key in ("backend", "queue"):
        if key in entry and (not isinstance(entry[key], str) or not entry[key]):
            found.append(
                problem(
                    "django_rocket.E051" if key == "backend" else "django_rocket.E052",
                    f"{key} must be a non-empty string, not {entry[key]!r}.",
                    f'Write e.g. "{key}": "default".',
                )
            )
    if found:
        return found
    try:
        json.dumps(entry.get("parameters", {}))
    except (TypeError, ValueError) as exc:
        found.append(
            problem(
                "django_rocket.E055",
                f"parameters must be JSON values to be enqueued ({exc}).",
                "Pass strings, numbers, booleans, None, lists and dicts only.",
            )
        )
    backend, queue, priority = task_options(entry, target)
    configured = list(api.backends.settings)
    if backend not in configured:
        found.append(
            problem(
                "django_rocket.E051",
                f"backend {backend!r} is not configured in TASKS.",
                f"Use one of {', '.join(map(repr, configured)) or 'no alias yet'}, "
                "or add it to the TASKS setting.",
            )
        )
        return found
    try:
        instance = api.backends[backend]
        worker_task(backend, queue, priority)
    except api.invalid_backend as exc:
        found.append(
            problem(
                "django_rocket.E051",
                f"backend {backend!r} cannot be loaded: {exc}",
                "Fix its BACKEND path in the TASKS setting.",
            )
        )
        return found
    except api.invalid_task as exc:
        found.append(
            problem(
                "django_rocket.E052",
                f"runs cannot be enqueued on backend {backend!r}, queue {queue!r}: {exc}",
                f"Use a queue listed in TASKS[{backend!r}]['QUEUES'], or add {queue!r} there.",
            )
        )
        return found
    if _is_immediate(instance):
        found.append(
            problem(
                "django_rocket.W051",
                f"backend {backend!r} is an ImmediateBackend: each run executes inside the "
                "scheduler's loop while it is enqueued.",
                "Fine for development; in production point TASKS at a backend with workers "
                "(django-tasks-db, django-tasks-rq, django-tasks-celery).",
                warning=True,
            )
        )
    elif not instance.supports_get_result:
        found.append(
            problem(
                "django_rocket.E053",
                f"backend {backend!r} ({type(instance).__name__}) cannot report results, "
                "so the scheduler could never learn how a run ended.",
                "Use a backend whose supports_get_result is True (django-tasks-db, "
                "django-tasks-rq, or django-tasks-celery with a result backend).",
            )
        )
    try:
        forever = parse_timeout(entry.get("timeout", conf.timeout())) is None
    except (TypeError, ValueError):
        forever = False  # reported as E010
    if forever:
        found.append(
            problem(
                "django_rocket.W050",
                "execution 'tasks' without a timeout: a result that never arrives (a worker "
                "killed mid-run, a lost queue) keeps the run 'running' for ever.",
                'Set "timeout" to a duration longer than any real run, e.g. "1 hour".',
                warning=True,
            )
        )
    return found


# --- what the backends say -------------------------------------------------------------------


@dataclass
class Seen:
    """What a backend reports about one result."""

    status: str
    worker: str = ""
    value: Any = None
    exception: str = ""
    traceback: str = ""


def seen_from_result(result: Any) -> Seen:
    """Describe a framework TaskResult (from either framework) as :class:`Seen`."""
    status = str(result.status)
    error = result.errors[-1] if result.errors else None
    return Seen(
        status=status,
        worker=result.worker_ids[-1] if result.worker_ids else "",
        value=result.return_value if status == SUCCESSFUL else None,
        exception=error.exception_class_path if error else "",
        traceback=error.traceback if error else "",
    )


@dataclass
class _Remote:
    active: Any
    backend: str
    queue: str
    result_id: str
    started: bool = False
    missing: int = 0

    @property
    def run_id(self) -> str:
        return self.active.launch.run_id

    def where(self) -> str:
        return f"backend {self.backend!r}, queue {self.queue!r}, result {self.result_id}"


class ResultReader:
    """Look up results of one backend; subclasses batch the look-ups."""

    def __init__(self, backend: Any, no_result: type[Exception]) -> None:
        self.backend = backend
        self.no_result = no_result
        self._cursor = 0

    def read(self, remotes: list[_Remote]) -> dict[str, Seen | None]:
        """Map result ids to what the backend says, None for a result it does not know.

        An id left out was not looked at this time. The generic way asks
        ``get_result()`` about a bounded share of the results per poll, round robin.
        """
        if not remotes:
            return {}
        start = self._cursor % len(remotes)
        share = (remotes[start:] + remotes[:start])[:GENERIC_PER_POLL]
        self._cursor = start + len(share)
        seen: dict[str, Seen | None] = {}
        for remote in share:
            try:
                seen[remote.result_id] = seen_from_result(self.backend.get_result(remote.result_id))
            except self.no_result:
                seen[remote.result_id] = None
        return seen

    def cancel(self, remote: _Remote, reason: str) -> str:
        """Stop the result's work if the backend can; return what was done, or ''."""
        return ""


class DatabaseReader(ResultReader):
    """django-tasks-db: one query for every result in flight (per 900)."""

    def read(self, remotes: list[_Remote]) -> dict[str, Seen | None]:
        from django_tasks_db.models import DBTaskResult

        ids = [remote.result_id for remote in remotes]
        seen: dict[str, Seen | None] = dict.fromkeys(ids)
        for start in range(0, len(ids), DB_CHUNK):
            rows = DBTaskResult.objects.filter(id__in=ids[start : start + DB_CHUNK]).values_list(
                "id", "status", "worker_ids", "return_value", "exception_class_path", "traceback"
            )
            for result_id, status, workers, value, exception, text in rows:
                failed = status == FAILED
                seen[str(result_id)] = Seen(
                    status=status,
                    worker=workers[-1] if workers else "",
                    value=value,
                    exception=exception if failed else "",
                    traceback=text if failed else "",
                )
        return seen

    def cancel(self, remote: _Remote, reason: str) -> str:
        from django.utils import timezone
        from django_tasks_db.models import DBTaskResult

        # Only a result no worker has claimed can be withdrawn; the status guard makes
        # this atomic against a worker claiming it at the same moment.
        withdrawn = DBTaskResult.objects.filter(id=remote.result_id, status=READY).update(
            status=FAILED,
            finished_at=timezone.now(),
            exception_class_path="django_rocket.TaskTerminated",
            traceback=f"Withdrawn by django-rocket before a worker took it: {reason}",
        )
        return "withdrawn from the queue before a worker took it" if withdrawn else ""


class RQReader(ResultReader):
    """django-tasks-rq: one pipelined round trip per queue for every job in flight."""

    def read(self, remotes: list[_Remote]) -> dict[str, Seen | None]:
        import django_rq
        from django_tasks_rq.backend import RQ_STATUS_TO_RESULT_STATUS, Job

        seen: dict[str, Seen | None] = {}
        by_queue: dict[str, list[str]] = {}
        for remote in remotes:
            by_queue.setdefault(remote.queue, []).append(remote.result_id)
        for queue, ids in by_queue.items():
            jobs: list[Any] = Job.fetch_many(ids, connection=django_rq.get_connection(queue))
            for result_id, job in zip(ids, jobs, strict=True):
                if job is None:
                    seen[result_id] = None
                    continue
                status = str(RQ_STATUS_TO_RESULT_STATUS.get(job.get_status(refresh=False), READY))
                if status in (SUCCESSFUL, FAILED):
                    # Once per run: the backend's own reading of a finished job.
                    seen[result_id] = seen_from_result(job.task_result)
                else:
                    seen[result_id] = Seen(status, worker=job.worker_name or "")
        return seen

    def cancel(self, remote: _Remote, reason: str) -> str:
        import django_rq
        from django_tasks_rq.backend import Job
        from rq.command import send_stop_job_command
        from rq.exceptions import NoSuchJobError
        from rq.job import JobStatus
        from rq.worker import Worker

        connection = django_rq.get_connection(remote.queue)
        try:
            job = Job.fetch(remote.result_id, connection=connection)
        except NoSuchJobError:
            return ""
        status = job.get_status(refresh=False)
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            job.cancel()
            return "cancelled in its queue before a worker took it"
        if status == JobStatus.STARTED and job.worker_name:
            key = Worker.redis_worker_namespace_prefix + job.worker_name
            if Worker.find_by_key(key, connection=connection) is None:
                return ""  # its worker is gone: nobody is left to stop it
            send_stop_job_command(connection, remote.result_id)
            return f"worker {job.worker_name} was told to stop it"
        return ""


def reader_for(backend: Any, no_result: type[Exception]) -> ResultReader:
    """Pick the cheapest way to follow a backend's results."""
    module = type(backend).__module__
    if module.startswith("django_tasks_db."):
        return DatabaseReader(backend, no_result)
    if module.startswith("django_tasks_rq."):
        return RQReader(backend, no_result)
    if module.startswith("django_tasks_celery."):  # issue 19 hook: moves to reader_for's new home
        from django_rocket.executors.celery_reader import CeleryReader

        return CeleryReader(backend, no_result)
    return ResultReader(backend, no_result)


# --- following runs --------------------------------------------------------------------------


class TasksFollower:
    """Enqueue runs on Django Tasks backends and turn their results into outcomes."""

    def __init__(
        self,
        finish: Callable[[str, dict[str, Any]], None],
        *,
        result_max_bytes: int,
    ) -> None:
        self._finish = finish
        self.result_max_bytes = result_max_bytes
        self.remote: dict[str, _Remote] = {}
        self._readers: dict[str, ResultReader] = {}
        self._next_read: datetime | None = None
        self._rows: dict[str, tuple[str, int | None, str]] = {}
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._failing: set[str] = set()

    # -- starting

    def enqueue(self, active: Any) -> None:
        """Enqueue one run; raise if the backend refuses it (the run is then a fail)."""
        launch = active.launch
        api = framework()
        if api is None:
            raise ImportError(MISSING_FRAMEWORK)
        target = import_string(launch.func)
        entry = conf.tasks().get(launch.task) or {}
        backend, queue, priority = task_options(entry, target)
        result = worker_task(backend, queue, priority).enqueue(
            run_id=launch.run_id,
            func=launch.func,
            parameters=launch.parameters,
            max_bytes=self.result_max_bytes,
        )
        remote = _Remote(active, backend, queue, str(result.id))
        active.handle = remote
        self.remote[remote.run_id] = remote
        if result.is_finished:  # a backend that runs at enqueue time (ImmediateBackend)
            self._settle(remote, seen_from_result(result))
        else:
            self._row(remote, f"Enqueued ({remote.where()}); waiting for a worker.")

    # -- following

    def poll(self, now: datetime) -> float | None:
        """Read results in flight if due; record what changed; return seconds until due."""
        if self.remote and (self._next_read is None or now >= self._next_read):
            self._next_read = now + timedelta(seconds=conf.poll_interval())
            self._read_all()
        self._write_rows()
        if not self.remote or self._next_read is None:
            return None
        return max((self._next_read - now).total_seconds(), 0.0)

    def _reader(self, alias: str) -> ResultReader:
        reader = self._readers.get(alias)
        if reader is None:
            api = framework()
            assert api is not None
            reader = self._readers[alias] = reader_for(api.backends[alias], api.no_result)
        return reader

    def _read_all(self) -> None:
        by_backend: dict[str, list[_Remote]] = {}
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

    def _update(self, remote: _Remote, seen: Seen | None) -> None:
        if seen is None:
            # Gone from the backend (deleted, expired, a queue lost): twice in a row, to be sure.
            remote.missing += 1
            if remote.missing >= 2:
                self._end(
                    remote,
                    CRASH,
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

    def _settle(self, remote: _Remote, seen: Seen) -> None:
        """Turn a finished result into the run's outcome."""
        if seen.status == SUCCESSFUL:
            report = seen.value if isinstance(seen.value, dict) else {}
            if report.get("run_id") != remote.run_id:
                # A plain task's return value, as its backend kept it: kept by the same rules.
                from django_rocket.executors.execution import _encode_result

                result, note = _encode_result(seen.value, self.result_max_bytes)
                report = {"status": SUCCESS, "result": result, "message": note}
            host = str(report.get("host") or "")
            pid = report.get("pid") if isinstance(report.get("pid"), int) else None
            data = {
                "status": report.get("status", SUCCESS),
                "message": report.get("message", ""),
                "result": report.get("result"),
            }
        else:
            host, pid = "", None
            match = WORKER_NOTE.search(seen.traceback or "")
            if match and match.group(1) == remote.run_id:
                host, pid = match.group(2), int(match.group(3))
            data = {
                "status": FAIL,
                "message": _failure_line(seen, remote),
                "exc_text": seen.traceback,
            }
        self._end(remote, data["status"], data.get("message", ""), data, host, pid)

    def _end(
        self,
        remote: _Remote,
        status: str,
        message: str,
        data: dict[str, Any] | None = None,
        host: str = "",
        pid: int | None = None,
    ) -> None:
        from django_rocket.executors.execution import storable

        self.remote.pop(remote.run_id, None)
        message = storable(message)
        if host:
            self._rows[remote.run_id] = (host, pid, message)
        else:
            self._rows.pop(remote.run_id, None)
        self._finish(remote.run_id, {**(data or {}), "status": status, "message": message})

    # -- stopping

    def terminate(self, active: Any, reason: str) -> None:
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
            self._end(remote, TERMINATE, f"{done}; {remote.where()}")
            return
        self._end(
            remote,
            CRASH,
            f"{reason} No result arrived from {remote.where()}, and the backend cannot stop "
            "its work: the worker may have died, or may still finish it (a late result is "
            "ignored).",
        )

    # -- the run rows

    def _row(self, remote: _Remote, message: str) -> None:
        self._rows[remote.run_id] = (self._host, self._pid, message)

    def _write_rows(self) -> None:
        """Write pending host/message changes of run rows in one statement."""
        if not self._rows:
            return
        from django.db import DatabaseError

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
        self._write_rows()


def _failure_line(seen: Seen, remote: _Remote) -> str:
    lines = [
        line.strip()
        for line in (seen.traceback or "").strip().splitlines()
        if line.strip() and not WORKER_NOTE.match(line.strip())
    ]
    if lines:
        return lines[-1][:2000]
    return f"The worker reported a failure ({seen.exception or 'no details'}; {remote.where()})."


def write_run_rows(rows: dict[str, tuple[str, int | None, str]]) -> None:
    """Set host, pid and message of runs by run id, with one ``executemany``."""
    from django.db import connection, transaction

    from django_rocket.models import TaskRun

    fields: list[Any] = [TaskRun._meta.get_field(name) for name in ("host", "pid", "message")]
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
