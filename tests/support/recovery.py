"""Crash recovery as the tests call it, the rows ``runtask`` writes, and ``unshare``."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from django_rocket.engine.leadership import Here
from django_rocket.engine.recovery import Recovered, recover_crashed
from django_rocket.models import RunStatus, Task, TaskRun
from tests.conftest import ROOT, process_env

LEASE = timedelta(seconds=30)
# A scheduler on another host: it can see no pid of this one.
ELSEWHERE = Here("sched-host", 1, "sched-boot/pid:1")


def recover(
    now: datetime,
    *,
    here: Here = ELSEWHERE,
    specs: dict | None = None,
    answering_since: datetime | None = None,
) -> Recovered:
    """One pass of crash recovery at ``now`` by a standby at ``here``, with a 30-second lease.

    ``answering_since``: when the database answered it again after an outage.
    """
    return recover_crashed(
        now,
        specs=specs or {},
        own_runs=set(),
        instance_pk=None,
        here=here,
        lease_timeout=LEASE,
        answering_since=answering_since,
    )


def runtask_row(
    now: datetime, *, host: str, pid: int, namespace: str | None, seen: datetime | None = None
) -> TaskRun:
    """A run ``runtask`` made of task "by-hand": no scheduler; ``seen``, its heartbeat."""
    task = Task.objects.create(name="by-hand", func="tests.support.tasks.noop", start_cond="false")
    return TaskRun.objects.create(
        task=task,
        status=RunStatus.RUNNING,
        trigger="manual",
        started_at=now,
        host=host,
        pid=pid,
        pid_namespace=namespace,
        last_seen=seen,
    )


def unshare_refused(*namespaces: str) -> str:
    """Why ``unshare NAMESPACES --fork --mount-proc`` cannot run here; "" if it can."""
    if shutil.which("unshare") is None or not os.path.exists("/proc/self/ns/pid"):
        return "needs Linux and util-linux's unshare"
    if os.geteuid() != 0:
        return "making namespaces needs root"
    probe = subprocess.run(["unshare", *namespaces, "--fork", "--mount-proc", "true"], check=False)
    return "" if probe.returncode == 0 else "unshare is refused here (a sandbox?)"


@contextmanager
def runtask_in_namespaces(
    tasks: dict, *, namespaces: tuple[str, ...], first: str, settings: dict | None = None
) -> Iterator[subprocess.Popen]:
    """A real ``runtask --wait`` of the one task in ``tasks``, in namespaces of its own.

    ``first`` is the shell command run inside them before it (``hostname batch-host``);
    the process is killed if it is still running when the block ends.
    """
    (name,) = tasks
    env = process_env(tasks, settings)
    env.pop("ROCKET_TEST_PARENT")  # its parent is the namespace's first process, not pytest
    # Not exec'd: runtask is the namespace's second process, whose pid ``first`` may set.
    script = f"{first} && {shlex.quote(sys.executable)} -m django runtask {name} --wait"
    proc = subprocess.Popen(
        # --kill-child: killing unshare kills all that runs in the namespace.
        ["unshare", *namespaces, "--fork", "--kill-child", "--mount-proc", "sh", "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def waiting_by_hand(tmp_path: Path, **options: object) -> tuple[dict, Path, Path]:
    """ROCKET_TASKS with one task, "by_hand", that waits for its release; and the two files.

    Its function writes the first file (``marker``) as it starts, and returns once the
    test writes the second (``release``).
    """
    marker, release = tmp_path / "started", tmp_path / "release"
    task = {
        "func": "tests.support.tasks.wait_for_file",
        "start_cond": "false",
        "parameters": {"marker": str(marker), "release": str(release), "limit": 60},
        **options,
    }
    return {"by_hand": task}, marker, release
