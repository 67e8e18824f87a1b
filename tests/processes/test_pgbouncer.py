"""runscheduler behind a real PgBouncer in transaction pooling mode (PostgreSQL).

Many Django deployments reach PostgreSQL only through a pooler. Through PgBouncer in
transaction mode the scheduler records its runs as it does directly; only LISTEN/NOTIFY
is lost (a pooled session does not stay with one client). The scheduler then says so and
run requests wait for the poll; with ROCKET_LISTEN_DATABASE naming a direct connection
they reach it at once again. Run requests are made by ``runtask`` in its own process
through the pooler, as a web app behind it makes them.
"""

import subprocess
import sys

import pytest
from django.db import connection
from django.utils import timezone

from django_rocket.models import RunStatus, Task, TaskRun
from tests.conftest import ROOT, process_env, wait_until

pytestmark = [pytest.mark.slow]

TASKS = {
    "manual": {"func": "tests.support.tasks.noop", "start_cond": "false", "execution": "thread"},
    "every": {
        "func": "tests.support.tasks.noop",
        "start_cond": "every('1 second')",
        "execution": "thread",
    },
}
LOST = "Run requests do not reach this scheduler by LISTEN/NOTIFY"


def databases(pooled_port: int) -> dict:
    """DATABASES for a scheduler: "default" through the pooler, "direct" to the server."""
    s = connection.settings_dict
    direct = {key: s[key] for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
    direct["HOST"] = direct["HOST"] or "127.0.0.1"
    return {"default": {**direct, "PORT": pooled_port}, "direct": direct}


def request_run(pooled_port: int) -> None:
    """``manage.py runtask manual`` through the pooler: it queues a run for the scheduler."""
    done = subprocess.run(
        [sys.executable, "-m", "django", "runtask", "manual"],
        cwd=ROOT,
        env=process_env(TASKS, db_port=pooled_port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "queued" in done.stdout.lower(), done.stdout  # for the scheduler, not run here


def manual_successes() -> int:
    return TaskRun.objects.filter(task__name="manual", status=RunStatus.SUCCESS).count()


def test_listening_directly_a_scheduler_behind_pgbouncer_hears_run_now_at_once(
    scheduler_process, pgbouncer
):
    settings = {
        "DATABASES": databases(pgbouncer.port),
        "ROCKET_LISTEN_DATABASE": "direct",
        "ROCKET_POLL_INTERVAL": 60.0,  # the poll alone would take this long
        "ROCKET_HEARTBEAT": "0.2 seconds",
    }
    scheduler = scheduler_process(TASKS, settings)
    scheduler.wait_for_output("now active")
    wait_until(
        lambda: TaskRun.objects.filter(task__name="every", status=RunStatus.SUCCESS).count() >= 2,
        what="runs recorded through the pooler",
    )
    request_run(pgbouncer.port)
    wait_until(lambda: manual_successes() == 1, 15.0, "the run requested through the pooler")
    assert Task.objects.get(name="every").runs.filter(status=RunStatus.RUNNING).count() <= 1
    assert LOST not in scheduler.output()


def test_listening_through_pgbouncer_the_scheduler_warns_and_the_poll_serves(
    scheduler_process, pgbouncer
):
    settings = {
        "DATABASES": databases(pgbouncer.port),  # ROCKET_LISTEN_DATABASE: "default"
        "ROCKET_POLL_INTERVAL": 2.0,
        "ROCKET_HEARTBEAT": "0.2 seconds",
    }
    scheduler = scheduler_process(TASKS, settings)
    scheduler.wait_for_output("now active")
    scheduler.wait_for_output(LOST)  # within PROBE_SECONDS of listening
    request_run(pgbouncer.port)
    wait_until(lambda: manual_successes() == 1, 15.0, "the poll to start the requested run")
    assert "ROCKET_LISTEN_DATABASE" in scheduler.output()


@pytest.mark.django_db(transaction=True)
def test_an_export_streams_through_pgbouncer_while_other_clients_take_the_pool(pgbouncer):
    """A server-side cursor lives in one pooled session only as long as its transaction."""
    import psycopg

    from django_rocket.ops.export import export_rows

    task = Task.objects.create(name="t", func="x", start_cond="true")
    for _ in range(3):
        TaskRun.objects.create(task=task, status=RunStatus.SUCCESS, started_at=timezone.now())
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = pgbouncer.port  # the export goes through the pooler
    try:
        rows = export_rows(chunk_size=1)  # one FETCH a row
        first = next(rows)
        params = {**connection.get_connection_params(), "port": pgbouncer.port}
        with psycopg.connect(**params) as other:
            other.execute("SELECT 1")  # holds a pooled session in its open transaction
            rest = list(rows)
            other.rollback()
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert [first[0], *(row[0] for row in rest)] == ["t", "t", "t"]
