"""Settings for the test suite; DATABASE_URL picks the database (default SQLite)."""

import ctypes
import json
import os
import signal
import sys
import tempfile
from typing import Any

import environ

BASE_DIR = os.path.dirname(os.path.abspath(__file__))

env = environ.Env()

SECRET_KEY = "django-rocket-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

DATABASES = {
    "default": env.db("DATABASE_URL", default="sqlite:///" + os.path.join(BASE_DIR, "test.sqlite3"))
}
# One test database per test run (by pid), so that concurrent runs never share one.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file (not :memory:) so that real scheduler subprocesses share it.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"django-rocket-test-{os.getpid()}.sqlite3")
    }
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # Whatever the server's default: 4-byte characters (emoji) must survive a round trip.
    DATABASES["default"]["TEST"].update(CHARSET="utf8mb4", COLLATION="utf8mb4_unicode_ci")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rocket",
]
try:  # execution "tasks" is tested against django-tasks-db's queue table when it is installed
    import django_tasks_db  # noqa: F401
except ImportError:
    pass
else:
    INSTALLED_APPS.append("django_tasks_db")

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django_rocket": {"handlers": ["stderr"], "level": "INFO", "propagate": True}},
}

# Scheduler subprocesses started by the tests receive their tasks and settings as JSON;
# the settings come last so that they can replace any above (LOGGING included).
ROCKET_TASKS: dict[str, Any] = json.loads(os.environ.get("ROCKET_TEST_TASKS", "{}"))


def _die_with_the_test_run(parent: int) -> None:
    """A scheduler subprocess of a test gets SIGTERM when its pytest dies (Linux).

    Without it, killing pytest mid-run left these schedulers running for good.
    """
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # pytest died before the line above took effect
        os.kill(os.getpid(), signal.SIGTERM)


if os.environ.get("ROCKET_TEST_PARENT"):
    # Popped, so that this process's own children (its fork server, its runs) do not
    # take it for their parent.
    _die_with_the_test_run(int(os.environ.pop("ROCKET_TEST_PARENT")))
for _name, _value in json.loads(os.environ.get("ROCKET_TEST_SETTINGS", "{}")).items():
    globals()[_name] = _value
