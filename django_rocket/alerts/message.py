"""What an alert email says: the facts copied from a log record, and its rendering."""

from __future__ import annotations

import logging
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.template import Context, Template
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from django_rocket.alerts.config import EmailConfig
from django_rocket.conditions import format_duration
from django_rocket.conf import conf

logger = logging.getLogger("django_rocket.scheduler")

SUBJECT_MAX = 200

VERBS = {
    "fail": "failed",
    "crash": "crashed",
    "terminate": "was terminated",
    "inaction": "had nothing to do",
    "success": "succeeded",
    "run": "started",
}


@dataclass
class Alert:
    """The facts one email reports, copied from a log record; nothing else reaches a template."""

    level: str
    logger: str
    message: str
    created: datetime
    task_name: str | None = None
    run_id: str | None = None
    action: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    runtime: float | None = None
    exc_text: str = ""
    count: int = 0
    actions: frozenset[str] = field(default_factory=frozenset)
    window: float = 0.0
    is_test: bool = False

    @classmethod
    def from_record(cls, record: logging.LogRecord) -> Alert:
        exc_text = record.exc_text or ""
        if not exc_text and record.exc_info:
            exc_text = logging.Formatter().formatException(record.exc_info)
        action = _text_or_none(getattr(record, "action", None))
        return cls(
            level=record.levelname,
            logger=record.name,
            message=record.getMessage(),
            created=datetime.fromtimestamp(record.created, UTC),
            task_name=_text_or_none(getattr(record, "task_name", None)),
            run_id=_text_or_none(getattr(record, "run_id", None)),
            action=action,
            start=_datetime_or_none(getattr(record, "start", None)),
            end=_datetime_or_none(getattr(record, "end", None)),
            runtime=_float_or_none(getattr(record, "runtime", None)),
            exc_text=exc_text,
            actions=frozenset([action] if action else []),
        )

    @property
    def key(self) -> str:
        """Alerts are throttled per task; records without a task per logger."""
        return f"task:{self.task_name}" if self.task_name else f"logger:{self.logger}"

    @property
    def headline(self) -> str:
        who = f"Task {self.task_name}" if self.task_name else f"{self.logger}"
        if self.is_test:
            return "Test alert: email alerts work"
        if self.count:
            window = _duration_text(self.window)
            if len(self.actions) == 1:
                (action,) = self.actions
                if action in VERBS:
                    times = "time" if self.count == 1 else "times"
                    return f"{who} {VERBS[action]} {self.count} more {times} in {window}"
            alerts = "alert" if self.count == 1 else "alerts"
            return f"{who}: {self.count} more {alerts} in {window}"
        if self.action in VERBS:
            return f"{who} {VERBS[self.action]}"
        return f"{who}: {self.level.lower()} {self.message[:100]}"

    def context(self, admin_url: str | None = None) -> dict[str, Any]:
        return {
            "headline": self.headline,
            "task_name": self.task_name,
            "run_id": self.run_id,
            "action": self.action,
            "level": self.level,
            "logger_name": self.logger,
            "message": self.message,
            "created": self.created,
            "start": self.start,
            "end": self.end,
            "runtime": self.runtime,
            "runtime_text": _duration_text(self.runtime) if self.runtime is not None else "",
            "exc_text": self.exc_text,
            "count": self.count,
            "window": _duration_text(self.window) if self.window else "",
            "admin_url": admin_url,
            "host": socket.gethostname(),
            "is_test": self.is_test,
        }


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _datetime_or_none(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _duration_text(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.3g} seconds" if seconds != 1 else "1 second"
    return format_duration(timedelta(seconds=round(seconds)))


def one_line(text: str, limit: int = SUBJECT_MAX) -> str:
    """Collapse every run of whitespace, CR and LF included, into one space."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def admin_url_for(run_id: str | None) -> str | None:
    """Return the absolute admin URL of the run, or None when it cannot be built.

    Built from the run id alone: the admin's run page answers at it as well as at the
    row's number. An alert goes out when something broke, perhaps the database, and a
    look-up here would hold every alert behind it for as long as a partitioned
    connection waits (minutes, or for ever without keepalives).
    """
    base = conf.admin_base_url
    if not base or not run_id:
        return None
    try:
        path = reverse("admin:django_rocket_taskrun_change", args=[uuid.UUID(str(run_id))])
    except (NoReverseMatch, ValueError):
        return None
    return base.rstrip("/") + path


def render(config: EmailConfig, alert: Alert) -> tuple[str, str | None, str | None]:
    """Render the subject (one line) and the HTML and text parts of an alert email."""
    context = alert.context(admin_url_for(alert.run_id))
    subject = one_line(Template(config.subject).render(Context(context, autoescape=False)))
    html = render_to_string(config.html, context) if config.html else None
    text = render_to_string(config.text, context) if config.text else None
    return subject or alert.headline, html, text
