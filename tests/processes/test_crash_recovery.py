"""``kill -9`` a scheduler mid-run; the next one records the crash and continues."""

import os
import signal

import pytest

from django_rocket.models import RunStatus, RunTrigger, TaskRun
from tests.conftest import wait_until

pytestmark = [pytest.mark.slow]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_kill_9_leaves_no_orphan_and_restart_records_crash_then_reruns(scheduler_process, tmp_path):
    marker = tmp_path / "started"
    tasks = {
        "daily_ok": {
            "func": "tests.support.tasks.noop",
            "start_cond": "daily",
            "execution": "thread",
        },
        "cut_off": {
            "func": "tests.support.tasks.wait_for_file",
            "start_cond": "daily",
            "execution": "process",
            "parameters": {"marker": str(marker), "release": str(tmp_path / "release")},
        },
    }
    first = scheduler_process(tasks)
    wait_until(marker.exists, what="the process run to start")
    wait_until(
        lambda: TaskRun.objects.filter(task__name="daily_ok", status=RunStatus.SUCCESS).exists(),
        what="daily_ok to succeed",
    )
    child_pid = int(marker.read_text())
    assert pid_alive(child_pid)
    first.proc.send_signal(signal.SIGKILL)
    first.wait()
    wait_until(lambda: not pid_alive(child_pid), limit=10, what="the child to die with it")

    marker.unlink()
    (tmp_path / "release").write_text("go")  # the rerun finishes at once
    second = scheduler_process(tasks, args=("--once",))
    assert second.wait() == 0, second.output()

    cut = list(TaskRun.objects.filter(task__name="cut_off").order_by("started_at", "id"))
    assert [r.status for r in cut] == [RunStatus.CRASH, RunStatus.SUCCESS]
    assert "stopped while this run was in progress" in cut[0].message
    assert cut[0].finished_at is not None
    assert cut[1].trigger == RunTrigger.SCHEDULED
    # The daily task that succeeded before the crash does not run again today.
    assert TaskRun.objects.filter(task__name="daily_ok").count() == 1
