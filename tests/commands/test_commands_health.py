"""``checkscheduler``: exit 0 with an active scheduler seen recently, else 1 and a reason."""

import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError
from django.utils import timezone

from django_rocket.models import SchedulerInstance, SchedulerRole
from django_rocket.ops import overview
from tests.conftest import ROOT, database_url, wait_until

# The command reads the database in a thread of its own (--timeout), on its own
# connection: it must see the rows the tests commit.
pytestmark = pytest.mark.django_db(transaction=True)


def check(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("checkscheduler", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    return code, out.getvalue(), err.getvalue()


def instance(role: str, seconds_ago: float = 1, **extra) -> SchedulerInstance:
    return SchedulerInstance.objects.create(
        host="box",
        pid=7,
        role=role,
        last_seen=timezone.now() - timedelta(seconds=seconds_ago),
        **extra,
    )


def test_no_scheduler_ever():
    assert check() == (1, "", "FAIL: no scheduler has ever run against this database.\n")


def test_an_active_scheduler_seen_recently():
    instance(SchedulerRole.ACTIVE, 2)
    code, out, err = check()
    assert (code, err) == (0, "")
    assert out.startswith("OK: scheduler box:7 is active, seen 2.")


def test_an_active_scheduler_seen_too_long_ago(settings):
    settings.ROCKET_HEALTH_MAX_AGE = 60
    instance(SchedulerRole.ACTIVE, 90)
    code, out, err = check()
    assert (code, out) == (1, "")
    assert err.startswith("FAIL: no active scheduler seen in the last 60 s; the last, box:7 ")
    assert "(active), was seen 1 min 30 s ago." in err
    assert len(err.splitlines()) == 1
    assert check("--max-age", "120")[0] == 0


def test_a_stopped_scheduler():
    instance(SchedulerRole.STOPPED, 5, stopped_at=timezone.now())
    code, _, err = check()
    assert code == 1
    assert "the last one, box:7, stopped" in err


def test_only_a_standby_scheduler():
    instance(SchedulerRole.STANDBY, 1)
    code, _, err = check()
    assert code == 1
    assert "no active scheduler; box:7 is on standby" in err


def test_the_newest_active_one_is_reported():
    instance(SchedulerRole.ACTIVE, 500)
    SchedulerInstance.objects.create(host="new", pid=8, role=SchedulerRole.ACTIVE)
    assert check()[1].startswith("OK: scheduler new:8 is active")


def test_a_database_error_is_a_failure_not_a_traceback(monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("could not connect to server\nIs the server running?")

    monkeypatch.setattr(overview, "active_scheduler", broken)
    assert check() == (
        1,
        "",
        "FAIL: cannot read the scheduler table: could not connect to server\n",
    )


@pytest.mark.parametrize(
    "value", ["0", "-5", "soon", "nan", "inf", "-inf", "1e308", "3153600001", "9" * 5000, "--"]
)
def test_bad_max_age(value):
    with pytest.raises(CommandError, match="--max-age"):
        check("--max-age", value)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "1e308", "--"])
def test_bad_timeout(value):
    with pytest.raises(CommandError, match="--timeout"):
        check("--timeout", value)


def test_a_database_slower_than_the_timeout_is_a_failure(monkeypatch):
    """The read goes on in its thread; the check answers when the timeout is up."""
    release = threading.Event()

    def stuck(*args, **kwargs):
        release.wait(30)
        return None

    monkeypatch.setattr(overview, "active_scheduler", stuck)
    try:
        assert check("--timeout", "0.2") == (
            1,
            "",
            "FAIL: the database did not answer within 0.2 s (--timeout).\n",
        )
    finally:
        release.set()


def test_an_error_that_is_not_the_databases_is_not_taken_for_a_timeout(monkeypatch):
    """Raised in the reading thread, it is raised again by the command, as before --timeout."""

    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not the database")

    monkeypatch.setattr(overview, "active_scheduler", broken)
    with pytest.raises(RuntimeError, match="a bug, not the database"):
        check()


def test_max_age_up_to_a_hundred_years():
    instance(SchedulerRole.STANDBY, seconds_ago=86400 * 365 * 50)
    code, _, err = check("--max-age", "3153600000")
    assert code == 1
    assert "is on standby (seen" in err


def checkscheduler_process(*args: str, port: int = 0) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(port),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", "checkscheduler", "--max-age", "30", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_exit_codes_against_a_real_scheduler(scheduler_process):
    before = checkscheduler_process()
    assert before.returncode == 1
    assert before.stderr == "FAIL: no scheduler has ever run against this database.\n"
    proc = scheduler_process({"idle": {"func": "tests.support.tasks.noop", "start_cond": "false"}})
    wait_until(
        lambda: SchedulerInstance.objects.filter(role=SchedulerRole.ACTIVE).exists(),
        what="the scheduler to become active",
    )
    during = checkscheduler_process()
    assert during.returncode == 0, during.stderr
    assert during.stdout.startswith(f"OK: scheduler {socket.gethostname()}:{proc.proc.pid} ")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.output()
    after = checkscheduler_process()
    assert after.returncode == 1
    assert "stopped" in after.stderr


@pytest.mark.slow
def test_a_database_that_stopped_answering_fails_the_check_within_its_timeout(proxy):
    """A partition: the proxy holds every byte and closes nothing.

    Before, the check waited for the driver, which waits until the operating system gives
    up on TCP (about 15 minutes); the probe's own caller timed out instead, without a
    reason.
    """
    instance(SchedulerRole.ACTIVE)
    healthy = checkscheduler_process(port=proxy.port)
    assert healthy.returncode == 0, healthy.stderr
    proxy.pause()
    try:
        done = checkscheduler_process("--timeout", "1", port=proxy.port)
    finally:
        proxy.resume()
    assert done.returncode == 1
    assert done.stderr == "FAIL: the database did not answer within 1 s (--timeout).\n"
    assert done.stdout == ""
