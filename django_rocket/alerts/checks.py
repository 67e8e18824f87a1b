"""The system check of ``ROCKET_ALERTS`` and ``ROCKET_ADMIN_BASE_URL`` (E040 to E048, W040)."""

from __future__ import annotations

from django.core import checks
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from django_rocket.alerts.config import email_problems
from django_rocket.alerts.mailer import (
    DEFAULT_MAILER,
    mailers_supported,
    smtp_settings,
    uses_smtp,
)
from django_rocket.conf import conf


def check_alerts() -> list[checks.CheckMessage]:
    """Validate ``ROCKET_ALERTS`` and ``ROCKET_ADMIN_BASE_URL`` (checks E040 to E048, W040)."""
    messages: list[checks.CheckMessage] = []
    raw = conf.alerts
    base = conf.admin_base_url
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
    problems = email_problems(raw["email"])
    messages += problems
    if any(problem.id == "django_rocket.E048" for problem in problems):
        return messages
    email = raw["email"]
    mailer = email.get("mailer", DEFAULT_MAILER) if isinstance(email, dict) else DEFAULT_MAILER
    if not uses_smtp(mailer):
        return messages  # console, file, locmem or a project's backend: no host to check
    smtp = smtp_settings(mailer)
    if not smtp.host or not smtp.configured:
        if mailers_supported():
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
