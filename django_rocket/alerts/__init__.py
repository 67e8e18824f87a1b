"""Email alerts for task events, built on Red Mail, that never hold up the scheduler.

``ROCKET_ALERTS = {"email": {...}}`` puts an :class:`EmailAlertHandler` on the
``django_rocket.task`` logger when the scheduler starts (:func:`install_alerts`).
Its ``emit`` only decides whether a record deserves an email (one per task per
throttle window, then a summary with the count) and queues it. A background thread
renders the Django templates and talks to the SMTP server with a socket timeout, so
a slow, refusing or silent server delays nothing but that thread; what it cannot
send is logged on ``django_rocket.scheduler``.

The SMTP server comes from :func:`smtp_settings`: a ``MAILERS`` alias on Django 6.1+
when the project defines ``MAILERS``, else Django's ``EMAIL_*`` settings.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

import django
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import URLValidator, validate_email
from django.template import Context, Template, TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import get_template, render_to_string
from django.utils.functional import empty
from django.utils.module_loading import import_string

from django_rocket import conf

__all__ = [
    "Alert",
    "EmailAlertHandler",
    "EmailConfig",
    "MailerError",
    "SMTPSettings",
    "check_alerts",
    "install_alerts",
    "shutdown_alerts",
    "smtp_settings",
]

logger = logging.getLogger("django_rocket.scheduler")
task_logger = logging.getLogger("django_rocket.task")

EMAIL_KEYS: dict[str, str] = {
    "receivers": "a list of email addresses (required)",
    "subject": "a one-line Django template string",
    "html": "the template name of the HTML part, or None",
    "text": "the template name of the plain-text part, or None",
    "level": "the lowest level that sends an email, such as 'ERROR'",
    "throttle": "per task, after one email send at most one summary per this duration",
    "timeout": "seconds to wait for the SMTP server",
    "mailer": "the MAILERS alias of the SMTP server on Django 6.1+ (default 'default')",
}
DEFAULT_SUBJECT = "[django-rocket] {{ headline }}"
DEFAULT_HTML = "django_rocket/alerts/email.html"
DEFAULT_TEXT = "django_rocket/alerts/email.txt"
DEFAULT_THROTTLE = "15 minutes"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAILER = "default"
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
LOCMEM_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Django reads MAILERS from 6.1 on; before that a MAILERS setting means nothing to it.
MAILERS_SUPPORTED = django.VERSION >= (6, 1)
# The OPTIONS Django 6.1's SMTP backend accepts (its keyword arguments); it refuses others.
SMTP_OPTIONS = frozenset(
    {
        "host",
        "port",
        "username",
        "password",
        "use_tls",
        "use_ssl",
        "timeout",
        "ssl_keyfile",
        "ssl_certfile",
        "fail_silently",
    }
)
QUEUE_SIZE = 100
SUBJECT_MAX = 200

VERBS = {
    "fail": "failed",
    "crash": "crashed",
    "terminate": "was terminated",
    "inaction": "had nothing to do",
    "success": "succeeded",
    "run": "started",
}


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailConfig:
    """``ROCKET_ALERTS["email"]``, validated and converted."""

    receivers: tuple[str, ...]
    subject: str = DEFAULT_SUBJECT
    html: str | None = DEFAULT_HTML
    text: str | None = DEFAULT_TEXT
    level: int = logging.ERROR
    throttle: float = 900.0
    timeout: float = DEFAULT_TIMEOUT
    mailer: str = DEFAULT_MAILER

    @classmethod
    def from_settings(cls) -> EmailConfig | None:
        """Return the configured email alerts, None when there are none; raise if invalid."""
        raw = conf.alerts()
        if not isinstance(raw, dict) or "email" not in raw:
            if raw and not isinstance(raw, dict):
                raise ImproperlyConfigured("ROCKET_ALERTS must be a dict; run manage.py check.")
            return None
        problems = _email_problems(raw["email"])
        if problems:
            raise ImproperlyConfigured(
                f"ROCKET_ALERTS['email'] is not valid: {problems[0][1]} Run manage.py check."
            )
        email = raw["email"]
        receivers = email["receivers"]
        mailer = email.get("mailer", DEFAULT_MAILER)
        return cls(
            receivers=(receivers,) if isinstance(receivers, str) else tuple(receivers),
            subject=email.get("subject", DEFAULT_SUBJECT),
            html=email.get("html", DEFAULT_HTML),
            text=email.get("text", DEFAULT_TEXT),
            level=_level(email.get("level", "ERROR")),
            throttle=_seconds(email.get("throttle", DEFAULT_THROTTLE)),
            timeout=_seconds(email.get("timeout", _default_timeout(mailer))),
            mailer=mailer,
        )


def _default_timeout(mailer: str = DEFAULT_MAILER) -> float:
    """The mailer's ``timeout`` OPTION, or ``EMAIL_TIMEOUT``, or 10 seconds."""
    try:
        return smtp_settings(mailer).timeout or DEFAULT_TIMEOUT
    except MailerError:  # reported by check E048, and again by each failed send
        return DEFAULT_TIMEOUT


def _seconds(value: Any) -> float:
    from django_rocket.conditions import parse_duration

    if value is None:
        return 0.0
    return parse_duration(value).total_seconds()


def _level(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        number = logging.getLevelNamesMapping().get(value.strip().upper())
        if number is not None:
            return number
    raise ValueError(f"{value!r} is not a logging level")


Problem = tuple[str, str, str]  # (check id, message, hint)


# --- the SMTP server: MAILERS (Django 6.1+) or EMAIL_* ----------------------------------------


class MailerError(ImproperlyConfigured):
    """The mailer the alerts should send through cannot be used (check ``E048``)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class SMTPSettings:
    """The SMTP server alerts are sent through, and how to talk to it."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    use_ssl: bool = False
    timeout: float | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # False when the host is Django's default ('localhost'), not set by the project.
    configured: bool = True

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def uses_mailers() -> bool:
    """Whether the SMTP server comes from ``MAILERS`` (Django 6.1+ with MAILERS defined)."""
    return MAILERS_SUPPORTED and hasattr(settings, "MAILERS")


def smtp_settings(mailer: str = DEFAULT_MAILER) -> SMTPSettings:
    """Resolve the SMTP server alerts use; raise :class:`MailerError` when it cannot be used.

    With ``MAILERS`` (Django 6.1+): the ``OPTIONS`` of the alias ``mailer``, which must use
    Django's SMTP backend, with the backend's defaults (port 25, 465 with ``use_ssl``, 587
    with ``use_tls``). Otherwise: the ``EMAIL_*`` settings, read without Django 6.1's
    deprecation warning (the project gets Django's own for defining them).
    """
    if not isinstance(mailer, str) or not mailer:
        raise MailerError(
            f"ROCKET_ALERTS['email']['mailer'] {mailer!r} is not a MAILERS alias.",
            "Write the name of an entry of MAILERS, such as 'default'.",
        )
    if uses_mailers():
        return _from_mailer(mailer)
    if mailer != DEFAULT_MAILER:
        why = "MAILERS is not defined" if MAILERS_SUPPORTED else "MAILERS needs Django 6.1"
        raise MailerError(
            f"ROCKET_ALERTS['email']['mailer'] is {mailer!r}, but {why}: alerts would be "
            "sent with the EMAIL_* settings.",
            "Define MAILERS with that alias (Django 6.1+), or remove the 'mailer' key.",
        )
    return _from_email_settings()


def _mailers() -> Any:
    return getattr(settings, "MAILERS", None)


def _from_mailer(alias: str) -> SMTPSettings:
    mailers = _mailers()
    where = f"MAILERS[{alias!r}]"
    if not isinstance(mailers, dict) or alias not in mailers:
        known = ", ".join(repr(name) for name in mailers) if isinstance(mailers, dict) else ""
        raise MailerError(
            f"ROCKET_ALERTS['email'] sends through the mailer {alias!r}, which is not in "
            f"MAILERS (it has {known or 'no entries'}).",
            "Add that alias to MAILERS, or set ROCKET_ALERTS['email']['mailer'] to an "
            "existing one.",
        )
    config = mailers[alias]
    config = config if isinstance(config, dict) else {}
    backend = config.get("BACKEND", SMTP_BACKEND)
    if not _is_smtp_backend(backend):
        raise MailerError(
            f"{where} uses the backend {backend!r}; alerts need an SMTP server "
            f"(Django's {SMTP_BACKEND}).",
            "Point ROCKET_ALERTS['email']['mailer'] at a MAILERS alias whose BACKEND is "
            "the SMTP backend (or omitted), or remove ROCKET_ALERTS where no email is sent.",
        )
    options = config.get("OPTIONS", {})
    if not isinstance(options, dict):
        options = {}
    unknown = sorted(set(options) - SMTP_OPTIONS, key=str)
    if unknown and backend == SMTP_BACKEND:  # a subclass may accept more
        raise MailerError(
            f"{where} has OPTIONS the SMTP backend does not accept: "
            + ", ".join(repr(key) for key in unknown)
            + ".",
            "Its OPTIONS are " + ", ".join(sorted(SMTP_OPTIONS)) + ".",
        )
    host = options.get("host")
    if not host or not isinstance(host, str):
        raise MailerError(
            f"{where} has no SMTP host: OPTIONS['host'] is {host!r}.",
            f"Set {where}['OPTIONS']['host'] to your SMTP server, such as 'smtp.example.com'.",
        )
    use_tls = bool(options.get("use_tls") or False)
    use_ssl = bool(options.get("use_ssl") or False)
    if use_tls and use_ssl:
        raise MailerError(
            f"{where} sets both 'use_tls' and 'use_ssl' in OPTIONS.",
            "Use 'use_tls' for STARTTLS (usually port 587) or 'use_ssl' for implicit TLS "
            "(usually port 465), not both.",
        )
    port = options.get("port")
    if port is None:
        port = 465 if use_ssl else 587 if use_tls else 25
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise MailerError(
            f"{where} OPTIONS['port'] {port!r} is not a port number.",
            "Write a number such as 587.",
        ) from None
    return SMTPSettings(
        host=host,
        port=port,
        username=options.get("username") or None,
        password=options.get("password") or None,
        use_tls=use_tls,
        use_ssl=use_ssl,
        timeout=options.get("timeout"),
        ssl_certfile=options.get("ssl_certfile"),
        ssl_keyfile=options.get("ssl_keyfile"),
    )


def _is_smtp_backend(path: Any) -> bool:
    if path == SMTP_BACKEND:
        return True
    if not isinstance(path, str):
        return False
    from django.core.mail.backends.smtp import EmailBackend

    try:
        backend = import_string(path)
    except ImportError:
        return False
    return isinstance(backend, type) and issubclass(backend, EmailBackend)


def _from_email_settings() -> SMTPSettings:
    host = _email_setting("EMAIL_HOST") or ""
    use_ssl = bool(_email_setting("EMAIL_USE_SSL"))
    return SMTPSettings(
        host=host,
        port=int(_email_setting("EMAIL_PORT") or 25),
        username=_email_setting("EMAIL_HOST_USER") or None,
        password=_email_setting("EMAIL_HOST_PASSWORD") or None,
        use_tls=bool(_email_setting("EMAIL_USE_TLS")) and not use_ssl,
        use_ssl=use_ssl,
        timeout=_email_setting("EMAIL_TIMEOUT"),
        ssl_certfile=_email_setting("EMAIL_SSL_CERTFILE"),
        ssl_keyfile=_email_setting("EMAIL_SSL_KEYFILE"),
        # django-stubs' plugin checks every attribute of settings as a setting name.
        configured=bool(host) and settings.is_overridden("EMAIL_HOST"),  # type: ignore[misc]
    )


def _email_setting(name: str) -> Any:
    """Read an ``EMAIL_*`` setting without Django 6.1's ``RemovedInDjango2028Warning``.

    Django warns in ``LazySettings.__getattr__``, so this reads the settings object it
    wraps (the settings module's values, or the holder ``override_settings`` puts on top
    of them), which holds the same values and never warns. That keeps the suppression to
    this one read: ``warnings.catch_warnings()`` would change the process-wide warning
    filters, and this runs in the alert sender's thread as well as in the main one.
    """
    lazy: Any = settings
    if lazy._wrapped is empty:
        lazy._setup()
    return getattr(lazy._wrapped, name, None)


def _in_test_environment(backend: Any) -> bool:
    """Whether ``backend`` is the memory backend Django's test runner put on every mailer."""
    from django.core import mail

    return backend == LOCMEM_BACKEND and hasattr(mail, "outbox")


def _mailer_problems(email: dict) -> list[Problem]:
    """E048: the mailer alerts send through is missing, not SMTP, or unusable."""
    mailer = email.get("mailer", DEFAULT_MAILER)
    try:
        smtp_settings(mailer)
    except MailerError as exc:
        mailers = _mailers() if uses_mailers() else None
        if isinstance(mailers, dict) and isinstance(mailer, str):
            config = mailers.get(mailer)
            if isinstance(config, dict) and _in_test_environment(config.get("BACKEND")):
                return []  # the project's OPTIONS are hidden while Django's tests run
        return [("django_rocket.E048", str(exc), exc.hint)]
    return []


def _email_problems(email: Any) -> list[Problem]:
    """Describe what is wrong with ``ROCKET_ALERTS["email"]``; empty when it is valid."""
    where = "ROCKET_ALERTS['email']"
    if not isinstance(email, dict):
        return [
            (
                "django_rocket.E040",
                f"{where} must be a dict, not {type(email).__name__}.",
                "Write {'receivers': ['ops@example.com']} and optionally subject, html, text, "
                "level, throttle, timeout, mailer.",
            )
        ]
    problems: list[Problem] = []
    for key in email:
        if key not in EMAIL_KEYS:
            close = _close_match(key, EMAIL_KEYS)
            problems.append(
                (
                    "django_rocket.E041",
                    f"{where} has an unknown key {key!r}.",
                    (f"Did you mean {close!r}? " if close else "")
                    + "Known keys: "
                    + ", ".join(EMAIL_KEYS)
                    + ".",
                )
            )
    problems += _receiver_problems(email.get("receivers"))
    throttle = email.get("throttle", DEFAULT_THROTTLE)
    if throttle is not None:
        try:
            _seconds(throttle)
        except (TypeError, ValueError) as exc:
            problems.append(
                (
                    "django_rocket.E043",
                    f"{where}['throttle'] {throttle!r} is not a duration ({exc}).",
                    "Use text like '15 minutes', a number of seconds, or 0 to send every alert.",
                )
            )
    timeout = email.get("timeout", DEFAULT_TIMEOUT)
    try:
        good = _seconds(timeout) > 0
    except (TypeError, ValueError):
        good = False
    if not good:
        problems.append(
            (
                "django_rocket.E045",
                f"{where}['timeout'] {timeout!r} is not a positive duration.",
                "Use a number of seconds such as 10.",
            )
        )
    level = email.get("level", "ERROR")
    try:
        _level(level)
    except ValueError:
        problems.append(
            (
                "django_rocket.E044",
                f"{where}['level'] {level!r} is not a logging level.",
                "Use 'ERROR' (the default), 'WARNING' or 'INFO'.",
            )
        )
    problems += _template_problems(email)
    problems += _mailer_problems(email)
    return problems


def _close_match(word: str, options: Any) -> str | None:
    import difflib

    found = difflib.get_close_matches(str(word), list(options), n=1)
    return found[0] if found else None


def _receiver_problems(receivers: Any) -> list[Problem]:
    where = "ROCKET_ALERTS['email']['receivers']"
    hint = "Write a list of addresses, such as ['ops@example.com', 'Ops <ops@example.org>']."
    if isinstance(receivers, str):
        receivers = [receivers]
    if not isinstance(receivers, list | tuple) or not receivers:
        return [("django_rocket.E042", f"{where} {receivers!r} is not a list of addresses.", hint)]
    problems = []
    for receiver in receivers:
        if not _is_address(receiver):
            problems.append(
                ("django_rocket.E042", f"{where} has {receiver!r}, not an email address.", hint)
            )
    return problems


def _is_address(value: Any) -> bool:
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        return False
    _, address = parseaddr(value)
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def _template_problems(email: dict) -> list[Problem]:
    where = "ROCKET_ALERTS['email']"
    problems: list[Problem] = []
    subject = email.get("subject", DEFAULT_SUBJECT)
    if not isinstance(subject, str) or not subject.strip():
        problems.append(
            (
                "django_rocket.E046",
                f"{where}['subject'] {subject!r} is not a template string.",
                "Write text such as '[prod] {{ headline }}'.",
            )
        )
    else:
        try:
            Template(subject)
        except (TemplateSyntaxError, ImproperlyConfigured) as exc:
            problems.append(
                (
                    "django_rocket.E046",
                    f"{where}['subject'] {subject!r} is not a valid template ({exc}).",
                    "Fix the template syntax; the variables are listed in the alerts how-to.",
                )
            )
    parts = {
        key: email.get(key, default)
        for key, default in (("html", DEFAULT_HTML), ("text", DEFAULT_TEXT))
    }
    if all(value is None for value in parts.values()):
        problems.append(
            (
                "django_rocket.E046",
                f"{where} has neither an html nor a text template.",
                f"Remove html=None or text=None to use {DEFAULT_HTML} or {DEFAULT_TEXT}.",
            )
        )
    for key, name in parts.items():
        if name is None:
            continue
        if not isinstance(name, str):
            problems.append(
                (
                    "django_rocket.E046",
                    f"{where}[{key!r}] {name!r} is not a template name.",
                    "Give the name of a template file, or None to leave out this part.",
                )
            )
            continue
        try:
            get_template(name)
        except TemplateDoesNotExist:
            problems.append(
                (
                    "django_rocket.E046",
                    f"{where}[{key!r}] names the template {name!r}, which cannot be found.",
                    "Put the template in a TEMPLATES directory or an app's templates/, "
                    "or remove the key to use the default.",
                )
            )
        except TemplateSyntaxError as exc:
            problems.append(
                (
                    "django_rocket.E046",
                    f"{where}[{key!r}] template {name!r} does not compile ({exc}).",
                    "Fix the template syntax.",
                )
            )
    return problems


def check_alerts() -> list[checks.CheckMessage]:
    """Validate ``ROCKET_ALERTS`` and ``ROCKET_ADMIN_BASE_URL`` (checks E040 to E048, W040)."""
    messages: list[checks.CheckMessage] = []
    raw = conf.alerts()
    base = conf.admin_base_url()
    if base is not None:
        try:
            URLValidator(schemes=["http", "https"])(base)
        except ValidationError:
            messages.append(
                checks.Error(
                    f"ROCKET_ADMIN_BASE_URL {base!r} is not an http(s) URL.",
                    hint="Write the site's address, such as 'https://ops.example.com'.",
                    id="django_rocket.E047",
                )
            )
    if not isinstance(raw, dict):
        return [
            *messages,
            checks.Error(
                f"ROCKET_ALERTS must be a dict, not {type(raw).__name__}.",
                hint="Write ROCKET_ALERTS = {'email': {'receivers': ['ops@example.com']}}.",
                id="django_rocket.E040",
            ),
        ]
    for key in raw:
        if key != "email":
            messages.append(
                checks.Error(
                    f"ROCKET_ALERTS has an unknown key {key!r}.",
                    hint="The only kind of alert is 'email'; other channels can be added as "
                    "logging handlers on django_rocket.task (see the alerts how-to).",
                    id="django_rocket.E040",
                )
            )
    if "email" not in raw:
        return messages
    problems = _email_problems(raw["email"])
    for id, msg, hint in problems:
        messages.append(checks.Error(msg, hint=hint, id=id))
    if any(id == "django_rocket.E048" for id, _, _ in problems):
        return messages
    email = raw["email"]
    mailer = email.get("mailer", DEFAULT_MAILER) if isinstance(email, dict) else DEFAULT_MAILER
    try:
        smtp = smtp_settings(mailer)
    except MailerError:
        return messages  # MAILERS under Django's test runner: nothing to check
    if not smtp.host or not smtp.configured:
        if MAILERS_SUPPORTED:
            how = (
                "Define MAILERS = {'default': {'OPTIONS': {'host': 'smtp.example.com', "
                "'port': 587, 'use_tls': True}}} (EMAIL_HOST is deprecated since Django 6.1)"
            )
        else:
            how = "Set EMAIL_HOST and EMAIL_PORT (or EMAIL_URL with django-environ)"
        messages.append(
            checks.Warning(
                "ROCKET_ALERTS sends email but no SMTP host is configured (EMAIL_HOST or "
                f"MAILERS); it would use {smtp.host!r}.",
                hint=f"{how}, then try it with manage.py sendtestalert.",
                id="django_rocket.W040",
            )
        )
    return messages


# --- what an email says ---------------------------------------------------------------------


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
    from django_rocket.conditions import format_duration

    if seconds < 10:
        return f"{seconds:.3g} seconds" if seconds != 1 else "1 second"
    return format_duration(timedelta(seconds=round(seconds)))


def one_line(text: str, limit: int = SUBJECT_MAX) -> str:
    """Collapse every run of whitespace, CR and LF included, into one space."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def admin_url_for(run_id: str | None) -> str | None:
    """Return the absolute admin URL of the run, or None when it cannot be built."""
    base = conf.admin_base_url()
    if not base or not run_id:
        return None
    from django.db import connection
    from django.urls import NoReverseMatch, reverse

    from django_rocket.models import TaskRun

    try:
        pk = TaskRun.objects.filter(run_id=run_id).values_list("pk", flat=True).first()
        if pk is None:
            return None
        return base.rstrip("/") + reverse("admin:django_rocket_taskrun_change", args=[pk])
    except (NoReverseMatch, ValidationError, ValueError):
        return None
    except Exception:
        logger.warning(
            "Could not look up run %s for the alert's admin link.", run_id, exc_info=True
        )
        return None
    finally:
        if threading.current_thread() is not threading.main_thread():
            connection.close()


def render(config: EmailConfig, alert: Alert) -> tuple[str, str | None, str | None]:
    """Render the subject (one line) and the HTML and text parts of an alert email."""
    context = alert.context(admin_url_for(alert.run_id))
    subject = one_line(Template(config.subject).render(Context(context, autoescape=False)))
    html = render_to_string(config.html, context) if config.html else None
    text = render_to_string(config.text, context) if config.text else None
    return subject or alert.headline, html, text


# --- sending --------------------------------------------------------------------------------


def smtp_sender(timeout: float, mailer: str = DEFAULT_MAILER) -> Any:
    """A Red Mail sender for :func:`smtp_settings` (TLS verified, socket timeout)."""
    from redmail import EmailSender

    smtp = smtp_settings(mailer)
    context = ssl.create_default_context()
    if smtp.ssl_certfile:  # a client certificate, as Django's SMTP backend presents it
        context.load_cert_chain(smtp.ssl_certfile, smtp.ssl_keyfile)

    class DjangoEmailSender(EmailSender):
        def get_params(self, sender: str) -> dict[str, Any]:
            return {}  # Jinja is off; skip Red Mail's lookups of the OS user and host.

        def close(self) -> None:
            # Forget the connection even when QUIT fails, so the next email reconnects.
            connection, self.connection = self.connection, None
            if connection is not None:
                try:
                    connection.quit()
                except (smtplib.SMTPException, OSError):
                    connection.close()

        def get_server(self) -> smtplib.SMTP:
            # Red Mail annotates cls_smtp as an SMTP instance; it holds the class.
            server = self.cls_smtp(self.host, self.port, **self.kws_smtp)  # type: ignore[operator]
            try:
                if self.use_starttls:
                    server.starttls(context=context)
                if self.username or self.password:
                    server.login(self.username or "", self.password or "")
            except BaseException:
                server.close()
                raise
            return server

    extra: dict[str, Any] = {"timeout": timeout}
    if smtp.use_ssl:
        extra["context"] = context
    # Red Mail's hints are narrower than what it takes: username and password default to
    # None (no login), and cls_smtp is an SMTP class, not an instance.
    sender = DjangoEmailSender(
        host=smtp.host,
        port=smtp.port,
        username=smtp.username,  # type: ignore[arg-type]
        password=smtp.password,  # type: ignore[arg-type]
        cls_smtp=smtplib.SMTP_SSL if smtp.use_ssl else smtplib.SMTP,  # type: ignore[arg-type]
        use_starttls=smtp.use_tls and not smtp.use_ssl,
        **extra,
    )
    sender.use_jinja = False  # our bodies are rendered (and escaped) by Django already
    return sender


def send(config: EmailConfig, alert: Alert, sender: Any = None) -> None:
    """Render and send one alert now, in the calling thread; raise what SMTP raises."""
    subject, html, text = render(config, alert)
    (sender or smtp_sender(config.timeout, config.mailer)).send(
        subject=subject,
        sender=settings.DEFAULT_FROM_EMAIL,
        receivers=list(config.receivers),
        html=html,
        text=text,
    )


def describe_error(exc: BaseException) -> str:
    """One line for an SMTP or socket error."""
    # smtplib turns a timeout while reading a reply into SMTPServerDisconnected.
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return "the SMTP server did not answer in time"
    if isinstance(exc, MailerError):
        return one_line(str(exc))
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        return one_line(f"{exc.smtp_code} {text}")
    return one_line(f"{type(exc).__name__}: {exc}")


@dataclass
class _Window:
    ends: float
    count: int = 0
    last: Alert | None = None
    actions: frozenset[str] = frozenset()


_STOP = object()


class EmailAlertHandler(logging.Handler):
    """Queue an email for each record, throttled per task; a thread sends them."""

    def __init__(
        self,
        config: EmailConfig,
        *,
        time_func: Callable[[], float] = time.monotonic,
        poll: float = 1.0,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        super().__init__(config.level)
        self.config = config
        self._time = time_func
        self._poll = poll
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._windows: dict[str, _Window] = {}
        self._state = threading.Lock()
        self._dropped = 0
        self._stopping = threading.Event()
        self._abandoned = False
        self._sender: Any = None
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="rocket-alerts", daemon=True)
        self._thread.start()

    # -- in the logging thread: decide and queue, never block

    def emit(self, record: logging.LogRecord) -> None:
        if self._stopping.is_set():
            return
        try:
            alert = Alert.from_record(record)
            with self._state:
                now = self._time()
                due = self._take_summaries(now)
                if self._admit(alert, now):
                    due.append(alert)
            for item in due:
                self._enqueue(item)
        except Exception:
            self.handleError(record)

    def _admit(self, alert: Alert, now: float) -> bool:
        """Whether the alert is the first in its task's window; count it otherwise."""
        if self.config.throttle <= 0:
            return True
        window = self._windows.get(alert.key)
        if window is None:
            self._windows[alert.key] = _Window(now + self.config.throttle)
            return True
        window.count += 1
        window.last = alert
        window.actions = window.actions | alert.actions
        return False

    def _take_summaries(self, now: float, everything: bool = False) -> list[Alert]:
        """End the windows that are over (all of them at shutdown) and return their summaries."""
        summaries = []
        for key, window in list(self._windows.items()):
            if window.ends <= now or everything:
                del self._windows[key]
                if window.count and window.last is not None:
                    summaries.append(
                        replace(
                            window.last,
                            count=window.count,
                            actions=window.actions,
                            window=self.config.throttle,
                        )
                    )
        return summaries

    def _enqueue(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            with self._state:
                self._dropped += 1

    # -- in the sender thread

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._seconds_to_next_summary())
            except queue.Empty:
                item = None
            if item is _STOP or self._abandoned:
                return
            if item is not None:
                self._deliver(item)
            with self._state:
                due = self._take_summaries(self._time())
            for summary in due:
                if not self._abandoned:
                    self._deliver(summary)
            self._report_dropped()

    def _seconds_to_next_summary(self) -> float:
        with self._state:
            ends = [w.ends for w in self._windows.values() if w.count]
        if not ends:
            return self._poll
        return min(max(min(ends) - self._time(), 0.01), self._poll)

    def _deliver(self, alert: Alert) -> None:
        try:
            if self._sender is None:
                self._sender = smtp_sender(self.config.timeout, self.config.mailer)
            send(self.config, alert, self._sender)
            self.sent += 1
        except Exception as exc:
            self.failed += 1
            self._sender = None
            logger.error(
                "Could not send the alert email about %s to %s: %s",
                alert.task_name or alert.logger,
                ", ".join(self.config.receivers),
                describe_error(exc),
                exc_info=True,
            )

    def _report_dropped(self) -> None:
        with self._state:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            logger.error(
                "Dropped %d alert email(s): %d were already waiting for the SMTP server.",
                dropped,
                self._queue.maxsize,
            )

    # -- stopping

    def shutdown(self, timeout: float) -> bool:
        """Send what is queued and every pending summary within ``timeout`` seconds.

        Return True when everything was handed to the SMTP server (or failed) in time.
        """
        if self._stopping.is_set():
            return not self._thread.is_alive()
        self._stopping.set()
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._state:
            summaries = self._take_summaries(0, everything=True)
        for summary in summaries:
            self._enqueue(summary)
        stop_queued = False
        while not stop_queued and time.monotonic() < deadline:
            try:
                self._queue.put(_STOP, timeout=max(deadline - time.monotonic(), 0.001))
                stop_queued = True
            except queue.Full:
                continue
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        done = not self._thread.is_alive()
        if not done:
            self._abandoned = True  # the thread exits after the email it is stuck on
            # The one being sent, and those still queued behind it.
            unsent = 1 + self._queue.qsize() - stop_queued
            logger.warning(
                "Stopped waiting for the SMTP server after %.1fs; %d alert email(s) not sent.",
                timeout,
                unsent,
            )
        self._report_dropped()
        return done

    def close(self) -> None:
        # Called by logging.shutdown() at exit when shutdown_alerts() was not: stay brief.
        self.shutdown(timeout=2.0)
        super().close()


# --- wiring into the scheduler --------------------------------------------------------------

_installed: EmailAlertHandler | None = None
_install_lock = threading.Lock()


def install_alerts() -> EmailAlertHandler | None:
    """Put the handler ``ROCKET_ALERTS`` describes on ``django_rocket.task``; return it."""
    global _installed
    config = EmailConfig.from_settings()
    with _install_lock:
        previous, _installed = _installed, None
    if previous is not None:
        task_logger.removeHandler(previous)
        previous.shutdown(timeout=0)
    if config is None:
        return None
    handler = EmailAlertHandler(config)
    task_logger.addHandler(handler)
    with _install_lock:
        _installed = handler
    if task_logger.getEffectiveLevel() > config.level:
        logger.warning(
            "Email alerts are set for %s and above, but the django_rocket.task logger only "
            "passes %s and above; set its level in LOGGING.",
            logging.getLevelName(config.level),
            logging.getLevelName(task_logger.getEffectiveLevel()),
        )
    logger.info(
        "Email alerts on: %s and above to %s.",
        logging.getLevelName(config.level),
        ", ".join(config.receivers),
    )
    return handler


def shutdown_alerts(timeout: float = 10.0) -> bool:
    """Take the handler off ``django_rocket.task`` and send what is queued, within ``timeout``."""
    global _installed
    with _install_lock:
        handler, _installed = _installed, None
    if handler is None:
        return True
    task_logger.removeHandler(handler)
    return handler.shutdown(timeout)
