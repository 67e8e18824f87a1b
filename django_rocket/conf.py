"""The ``ROCKET_*`` settings: one typed object, :data:`conf`, with the defaults beside it.

Code and system checks read settings only through ``conf`` (``conf.poll_interval``,
``conf.raw("ROCKET_TASKS")``). Nothing is cached, so ``override_settings`` works in
tests. Values are returned as written; ``checks.py`` validates them and the services
convert them (:func:`parse_timeout` converts a timeout, for the registry and the checks
alike).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django.conf import settings

from django_rocket.conditions import parse_duration

# A duration as settings spell it: "10 minutes", a number of seconds, or a timedelta.
Duration = str | int | float | timedelta

DEFAULTS: dict[str, Any] = {
    "ROCKET_TASKS": {},
    "ROCKET_TIME_ZONE": None,  # None: use TIME_ZONE
    "ROCKET_EXECUTION": "process",
    "ROCKET_TIMEOUT": "30 minutes",
    "ROCKET_MAX_PROCESSES": None,  # None: os.cpu_count()
    "ROCKET_MAX_THREADS": None,  # None: no limit
    "ROCKET_CONDITION_MODULES": [],
    "ROCKET_SILENCE_TASK_PRERUN": False,
    "ROCKET_SILENCE_TASK_LOGGING": False,
    "ROCKET_SILENCE_COND_CHECK": False,
    "ROCKET_LOG_RETRY": {"attempts": 5, "backoff": 0.5, "max_backoff": 30.0},
    "ROCKET_SPOOL_DIR": None,  # None: one per database under $XDG_STATE_HOME/django-rocket
    "ROCKET_SHUTDOWN_GRACE": "30 seconds",
    "ROCKET_STOP_REMOTE_RUNS_AT_SHUTDOWN": False,
    "ROCKET_POLL_INTERVAL": 1.0,
    "ROCKET_LISTEN_DATABASE": "default",  # None: no LISTEN/NOTIFY, the poll alone
    "ROCKET_HEARTBEAT": "5 seconds",
    "ROCKET_LEASE_TIMEOUT": "30 seconds",
    "ROCKET_RESULT_MAX_BYTES": 65536,
    "ROCKET_RUN_RETENTION": None,
    "ROCKET_ALERTS": {},
    "ROCKET_ADMIN_BASE_URL": None,
    "ROCKET_HEALTH_MAX_AGE": 60,
    "ROCKET_TASK_FUNCTIONS": None,  # None: runtime tasks (schedule()) are off
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


def parse_timeout(value: Any) -> timedelta | None:
    """Return a timeout as a timedelta, or None for ``"never"``; raise ValueError if bad."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "never"):
        return None
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError("a timeout must be positive")
    return duration


class Settings:
    """The ``ROCKET_*`` settings, one property each; read through :data:`conf`.

    A property returns the value as written, or its default (``checks.py`` validates
    them); a few are normalised where every reader wants the same form.
    """

    def raw(self, name: str) -> Any:
        """Return the ``ROCKET_*`` setting ``name`` as written, or its default."""
        return getattr(settings, name, DEFAULTS[name])

    @property
    def tasks(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self.raw("ROCKET_TASKS"))

    @property
    def time_zone(self) -> str:
        return cast("str", self.raw("ROCKET_TIME_ZONE") or settings.TIME_ZONE or "UTC")

    @property
    def execution(self) -> str:
        return cast("str", self.raw("ROCKET_EXECUTION"))

    @property
    def timeout(self) -> Duration | None:
        return cast("Duration | None", self.raw("ROCKET_TIMEOUT"))

    @property
    def max_processes(self) -> int | None:
        return cast("int | None", self.raw("ROCKET_MAX_PROCESSES"))

    @property
    def max_threads(self) -> int | None:
        return cast("int | None", self.raw("ROCKET_MAX_THREADS"))

    @property
    def condition_modules(self) -> list[str]:
        return list(self.raw("ROCKET_CONDITION_MODULES"))

    @property
    def silence_task_prerun(self) -> bool:
        return bool(self.raw("ROCKET_SILENCE_TASK_PRERUN"))

    @property
    def silence_task_logging(self) -> bool:
        return bool(self.raw("ROCKET_SILENCE_TASK_LOGGING"))

    @property
    def silence_cond_check(self) -> bool:
        return bool(self.raw("ROCKET_SILENCE_COND_CHECK"))

    @property
    def log_retry(self) -> dict[str, float]:
        """``ROCKET_LOG_RETRY`` over its defaults: a partial dict keeps the other keys."""
        value = dict(DEFAULTS["ROCKET_LOG_RETRY"])
        value.update(self.raw("ROCKET_LOG_RETRY") or {})
        return value

    @property
    def spool_dir(self) -> str | None:
        return cast("str | None", self.raw("ROCKET_SPOOL_DIR"))

    @property
    def shutdown_grace(self) -> Duration:
        return cast("Duration", self.raw("ROCKET_SHUTDOWN_GRACE"))

    @property
    def stop_remote_runs_at_shutdown(self) -> bool:
        return bool(self.raw("ROCKET_STOP_REMOTE_RUNS_AT_SHUTDOWN"))

    @property
    def poll_interval(self) -> float:
        return float(self.raw("ROCKET_POLL_INTERVAL"))

    @property
    def listen_database(self) -> str | None:
        """The alias whose connection settings the run-request listener uses (PostgreSQL)."""
        return cast("str | None", self.raw("ROCKET_LISTEN_DATABASE"))

    @property
    def heartbeat(self) -> Duration:
        return cast("Duration", self.raw("ROCKET_HEARTBEAT"))

    @property
    def lease_timeout(self) -> Duration:
        return cast("Duration", self.raw("ROCKET_LEASE_TIMEOUT"))

    @property
    def result_max_bytes(self) -> int:
        return int(self.raw("ROCKET_RESULT_MAX_BYTES"))

    @property
    def run_retention(self) -> Duration | None:
        return cast("Duration | None", self.raw("ROCKET_RUN_RETENTION"))

    @property
    def alerts(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self.raw("ROCKET_ALERTS") or {})

    @property
    def admin_base_url(self) -> str | None:
        return cast("str | None", self.raw("ROCKET_ADMIN_BASE_URL"))

    @property
    def health_max_age(self) -> float:
        return float(self.raw("ROCKET_HEALTH_MAX_AGE"))

    @property
    def task_functions(self) -> list[str] | None:
        """The dotted paths and ``module.*`` prefixes runtime tasks may call; None: off."""
        value = self.raw("ROCKET_TASK_FUNCTIONS")
        return None if value is None else list(value)


conf = Settings()
