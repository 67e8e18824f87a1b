"""A partition that drops packets ends within the TCP options docs/howto/deployment.rst gives.

The test proxy's ``pause()`` (test_stalled_loop.py) holds bytes that the kernel has
already acknowledged, so no TCP timer ever fires behind it: it shows the stall report,
not its cure. Here netfilter drops every packet to and from the scheduler's proxy, as a
lost route or a failover that moved the server's address does, and the subprocess has
the connection options the deployment guide recommends, scaled down from seconds to
about two. Each test fails if an option is missing: without keep-alive probes at a
short interval a statement in flight waits 75 s and more, without ``tcp_user_timeout``
or ``read_timeout`` about 15 minutes, without ``connect_timeout`` two.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.db import connection

from django_rocket.models import RunStatus, TaskRun
from tests.conftest import ROOT, process_env, runtask_wait, statements_sleeping, wait_until
from tests.support import packetdrop

pytestmark = [pytest.mark.slow]

GIVE_UP = 2  # seconds: what the options let a wait for the server last
STUCK = "has lasted"  # the stall report (engine/stalls.py): the options did not end the wait
# A lease well above what one step of a tick waits with the options (one or two waits of
# GIVE_UP), so that a loaded machine does not report a stall the options prevented.
SETTINGS = {"ROCKET_HEARTBEAT": "0.5 seconds", "ROCKET_LEASE_TIMEOUT": "10 seconds"}
EVERY = {
    "func": "tests.support.tasks.noop",
    "start_cond": "every('1 second')",
    "execution": "thread",
}


@pytest.fixture
def partitionable(proxy) -> dict:
    """DATABASES through ``proxy`` with the deployment guide's options, scaled to GIVE_UP."""
    packetdrop.available()
    s = connection.settings_dict
    default = {key: s[key] for key in ("ENGINE", "NAME", "USER", "PASSWORD")}
    options = dict(s.get("OPTIONS") or {})
    if connection.vendor == "postgresql":
        options.update(
            tcp_user_timeout=GIVE_UP * 1000,  # ms
            keepalives_idle=1,
            keepalives_interval=1,
            connect_timeout=GIVE_UP,
        )
    else:
        options.update(read_timeout=GIVE_UP, write_timeout=GIVE_UP, connect_timeout=GIVE_UP)
    return {"default": {**default, "HOST": "127.0.0.1", "PORT": proxy.port, "OPTIONS": options}}


def settings_for(databases: dict) -> dict:
    return {**SETTINGS, "DATABASES": databases}


def successes(name: str) -> int:
    return TaskRun.objects.filter(task__name=name, status=RunStatus.SUCCESS).count()


def goes_on_without_a_stall(proc, reported: float) -> None:
    """After the partition: 'every' runs again, the scheduler stops cleanly, never stalled.

    ``reported``: seconds from the first dropped packet to the scheduler's report of it.
    """
    after = successes("every")
    wait_until(lambda: successes("every") >= after + 2, 30, "runs after the partition")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    output = proc.output()
    assert STUCK not in output, output
    # Three times GIVE_UP, well within the lease: without the options, 75 s and more.
    assert reported < 3 * GIVE_UP, (reported, output)
    assert not TaskRun.objects.filter(status=RunStatus.RUNNING).exists()


def test_a_partition_between_statements_ends_in_an_outage_not_a_stall(
    scheduler_process, proxy, partitionable
):
    proc = scheduler_process({"every": EVERY}, settings_for(partitionable))
    wait_until(lambda: successes("every") >= 2, 30, "runs before the partition")
    before = len(proc.lines)
    with packetdrop.dropping(proxy.port):
        started = time.monotonic()
        wait_until(
            lambda: any(" WARNING " in line or " ERROR " in line for line in proc.lines[before:]),
            20,
            "the scheduler to report the lost database",
        )
        reported = time.monotonic() - started
        # Reconnecting fails within connect_timeout, again and again: the loop goes on.
        time.sleep(3 * GIVE_UP)
    goes_on_without_a_stall(proc, reported)


def test_a_statement_in_flight_when_packets_stop_fails_within_the_options(
    scheduler_process, proxy, partitionable, tmp_path
):
    tasks = {
        "sleeps": {
            "func": "tests.support.tasks.sleeps_in_the_database",
            "start_cond": "every('1 hour')",
            "execution": "main",  # on the scheduler's own connection: its loop waits
            # Longer than the wait the options allow (GIVE_UP), shorter than the test.
            "parameters": {"marker": str(tmp_path / "started"), "seconds": 10},
        },
        "every": EVERY,
    }
    proc = scheduler_process(tasks, settings_for(partitionable))
    wait_until((tmp_path / "started").exists, 30, "the sleeping run to start")
    wait_until(statements_sleeping, 10, "the server to run the sleeping statement")
    with packetdrop.dropping(proxy.port):
        started = time.monotonic()
        proc.wait_for_output("Task 'sleeps' fail", 20)
        reported = time.monotonic() - started
        time.sleep(3 * GIVE_UP)
    wait_until(
        lambda: TaskRun.objects.filter(task__name="sleeps", status=RunStatus.FAIL).exists(),
        30,
        "the sleeping run's failure to be recorded",
    )
    goes_on_without_a_stall(proc, reported)
    run = TaskRun.objects.get(task__name="sleeps")
    assert "OperationalError" in run.exc_text, run.exc_text
    # The server goes on with a statement whose client is gone until it ends; the test
    # database cannot be dropped while it does.
    wait_until(lambda: not statements_sleeping(), 30, "the orphaned statement to end")


def test_a_long_statement_without_a_partition_is_cut_only_by_mysqls_read_timeout(
    partitionable, tmp_path
):
    """The options bound silence, not work, on PostgreSQL; MySQL's read_timeout bounds both.

    The server answers keep-alive probes while it runs a statement, so PostgreSQL's
    options never end a statement that takes long; MySQLdb's ``read_timeout`` ends any
    read that waits longer, a legitimate slow query included (the guide says so).
    """
    seconds = 2 * GIVE_UP
    tasks = {
        "sleeps": {
            "func": "tests.support.tasks.sleeps_in_the_database",
            "start_cond": "false",
            "execution": "thread",
            "parameters": {"marker": str(tmp_path / "started"), "seconds": seconds},
        }
    }
    env = process_env(tasks, settings_for(partitionable))
    done = runtask_wait("sleeps", env)
    run = TaskRun.objects.get(task__name="sleeps")
    if connection.vendor == "postgresql":
        assert done.returncode == 0, done.stdout + done.stderr
        assert run.status == RunStatus.SUCCESS, run.exc_text
    else:
        assert run.status == RunStatus.FAIL
        assert "Lost connection to server during query" in run.exc_text, run.exc_text


def test_runtask_through_a_partition_records_its_finish_once_packets_flow(
    proxy, partitionable, tmp_path
):
    """The function ends while packets are dropped: the finish fails fast, retries, lands."""
    tasks = {
        "waits": {
            "func": "tests.support.tasks.wait_for_file",
            "start_cond": "false",
            "execution": "thread",
            "parameters": {
                "marker": str(tmp_path / "started"),
                "release": str(tmp_path / "release"),
                "limit": 60,
            },
        }
    }
    settings = {**settings_for(partitionable), "ROCKET_HEARTBEAT": "0.5 seconds"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "runtask", "waits", "--wait"],
        cwd=ROOT,
        env=process_env(tasks, settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until((tmp_path / "started").exists, 30, "the run to start")
        with packetdrop.dropping(proxy.port):
            (tmp_path / "release").write_text("go")
            # The finish's first attempt and the heartbeat's beats fail meanwhile.
            time.sleep(3 * GIVE_UP)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "Recording the finish of run" in output and "(attempt 1); retrying." in output, output
    assert "ended with success" in output, output
    run = TaskRun.objects.get()
    assert run.status == RunStatus.SUCCESS
    assert run.result == "released"


def test_a_drop_left_by_a_test_process_that_died_is_removed():
    """A killed pytest leaves its table; the next drop removes it, not a live process's."""
    packetdrop.available()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan, live = f"{packetdrop.PREFIX}{dead.pid}_1", f"{packetdrop.PREFIX}1_2"
    for table in (orphan, live):  # pid 1 is alive
        subprocess.run(["nft", "add", "table", "inet", table], check=True)
    try:
        with packetdrop.dropping(9):
            tables = packetdrop._tables()
            assert orphan not in tables and live in tables, tables
            assert f"{packetdrop.PREFIX}{os.getpid()}_9" in tables
        assert f"{packetdrop.PREFIX}{os.getpid()}_9" not in packetdrop._tables()
    finally:
        for table in (orphan, live):
            subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
