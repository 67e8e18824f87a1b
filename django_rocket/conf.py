"""One accessor per ``ROCKET_*`` setting, with its default beside it.

Nothing is cached, so ``override_settings`` works in tests. Values are returned
as written; ``checks.py`` validates them and the services convert them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

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


def _get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def tasks() -> dict[str, Any]:
    return _get("ROCKET_TASKS")


def time_zone() -> str:
    return _get("ROCKET_TIME_ZONE") or settings.TIME_ZONE or "UTC"


def execution() -> str:
    return _get("ROCKET_EXECUTION")


def timeout() -> Any:
    return _get("ROCKET_TIMEOUT")


def max_processes() -> int | None:
    return _get("ROCKET_MAX_PROCESSES")


def condition_modules() -> list[str]:
    return list(_get("ROCKET_CONDITION_MODULES"))


def silence_task_prerun() -> bool:
    return bool(_get("ROCKET_SILENCE_TASK_PRERUN"))


def silence_task_logging() -> bool:
    return bool(_get("ROCKET_SILENCE_TASK_LOGGING"))


def silence_cond_check() -> bool:
    return bool(_get("ROCKET_SILENCE_COND_CHECK"))


def log_retry() -> dict[str, float]:
    value = dict(DEFAULTS["ROCKET_LOG_RETRY"])
    value.update(_get("ROCKET_LOG_RETRY") or {})
    return value


def spool_dir() -> str | None:
    return _get("ROCKET_SPOOL_DIR")


def shutdown_grace() -> Any:
    return _get("ROCKET_SHUTDOWN_GRACE")


def poll_interval() -> float:
    return float(_get("ROCKET_POLL_INTERVAL"))


def heartbeat() -> Any:
    return _get("ROCKET_HEARTBEAT")


def lease_timeout() -> Any:
    return _get("ROCKET_LEASE_TIMEOUT")


def result_max_bytes() -> int:
    return int(_get("ROCKET_RESULT_MAX_BYTES"))


def run_retention() -> Any:
    return _get("ROCKET_RUN_RETENTION")


def alerts() -> dict[str, Any]:
    return _get("ROCKET_ALERTS") or {}


def admin_base_url() -> str | None:
    return _get("ROCKET_ADMIN_BASE_URL")


def health_max_age() -> float:
    return float(_get("ROCKET_HEALTH_MAX_AGE"))
