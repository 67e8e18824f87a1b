"""System checks for every ``ROCKET_*`` setting and every declared task.

Each message names the setting or task, quotes the offending value, and gives
the fix in ``hint``. The IDs are stable and listed in docs/reference/checks.
The registry and the alerts make their own messages; this module collects them.
:class:`~django_rocket.apps.DjangoRocketConfig` registers the two checks.
"""

from __future__ import annotations

import os
import stat
import zoneinfo
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS
from django.db.utils import load_backend

from django_rocket import registry
from django_rocket.alerts import check_alerts
from django_rocket.conditions import parse_duration
from django_rocket.conf import EXECUTIONS, conf
from django_rocket.engine.spool import not_usable

Messages = list[checks.CheckMessage]
SETTING_CHECKS: list[Callable[[], Messages]] = []


def setting_check(func: Callable[[], Messages]) -> Callable[[], Messages]:
    """Add ``func`` to the checks :func:`check_settings` runs."""
    SETTING_CHECKS.append(func)
    return func


def _error(id: str, msg: str, hint: str) -> checks.CheckMessage:
    return checks.Error(msg, hint=hint, id=id)


def check_tasks(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> Messages:
    """Validate ROCKET_TASKS and each task in it."""
    _, problems = registry.collect()
    return problems


def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> Messages:
    """Validate every other ROCKET_* setting."""
    messages: Messages = []
    for func in SETTING_CHECKS:
        messages.extend(func())
    return messages


@setting_check
def _time_zone() -> Messages:
    messages: Messages = []
    name = conf.time_zone
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        messages.append(
            _error(
                "django_rocket.E021",
                f"ROCKET_TIME_ZONE {name!r} is not a known time zone.",
                "Use an IANA zone name such as 'Europe/Berlin' or 'UTC', or leave it unset "
                "to use TIME_ZONE.",
            )
        )
    if not settings.USE_TZ:
        messages.append(
            checks.Warning(
                "USE_TZ is False; django-rocket stores aware datetimes and computes periods "
                "in ROCKET_TIME_ZONE.",
                hint="Set USE_TZ = True.",
                id="django_rocket.W001",
            )
        )
    return messages


@setting_check
def _execution() -> Messages:
    value = conf.execution
    if value not in EXECUTIONS:
        return [
            _error(
                "django_rocket.E022",
                f"ROCKET_EXECUTION {value!r} is not one of {', '.join(EXECUTIONS)}.",
                "Use 'process' (the default), 'thread', 'async', 'main' or 'tasks'.",
            )
        ]
    return []


def _duration_setting(name: str, value: Any, id: str, allow_never: bool = False) -> Messages:
    if allow_never and (value is None or str(value).strip().lower() == "never"):
        return []
    try:
        ok = parse_duration(value).total_seconds() > 0
        reason = "it must be positive"
    except (ValueError, TypeError) as exc:
        ok, reason = False, str(exc)
    if ok:
        return []
    extra = ", or 'never'" if allow_never else ""
    return [
        _error(
            id,
            f"{name} {value!r} is not a positive duration ({reason}).",
            f"Use text like '30 seconds' or '1 hour 30 minutes', or a number of seconds{extra}.",
        )
    ]


@setting_check
def _durations() -> Messages:
    messages: Messages = []
    messages += _duration_setting(
        "ROCKET_TIMEOUT", conf.timeout, "django_rocket.E023", allow_never=True
    )
    messages += _duration_setting(
        "ROCKET_SHUTDOWN_GRACE", conf.shutdown_grace, "django_rocket.E024"
    )
    messages += _duration_setting("ROCKET_HEARTBEAT", conf.heartbeat, "django_rocket.E025")
    messages += _duration_setting("ROCKET_LEASE_TIMEOUT", conf.lease_timeout, "django_rocket.E026")
    retention = conf.run_retention
    if retention is not None:
        messages += _duration_setting("ROCKET_RUN_RETENTION", retention, "django_rocket.E027")
    return messages


@setting_check
def _lease_outlasts_heartbeats() -> Messages:
    """The lease must outlast a heartbeat or two, or leadership (and runtask runs) flap."""
    try:
        beat = parse_duration(conf.heartbeat)
        lease = parse_duration(conf.lease_timeout)
    except (ValueError, TypeError):
        return []  # E025 or E026 says so
    if beat <= timedelta(0) or lease <= timedelta(0):
        return []
    shown = f"ROCKET_LEASE_TIMEOUT {conf.lease_timeout!r}"
    hint = (
        "Make ROCKET_LEASE_TIMEOUT at least three heartbeats long (the defaults are "
        "'5 seconds' and '30 seconds')."
    )
    if lease <= beat:
        return [
            _error(
                "django_rocket.E038",
                f"{shown} is not longer than ROCKET_HEARTBEAT {conf.heartbeat!r}: the active "
                "scheduler's lease runs out between two of its heartbeats, so a standby takes "
                "over and records its runs as crash while they go on, and a runtask run on "
                "another host is recorded as crash while it runs.",
                hint,
            )
        ]
    if lease < 3 * beat:
        return [
            checks.Warning(
                f"{shown} is less than three times ROCKET_HEARTBEAT {conf.heartbeat!r}: one "
                "late heartbeat (a slow database, a long pause) loses the lease.",
                hint=hint,
                id="django_rocket.W004",
            )
        ]
    return []


def _positive_seconds(name: str, id: str, hint: str) -> Messages:
    value = conf.raw(name)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return []
    return [_error(id, f"{name} {value!r} is not a positive number of seconds.", hint)]


def _positive_integer_or_none(name: str, id: str, hint: str) -> Messages:
    value = conf.raw(name)
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return []
    return [_error(id, f"{name} {value!r} is not a positive integer.", hint)]


@setting_check
def _numbers() -> Messages:
    messages: Messages = []
    messages += _positive_integer_or_none(
        "ROCKET_MAX_PROCESSES",
        "django_rocket.E028",
        "Use a number such as 4, or None for the number of CPUs.",
    )
    messages += _positive_integer_or_none(
        "ROCKET_MAX_THREADS",
        "django_rocket.E037",
        "Use a number such as 50, or None for no limit.",
    )
    messages += _positive_seconds(
        "ROCKET_POLL_INTERVAL", "django_rocket.E029", "Use a number such as 1.0."
    )
    messages += _positive_seconds(
        "ROCKET_HEALTH_MAX_AGE",
        "django_rocket.E032",
        "Use a number such as 60: the admin warns when no scheduler was seen for longer.",
    )
    retry = conf.raw("ROCKET_LOG_RETRY")
    if retry is not None:
        good = isinstance(retry, dict) and set(retry) <= {"attempts", "backoff", "max_backoff"}
        if good:
            attempts = retry.get("attempts", 1)
            good = (
                isinstance(attempts, int)
                and attempts >= 1
                and all(
                    isinstance(retry.get(k, 0), int | float) and retry.get(k, 0) >= 0
                    for k in ("backoff", "max_backoff")
                )
            )
        if not good:
            messages.append(
                _error(
                    "django_rocket.E030",
                    f"ROCKET_LOG_RETRY {retry!r} is not valid.",
                    "Use a dict like {'attempts': 5, 'backoff': 0.5, 'max_backoff': 30}: "
                    "attempts is an integer >= 1, the others are seconds >= 0.",
                )
            )
    return messages


@setting_check
def _silence_flags() -> Messages:
    messages: Messages = []
    for name in (
        "ROCKET_SILENCE_TASK_PRERUN",
        "ROCKET_SILENCE_TASK_LOGGING",
        "ROCKET_SILENCE_COND_CHECK",
    ):
        value = conf.raw(name)
        if not isinstance(value, bool):
            messages.append(
                _error(
                    "django_rocket.E031",
                    f"{name} must be True or False, not {value!r}.",
                    f"Write {name} = True to keep the scheduler running on such errors.",
                )
            )
    value = conf.raw("ROCKET_STOP_REMOTE_RUNS_AT_SHUTDOWN")
    if not isinstance(value, bool):
        messages.append(
            _error(
                "django_rocket.E034",
                f"ROCKET_STOP_REMOTE_RUNS_AT_SHUTDOWN must be True or False, not {value!r}.",
                "Leave it False (runs on task backends outlive a stopping scheduler and the "
                "next one adopts them), or write True to stop them at shutdown.",
            )
        )
    return messages


@setting_check
def _listen_database() -> Messages:
    value = conf.listen_database
    if value is None:
        return []
    problem = None
    if not isinstance(value, str) or value not in settings.DATABASES:
        aliases = ", ".join(repr(alias) for alias in settings.DATABASES)
        problem = f"is not an alias in DATABASES ({aliases})"
    elif _is_postgresql(DEFAULT_DB_ALIAS) and not _is_postgresql(value):
        problem = "is not a PostgreSQL database, as the run log's is"
    if problem is None:
        return []
    return [
        _error(
            "django_rocket.E035",
            f"ROCKET_LISTEN_DATABASE {value!r} {problem}.",
            "Name the DATABASES entry the scheduler listens on for run requests: 'default' "
            "(the default), or behind a pooler in transaction mode such as PgBouncer, an "
            "entry that connects to the same PostgreSQL database directly. Or write None "
            "to rely on the poll (ROCKET_POLL_INTERVAL) alone.",
        )
    ]


def _is_postgresql(alias: str) -> bool:
    """By the backend's vendor, so that PostGIS counts as PostgreSQL (nothing connects)."""
    engine = settings.DATABASES.get(alias, {}).get("ENGINE", "")
    try:
        return bool(load_backend(engine).DatabaseWrapper.vendor == "postgresql")
    except Exception:  # Django's own checks report a backend that does not load
        return False


@setting_check
def _routers() -> Messages:
    """The scheduler reads and writes the run log on ``default``: routers must agree."""
    from django.apps import apps
    from django.db import router

    astray: dict[tuple[str, str], list[str]] = {}  # (queries, where to) -> model names
    for model in apps.get_app_config("django_rocket").get_models():
        places: list[tuple[str, str]] = []
        try:
            read, write = router.db_for_read(model), router.db_for_write(model)
            migrates = router.allow_migrate_model(DEFAULT_DB_ALIAS, model)
        except Exception as exc:  # a router that raises: say so rather than crash the check
            places.append(("queries", f"nowhere (a router raised {exc!r})"))
        else:
            if read != DEFAULT_DB_ALIAS:
                places.append(("reads", repr(read)))
            if write != DEFAULT_DB_ALIAS:
                places.append(("writes", repr(write)))
            if not migrates:
                places.append(("tables", "another database (allow_migrate)"))
        for place in places:
            astray.setdefault(place, []).append(model.__name__)
    if not astray:
        return []
    sent = "; ".join(
        f"the {what} of {', '.join(names)} to {alias}" for (what, alias), names in astray.items()
    )
    return [
        _error(
            "django_rocket.E036",
            f"DATABASE_ROUTERS send {sent}. The scheduler reads and writes its run log on "
            "'default' only; reading a lagging replica, a scheduler taking over would miss the "
            "latest runs and start them again.",
            "Put 'django_rocket.routers.RunLogRouter' first in DATABASE_ROUTERS: it keeps "
            "django-rocket's models on 'default' and leaves every other model to your routers.",
        )
    ]


@setting_check
def _spool_dir() -> Messages:
    value = conf.spool_dir
    if value is None:
        return []
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        return [
            _error(
                "django_rocket.E033",
                f"ROCKET_SPOOL_DIR {value!r} is not a directory path.",
                "Write a path such as '/var/lib/mysite/rocket-spool', or leave it unset "
                "for a directory under ~/.local/state/django-rocket/.",
            )
        ]
    path = os.fspath(value)
    hint = (
        "Use a directory that only the user running the scheduler owns and can read, "
        "e.g. one it creates itself (mode 0700), or leave ROCKET_SPOOL_DIR unset."
    )
    try:
        refused = not_usable(Path(path))
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return []  # created private (0700) when first needed
    except OSError as exc:
        refused, mode = f"{path} cannot be read ({exc.strerror})", 0
    if refused:
        problem = f"{refused}; the scheduler will not read or write spooled runs there."
    elif mode & 0o077:
        problem = (
            f"{path} is open to other users (mode {oct(mode)}); the scheduler makes it "
            "private (0700) when it uses it."
        )
    else:
        return []
    return [checks.Warning(f"ROCKET_SPOOL_DIR: {problem}", hint=hint, id="django_rocket.W002")]


@setting_check
def _alerts() -> Messages:
    return check_alerts()


@setting_check
def _task_functions() -> Messages:
    value = conf.raw("ROCKET_TASK_FUNCTIONS")
    if value is None:
        return []
    hint = (
        "List dotted function paths and module prefixes, e.g. "
        "ROCKET_TASK_FUNCTIONS = ['myapp.reminders.send', 'myapp.reports.*']."
    )
    if not isinstance(value, list | tuple):
        return [
            _error(
                "django_rocket.E060",
                f"ROCKET_TASK_FUNCTIONS must be a list, not {type(value).__name__} ({value!r}).",
                hint,
            )
        ]
    messages: Messages = []
    for entry in value:
        path = entry[:-2] if isinstance(entry, str) and entry.endswith(".*") else entry
        if not isinstance(path, str) or not all(part.isidentifier() for part in path.split(".")):
            messages.append(
                _error(
                    "django_rocket.E060",
                    f"ROCKET_TASK_FUNCTIONS has {entry!r}, which is neither a dotted path "
                    "nor a 'module.*' prefix.",
                    hint,
                )
            )
    return messages
