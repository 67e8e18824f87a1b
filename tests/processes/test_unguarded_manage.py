"""Issue 17, item 7: a ``manage.py`` without the ``if __name__ == "__main__":`` guard.

Each child of the process executor's fork server prepares itself as the scheduler's
``__main__`` script: it runs the script again under the name ``__mp_main__``. Without
the guard, the script's ``execute_from_command_line(sys.argv)`` ran once more in every
process run's child: a second ``runscheduler`` inside it.
"""

import os
import subprocess
import sys

import pytest
from django.utils import timezone

from django_rocket.models import RunStatus, TaskRun
from tests.conftest import process_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

UNGUARDED = """\
import os
import sys

from django.core.management import execute_from_command_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
execute_from_command_line(sys.argv)
"""


def start(script, tasks: dict, *args: str) -> subprocess.Popen:
    env = process_env(tasks, {"ROCKET_POLL_INTERVAL": 0.2})
    return subprocess.Popen(
        [sys.executable, str(script), "runscheduler", *args],
        cwd=script.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


TASKS_WRITING = {
    "p": {
        "func": "tests.support.tasks.write_marker",
        "start_cond": "every('1 hour')",
        "execution": "process",
    }
}


def one_cycle(script, marker) -> str:
    tasks = {"p": {**TASKS_WRITING["p"], "parameters": {"path": str(marker)}}}
    proc = start(script, tasks, "--once")
    try:
        out, _ = proc.communicate(timeout=60)  # before the fix: a second scheduler, no end
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, out
    return out


@pytest.mark.parametrize("guarded", [False, True])
def test_a_manage_py_with_or_without_the_guard_runs_process_tasks_once(tmp_path, guarded):
    script = tmp_path / "manage.py"
    body = UNGUARDED
    if guarded:
        body = body.replace(
            "execute_from_command_line(sys.argv)",
            'if __name__ == "__main__":\n    execute_from_command_line(sys.argv)',
        )
    script.write_text(body)
    marker = tmp_path / "ran"
    out = one_cycle(script, marker)
    assert out.count(" started with 1 task(s)") == 1, out  # no second scheduler in the child
    (run,) = TaskRun.objects.all()
    assert run.status == RunStatus.SUCCESS, run.message
    assert marker.read_text() != str(os.getpid())  # it ran in a child process


def test_the_fork_server_is_never_asked_to_preload_main():
    """A process task whose function lives in ``__main__`` must not make it preload it."""
    from django_rocket.executors.process import ProcessExecutor

    executor = ProcessExecutor(
        lambda *a: None,
        list,
        now=timezone.now,
        max_bytes=100,
        preload=["__main__", "tests.support.tasks"],
    )
    import multiprocessing.forkserver

    executor._fork_server()
    assert multiprocessing.forkserver._forkserver._preload_modules == [
        "django_rocket.executors.child",
        "tests.support.tasks",
    ]
