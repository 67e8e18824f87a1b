import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from django.db import connection

from django_rocket.clock import FakeClock
from tests.support.netproxy import CuttableProxy

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], object], limit: float = 30.0, what: str = "") -> object:
    """Poll a condition in a real subprocess test; fail with a message after ``limit``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"Timed out after {limit}s waiting for {what or predicate}.")


def waiting_task(tmp_path: Path, execution: str) -> dict:
    """A task (every hour) whose run writes ``tmp_path/started``, then waits for
    ``tmp_path/release`` (tests.support.tasks.wait_for_file)."""
    return {
        "func": "tests.support.tasks.wait_for_file",
        "start_cond": "every('1 hour')",
        "execution": execution,
        "parameters": {
            "marker": str(tmp_path / "started"),
            "release": str(tmp_path / "release"),
        },
    }


def statements_sleeping() -> int:
    """The test database's sessions running the sleep of ``sleeps_in_the_database``.

    Only this database's: CI runs another suite against the same server at the same time.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND datname = current_database() AND query LIKE 'SELECT pg_sleep%%'"
            )
        else:
            cursor.execute(
                "SELECT count(*) FROM information_schema.processlist "
                "WHERE db = DATABASE() AND info LIKE 'SELECT SLEEP%%'"
            )
        return int(cursor.fetchone()[0])


_SCHEMES = {"postgresql": ("postgres", 5432), "mysql": ("mysql", 3306)}


@contextlib.contextmanager
def unreachable() -> Iterator[None]:
    """The test database refuses every new connection: a closed port, a missing directory."""
    connection.close()
    settings = connection.settings_dict
    key = "NAME" if connection.vendor == "sqlite" else "PORT"
    saved = settings[key]
    settings[key] = "/nonexistent/rocket/db.sqlite3" if key == "NAME" else 1
    try:
        yield
    finally:
        connection.close()
        settings[key] = saved


def database_url(port: int = 0) -> str:
    """The test database's URL for a subprocess, optionally through another port (a proxy)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    scheme, default_port = _SCHEMES[connection.vendor]
    user = quote(s.get("USER") or ("postgres" if connection.vendor == "postgresql" else "root"))
    password = s.get("PASSWORD")
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    host = s.get("HOST") or "127.0.0.1"
    port = port or s.get("PORT") or default_port
    # Options given as URL parameters (isolation_level, charset...) travel with the URL.
    options = {k: v for k, v in (s.get("OPTIONS") or {}).items() if isinstance(v, str | int)}
    query = f"?{urlencode(options)}" if options else ""
    return f"{scheme}://{credentials}@{host}:{port}/{s['NAME']}{query}"


def process_env(tasks: dict, settings: dict | None = None, db_port: int = 0) -> dict[str, str]:
    """The environment of a ``manage.py`` subprocess on the test database (tests/settings.py)."""
    env = os.environ.copy()
    env.update(
        DATABASE_URL=database_url(db_port),
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=str(ROOT),
        ROCKET_TEST_TASKS=json.dumps(tasks),
        ROCKET_TEST_SETTINGS=json.dumps(settings or {}),
        ROCKET_TEST_PARENT=str(os.getpid()),  # tests/settings.py: die with this pytest
    )
    return env


def runtask_wait(
    name: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess:
    """``manage.py runtask NAME --wait`` in a subprocess with ``env`` (process_env); its output."""
    return subprocess.run(
        [sys.executable, "-m", "django", "runtask", name, "--wait"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class SchedulerProcess:
    """A real ``runscheduler`` subprocess (or ``command``'s) against the test database."""

    def __init__(
        self,
        tasks: dict,
        settings: dict | None = None,
        args: tuple = (),
        db_port: int = 0,
        command: str = "runscheduler",
    ) -> None:
        env = process_env(tasks, settings, db_port)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", command, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for_output(self, text: str, limit: float = 30.0) -> None:
        wait_until(lambda: any(text in line for line in self.lines), limit, repr(text))

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(timeout=10)
        return "".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def scheduler_process(transactional_db):
    started: list[SchedulerProcess] = []

    def start(
        tasks: dict,
        settings: dict | None = None,
        args: tuple = (),
        db_port: int = 0,
        command: str = "runscheduler",
    ) -> SchedulerProcess:
        proc = SchedulerProcess(tasks, settings, args, db_port, command)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
        # Shown by pytest only when the test failed: what each scheduler said.
        print(f"--- scheduler pid {proc.proc.pid} (exit {proc.proc.returncode}):")
        print(proc.output())


@pytest.fixture(autouse=True)
def _fresh_database_error_repeats():
    """Each test's first database error is logged in full (engine/connection.py keeps,
    per process, which errors repeat; the fake clocks of two tests overlap)."""
    from django_rocket.engine import connection as engine_connection

    engine_connection._repeats.clear()


@pytest.fixture(autouse=True, scope="session")
def _state_home(tmp_path_factory):
    """Spool files of the tests (and their scheduler subprocesses) stay out of ~/.local."""
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if old is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = old


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


@pytest.fixture(scope="session")
def standby():
    """A real PostgreSQL hot standby streaming from a throwaway primary (tests.support.standby)."""
    from tests.support.standby import Standby

    server = Standby()
    yield server
    server.stop()


@pytest.fixture
def proxy(transactional_db):
    """A CuttableProxy (tests.support.netproxy) in front of the test database's server."""
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("a database outage is tested on a database server (set DATABASE_URL)")
    s = connection.settings_dict
    default_port = 5432 if connection.vendor == "postgresql" else 3306
    proxy = CuttableProxy(s.get("HOST") or "127.0.0.1", int(s.get("PORT") or default_port))
    yield proxy
    proxy.close()


@pytest.fixture
def pgbouncer():
    """A real PgBouncer (transaction pooling) in front of the test PostgreSQL server."""
    if connection.vendor != "postgresql":
        pytest.skip("PgBouncer pools PostgreSQL connections")
    from tests.support.pgbouncer import PgBouncer

    s = connection.settings_dict
    bouncer = PgBouncer(
        s.get("HOST") or "127.0.0.1", int(s.get("PORT") or 5432), s.get("USER") or "postgres"
    )
    yield bouncer
    # Before the test database is dropped: the pool's server connections hold it.
    bouncer.stop()
