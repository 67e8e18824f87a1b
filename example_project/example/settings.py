"""Settings for the django-rocket example project.

Configuration comes from the environment through django-environ: DATABASE_URL
(default: a SQLite file beside this project, in WAL mode), EMAIL_URL (the EMAIL_*
settings before Django 6.1, the mailer "default" from 6.1 on; default: the console
backend, which prints the alert emails) and ROCKET_ALERT_RECEIVERS.
"""

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import django
import environ

from django_rocket.conditions import daily, retry, time_of_day

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env(DEBUG=(bool, True))
environ.Env.read_env(BASE_DIR / ".env")  # optional; missing file is fine

SECRET_KEY = env("SECRET_KEY", default="django-insecure-example-only-change-me")
DEBUG = env("DEBUG")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rocket",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "example.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the admin read while the scheduler writes, and commits ~8x faster.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

EMAIL_CONFIG = env.email("EMAIL_URL", default="consolemail://")
if django.VERSION >= (6, 1):
    # Django 6.1 deprecates the EMAIL_* settings that EMAIL_URL fills: the mailer
    # "default" is made of them instead (see docs/howto/alerts.rst).
    MAILERS = {"default": {"BACKEND": EMAIL_CONFIG["EMAIL_BACKEND"]}}
    if EMAIL_CONFIG["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend":
        MAILERS["default"]["OPTIONS"] = {
            "host": EMAIL_CONFIG["EMAIL_HOST"],
            "port": EMAIL_CONFIG["EMAIL_PORT"],
            "username": EMAIL_CONFIG["EMAIL_HOST_USER"],
            "password": EMAIL_CONFIG["EMAIL_HOST_PASSWORD"],
            "use_tls": EMAIL_CONFIG.get("EMAIL_USE_TLS", False),
            "use_ssl": EMAIL_CONFIG.get("EMAIL_USE_SSL", False),
        }
else:
    vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="scheduler@localhost")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_rocket": {"handlers": ["console"], "level": "INFO"},
    },
}

# --- django-rocket --------------------------------------------------------------------------

# The recipe of Rocketry's "Robust Applications" page: once a day and up to three retries,
# all inside a time window. The retries wait (20 seconds, then 40, then 80, each spread
# by up to a quarter) and only follow a ConnectionError: a retry the instant after a
# failure would meet the same server that just did not answer. Here the window is the two
# hours from the hour the demo started, so that it includes now; a real project writes fixed
# times ("10:00", "12:00").
_HOUR = datetime.now(ZoneInfo(TIME_ZONE)).hour
REPORT_WINDOW = (f"{_HOUR:02d}:00", f"{(_HOUR + 2) % 24:02d}:00")

ROCKET_TASKS = {
    "heartbeat": {
        "func": "example.tasks.heartbeat",
        "start_cond": "every('10 seconds')",
        "execution": "thread",
        "description": "Writes a line every ten seconds: proof the scheduler is alive.",
    },
    "flaky_report": {
        "func": "example.tasks.flaky_report",
        "start_cond": (
            daily | retry(3, delay="20 seconds", backoff=2, jitter=True, on=["ConnectionError"])
        )
        & time_of_day.between(*REPORT_WINDOW),
        "description": "Runs once a day, fails at random, and is retried up to three times "
        "after a ConnectionError, waiting longer each time, all within its time window.",
    },
    "report_status": {
        "func": "example.tasks.heartbeat",
        "start_cond": "every('1 minute') & report_server_up",
        "execution": "thread",
        "description": "Its condition raises: the error is logged and silenced "
        "(ROCKET_SILENCE_COND_CHECK), the condition counts as false and the rest runs on.",
    },
    "always_fails": {
        "func": "example.tasks.always_fails",
        "start_cond": "every('30 seconds')",
        "description": "Always fails, so there is a traceback to look at in the admin.",
    },
    "after_report": {
        "func": "example.tasks.heartbeat",
        "start_cond": "after_success('flaky_report')",
        "execution": "thread",
        "description": "Runs after each success of flaky_report.",
    },
}
ROCKET_CONDITION_MODULES = ["example.conditions"]
# Keep going when a condition raises (report_server_up does): the error is logged on
# django_rocket.scheduler and the condition counts as false.
ROCKET_SILENCE_COND_CHECK = True
ROCKET_TIMEOUT = "5 minutes"
ROCKET_ADMIN_BASE_URL = env("ROCKET_ADMIN_BASE_URL", default="http://127.0.0.1:8000")
# An email for each failure (one per task per 15 minutes, then a summary). With the default
# EMAIL_URL (consolemail://) Django's console backend prints it in the scheduler's output;
# an smtp:// EMAIL_URL sends it for real. Try it: manage.py sendtestalert.
ROCKET_ALERTS = {
    "email": {"receivers": env.list("ROCKET_ALERT_RECEIVERS", default=["ops@example.com"])}
}
