"""The mail backend alerts are sent through: a ``MAILERS`` alias on Django 6.1+, else ``EMAIL_*``.

Over Django's SMTP backend (or a subclass) alerts go through Red Mail with the SMTP
server resolved here (:func:`smtp_settings`); over any other backend (console, file,
locmem, a project's own) through that backend's connection (:func:`mail_connection`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import django
from django.conf import settings
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.functional import empty
from django.utils.module_loading import import_string

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAILER = "default"
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
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


def mailers_supported() -> bool:
    """Whether this Django reads ``MAILERS`` (6.1+)."""
    return MAILERS_SUPPORTED


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
    if _check_alias(mailer):
        return _from_mailer(mailer)
    return _from_email_settings()


def _check_alias(mailer: Any) -> bool:
    """Raise unless ``mailer`` can be used; return whether it names a ``MAILERS`` entry."""
    if not isinstance(mailer, str) or not mailer:
        raise MailerError(
            f"ROCKET_ALERTS['email']['mailer'] {mailer!r} is not a MAILERS alias.",
            "Write the name of an entry of MAILERS, such as 'default'.",
        )
    if uses_mailers():
        return True
    if mailer != DEFAULT_MAILER:
        why = "MAILERS is not defined" if MAILERS_SUPPORTED else "MAILERS needs Django 6.1"
        raise MailerError(
            f"ROCKET_ALERTS['email']['mailer'] is {mailer!r}, but {why}: alerts would be "
            "sent with the EMAIL_* settings.",
            "Define MAILERS with that alias (Django 6.1+), or remove the 'mailer' key.",
        )
    return False


def _mailer_entry(alias: str) -> dict[str, Any]:
    mailers = mailers_setting()
    if not isinstance(mailers, dict) or alias not in mailers:
        known = ", ".join(repr(name) for name in mailers) if isinstance(mailers, dict) else ""
        raise MailerError(
            f"ROCKET_ALERTS['email'] sends through the mailer {alias!r}, which is not in "
            f"MAILERS (it has {known or 'no entries'}).",
            "Add that alias to MAILERS, or set ROCKET_ALERTS['email']['mailer'] to an "
            "existing one.",
        )
    config = mailers[alias]
    return config if isinstance(config, dict) else {}


def backend_path(mailer: str = DEFAULT_MAILER) -> str:
    """The dotted path of the backend alerts use: the alias's ``BACKEND``, or ``EMAIL_BACKEND``.

    Raise :class:`MailerError` when the alias is unusable or the backend cannot be imported.
    Under Django's test runner this is the memory backend it put in place.
    """
    if _check_alias(mailer):
        where = f"MAILERS[{mailer!r}]"
        backend = _mailer_entry(mailer).get("BACKEND", SMTP_BACKEND)
    else:
        where = "EMAIL_BACKEND"
        backend = _email_setting("EMAIL_BACKEND") or SMTP_BACKEND
    if backend != SMTP_BACKEND and not _is_backend(backend):
        raise MailerError(
            f"{where} uses the backend {backend!r}, which cannot be imported as a Django "
            "email backend.",
            "Give the dotted path of an email backend class, such as Django's "
            f"{SMTP_BACKEND} or django.core.mail.backends.console.EmailBackend.",
        )
    return str(backend)


def uses_smtp(mailer: str = DEFAULT_MAILER) -> bool:
    """Whether alerts go to an SMTP server (through Red Mail) rather than another backend."""
    return _is_smtp_backend(backend_path(mailer))


def mail_connection(mailer: str = DEFAULT_MAILER) -> BaseEmailBackend:
    """A connection of the (non-SMTP) backend alerts use, as Django itself would open it."""
    path = backend_path(mailer)
    from_mailers = _check_alias(mailer)
    # Django 6.1+ deprecates get_connection(); its mailers give the backend of an alias
    # ("default" is made of the EMAIL_* settings when MAILERS is not defined).
    mailers = getattr(mail, "mailers", None)
    if mailers is not None:
        connection: BaseEmailBackend = mailers[mailer if from_mailers else DEFAULT_MAILER]
        return connection
    if not from_mailers:
        return mail.get_connection(path)
    options = _mailer_entry(mailer).get("OPTIONS", {})
    return mail.get_connection(path, **(options if isinstance(options, dict) else {}))


def destination(mailer: str = DEFAULT_MAILER) -> str:
    """Where alerts go, for messages: the SMTP server's ``host:port``, or the backend's path."""
    return smtp_settings(mailer).address if uses_smtp(mailer) else backend_path(mailer)


def mailers_setting() -> Any:
    """Return the ``MAILERS`` setting as the project wrote it, or None."""
    return getattr(settings, "MAILERS", None)


def _from_mailer(alias: str) -> SMTPSettings:
    where = f"MAILERS[{alias!r}]"
    config = _mailer_entry(alias)
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
    from django.core.mail.backends.smtp import EmailBackend

    return path == SMTP_BACKEND or _is_backend(path, EmailBackend)


def _is_backend(path: Any, base: type = BaseEmailBackend) -> bool:
    """Whether ``path`` imports as a subclass of ``base``."""
    if not isinstance(path, str):
        return False
    try:
        backend = import_string(path)
    except ImportError:
        return False
    return isinstance(backend, type) and issubclass(backend, base)


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


def default_timeout(mailer: str = DEFAULT_MAILER) -> float:
    """The mailer's ``timeout`` OPTION, or ``EMAIL_TIMEOUT``, or 10 seconds."""
    try:
        return smtp_settings(mailer).timeout or DEFAULT_TIMEOUT
    except MailerError:  # reported by check E048, and again by each failed send
        return DEFAULT_TIMEOUT
