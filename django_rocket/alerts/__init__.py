"""Email alerts for task events, built on Red Mail, that never hold up the scheduler.

``ROCKET_ALERTS = {"email": {...}}`` puts an :class:`EmailAlertHandler` on the
``django_rocket.task`` logger when the scheduler starts (:func:`install_alerts`).
Its ``emit`` only decides whether a record deserves an email (one per task per
throttle window, then a summary with the count) and queues it. A background thread
renders the Django templates and talks to the SMTP server with a socket timeout, so
a slow, refusing or silent server delays nothing but that thread; what it cannot
send is logged on ``django_rocket.scheduler``.

The mailer is a ``MAILERS`` alias on Django 6.1+ when the project defines ``MAILERS``,
else Django's ``EMAIL_*`` settings. Over Django's SMTP backend the email goes through
Red Mail to the server :func:`smtp_settings` resolves; over any other backend (console,
file, locmem, a project's own) through that backend's connection.

The parts: ``config`` (``ROCKET_ALERTS["email"]`` and its validation), ``checks`` (the
system check), ``mailer`` (the mail backend, the SMTP server), ``message`` (what an
email says), ``sending`` (Red Mail, or Django's backend) and ``handler`` (the logging
handler and its sender thread).
"""

from django_rocket.alerts.checks import check_alerts
from django_rocket.alerts.config import EmailConfig
from django_rocket.alerts.handler import (
    EmailAlertHandler,
    install_alerts,
    revive_alerts,
    shutdown_alerts,
)
from django_rocket.alerts.mailer import MailerError, SMTPSettings, destination, smtp_settings
from django_rocket.alerts.message import Alert
from django_rocket.alerts.sending import describe_error, send

__all__ = [
    "Alert",
    "EmailAlertHandler",
    "EmailConfig",
    "MailerError",
    "SMTPSettings",
    "check_alerts",
    "describe_error",
    "destination",
    "install_alerts",
    "revive_alerts",
    "send",
    "shutdown_alerts",
    "smtp_settings",
]
