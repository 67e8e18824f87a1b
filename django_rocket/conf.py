"""One accessor per ``ROCKET_*`` setting, with its default beside it.

Nothing is cached, so ``override_settings`` works in tests. Values are returned
as written; ``checks.py`` validates them and the services convert them
(:func:`parse_timeout` converts a timeout, for the registry and the checks alike).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django.conf import settings

from django_rocket.conditions import parse_duration

DEFAULTS: dict[str, Any] = {
    "ROCKET_TASKS": {},
    "ROCKET_TIME_ZONE": None,  # None: use TIME_ZONE
    "ROCKET_EXECUTION": "process",
    "ROCKET_TIMEOUT": "30 minutes",
    "ROCKET_MAX_PROCESSES": None,  # None: os.cpu_count()
    "ROCKET_CONDITION_MODULES": [],
    "ROCKET_SILENCE_TASK_PRERUN": False,
    "ROCKET_SILENCE_TASK_LOGGING": False,
    "ROCKET_SILENCE_COND_CHECK": False,
    "ROCKET_LOG_RETRY": {"attempts": 5, "backoff": 0.5, "max_backoff": 30.0},
    "ROCKET_SPOOL_DIR": None,  # None: a directory under the system temp dir
    "ROCKET_SHUTDOWN_GRACE": "30 seconds",
    "ROCKET_POLL_INTERVAL": 1.0,
    "ROCKET_HEARTBEAT": "5 seconds",
    "ROCKET_LEASE_TIMEOUT": "30 seconds",
    "ROCKET_RESULT_MAX_BYTES": 65536,
    "ROCKET_RUN_RETENTION": None,
    "ROCKET_ALERTS": {},
    "ROCKET_ADMIN_BASE_URL": None,
    "ROCKET_HEALTH_MAX_AGE": 60,
}

TASK_KEYS: dict[str, str] = {
    "func": "dotted path of the function to run (required)",
    "start_cond": "condition text or object deciding when the task starts (required)",
    "end_cond": "condition that terminates a running run when it becomes true",
    "execution": "'process', 'thread', 'async', 'main' or 'tasks' (Django's Tasks framework)",
    "timeout": "a duration such as '10 minutes', seconds, or 'never'",
    "parameters": "keyword arguments passed to the function (a dict)",
    "multilaunch": "allow a new run while one is in progress (default False)",
    "enabled": "initial pause switch for a newly declared task (default True)",
    "description": "a sentence shown in the admin",
    "backend": "execution 'tasks': the alias in TASKS to enqueue on (default 'default')",
    "queue": "execution 'tasks': the queue name to enqueue on (default 'default')",
}

EXECUTIONS = ("process", "thread", "async", "main", "tasks")


def raw(name: str) -> Any:
    """Return the ``ROCKET_*`` setting ``name`` as written, or its default."""
    return getattr(settings, name, DEFAULTS[name])


def parse_timeout(value: Any) -> timedelta | None:
    """Return a timeout as a timedelta, or None for ``"never"``; raise ValueError if bad."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "never"):
        return None
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError("a timeout must be positive")
    return duration


def tasks() -> dict[str, Any]:
    return cast("dict[str, Any]", raw("ROCKET_TASKS"))  # as written; checks.py validates it


def time_zone() -> str:
    return raw("ROCKET_TIME_ZONE") or settings.TIME_ZONE or "UTC"


def execution() -> str:
    return cast("str", raw("ROCKET_EXECUTION"))  # as written; checks.py validates it


def timeout() -> Any:
    return raw("ROCKET_TIMEOUT")


def max_processes() -> int | None:
    return cast("int | None", raw("ROCKET_MAX_PROCESSES"))  # as written; checks.py validates it


def condition_modules() -> list[str]:
    return list(raw("ROCKET_CONDITION_MODULES"))


def silence_task_prerun() -> bool:
    return bool(raw("ROCKET_SILENCE_TASK_PRERUN"))


def silence_task_logging() -> bool:
    return bool(raw("ROCKET_SILENCE_TASK_LOGGING"))


def silence_cond_check() -> bool:
    return bool(raw("ROCKET_SILENCE_COND_CHECK"))


def log_retry() -> dict[str, float]:
    value = dict(DEFAULTS["ROCKET_LOG_RETRY"])
    value.update(raw("ROCKET_LOG_RETRY") or {})
    return value


def spool_dir() -> str | None:
    return cast("str | None", raw("ROCKET_SPOOL_DIR"))  # as written; checks.py validates it


def shutdown_grace() -> Any:
    return raw("ROCKET_SHUTDOWN_GRACE")


def poll_interval() -> float:
    return float(raw("ROCKET_POLL_INTERVAL"))


def heartbeat() -> Any:
    return raw("ROCKET_HEARTBEAT")


def lease_timeout() -> Any:
    return raw("ROCKET_LEASE_TIMEOUT")


def result_max_bytes() -> int:
    return int(raw("ROCKET_RESULT_MAX_BYTES"))


def run_retention() -> Any:
    return raw("ROCKET_RUN_RETENTION")


def alerts() -> dict[str, Any]:
    return raw("ROCKET_ALERTS") or {}


def admin_base_url() -> str | None:
    return cast("str | None", raw("ROCKET_ADMIN_BASE_URL"))  # as written; checks.py validates it


def health_max_age() -> float:
    return float(raw("ROCKET_HEALTH_MAX_AGE"))
