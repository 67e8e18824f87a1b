"""The database server goes away under a running scheduler: nothing is lost, nothing is doubled.

On PostgreSQL, MariaDB or MySQL. The scheduler reaches the real server through a proxy
that the test cuts, which resets its connections and refuses new ones exactly as a
stopped server would, without disturbing other clients of the server.
"""

import itertools
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_rocket.models import RunStatus, TaskRun
from tests.conftest import ROOT, process_env, wait_until, waiting_task
from tests.support.recovery import recover
from tests.support.smtp import SMTPServer, email_settings, parts

pytestmark = [pytest.mark.slow]

OUTAGE_SECONDS = 20  # as long as a PostgreSQL restart with a slow recovery


def setup(tmp_path):
    tasks = {
        "tick": {
            "func": "tests.support.tasks.noop",
            "start_cond": "every('1 second')",
            "execution": "thread",
        },
        "slow": waiting_task(tmp_path, "thread"),
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


def runtask_through(proxy, tasks: dict, settings: dict) -> subprocess.Popen:
    env = process_env(tasks, settings, db_port=proxy.port)
    return subprocess.Popen(
        [sys.executable, "-m", "django", "runtask", next(iter(tasks)), "--wait"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


WAITING = "but the database does not take its outcome; trying again every 1 s until it does"


def slow_run_ended_in_an_outage(scheduler_process, proxy, tmp_path):
    """``runtask slow --wait`` whose function returns while the database is away.

    Returned once the command has spent ROCKET_LOG_RETRY's attempts (3, about a second)
    and waits for the database.
    """
    tasks, settings = setup(tmp_path)
    proc = scheduler_process(
        {"slow": tasks["slow"]}, settings, ("slow", "--wait"), proxy.port, command="runtask"
    )
    wait_until((tmp_path / "started").exists, what="the run to start")
    proxy.cut()
    (tmp_path / "release").write_text("go")
    proc.wait_for_output(WAITING)
    return proc


def test_runtask_waits_for_the_database_to_take_its_outcome(scheduler_process, proxy, tmp_path):
    """``runtask --wait`` ends while the database is away for longer than its retries.

    The command gave up after ROCKET_LOG_RETRY's attempts (a few seconds by default), so
    a run that succeeded during a failover stayed ``running`` and was recorded ``crash``:
    an operator would run the job again. Now it waits, as a scheduler's finishes do, and
    records the outcome once the database is back.
    """
    proc = slow_run_ended_in_an_outage(scheduler_process, proxy, tmp_path)
    assert TaskRun.objects.get().status == RunStatus.RUNNING  # this connection is not cut
    proxy.restore()
    assert proc.wait(timeout=30) == 0, proc.output()
    out = proc.output()
    assert "once the database took it, after " in out, out
    assert " of 'slow' ended with success after " in out.strip().splitlines()[-1], out
    run = TaskRun.objects.get()
    assert run.status == RunStatus.SUCCESS
    assert run.finished_at is not None and run.runtime is not None


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT])
def test_runtask_told_to_stop_while_it_waits_says_so_in_one_line(
    scheduler_process, proxy, tmp_path, sent
):
    """A finish waiting for the database gives up at SIGTERM or Ctrl-C.

    Before the wait, the command printed a driver's traceback and dropped the outcome:
    no event was logged, so not even an alert said how the run ended. The outcome is
    logged, the error is one line naming it and the signal, and the row is left to crash
    recovery, which says why.
    """
    proc = slow_run_ended_in_an_outage(scheduler_process, proxy, tmp_path)
    proc.proc.send_signal(sent)
    assert proc.wait(timeout=10) == 1
    proxy.restore()
    out = proc.output()
    last = out.strip().splitlines()[-1]
    assert last.startswith("CommandError: Run "), out
    assert " of 'slow' ended with success after " in last
    assert "; but the database did not take this outcome (" in last, last
    assert f" s, until {sent.name} told runtask to stop): OperationalError: " in last, last
    assert last.endswith(
        "Its row stays 'running' until a scheduler records it as crash, once its heartbeat is "
        "older than ROCKET_LEASE_TIMEOUT."
    ), last
    assert "Task 'slow' success" in out  # the event, for the logs and the alerts
    run = TaskRun.objects.get()
    assert run.status == RunStatus.RUNNING
    assert recover(run.last_seen + timedelta(seconds=31)).crashed == 1
    run.refresh_from_db()
    assert "last recorded that it was alive at" in run.message, run.message


def test_runtask_alerts_a_failure_while_the_database_is_partitioned(
    scheduler_process, proxy, tmp_path
):
    """The alert of a run that fails as the network to the database drops everything.

    The command logged the run's end, and so alerted it, only once the run log had taken
    it; the write waited on the partitioned connection (minutes, or for ever without
    keepalives) until an orchestrator's SIGKILL, and no one heard how the run ended. The
    alert's admin link looked the run's row up, so even a logged event waited there,
    holding every alert behind it. Now the end is logged before it is written, as the
    scheduler does, and the link is built from the run id alone.
    """
    tasks, settings = setup(tmp_path)
    failing = {**tasks["slow"], "func": "tests.support.tasks.wait_then_fail"}
    with SMTPServer() as smtp:
        settings |= {
            **email_settings(smtp.port),
            "ROCKET_ALERTS": {"email": {"receivers": ["ops@example.com"]}},
            "ROCKET_ADMIN_BASE_URL": "https://ops.example.com",
        }
        proc = scheduler_process(
            {"slow": failing}, settings, ("slow", "--wait"), proxy.port, command="runtask"
        )
        wait_until((tmp_path / "started").exists, what="the run to start")
        proxy.pause()
        (tmp_path / "release").write_text("go")
        (message,) = smtp.inbox.wait_for(1, limit=20, what=proc.output)
        assert proc.proc.poll() is None, proc.output()  # its finish still waits
    proc.proc.kill()
    proxy.cut()  # what it held goes nowhere
    proxy.resume()
    run = TaskRun.objects.get()
    assert run.status == RunStatus.RUNNING  # the alert did not wait for the run log
    assert message["Subject"] == "[django-rocket] Task slow failed"
    html, text = parts(message)
    assert "ValueError: boom: the task failed on purpose" in text
    url = f"https://ops.example.com/admin/django_rocket/taskrun/{run.run_id}/change/"
    assert url in text and f'href="{url}"' in html


def test_runtask_told_to_stop_while_its_finish_hangs_stops_at_once(
    scheduler_process, proxy, tmp_path
):
    """SIGTERM while the finish's write waits on a partitioned connection.

    The signal was only noted: the write went on waiting (minutes, or for ever without
    keepalives), until the orchestrator's SIGKILL, and the command never said why it
    ended. It ends the write now, in one line.
    """
    tasks, settings = setup(tmp_path)
    settings["ROCKET_HEARTBEAT"] = "1 hour"  # so that the finish is all that is sent
    proc = scheduler_process(
        {"slow": tasks["slow"]}, settings, ("slow", "--wait"), proxy.port, command="runtask"
    )
    wait_until((tmp_path / "started").exists, what="the run to start")
    proxy.pause()
    held = proxy.held
    (tmp_path / "release").write_text("go")
    proc.wait_for_output("Task 'slow' success")  # logged before it is written
    wait_until(lambda: proxy.held > held, 10, "the finish to be sent")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 1, proc.output()
    proxy.cut()
    proxy.resume()
    last = proc.output().strip().splitlines()[-1]
    assert last.startswith("CommandError: Run "), last
    assert "(1 attempt(s) over " in last and " s, until SIGTERM told runtask to stop): " in last
    # PostgreSQL: the alarm raises where psycopg waits. MySQL: the watchdog shut the
    # connection down, and the driver says so.
    interrupted = "FinishInterrupted: SIGTERM came while the database had not yet answered."
    lost = "OperationalError: (2013, 'Lost connection to server during query')"
    assert interrupted in last or (connection.vendor == "mysql" and lost in last), last
    assert TaskRun.objects.get().status == RunStatus.RUNNING


def test_runtask_without_a_database_says_so_in_one_line(proxy, tmp_path):
    tasks, settings = setup(tmp_path)
    proxy.cut()
    proc = runtask_through(proxy, {"slow": tasks["slow"]}, settings)
    _, err = proc.communicate(timeout=60)
    proxy.restore()
    assert proc.returncode == 1, err
    assert err.strip().startswith("CommandError: The database could not be used: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "started").exists()
