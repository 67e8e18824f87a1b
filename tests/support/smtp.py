"""Real SMTP endpoints for the alert tests: a working server, a closed port, a silent one."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage

import django
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.raw: list[bytes] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.raw.append(envelope.content)
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"

    def wait_for(
        self, count: int, limit: float = 10.0, what: Callable[[], str] | None = None
    ) -> list[EmailMessage]:
        """Wait for ``count`` messages; on failure show ``what()`` (a subprocess's output)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.01)
        got = len(self.messages)
        detail = f"\n{what()}" if what else ""
        raise AssertionError(f"Expected {count} email(s) within {limit}s, got {got}.{detail}")


class SMTPServer:
    """aiosmtpd on a free localhost port."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class SilentServer:
    """Accepts connections and never says a word (a hung SMTP server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


# Django 6.1 reads MAILERS and deprecates the EMAIL_* settings (setting one in a test warns);
# before 6.1 only EMAIL_* exist. The tests configure SMTP the way the running Django wants.
USE_MAILERS = django.VERSION >= (6, 1)
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def mailer(port: int, host: str = "127.0.0.1", **options: object) -> dict:
    """A MAILERS entry for Django's SMTP backend."""
    return {
        "BACKEND": SMTP_BACKEND,
        "OPTIONS": {"host": host, "port": port, "use_tls": False, "use_ssl": False, **options},
    }


def email_settings(port: int, host: str = "127.0.0.1") -> dict:
    """Settings for the SMTP server at ``host:port``: MAILERS on Django 6.1+, else EMAIL_*."""
    if USE_MAILERS:
        return {
            "MAILERS": {"default": mailer(port, host)},
            "DEFAULT_FROM_EMAIL": "rocket@example.com",
        }
    return {
        # Django's test runner puts the memory backend in EMAIL_BACKEND; alerts use it too.
        "EMAIL_BACKEND": SMTP_BACKEND,
        "EMAIL_HOST": host,
        "EMAIL_PORT": port,
        "EMAIL_HOST_USER": "",
        "EMAIL_HOST_PASSWORD": "",
        "EMAIL_USE_TLS": False,
        "EMAIL_USE_SSL": False,
        "DEFAULT_FROM_EMAIL": "rocket@example.com",
    }


def use_smtp(settings, port: int, host: str = "127.0.0.1") -> None:
    """Point pytest-django's ``settings`` fixture at the SMTP server at ``host:port``."""
    for name, value in email_settings(port, host).items():
        setattr(settings, name, value)


def parts(message: EmailMessage) -> tuple[str, str]:
    """The HTML and the plain-text parts of an alert email."""
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    return (
        html.get_content().replace("\r\n", "\n") if html is not None else "",
        text.get_content().replace("\r\n", "\n") if text is not None else "",
    )
