"""A real ``runscheduler``: a ``main`` run past its timeout is stopped, and the loop goes on."""

import signal

import pytest

from django_rocket.models import RunStatus, TaskRun
from tests.conftest import wait_until, waiting_task

pytestmark = [pytest.mark.slow]


def test_a_main_run_past_its_timeout_is_terminated_and_the_loop_goes_on(
    scheduler_process, tmp_path
):
    """Before, the run held the loop until its function returned (here: 60 s), nothing
    else started meanwhile, and the timeout was looked at only after it."""
    stuck = {**waiting_task(tmp_path, "main"), "timeout": "1 second"}
    ticking = {"func": "tests.support.tasks.noop", "start_cond": "every('1 second')"}
    proc = scheduler_process({"stuck": stuck, "ticking": {**ticking, "execution": "thread"}})
    wait_until(
        lambda: TaskRun.objects.filter(task__name="ticking").count() >= 3,
        limit=30,
        what="the loop to start other runs again",
    )
    run = TaskRun.objects.get(task__name="stuck")
    assert (run.status, run.message) == (RunStatus.TERMINATE, "Timed out after 0:00:01.")
    assert "in wait_for_file" in run.exc_text  # where it was
    assert run.runtime is not None and run.runtime.total_seconds() < 10
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.output()
