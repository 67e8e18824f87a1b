"""``runtask``: queue for a live scheduler, or run in this process and exit with the outcome."""

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from django_rocket.engine.leadership import pid_namespace
from django_rocket.models import (
    RunStatus,
    RunTrigger,
    SchedulerInstance,
    SchedulerRole,
    Task,
    TaskRun,
)
from tests.conftest import ROOT, process_env, statements_sleeping, wait_until
from tests.support.triggers import allow_run_updates, refuse_run_updates

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def tasks(settings):
    settings.ROCKET_TASKS = {
        "ok": {
            "func": "tests.support.tasks.returns_value",
            "start_cond": "daily",
            "parameters": {"n": 2},
        },
        "bad": {"func": "tests.support.tasks.fails", "start_cond": "daily"},
        "idle": {"func": "tests.support.tasks.nothing_to_do", "start_cond": "daily"},
        "own_row": {"func": "tests.support.command_tasks.sees_its_own_row", "start_cond": "false"},
        "coro": {
            "func": "tests.support.command_tasks.async_value",
            "start_cond": "daily",
            "execution": "async",
        },
    }


def runtask(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("runtask", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def exit_code(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as info:
        call_command("runtask", *args, stdout=out, stderr=err)
    return info.value.code, out.getvalue(), err.getvalue()


def alive_scheduler(**extra) -> SchedulerInstance:
    values = {"host": "sched-host", "pid": 4242, "role": SchedulerRole.ACTIVE, **extra}
    return SchedulerInstance.objects.create(**values)


def test_without_a_scheduler_it_runs_here_and_records_a_manual_run():
    out, _ = runtask("ok")
    assert "No active scheduler was seen in the last 60 seconds" in out
    run = TaskRun.objects.get()
    assert f"Run {run.run_id} of 'ok' ended with success" in out
    assert (run.status, run.trigger) == (RunStatus.SUCCESS, RunTrigger.MANUAL)
    assert run.result == {"n": 2, "items": [0, 1]}
    assert (run.host, run.pid) == (socket.gethostname(), os.getpid())
    assert run.pid_namespace == pid_namespace()  # where that pid means this process
    assert run.runtime == run.finished_at - run.started_at
    assert run.task.name == "ok" and run.task.func == "tests.support.tasks.returns_value"


def test_the_row_is_written_before_the_function_starts():
    runtask("own_row")
    run = TaskRun.objects.get()
    assert run.result == {"status": "running", "trigger": "manual"}
    assert run.status == RunStatus.SUCCESS


def test_a_failure_exits_1_and_says_why():
    code, _, err = exit_code("bad")
    assert code == 1
    assert "ended with fail after" in err and "ValueError: boom" in err
    assert "(-v 2 shows the traceback, as does the run in the admin)" in err
    assert "Traceback" not in err
    run = TaskRun.objects.get()
    assert run.status == RunStatus.FAIL
    assert "raise ValueError" in run.exc_text


def test_verbosity_2_prints_the_traceback():
    code, _, err = exit_code("bad", "-v", "2")
    assert code == 1
    assert err.startswith("Traceback (most recent call last)")
    assert "raise ValueError" in err


def test_inaction_is_not_success():
    code, _, err = exit_code("idle")
    assert code == 1
    assert "ended with inaction after" in err and "No new files." in err
    assert TaskRun.objects.get().status == RunStatus.INACTION


def test_a_coroutine_function_runs_too():
    runtask("coro")
    assert TaskRun.objects.get().result == 42


def test_run_events_reach_the_task_logger(caplog):
    with caplog.at_level(logging.INFO, logger="django_rocket.task"):
        exit_code("bad")
    events = [r for r in caplog.records if r.name == "django_rocket.task"]
    assert [r.action for r in events] == ["run", "fail"]
    run = TaskRun.objects.get()
    assert {r.run_id for r in events} == {str(run.run_id)}
    assert all(r.task_name == "bad" for r in events)
    assert events[1].levelno == logging.ERROR
    assert "raise ValueError" in events[1].exc_text
    assert events[1].runtime == pytest.approx(run.runtime.total_seconds())


def test_a_paused_task_can_still_be_run_by_hand():
    Task.objects.create(name="ok", func="tests.support.tasks.returns_value", enabled=False)
    runtask("ok")
    assert TaskRun.objects.get().status == RunStatus.SUCCESS
    assert Task.objects.get().enabled is False


def test_with_a_live_scheduler_it_queues_a_manual_run():
    alive_scheduler()
    Task.objects.create(name="ok", func="tests.support.tasks.returns_value")
    out, _ = runtask("ok")
    run = TaskRun.objects.get()
    assert out == f"Queued run {run.run_id} of 'ok' for the scheduler sched-host:4242.\n"
    assert (run.status, run.trigger, run.started_at) == (RunStatus.QUEUED, RunTrigger.MANUAL, None)
    out, _ = runtask("ok")
    assert "was already queued" in out
    assert TaskRun.objects.count() == 1


def test_wait_runs_here_even_with_a_live_scheduler():
    alive_scheduler()
    out, _ = runtask("ok", "--wait")
    assert "No active scheduler" not in out
    assert TaskRun.objects.get().status == RunStatus.SUCCESS


def test_a_stale_or_standby_scheduler_does_not_count(settings):
    settings.ROCKET_HEALTH_MAX_AGE = 30
    alive_scheduler(last_seen=timezone.now() - timedelta(seconds=31))
    SchedulerInstance.objects.create(host="h", pid=1, role=SchedulerRole.STANDBY)
    Task.objects.create(name="ok", func="tests.support.tasks.returns_value")
    out, _ = runtask("ok")
    assert "No active scheduler was seen in the last 30 seconds" in out
    assert TaskRun.objects.get().status == RunStatus.SUCCESS


def test_a_task_the_live_scheduler_has_not_loaded():
    alive_scheduler()
    with pytest.raises(CommandError, match=r"has not loaded the task 'ok'.*--wait"):
        runtask("ok")


def test_unknown_and_invalid_tasks(settings):
    with pytest.raises(CommandError, match=r"no task 'bda' in ROCKET_TASKS\. Did you mean"):
        runtask("bda")
    settings.ROCKET_TASKS["broken"] = {"func": "tests.support.tasks.noop", "start_cond": "dayly"}
    with pytest.raises(CommandError, match=r"(?s)declared but invalid.*E006.*did you mean 'daily'"):
        runtask("broken")
    assert not TaskRun.objects.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ok\udcff", r"'ok\\udcff' is not UTF-8 text: character 3 stands for a byte"),
        ("ok\x00", r"contains a NUL character; give a task name without one"),
        ("o" * 201, r"has 201 characters; a task name has at most 200"),
    ],
)
def test_a_name_no_task_can_have_is_one_line(name, message):
    with pytest.raises(CommandError, match=message) as info:
        runtask(name)
    assert "\n" not in str(info.value)
    assert not TaskRun.objects.exists()


def test_queues_for_a_real_scheduler_which_runs_it(scheduler_process, tmp_path, settings):
    marker = tmp_path / "ran"
    tasks = {
        "manual": {
            "func": "tests.support.tasks.write_marker",
            "start_cond": "false",
            "execution": "thread",
            "parameters": {"path": str(marker)},
        }
    }
    settings.ROCKET_TASKS = tasks
    proc = scheduler_process(tasks, {"ROCKET_POLL_INTERVAL": 0.2})
    wait_until(
        lambda: SchedulerInstance.objects.filter(role=SchedulerRole.ACTIVE).exists(),
        what="the scheduler to become active",
    )
    out, _ = runtask("manual")
    assert out.startswith("Queued run ")
    wait_until(
        lambda: TaskRun.objects.filter(status=RunStatus.SUCCESS).exists(),
        what="the queued run to finish",
    )
    run = TaskRun.objects.get()
    assert run.trigger == RunTrigger.MANUAL
    assert run.scheduler is not None and run.pid == proc.proc.pid
    assert marker.read_text() == str(proc.proc.pid)


@pytest.mark.slow
def test_wait_beside_a_real_scheduler_feeds_its_history(scheduler_process, tmp_path, settings):
    """The scheduler sees a run made by ``runtask --wait`` start and finish, and reacts."""
    marker, release = tmp_path / "started", tmp_path / "release"
    tasks = {
        "slow": {
            "func": "tests.support.tasks.wait_for_file",
            "start_cond": "false",
            "execution": "thread",
            "parameters": {"marker": str(marker), "release": str(release)},
        },
        "after": {
            "func": "tests.support.tasks.noop",
            "start_cond": "after_success('slow')",
            "execution": "thread",
        },
    }
    settings.ROCKET_TASKS = tasks
    proc = scheduler_process(tasks, {"ROCKET_POLL_INTERVAL": 0.1})
    wait_until(
        lambda: SchedulerInstance.objects.filter(role=SchedulerRole.ACTIVE).exists(),
        what="the scheduler to become active",
    )

    def run_here() -> None:
        try:
            runtask("slow", "--wait")
        finally:
            connection.close()

    here = threading.Thread(target=run_here)
    here.start()
    wait_until(marker.exists, what="the run here to start")
    time.sleep(0.4)  # a few polls: the scheduler records the run as in progress
    release.write_text("go")
    here.join(30)
    wait_until(
        lambda: TaskRun.objects.filter(task__name="after", status=RunStatus.SUCCESS).exists(),
        limit=15,
        what="the dependent task to run after the manual success",
    )
    slow = TaskRun.objects.get(task__name="slow")
    assert (slow.status, slow.trigger, slow.scheduler) == (RunStatus.SUCCESS, "manual", None)
    assert proc.proc.poll() is None
    assert "Traceback" not in proc.output()


@pytest.mark.django_db(transaction=True)
def test_a_value_the_database_refuses_is_recorded_without_it(settings, monkeypatch):
    from django_rocket.executors import outcome

    monkeypatch.setattr(outcome, "encode_result", lambda value, max_bytes: (value, ""))
    settings.ROCKET_TASKS = {
        "nan": {"func": "tests.support.tasks.returns_not_a_number", "start_cond": "false"}
    }
    out, _ = runtask("nan")
    run = TaskRun.objects.get()
    assert run.status == RunStatus.SUCCESS
    assert run.result is None
    assert run.message.startswith("Recorded without its message, traceback and result")
    assert run.runtime == run.finished_at - run.started_at  # the rest of the finish is kept
    assert "ended with success" in out


@pytest.mark.django_db(transaction=True)
def test_a_finish_refused_even_without_its_text_says_so_in_one_line(caplog):
    """A trigger refuses every run's success: the finish without its text is refused too."""
    refuse_run_updates("rocket_no_success", "no success here", only_status="success")
    try:
        with pytest.raises(CommandError) as info:
            runtask("ok", "--wait")
    finally:
        allow_run_updates("rocket_no_success")
    said = str(info.value)
    assert " of 'ok' ended with success after " in said, said
    assert (
        "; but the database did not take this outcome (2 attempt(s) over 0 s, refused even "
        "without its message, traceback and result): IntegrityError: "
    ) in said, said
    assert "no success here" in said
    assert "was refused as it ended" in caplog.text  # the first refusal
    assert TaskRun.objects.get().status == RunStatus.RUNNING  # left to crash recovery


@pytest.mark.django_db(transaction=True)
def test_text_no_driver_can_encode_is_recorded_without_it(settings, monkeypatch):
    """A lone surrogate past ``storable``: UnicodeEncodeError is refused like a DataError."""
    from django_rocket.ops import oneoff

    monkeypatch.setattr(oneoff, "storable", lambda text: text)
    run = _fails_with_a_file_name_that_is_not_utf8(settings)
    assert run.message.startswith("Recorded without its message, traceback and result")
    assert "UnicodeEncodeError" in run.message
    assert run.exc_text == ""


@pytest.mark.django_db(transaction=True)
def test_a_file_name_that_is_not_utf8_is_kept_escaped(settings):
    run = _fails_with_a_file_name_that_is_not_utf8(settings)
    assert run.message.endswith("cannot import caf\\udce9.csv")
    assert "caf\\udce9.csv" in run.exc_text


def _fails_with_a_file_name_that_is_not_utf8(settings) -> TaskRun:
    """``runtask`` of a task whose exception names a file that is not UTF-8; its run."""
    settings.ROCKET_TASKS = {
        "badname": {"func": "tests.support.tasks.fails_with_not_utf8", "start_cond": "false"}
    }
    assert exit_code("badname")[0] == 1  # the run failed, and says so
    run = TaskRun.objects.get()
    assert run.status == RunStatus.FAIL
    return run


def stoppable(tmp_path, **popen) -> tuple[subprocess.Popen, Path, Path, Path]:
    """A real ``runtask --wait`` of a function that swallows every ``Exception``."""
    marker, release, cleaned = tmp_path / "started", tmp_path / "release", tmp_path / "cleaned"
    tasks = {
        "stoppable": {
            "func": "tests.support.tasks.stopped_cleanly",
            "start_cond": "false",
            "parameters": {"marker": str(marker), "release": str(release), "cleaned": str(cleaned)},
        }
    }
    return runtask_started(tasks, **popen), marker, release, cleaned


def runtask_started(tasks: dict, **popen) -> subprocess.Popen:
    """``runtask NAME --wait`` of the one task in ``tasks``, started in a real process."""
    (name,) = tasks
    return subprocess.Popen(
        [sys.executable, "-m", "django", "runtask", name, "--wait"],
        cwd=ROOT,
        env=process_env(tasks),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


@pytest.mark.slow
@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.django_db(transaction=True)
def test_sigterm_ends_the_run_as_terminate_after_its_finally(tmp_path, sent):
    """A deploy, an orchestrator or ``timeout`` stops ``runtask --wait`` with SIGTERM;
    a closing SSH session, with SIGHUP.

    The process died at once and left its row ``running`` for crash recovery, without
    the function's ``finally`` blocks. Now the function is stopped as Ctrl-C stops it,
    even through an ``except Exception``, and the run is ``terminate`` with where it was.
    """
    proc, marker, _, cleaned = stoppable(tmp_path)
    try:
        wait_until(marker.exists, what="the function to start")
        proc.send_signal(sent)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert " of 'stoppable' ended with terminate after " in err, err
    assert cleaned.read_text() == "cleaned up"
    run = TaskRun.objects.get()
    assert (run.status, run.message) == (
        RunStatus.TERMINATE,
        f"Stopped by {sent.name}: runtask was asked to stop while it ran.",
    )
    assert run.finished_at is not None
    assert "in stopped_cleanly" in run.exc_text and "StopSignal" in run.exc_text, run.exc_text


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sigterm_while_the_function_waits_for_a_statement(tmp_path):
    """The function is stopped inside the driver. PostgreSQL: before, psycopg left the
    connection mid-statement (it cancels only for KeyboardInterrupt), the finish failed
    on it ("another command is already in progress") and the server slept on. MySQLdb
    waits in C and holds the handler: the stop came once the statement returned (30 s
    here); now a watchdog hears SIGTERM and ends the statement with KILL QUERY."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no statement that sleeps in a server")
    mysql = connection.vendor == "mysql"
    marker = tmp_path / "started"
    tasks = {
        "sleeper": {
            "func": "tests.support.tasks.sleeps_in_the_database",
            "start_cond": "false",
            "parameters": {"marker": str(marker), "seconds": 30},
        }
    }
    proc = runtask_started(tasks)
    try:
        wait_until(marker.exists, what="the function to start")
        wait_until(lambda: statements_sleeping() == 1, limit=10, what="the statement to run")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    run = TaskRun.objects.get()
    assert (run.status, run.message) == (
        RunStatus.TERMINATE,
        "Stopped by SIGTERM: runtask was asked to stop while it ran.",
    ), err
    assert "attempt" not in err and "retrying" not in err, err  # the finish went through
    said = "Ended the statement a stopped function was waiting for" if mysql else "cancelled"
    assert said in err, err
    assert statements_sleeping() == 0  # cancelled, not left to sleep out its 30 s


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_under_nohup_sighup_stays_ignored(tmp_path):
    def as_nohup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc, marker, release, _ = stoppable(tmp_path, preexec_fn=as_nohup)
    try:
        wait_until(marker.exists, what="the function to start")
        proc.send_signal(signal.SIGHUP)
        release.write_text("go")  # had SIGHUP stopped it, the run would be terminate
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert TaskRun.objects.get().status == RunStatus.SUCCESS


def test_a_sigterm_outside_the_function_is_not_raised_into_anything():
    """Only the first SIGTERM, and only while the function runs, raises."""
    from django_rocket.ops.oneoff import SigtermStops

    seen: list[int] = []

    def outer(signum, frame):  # stands in for the default, which would end pytest
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, outer)
    try:
        with SigtermStops() as sigterm:
            sigterm.returned()
            os.kill(os.getpid(), signal.SIGTERM)  # handled before the next line runs
            told = list(sigterm.told)
        assert signal.getsignal(signal.SIGTERM) is outer  # put back as it was
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (told, seen) == (["SIGTERM"], [])


def test_ctrl_c_raises_into_the_function_each_time_and_after_it_only_the_second():
    """While the function runs, Ctrl-C raises every time, as Python's own handler does.

    Once it has returned, the first Ctrl-C only tells a finish waiting for the database
    to give up; a second one interrupts the recording itself (a write that hangs).
    """
    from django_rocket.ops.oneoff import SigtermStops

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    raised = 0
    with SigtermStops() as stops:
        for _ in range(2):
            try:
                os.kill(os.getpid(), signal.SIGINT)  # handled before the next line runs
            except KeyboardInterrupt:
                raised += 1
        stops.returned()
        os.kill(os.getpid(), signal.SIGINT)
        given_up = stops.given_up()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert raised == 2
    assert given_up == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_sigterm_raises_into_the_function_once_and_names_itself_to_the_finish():
    from django_rocket.ops.oneoff import SigtermStops, StopSignal

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with SigtermStops() as stops:
            assert stops.given_up() == ""
            with pytest.raises(StopSignal, match="Stopped by SIGTERM"):
                os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # the second is only noted
            stops.returned()
            os.kill(os.getpid(), signal.SIGINT)  # the first after it: noted too
            assert (stops.given_up(), stops.told) == ("SIGTERM", ["SIGTERM"] * 2 + ["SIGINT"])
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_stop_during_a_quick_finish_lets_it_be_recorded():
    """A write under way takes milliseconds: a stop signal gives it FINISH_GRACE first.

    Raising at once, as it first did, lost a finish that the database was about to take
    when SIGTERM or Ctrl-C came just as the function returned.
    """
    from django_rocket.ops.oneoff import SigtermStops

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with SigtermStops() as stops:
            stops.returned()
            with stops.recording():
                os.kill(os.getpid(), signal.SIGTERM)  # handled before the next line runs
                armed = signal.getitimer(signal.ITIMER_REAL)[0]
            assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # disarmed
            assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL  # put back
            assert stops.given_up() == "SIGTERM"
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert 0 < armed <= 2.0


def test_a_finish_that_outlasts_the_grace_is_interrupted(monkeypatch):
    """A write that hangs on a partitioned network: no answer, no error."""
    import socket as sockets

    from django_rocket.ops import oneoff

    monkeypatch.setattr(oneoff, "FINISH_GRACE", 0.2)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    waiting, silent = sockets.socketpair()  # an answer that never comes
    try:
        with oneoff.SigtermStops() as stops:
            stops.returned()

            def write_that_hangs() -> None:
                with stops.recording():
                    os.kill(os.getpid(), signal.SIGTERM)
                    waiting.recv(1)

            with pytest.raises(oneoff.FinishInterrupted, match="SIGTERM came while"):
                write_that_hangs()
    finally:
        signal.signal(signal.SIGTERM, previous)
        waiting.close()
        silent.close()
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_function_that_leaves_autocommit_off_does_not_swallow_the_finish():
    """The finish was written into the transaction the function left open, and lost.

    ``runtask`` said ``success`` while the row stayed ``running``: the process ended
    without a commit. Now what the function left uncommitted is rolled back (as a thread
    run's connection is closed after it) with a warning, and the finish is committed.
    """
    tasks = {
        "careless": {"func": "tests.support.tasks.leaves_autocommit_off", "start_cond": "false"}
    }
    proc = subprocess.run(
        [sys.executable, "-m", "django", "runtask", "careless", "--wait"],
        cwd=ROOT,
        env=process_env(tasks),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    run = TaskRun.objects.get()
    assert (run.status, run.result) == (RunStatus.SUCCESS, "left it off")
    assert "left the database connection with autocommit off" in proc.stderr, proc.stderr
