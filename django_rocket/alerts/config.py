"""``ROCKET_ALERTS["email"]``: its keys and defaults, their validation, and :class:`EmailConfig`."""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email
from django.template import Template, TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import get_template

from django_rocket.alerts.mailer import (
    DEFAULT_MAILER,
    DEFAULT_TIMEOUT,
    MailerError,
    default_timeout,
    smtp_settings,
    uses_smtp,
)
from django_rocket.conditions import parse_duration
from django_rocket.conf import conf

EMAIL_KEYS: dict[str, str] = {
    "receivers": "a list of email addresses (required)",
    "subject": "a one-line Django template string",
    "html": "the template name of the HTML part, or None",
    "text": "the template name of the plain-text part, or None",
    "level": "the lowest level that sends an email, such as 'ERROR'",
    "throttle": "per task, after one email send at most one summary per this duration",
    "timeout": "seconds to wait for the SMTP server",
    "mailer": "the MAILERS alias to send through on Django 6.1+ (default 'default')",
}
DEFAULT_SUBJECT = "[django-rocket] {{ headline }}"
DEFAULT_HTML = "django_rocket/alerts/email.html"
DEFAULT_TEXT = "django_rocket/alerts/email.txt"
DEFAULT_THROTTLE = "15 minutes"


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
        raw = conf.alerts
        if not isinstance(raw, dict) or "email" not in raw:
            if raw and not isinstance(raw, dict):
                raise ImproperlyConfigured("ROCKET_ALERTS must be a dict; run manage.py check.")
            return None
        problems = email_problems(raw["email"])
        if problems:
            raise ImproperlyConfigured(
                f"ROCKET_ALERTS['email'] is not valid: {problems[0].msg} Run manage.py check."
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
            timeout=_seconds(email.get("timeout", default_timeout(mailer))),
            mailer=mailer,
        )


def _seconds(value: Any) -> float:
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


def _mailer_problems(email: dict[str, Any]) -> list[checks.CheckMessage]:
    """E048: the mailer alerts send through is missing, not importable, or an unusable SMTP one."""
    mailer = email.get("mailer", DEFAULT_MAILER)
    try:
        if uses_smtp(mailer):
            smtp_settings(mailer)
    except MailerError as exc:
        return [checks.Error(str(exc), hint=exc.hint, id="django_rocket.E048")]
    return []


def email_problems(email: Any) -> list[checks.CheckMessage]:
    """Describe what is wrong with ``ROCKET_ALERTS["email"]``; empty when it is valid."""
    where = "ROCKET_ALERTS['email']"
    if not isinstance(email, dict):
        return [
            checks.Error(
                f"{where} must be a dict, not {type(email).__name__}.",
                hint="Write {'receivers': ['ops@example.com']} and optionally subject, html, text, "
                "level, throttle, timeout, mailer.",
                id="django_rocket.E040",
            )
        ]
    problems: list[checks.CheckMessage] = []
    for key in email:
        if key not in EMAIL_KEYS:
            close = _close_match(key, EMAIL_KEYS)
            problems.append(
                checks.Error(
                    f"{where} has an unknown key {key!r}.",
                    hint=(f"Did you mean {close!r}? " if close else "")
                    + "Known keys: "
                    + ", ".join(EMAIL_KEYS)
                    + ".",
                    id="django_rocket.E041",
                )
            )
    problems += _receiver_problems(email.get("receivers"))
    throttle = email.get("throttle", DEFAULT_THROTTLE)
    if throttle is not None:
        try:
            _seconds(throttle)
        except (TypeError, ValueError) as exc:
            problems.append(
                checks.Error(
                    f"{where}['throttle'] {throttle!r} is not a duration ({exc}).",
                    hint="Use text like '15 minutes', a number of seconds, or 0 to send every "
                    "alert.",
                    id="django_rocket.E043",
                )
            )
    timeout = email.get("timeout", DEFAULT_TIMEOUT)
    try:
        good = _seconds(timeout) > 0
    except (TypeError, ValueError):
        good = False
    if not good:
        problems.append(
            checks.Error(
                f"{where}['timeout'] {timeout!r} is not a positive duration.",
                hint="Use a number of seconds such as 10.",
                id="django_rocket.E045",
            )
        )
    level = email.get("level", "ERROR")
    try:
        _level(level)
    except ValueError:
        problems.append(
            checks.Error(
                f"{where}['level'] {level!r} is not a logging level.",
                hint="Use 'ERROR' (the default), 'WARNING' or 'INFO'.",
                id="django_rocket.E044",
            )
        )
    problems += _template_problems(email)
    problems += _mailer_problems(email)
    return problems


def _close_match(word: str, options: Any) -> str | None:
    found = difflib.get_close_matches(str(word), list(options), n=1)
    return found[0] if found else None


def _receiver_problems(receivers: Any) -> list[checks.CheckMessage]:
    where = "ROCKET_ALERTS['email']['receivers']"
    hint = "Write a list of addresses, such as ['ops@example.com', 'Ops <ops@example.org>']."
    if isinstance(receivers, str):
        receivers = [receivers]
    if not isinstance(receivers, list | tuple) or not receivers:
        return [
            checks.Error(
                f"{where} {receivers!r} is not a list of addresses.",
                hint=hint,
                id="django_rocket.E042",
            )
        ]
    problems: list[checks.CheckMessage] = []
    for receiver in receivers:
        if not _is_address(receiver):
            problems.append(
                checks.Error(
                    f"{where} has {receiver!r}, not an email address.",
                    hint=hint,
                    id="django_rocket.E042",
                )
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


def _template_problems(email: dict[str, Any]) -> list[checks.CheckMessage]:
    where = "ROCKET_ALERTS['email']"
    problems: list[checks.CheckMessage] = []
    subject = email.get("subject", DEFAULT_SUBJECT)
    if not isinstance(subject, str) or not subject.strip():
        problems.append(
            checks.Error(
                f"{where}['subject'] {subject!r} is not a template string.",
                hint="Write text such as '[prod] {{ headline }}'.",
                id="django_rocket.E046",
            )
        )
    else:
        try:
            Template(subject)
        except (TemplateSyntaxError, ImproperlyConfigured) as exc:
            problems.append(
                checks.Error(
                    f"{where}['subject'] {subject!r} is not a valid template ({exc}).",
                    hint="Fix the template syntax; the variables are listed in the alerts how-to.",
                    id="django_rocket.E046",
                )
            )
    parts = {
        key: email.get(key, default)
        for key, default in (("html", DEFAULT_HTML), ("text", DEFAULT_TEXT))
    }
    if all(value is None for value in parts.values()):
        problems.append(
            checks.Error(
                f"{where} has neither an html nor a text template.",
                hint=f"Remove html=None or text=None to use {DEFAULT_HTML} or {DEFAULT_TEXT}.",
                id="django_rocket.E046",
            )
        )
    for key, name in parts.items():
        if name is None:
            continue
        if not isinstance(name, str):
            problems.append(
                checks.Error(
                    f"{where}[{key!r}] {name!r} is not a template name.",
                    hint="Give the name of a template file, or None to leave out this part.",
                    id="django_rocket.E046",
                )
            )
            continue
        try:
            get_template(name)
        except TemplateDoesNotExist:
            problems.append(
                checks.Error(
                    f"{where}[{key!r}] names the template {name!r}, which cannot be found.",
                    hint="Put the template in a TEMPLATES directory or an app's templates/, "
                    "or remove the key to use the default.",
                    id="django_rocket.E046",
                )
            )
        except TemplateSyntaxError as exc:
            problems.append(
                checks.Error(
                    f"{where}[{key!r}] template {name!r} does not compile ({exc}).",
                    hint="Fix the template syntax.",
                    id="django_rocket.E046",
                )
            )
    return problems
