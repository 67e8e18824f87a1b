"""Handing a run whose row is committed to its executor, and what a failed hand-over is.

Three ways a launch can go wrong, each recorded as a ``fail`` run (never lost):

* a runtime task whose function is off ``ROCKET_TASK_FUNCTIONS`` is refused before
  anything is imported;
* the backend's own database write fails (django-tasks-db keeps its queue in the
  database): an outage, so the scheduler goes on whatever
  ``ROCKET_SILENCE_TASK_PRERUN`` says;
* anything else is the task's pre-run error: the caller stops the scheduler unless
  ``ROCKET_SILENCE_TASK_PRERUN`` is set (Rocketry's meaning of that setting).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import datetime

from django.db import DatabaseError

from django_rocket import registry
from django_rocket.executors.outcome import Launch, Outcome
from django_rocket.executors.runner import Runner
from django_rocket.models import RunStatus
from django_rocket.registry import TaskSpec

logger = logging.getLogger("django_rocket.scheduler")


def launch(
    runner: Runner,
    spec: TaskSpec,
    run_id: str,
    report: Callable[[Outcome], None],
    now: Callable[[], datetime],
) -> Exception | None:
    """Start the run; report a failed start as ``fail``.

    Return the task's pre-run error (the caller decides whether it stops the
    scheduler), or None when the run started or its failure was not the task's.
    """
    refusal = registry.loaded_refusal(spec.func) if spec.source == registry.RUNTIME else ""
    if refusal:
        # Whatever the row says, a function off ROCKET_TASK_FUNCTIONS is never imported.
        logger.error("Runtime task %r refused: %s", spec.name, refusal)
        report(Outcome(run_id, spec.name, RunStatus.FAIL, now(), message=refusal))
        return None
    try:
        runner.launch(
            Launch(
                run_id,
                spec.name,
                spec.func,
                spec.parameters,
                spec.execution,
                spec.backend,
                spec.queue,
                spec.timeout if spec.execution == "main" else None,
            )
        )
    except DatabaseError as exc:
        report(
            _failed(
                spec,
                run_id,
                now(),
                "The run could not be handed to its backend (the database did not answer)",
                exc,
            )
        )
        logger.error(
            "Task %r could not be handed to its backend; recorded as fail.",
            spec.name,
            exc_info=True,
        )
        return None
    except Exception as exc:
        report(_failed(spec, run_id, now(), "The run could not be started", exc))
        return exc
    return None


def _failed(spec: TaskSpec, run_id: str, now: datetime, what: str, exc: Exception) -> Outcome:
    return Outcome(
        run_id,
        spec.name,
        RunStatus.FAIL,
        now,
        message=f"{what}: {type(exc).__name__}: {exc}",
        exc_text=traceback.format_exc(),
    )
