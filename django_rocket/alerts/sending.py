"""Sending an alert, in the calling thread: over SMTP with Red Mail, else with Django's backend."""

from __future__ import annotations

import smtplib
import ssl
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives

from django_rocket.alerts.config import EmailConfig
from django_rocket.alerts.mailer import (
    DEFAULT_MAILER,
    MailerError,
    mail_connection,
    smtp_settings,
    uses_smtp,
)
from django_rocket.alerts.message import Alert, one_line, render

if TYPE_CHECKING:
    from redmail.email.sender import EmailSender


def smtp_sender(timeout: float, mailer: str = DEFAULT_MAILER) -> EmailSender:
    """A Red Mail sender for :func:`smtp_settings` (TLS verified, socket timeout)."""
    # Red Mail loads Jinja (about 75 ms): only a process that sends an alert pays for it.
    from redmail.email.sender import EmailSender

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
            server: smtplib.SMTP = self.cls_smtp(self.host, self.port, **self.kws_smtp)  # type: ignore[operator]
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


def send(config: EmailConfig, alert: Alert, sender: EmailSender | None = None) -> None:
    """Render and send one alert now, in the calling thread; raise what sending raises.

    Without a Red Mail ``sender``, a mailer whose backend is not SMTP (console, file,
    locmem, a project's own) gets the same message through its Django connection.
    """
    subject, html, text = render(config, alert)
    if sender is None and not uses_smtp(config.mailer):
        _send_with_django(config, subject, html, text)
        return
    (sender or smtp_sender(config.timeout, config.mailer)).send(
        subject=subject,
        sender=settings.DEFAULT_FROM_EMAIL,
        receivers=list(config.receivers),
        html=html,
        text=text,
    )


def _send_with_django(
    config: EmailConfig, subject: str, html: str | None, text: str | None
) -> None:
    message = EmailMultiAlternatives(
        subject,
        text if text is not None else html or "",
        settings.DEFAULT_FROM_EMAIL,
        list(config.receivers),
    )
    if text is None:
        message.content_subtype = "html"
    elif html is not None:
        message.attach_alternative(html, "text/html")
    # send_messages, not message.send(connection=...): Django 6.1 deprecates that argument.
    mail_connection(config.mailer).send_messages([message])


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
