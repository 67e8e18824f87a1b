"""The database server goes away under a running scheduler: nothing is lost, nothing is doubled.

On PostgreSQL, MariaDB or MySQL. The scheduler reaches the real server through a proxy
that the test cuts, which resets its connections and refuses new ones exactly as a
stopped server would, without disturbing other clients of the server.
"""

import itertools
import signal
import time

import pytest
from django.db import connection
from django.utils import timezone

from django_rocket.models import RunStatus, TaskRun
from tests.conftest import wait_until
from tests.support.netproxy import CuttableProxy

pytestmark = [pytest.mark.slow]

OUTAGE_SECONDS = 20  # as long as a PostgreSQL restart with a slow recovery


@pytest.fixture
def proxy(transactional_db):
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("a database outage is tested on a database server (set DATABASE_URL)")
    s = connection.settings_dict
    default_port = 5432 if connection.vendor == "postgresql" else 3306
    proxy = CuttableProxy(s.get("HOST") or "127.0.0.1", int(s.get("PORT") or default_port))
    yield proxy
    proxy.close()


def setup(tmp_path):
    tasks = {
        "tick": {
            "func": "tests.support.tasks.noop",
            "start_cond": "every('1 second')",
            "execution": "thread",
        },
        "slow": {
            "func": "tests.support.tasks.wait_for_file",
            "start_cond": "every('1 hour')",
            "execution": "thread",
            "parameters": {
                "marker": str(tmp_path / "started"),
                "release": str(tmp_path / "release"),
            },
        },
    }
    settings = {
        "ROCKET_SILENCE_TASK_LOGGING": True,
        "ROCKET_LOG_RETRY": {"attempts": 3, "backoff": 0.2, "max_backoff": 1},
        "ROCKET_SPOOL_DIR": str(tmp_path / "spool"),
        "ROCKET_HEARTBEAT": "1 second",
        "ROCKET_POLL_INTERVAL": 0.5,
    }
    return tasks, settings


def spooled(tmp_path) -> bool:
    return bool(list((tmp_path / "spool").glob("spool-*.jsonl")))


def successes(name: str) -> int:
    return TaskRun.objects.filter(task__name=name, status=RunStatus.SUCCESS).count()


def test_outage_keeps_the_scheduler_alive_and_every_run_recorded_once(
    scheduler_process, proxy, tmp_path
):
    tasks, settings = setup(tmp_path)
    proc = scheduler_process(tasks, settings, db_port=proxy.port)
    wait_until((tmp_path / "started").exists, what="the slow run to start")
    wait_until(lambda: successes("tick") >= 2, what="a few tick runs")

    proxy.cut()
    cut_at, cut_mono = timezone.now(), time.monotonic()
    (tmp_path / "release").write_text("go")  # the slow run finishes during the outage
    wait_until(lambda: spooled(tmp_path), what="the finish to be spooled")

    def outage_over() -> bool:
        assert proc.proc.poll() is None, proc.output()  # alive all through the outage
        return time.monotonic() - cut_mono >= OUTAGE_SECONDS

    wait_until(outage_over, limit=OUTAGE_SECONDS + 10, what="the outage to last")
    proxy.restore()
    restored_at = timezone.now()

    wait_until(lambda: successes("slow") == 1, what="the spooled finish to be written")
    before = successes("tick")
    wait_until(lambda: successes("tick") >= before + 2, what="new runs after the outage")
    assert not spooled(tmp_path)
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.output()

    assert not TaskRun.objects.filter(status=RunStatus.RUNNING).exists()
    slow = TaskRun.objects.get(task__name="slow")
    assert cut_at <= slow.finished_at <= restored_at  # its true finish, written later
    starts = list(
        TaskRun.objects.filter(task__name="tick")
        .order_by("started_at")
        .values_list("started_at", flat=True)
    )
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 1.0  # never started twice in one interval
    assert "writable again" in proc.output()


def test_killed_during_outage_the_spool_is_written_by_the_next_scheduler(
    scheduler_process, proxy, tmp_path
):
    tasks, settings = setup(tmp_path)
    first = scheduler_process(tasks, settings, db_port=proxy.port)
    wait_until((tmp_path / "started").exists, what="the slow run to start")
    proxy.cut()
    (tmp_path / "release").write_text("go")
    wait_until(lambda: spooled(tmp_path), what="the finish to be spooled")
    first.proc.send_signal(signal.SIGKILL)
    first.wait()
    proxy.restore()
    assert TaskRun.objects.get(task__name="slow").status == RunStatus.RUNNING

    second = scheduler_process(tasks, settings, args=("--once",))
    assert second.wait(timeout=60) == 0, second.output()
    slow = TaskRun.objects.get(task__name="slow")  # written from the spool, not a crash
    assert slow.status == RunStatus.SUCCESS
    assert slow.result == "released"
    assert not spooled(tmp_path)


def test_start_up_waits_for_the_database(scheduler_process, proxy, tmp_path):
    tasks, settings = setup(tmp_path)
    proxy.cut()
    proc = scheduler_process({"tick": tasks["tick"]}, settings, db_port=proxy.port)
    proc.wait_for_output("The database is not reachable")
    assert proc.proc.poll() is None
    proxy.restore()
    wait_until(lambda: successes("tick") >= 1, what="the first run once the database is back")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.output()
