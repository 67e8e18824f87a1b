"""A server that closes idle sessions: the scheduler and ``runtask`` notice, say nothing alarming.

PostgreSQL's ``idle_session_timeout`` (14 and later) and MySQL's or MariaDB's
``wait_timeout`` close a session that sent nothing for that long; managed databases and
shared hosts often set them low. The scheduler's connection sits idle while a ``main``
run goes on, the listening connection always, ``runtask``'s while its function runs, and
between the beats of its heartbeat. Each then met the closed session on its next
statement: an error and a traceback in the log for every such run ("Could not record the
start", "Server has gone away", "Lost the connection that listens"), and a retry later.

The tests give real subprocesses a server limit of one or two seconds through their
connection settings (nothing changes for other clients of the server), and runs and
gaps longer than that.
"""

import json
import signal

import pytest
from django.db import connection

from django_rocket.engine.listener import APPLICATION_NAME
from django_rocket.models import RunStatus, TaskRun
from tests.conftest import process_env, runtask_wait, wait_until

pytestmark = [pytest.mark.slow]

LIMIT_SECONDS = 1  # what the server allows a session to idle: shorter than every gap here


@pytest.fixture
def idle_limited(transactional_db) -> dict:
    """DATABASES for a subprocess whose sessions the server closes after LIMIT_SECONDS idle."""
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("a server's idle limit is tested on a database server (set DATABASE_URL)")
    s = connection.settings_dict
    default = {key: s[key] for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
    default["HOST"] = default["HOST"] or "127.0.0.1"
    options = dict(s.get("OPTIONS") or {})
    if connection.vendor == "postgresql":
        options["options"] = f"-c idle_session_timeout={LIMIT_SECONDS * 1000}"
    else:
        options["init_command"] = f"SET SESSION wait_timeout={LIMIT_SECONDS}"
    return {"default": {**default, "OPTIONS": options}}


def alarming(output: str) -> list[str]:
    """The log lines an operator is woken for, and tracebacks."""
    return [
        line
        for line in output.splitlines()
        if " WARNING " in line or " ERROR " in line or line.startswith("Traceback")
    ]


def lasting(tmp_path, seconds: float, start_cond: str, execution: str) -> dict:
    """A task whose function returns after ``seconds``, touching no database meanwhile."""
    return {
        "func": "tests.support.tasks.wait_for_file",
        "start_cond": start_cond,
        "execution": execution,
        "parameters": {
            "marker": str(tmp_path / f"{execution}-started"),
            "release": str(tmp_path / "never"),
            "limit": seconds,
        },
    }


def successes(name: str) -> int:
    return TaskRun.objects.filter(task__name=name, status=RunStatus.SUCCESS).count()


def listeners() -> list[int]:
    """Backend pids of the listening connections on the test database (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()",
            [APPLICATION_NAME],
        )
        return [row[0] for row in cursor.fetchall()]


def test_a_scheduler_whose_idle_connections_the_server_closes_records_everything_quietly(
    scheduler_process, idle_limited, tmp_path
):
    tasks = {
        # Runs on the scheduler's own connection, which idles meanwhile for 3 s.
        "long-main": lasting(tmp_path, 3 * LIMIT_SECONDS, "every('1 hour')", "main"),
        # Started every 3 s by a scheduler that otherwise says nothing to the database
        # for longer than the limit (heartbeat 10 s, poll 30 s).
        "every-3s": {
            "func": "tests.support.tasks.queries_the_database",
            "start_cond": "every('3 seconds')",
            "execution": "thread",
        },
    }
    settings = {
        "DATABASES": idle_limited,
        "ROCKET_HEARTBEAT": "10 seconds",
        "ROCKET_LEASE_TIMEOUT": "60 seconds",
        "ROCKET_POLL_INTERVAL": 30,
        "ROCKET_SPOOL_DIR": str(tmp_path / "spool"),
    }
    proc = scheduler_process(tasks, settings)
    wait_until(lambda: successes("long-main") == 1, 30, "the long main run to be recorded")
    if connection.vendor == "postgresql":
        listening = wait_until(listeners, 10, "the scheduler to listen")
    wait_until(lambda: successes("every-3s") >= 3, 30, "three runs of every-3s")
    if connection.vendor == "postgresql":
        # The same session all along: the server never closed the listening connection.
        assert listeners() == listening
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    output = proc.output()
    assert alarming(output) == [], output
    assert "The database closed this process's connection after it sat idle" in output
    assert not TaskRun.objects.exclude(status=RunStatus.SUCCESS).exists()


def test_runtask_whose_function_outlasts_the_servers_idle_limit_ends_quietly(
    idle_limited, tmp_path
):
    """The function idles the connection for 5 s; the heartbeat's idles 2 s between beats."""
    tasks = {"long": lasting(tmp_path, 5 * LIMIT_SECONDS, "false", "thread")}
    settings = {
        "DATABASES": idle_limited,
        "ROCKET_HEARTBEAT": f"{2 * LIMIT_SECONDS} seconds",
        "ROCKET_LEASE_TIMEOUT": "60 seconds",
    }
    env = process_env(tasks, settings)
    assert json.loads(env["ROCKET_TEST_SETTINGS"])["DATABASES"] == idle_limited
    done = runtask_wait("long", env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert alarming(output) == [], output
    assert "ended with success" in done.stdout, output
    run = TaskRun.objects.get()
    assert run.status == RunStatus.SUCCESS
    # The heartbeat kept beating through the closed sessions: last seen after the start.
    assert run.last_seen is not None and run.last_seen > run.started_at
