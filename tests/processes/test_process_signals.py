"""Real ``runscheduler`` subprocesses: signals stop them cleanly and every run is recorded."""

import signal

import pytest

from django_rocket.models import RunStatus, SchedulerInstance, TaskRun
from tests.conftest import wait_until, waiting_task

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("execution", ["thread", "process"])
def test_sigterm_mid_run_lets_the_run_finish_and_records_it(scheduler_process, tmp_path, execution):
    proc = scheduler_process({"w": waiting_task(tmp_path, execution)})
    wait_until((tmp_path / "started").exists, what="the task to start")
    assert TaskRun.objects.get().status == RunStatus.RUNNING  # written before the run began
    proc.proc.send_signal(signal.SIGTERM)
    (tmp_path / "release").write_text("go")
    assert proc.wait(timeout=20) == 0, proc.output()
    run = TaskRun.objects.get()
    assert run.status == RunStatus.SUCCESS
    assert run.result == "released"
    instance = SchedulerInstance.objects.get()
    assert instance.role == "stopped" and instance.stopped_at is not None


def test_sigterm_past_the_grace_terminates_and_records(scheduler_process, tmp_path):
    proc = scheduler_process(
        {"w": waiting_task(tmp_path, "process")}, {"ROCKET_SHUTDOWN_GRACE": "1 second"}
    )
    wait_until((tmp_path / "started").exists, what="the task to start")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.output()
    run = TaskRun.objects.get()
    assert run.status == RunStatus.TERMINATE
    assert "shutdown" in run.message


def test_sigint_twice_forces_stop(scheduler_process, tmp_path):
    proc = scheduler_process({"w": waiting_task(tmp_path, "process")})
    wait_until((tmp_path / "started").exists, what="the task to start")
    proc.proc.send_signal(signal.SIGINT)
    proc.wait_for_output("Stopping: waiting")  # signals sent together would coalesce
    proc.proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0, proc.output()
    assert TaskRun.objects.get().status == RunStatus.TERMINATE


def main_run_started(scheduler_process, tmp_path, grace: str):
    """A scheduler whose main run (waiting for ``tmp_path/release``) has started."""
    proc = scheduler_process(
        {"w": waiting_task(tmp_path, "main")}, {"ROCKET_SHUTDOWN_GRACE": grace}
    )
    wait_until((tmp_path / "started").exists, what="the task to start")
    return proc


def test_sigterm_during_a_main_run_stops_it_after_the_grace(scheduler_process, tmp_path):
    """A main run holds the loop: before, SIGTERM waited for it to return, however long."""
    proc = main_run_started(scheduler_process, tmp_path, "1 second")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.output()  # its function would wait 60 s
    run = TaskRun.objects.get()
    assert run.status == RunStatus.TERMINATE
    assert run.message == (
        "Stopped by SIGTERM: the main run did not return within ROCKET_SHUTDOWN_GRACE (1 second)."
    )
    assert "in wait_for_file" in run.exc_text  # where it was
    assert "has ROCKET_SHUTDOWN_GRACE (1 second) to return" in proc.output()
    assert SchedulerInstance.objects.get().role == "stopped"


def test_a_second_signal_stops_a_main_run_at_once(scheduler_process, tmp_path):
    proc = main_run_started(scheduler_process, tmp_path, "1 hour")
    proc.proc.send_signal(signal.SIGINT)
    proc.wait_for_output("A second Ctrl-C or SIGTERM stops it now")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.output()
    run = TaskRun.objects.get()
    assert run.status == RunStatus.TERMINATE
    assert run.message.startswith("Stopped by SIGTERM: the scheduler was told a second time")


def test_a_main_run_that_returns_within_the_grace_is_a_success(scheduler_process, tmp_path):
    proc = main_run_started(scheduler_process, tmp_path, "1 hour")
    proc.proc.send_signal(signal.SIGTERM)
    proc.wait_for_output("has ROCKET_SHUTDOWN_GRACE (1 hour) to return")
    (tmp_path / "release").write_text("go")
    assert proc.wait(timeout=20) == 0, proc.output()
    run = TaskRun.objects.get()
    assert (run.status, run.result) == (RunStatus.SUCCESS, "released")


def test_sighup_stops_it_as_sigterm_does(scheduler_process, tmp_path):
    """The terminal of the SSH session it was started from closes (SIGHUP).

    SIGHUP killed the scheduler at once: its runs were left ``running`` for the next
    scheduler to record as ``crash``, and it never marked itself stopped.
    """
    proc = scheduler_process({"w": waiting_task(tmp_path, "thread")})
    wait_until((tmp_path / "started").exists, what="the task to start")
    proc.proc.send_signal(signal.SIGHUP)
    proc.wait_for_output("Stopping: waiting")
    (tmp_path / "release").write_text("go")
    assert proc.wait(timeout=20) == 0, proc.output()
    assert TaskRun.objects.get().status == RunStatus.SUCCESS
    assert SchedulerInstance.objects.get().role == "stopped"
    assert "Scheduler stopped (received SIGHUP)" in proc.output()


def test_under_nohup_sighup_stays_ignored(scheduler_process, tmp_path):
    ticking = {"func": "tests.support.tasks.noop", "start_cond": "every('1 second')"}
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # inherited, as nohup does
    try:
        proc = scheduler_process({"ticking": ticking})
    finally:
        signal.signal(signal.SIGHUP, previous)
    wait_until(lambda: TaskRun.objects.count() >= 1, what="a first run")
    proc.proc.send_signal(signal.SIGHUP)
    count = TaskRun.objects.count()
    wait_until(lambda: TaskRun.objects.count() >= count + 2, what="runs after the SIGHUP")
    assert proc.proc.poll() is None
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.output()
