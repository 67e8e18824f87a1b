"""Run one task in this process, outside the scheduler (``manage.py runtask``).

The run is recorded like any other: its row, with trigger ``manual``, is
committed before the function starts and updated when it ends, and its events
go to the ``django_rocket.task`` logger with the same attributes as the
scheduler's. If this process dies mid-run, the row stays ``running`` with this
host and pid, and the scheduler's crash recovery records it as ``crash``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from datetime import datetime

from django.db import DatabaseError, connection
from django.utils import timezone

from django_rocket import conf
from django_rocket.engine.runlog import FINISH_FIELDS, REFUSED
from django_rocket.executors.outcome import Ending, call_task, refused_note, storable
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun
from django_rocket.registry import TaskSpec

logger = logging.getLogger("django_rocket.scheduler")
task_logger = logging.getLogger("django_rocket.task")


def run_in_process(spec: TaskSpec, *, now: Callable[[], datetime] = timezone.now) -> TaskRun:
    """Run ``spec`` here and now; return its finished run. Call it outside a transaction."""
    task = _task_row(spec)
    started = now()
    run = TaskRun.objects.create(
        task=task,
        status=RunStatus.RUNNING,
        trigger=RunTrigger.MANUAL,
        started_at=started,
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    _log(run, "run")
    try:
        func = spec.load_function()
    except Exception:
        outcome: Ending = {
            "status": RunStatus.FAIL,
            "message": "Could not import the task function.",
            "exc_text": traceback.format_exc(),
        }
    else:
        outcome = call_task(func, spec.parameters, conf.result_max_bytes())
    run.status = outcome["status"]
    run.finished_at = now()
    run.runtime = run.finished_at - started
    run.message = storable(outcome.get("message", ""))
    run.exc_text = storable(outcome.get("exc_text", ""))
    run.result = outcome.get("result")
    _save_finish(run)
    _log(run, run.status)
    return run


def _task_row(spec: TaskSpec) -> Task:
    task, _ = Task.objects.get_or_create(
        name=spec.name,
        defaults={
            "func": spec.func,
            "start_cond": str(spec.start_cond),
            "end_cond": str(spec.end_cond) if spec.end_cond is not None else "",
            "execution": spec.execution,
            "description": spec.description,
            "enabled": spec.enabled,
        },
    )
    return task


def _save_finish(run: TaskRun) -> None:
    """Record the finish, retrying as ROCKET_LOG_RETRY says while the database is away."""
    policy = conf.log_retry()
    attempts = max(int(policy["attempts"]), 1)
    for attempt in range(attempts):
        try:
            run.save(update_fields=FINISH_FIELDS)
            return
        except REFUSED as exc:
            # Refused, not unreachable: record the run without what the database refused.
            logger.error("Run %s was refused as it ended (%s).", run.run_id, exc)
            run.message, run.exc_text, run.result = refused_note(exc), "", None
            run.save(update_fields=FINISH_FIELDS)
            return
        except DatabaseError:
            if attempt == attempts - 1:
                raise
            logger.warning(
                "Recording the finish of run %s failed (attempt %d); retrying.",
                run.run_id,
                attempt + 1,
                exc_info=True,
            )
            connection.close()
            time.sleep(min(policy["backoff"] * 2**attempt, policy["max_backoff"]))


def _log(run: TaskRun, action: str) -> None:
    level = logging.ERROR if action == RunStatus.FAIL else logging.INFO
    if not task_logger.isEnabledFor(level):
        return
    name = run.task.name
    end = run.finished_at if action != "run" else None
    runtime = (end - run.started_at).total_seconds() if end and run.started_at else None
    text = f"Task {name!r} {action}" + (f": {run.message}" if run.message else "")
    record = task_logger.makeRecord(
        task_logger.name,
        level,
        __file__,
        0,
        text,
        (),
        None,
        extra={
            "task_name": name,
            "run_id": str(run.run_id),
            "action": str(action),
            "start": run.started_at,
            "end": end,
            "runtime": runtime,
        },
    )
    record.exc_text = run.exc_text or None
    try:
        task_logger.handle(record)
    except Exception:
        logger.error("A handler on django_rocket.task raised.", exc_info=True)
