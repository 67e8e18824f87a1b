"""A dead pid on this host means a dead scheduler only from that scheduler's PID namespace.

Two containers can share a hostname (host networking, an explicit ``hostname:`` in a
compose file) and each number their own processes; so can machines cloned from one
image. A standby there that found the active scheduler's pid missing from its own process
table took the lease at once and recorded the live scheduler's runs as ``crash``, and
their tasks ran again while the first runs went on. The holder here is a real process
that has exited; the other container is its row saying another namespace.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest

from django_rocket.engine.leadership import Here, Leadership, pid_alive, pid_namespace
from django_rocket.engine.recovery import Recovered
from django_rocket.models import RunStatus, SchedulerInstance, SchedulerLease, Task, TaskRun
from tests.conftest import ROOT, wait_until
from tests.support.recovery import (
    recover,
    runtask_in_namespaces,
    runtask_row,
    unshare_refused,
    waiting_by_hand,
)

pytestmark = pytest.mark.django_db

HOST = socket.gethostname()
ELSEWHERE = "another-boot-id/pid:4026532999"  # a container on another kernel, or beside us


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process of this test run that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def holder_of_the_lease(clock, pid: int, namespace: str) -> SchedulerInstance:
    """An active scheduler on this hostname whose lease runs for 30 more seconds."""
    now = clock.now()
    holder = SchedulerInstance.objects.create(
        host=HOST, pid=pid, pid_namespace=namespace, role="active", token=7, last_seen=now
    )
    SchedulerLease.objects.create(
        name="default", holder=holder, token=7, expires_at=now + timedelta(seconds=30)
    )
    return holder


def standby(clock) -> Leadership:
    leadership = Leadership(
        clock, heartbeat_every=1.0, lease_timeout=timedelta(seconds=30), on_active=lambda now: None
    )
    leadership.register(clock.now())
    return leadership


def test_this_process_names_its_boot_and_pid_namespace():
    if not os.path.exists("/proc/self/ns/pid"):
        pytest.skip("Linux only: elsewhere the hostname alone decides")
    boot, namespace = pid_namespace().split("/pid:")
    assert len(boot) == 36  # the kernel's boot id, a UUID
    assert int(namespace) == os.stat(f"/proc/{os.getpid()}/ns/pid").st_ino
    code = "import django; django.setup(); from django_rocket.engine import leadership as l; "
    child = subprocess.run(
        [sys.executable, "-c", code + "print(l.pid_namespace())"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == pid_namespace()  # the same for every process here


def test_a_holder_gone_from_this_pid_namespace_is_replaced_at_once(clock, dead_pid):
    holder_of_the_lease(clock, dead_pid, pid_namespace())
    leadership = standby(clock)
    leadership.heartbeat(clock.now())
    lease = SchedulerLease.objects.get()
    assert (lease.token, lease.holder_id) == (8, leadership.instance_pk)
    assert leadership.active


def test_a_holder_with_this_hostname_in_another_pid_namespace_keeps_its_lease(clock, dead_pid):
    holder_of_the_lease(clock, dead_pid, ELSEWHERE)
    leadership = standby(clock)
    leadership.heartbeat(clock.now())
    lease = SchedulerLease.objects.get()
    assert (lease.token, lease.holder.pid) == (7, dead_pid)  # its pid means nothing here
    assert not leadership.active
    clock.advance(timedelta(seconds=31))  # its lease expires: then it is taken
    leadership.heartbeat(clock.now())
    assert SchedulerLease.objects.get().token == 8


def test_a_holder_recorded_before_namespaces_were_is_waited_for(clock, dead_pid):
    holder_of_the_lease(clock, dead_pid, "")  # a row an older version wrote
    leadership = standby(clock)
    leadership.heartbeat(clock.now())
    assert SchedulerLease.objects.get().token == 7


def running_run_of(scheduler: SchedulerInstance, clock) -> TaskRun:
    task = Task.objects.create(name="job", func="tests.support.tasks.noop", start_cond="true")
    return TaskRun.objects.create(
        task=task,
        status=RunStatus.RUNNING,
        started_at=clock.now(),
        host=scheduler.host,
        pid=scheduler.pid,
        scheduler=scheduler,
    )


def test_runs_of_a_live_scheduler_in_another_pid_namespace_are_not_crashed(clock, dead_pid):
    other = SchedulerInstance.objects.create(
        host=HOST, pid=dead_pid, pid_namespace=ELSEWHERE, role="standby", last_seen=clock.now()
    )
    run = running_run_of(other, clock)
    here = Here(HOST, os.getpid(), pid_namespace())
    assert recover(clock.now(), here=here).crashed == 0  # its heartbeat is fresh: it is alive
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    clock.advance(timedelta(seconds=31))  # no heartbeat for longer than the lease
    assert recover(clock.now(), here=here).crashed == 1
    run.refresh_from_db()
    assert run.status == RunStatus.CRASH


def test_runs_of_a_scheduler_gone_from_this_pid_namespace_are_crashed_at_once(clock, dead_pid):
    other = SchedulerInstance.objects.create(
        host=HOST, pid=dead_pid, pid_namespace=pid_namespace(), last_seen=clock.now()
    )
    run = running_run_of(other, clock)
    assert recover(clock.now(), here=Here(HOST, os.getpid(), pid_namespace())).crashed == 1
    run.refresh_from_db()
    assert run.status == RunStatus.CRASH


def test_a_runtask_run_in_another_pid_namespace_is_crashed_only_after_its_timeout(clock, dead_pid):
    run = runtask_row(clock.now(), host=HOST, pid=dead_pid, namespace=ELSEWHERE)
    here = Here(HOST, os.getpid(), pid_namespace())
    assert recover(clock.now(), here=here).crashed == 0  # its pid means nothing here
    clock.advance(timedelta(hours=23))
    assert recover(clock.now(), here=here).crashed == 0
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    # As for a run on another host: no timeout of its own, so a day and the lease.
    clock.advance(timedelta(hours=1, seconds=31))
    assert recover(clock.now(), here=here).crashed == 1
    run.refresh_from_db()
    assert run.status == RunStatus.CRASH
    assert run.message.startswith(
        f"Its process {HOST}:{dead_pid} (runtask) could not be seen from here (another host "
        "or PID namespace), and the run started more than 24 h 00 min ago (a day, as its "
        "task has no timeout, plus the lease); detected at "
    ), run.message


def test_a_runtask_run_gone_from_this_pid_namespace_is_crashed_at_once(clock, dead_pid):
    run = runtask_row(clock.now(), host=HOST, pid=dead_pid, namespace=pid_namespace())
    assert recover(clock.now(), here=Here(HOST, os.getpid(), pid_namespace())).crashed == 1
    run.refresh_from_db()
    assert run.status == RunStatus.CRASH
    # Not "the scheduler": no scheduler ran it.
    assert run.message.startswith(
        f"The process {HOST}:{dead_pid} that ran it (runtask) stopped while this run was in "
        f"progress; detected at {clock.now().isoformat()} by {HOST}:{os.getpid()}."
    ), run.message


def test_a_runtask_run_recorded_before_namespaces_is_judged_by_its_hostname(clock, dead_pid):
    run = runtask_row(
        clock.now(), host=HOST, pid=dead_pid, namespace=None
    )  # a row written before migration 0011
    assert recover(clock.now(), here=Here(HOST, os.getpid(), pid_namespace())).crashed == 1
    run.refresh_from_db()
    assert run.status == RunStatus.CRASH


def test_a_live_runtask_run_on_this_host_is_left_running(clock):
    run = runtask_row(
        clock.now(), host=HOST, pid=os.getpid(), namespace=pid_namespace()
    )  # this process: alive
    assert recover(clock.now(), here=Here(HOST, 1, pid_namespace())).crashed == 0
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


@pytest.mark.django_db(transaction=True)
def test_a_runtask_in_another_pid_namespace_with_this_hostname_is_not_crashed(tmp_path):
    """A real ``runtask`` in its own PID namespace (as in a container with host networking).

    Its pid is one that no process has here, so by the host name alone crash recovery
    recorded the live run as ``crash`` (and a scheduler would have run the task again).
    """
    why = unshare_refused("--pid")
    if why:
        pytest.skip(why)
    tasks, marker, release = waiting_by_hand(tmp_path)
    # Inside the namespace the next pid is one no process has out here.
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read()) - 7
    while pid_alive(pid):
        pid -= 1
    with runtask_in_namespaces(
        tasks, namespaces=("--pid",), first=f"echo {pid - 1} > /proc/sys/kernel/ns_last_pid"
    ) as proc:
        wait_until(marker.exists, limit=60, what="runtask to start its run")
        run = TaskRun.objects.get()
        assert (run.host, run.pid, run.status) == (HOST, pid, RunStatus.RUNNING)
        assert run.pid_namespace not in (None, "", pid_namespace())
        assert not pid_alive(run.pid)  # nothing here says it runs
        now = run.last_seen + timedelta(seconds=10)  # within the lease of its heartbeat
        assert recover(now, here=Here(HOST, os.getpid(), pid_namespace())) == Recovered(0, [])
        release.write_text("go")
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCESS
