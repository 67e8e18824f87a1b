"""Celery for the tests: a worker subprocess on RabbitMQ, results in Redis.

Without Celery, django-tasks-celery, RabbitMQ or Redis the Celery tests skip, unless
``ROCKET_CELERY=required`` (as CI sets it), which makes that a failure. On Django 5.2
they always skip: django-tasks-celery is built on ``django.tasks`` (Django >= 6.0) and
Python >= 3.12, and does not work with the django-tasks backport.
"""

import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, database_url, wait_until

# Read by tests/celery_app.py, here and in the workers: this pytest run's result keys.
os.environ.setdefault("ROCKET_CELERY_KEY_PREFIX", f"rocket-test-{os.getpid()}:")
BROKER = ("127.0.0.1", 5672)
CELERY_APP = "tests.support.celery_app.app"


def require_celery() -> None:
    """Skip (fail if ROCKET_CELERY=required) unless Celery tests can run here."""
    if importlib.util.find_spec("django.tasks") is None:
        pytest.skip(
            "django-tasks-celery needs django.tasks (Django >= 6.0, Python >= 3.12); it does "
            "not work with the django-tasks backport on Django 5.2."
        )
    problem = _missing()
    if problem is None:
        return
    if os.environ.get("ROCKET_CELERY", "").lower() == "required":
        pytest.fail(f"{problem}, and ROCKET_CELERY=required.")
    pytest.skip(f"{problem}; set ROCKET_CELERY=required to make this a failure.")


def _missing() -> str | None:
    absent = [m for m in ("celery", "django_tasks_celery") if importlib.util.find_spec(m) is None]
    if absent:
        return (
            f"{', '.join(absent)} not installed (pip install -e . --group tasks, on Python >= 3.12)"
        )
    try:
        socket.create_connection(BROKER, timeout=2).close()
    except OSError as exc:
        return f"RabbitMQ is not reachable on {BROKER[0]}:{BROKER[1]} ({exc})"
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379).ping()
    except redis.exceptions.ConnectionError as exc:
        return f"Redis (Celery's result backend) is not reachable on 127.0.0.1:6379 ({exc})"
    return None


def tasks_setting(*queues: str) -> dict:
    """TASKS with django-tasks-celery's backend on the test app, serving ``queues``."""
    return {
        "default": {
            "BACKEND": "django_tasks_celery.CeleryBackend",
            # "default" too: tests/remote_tasks.py declares @task functions on it.
            "QUEUES": ["default", *queues],
            "OPTIONS": {"CELERY_APP": CELERY_APP},
        }
    }


class Worker:
    """A ``celery worker`` subprocess consuming some queues, in a session of its own."""

    def __init__(self, *queues: str, tasks: dict, concurrency: int = 2) -> None:
        self.name = f"rocket-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        env = os.environ.copy()
        env.update(
            DATABASE_URL=database_url(),
            DJANGO_SETTINGS_MODULE="tests.settings",
            PYTHONPATH=str(ROOT),
            # A worker runs only what its ROCKET_TASKS declares: the scheduler's tasks.
            ROCKET_TEST_SETTINGS=json.dumps(
                {"TASKS": tasks_setting(*queues), "ROCKET_TASKS": tasks}
            ),
            ROCKET_TEST_PARENT=str(os.getpid()),  # tests/celery_app.py: die with this pytest
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "--app=tests.support.celery_app",
                "worker",
                # prefork, as in production: the pool a revoke can terminate a task in.
                "--pool=prefork",
                f"--concurrency={concurrency}",
                f"--queues={','.join(queues)}",
                f"--hostname={self.name}",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its pool processes are stopped with it
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_until_ready(self, limit: float = 60.0) -> None:
        try:
            wait_until(
                lambda: (
                    any(f"{self.name} ready." in line for line in self.lines)
                    or self.proc.poll() is not None
                ),
                limit,
                f"Celery worker {self.name} to be ready",
            )
        except AssertionError:
            print(*self.lines)
            raise
        if self.proc.poll() is not None:
            print(*self.lines)
            pytest.fail(f"Celery worker {self.name} exited with {self.proc.returncode}.")

    def pool_pids(self) -> set[int]:
        """Return the pids of the worker's pool processes (where tasks run)."""
        children = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        with open(children) as listing:
            return {int(pid) for pid in listing.read().split()}

    def exited_pool_pids(self) -> set[int]:
        """Return the pids of pool processes that have died and been replaced so far.

        A task that kills its pool process (or a revoke that terminates one) leaves a
        run whose pid no longer shows in :meth:`pool_pids`; the pool logs each loss as
        ``Process 'ForkPoolWorker-N' pid:1234 exited with 'signal 9 (SIGKILL)'``.
        """
        return {int(pid) for pid in re.findall(r" pid:(\d+) exited with ", self.output())}

    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        """SIGKILL the worker and its pool, as a lost machine would be."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Cold shutdown (SIGQUIT ends the pool too); SIGKILL the session if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


class Celery:
    """Queues of this test's own, workers on them, and cleaning up after both."""

    def __init__(self) -> None:
        self.queue = f"rocket-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.queues = [self.queue]
        self.workers: list[Worker] = []

    def other_queue(self, suffix: str) -> str:
        """Name another queue of this test (one no worker serves, say)."""
        name = f"{self.queue}-{suffix}"
        self.queues.append(name)
        return name

    def settings(self) -> dict:
        """Settings for a scheduler subprocess (or ``settings``) using this test's queues."""
        return {"TASKS": tasks_setting(*self.queues)}

    def start_worker(self, *queues: str, tasks: dict, concurrency: int = 2) -> Worker:
        worker = Worker(*(queues or (self.queue,)), tasks=tasks, concurrency=concurrency)
        self.workers.append(worker)
        worker.wait_until_ready()
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        from tests.support.celery_app import KEY_PREFIX, app

        with app.connection_for_write() as connection:
            channel = connection.default_channel
            for queue in self.queues:
                channel.queue_delete(queue)
        results = app.backend.client
        keys = list(results.scan_iter(f"{KEY_PREFIX}*"))
        if keys:
            results.delete(*keys)


@contextlib.contextmanager
def celery_queues() -> Iterator[Celery]:
    """This test's Celery queues; workers started with ``start_worker()`` stop after it."""
    require_celery()
    harness = Celery()
    try:
        yield harness
    finally:
        for worker in harness.workers:
            print(f"--- Celery worker {worker.name} (exit {worker.proc.poll()}):")
            print(worker.output())
        harness.close()
