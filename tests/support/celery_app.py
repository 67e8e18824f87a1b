"""The Celery app of the Celery tests: RabbitMQ as broker, Redis as result backend.

Workers start with ``celery -A tests.support.celery_app worker`` (see
``tests/support/celery_support.py``);
django-tasks-celery finds the app through ``TASKS[alias]["OPTIONS"]["CELERY_APP"]``.
"""

import ctypes
import os
import signal
import sys

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

BROKER_URL = os.environ.get("ROCKET_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
RESULTS_URL = os.environ.get("ROCKET_CELERY_RESULTS", "redis://127.0.0.1:6379/0")
# Every pytest run keeps its results under keys of its own, removed after each test.
KEY_PREFIX = os.environ.get("ROCKET_CELERY_KEY_PREFIX", "rocket-test:")

app = Celery("rocket_tests")
app.conf.update(
    broker_url=BROKER_URL,
    broker_connection_retry_on_startup=True,
    result_backend=RESULTS_URL,
    result_backend_transport_options={"global_keyprefix": KEY_PREFIX},
    # What django-rocket's docs ask for: a worker id on each result, STARTED recorded.
    result_extended=True,
    task_track_started=True,
    worker_prefetch_multiplier=1,
)


def _die_with_the_test_run(parent: int) -> None:
    """Get SIGQUIT (Celery's cold shutdown, which ends the pool too) when pytest dies."""
    if sys.platform != "linux":
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGQUIT)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # pytest died before the line above took effect
        os.kill(os.getpid(), signal.SIGQUIT)


if os.environ.get("ROCKET_TEST_PARENT"):
    # Popped before tests/settings.py sees it, which would ask for SIGTERM: a warm
    # shutdown that waits for the tasks in progress.
    _die_with_the_test_run(int(os.environ.pop("ROCKET_TEST_PARENT")))


@signals.worker_init.connect
def build_the_run_task(**kwargs: object) -> None:
    """Build django-rocket's worker Task, which django-tasks-celery registers with Celery."""
    import django

    django.setup()
    from django_rocket.executors.django_tasks.worker import call_in_worker

    assert call_in_worker.module_path in app.tasks, call_in_worker.module_path
