"""Two schedulers on one database: one starts runs; killing it hands over, nothing doubles."""

import itertools
import random
import signal

import pytest

from django_rocket.models import RunStatus, SchedulerInstance, SchedulerLease, TaskRun
from tests.conftest import wait_until

pytestmark = [pytest.mark.slow]

TASKS = {
    f"t{i:02d}": {
        "func": "tests.support.tasks.noop",
        "start_cond": "every('2 seconds')",
        "execution": "thread",
    }
    for i in range(30)
}
SETTINGS = {
    "ROCKET_HEARTBEAT": "0.5 seconds",
    "ROCKET_LEASE_TIMEOUT": "3 seconds",
    "ROCKET_POLL_INTERVAL": 0.5,
}


def active_pid() -> int | None:
    lease = SchedulerLease.objects.select_related("holder").filter(name="default").first()
    return lease.holder.pid if lease and lease.holder else None


def test_random_kills_of_the_active_scheduler_lose_and_double_nothing(scheduler_process):
    rng = random.Random(7)
    procs = {}
    for _ in range(2):
        p = scheduler_process(TASKS, SETTINGS)
        procs[p.proc.pid] = p
    wait_until(lambda: active_pid() in procs, what="an active scheduler")
    kills = 0
    for _ in range(4):
        # Let the active one start a random number of runs, then kill it mid-flight.
        target = TaskRun.objects.count() + rng.randint(20, 60)
        wait_until(lambda t=target: TaskRun.objects.count() >= t, what="more runs")
        victim = active_pid()
        if victim in procs and procs[victim].proc.poll() is None:
            procs[victim].proc.send_signal(signal.SIGKILL)
            procs[victim].wait()
            kills += 1
            replacement = scheduler_process(TASKS, SETTINGS)
            procs[replacement.proc.pid] = replacement
            wait_until(
                lambda v=victim: active_pid() not in (None, v),
                limit=10,
                what="a standby to take over",
            )
    wait_until(lambda: TaskRun.objects.count() >= 220, what="220 runs")
    for p in procs.values():
        if p.proc.poll() is None:
            p.wait_for_output("started with")  # its signal handlers are installed
            p.proc.send_signal(signal.SIGTERM)
    for p in procs.values():
        assert p.wait(timeout=30) in (0, -9), p.output()

    assert kills == 4
    runs = TaskRun.objects.count()
    assert runs >= 200, runs
    assert not TaskRun.objects.filter(status=RunStatus.RUNNING).exists()
    roles = set(SchedulerInstance.objects.values_list("role", flat=True))
    assert roles <= {"stopped", "active", "standby"}
    for name in TASKS:
        starts = list(
            TaskRun.objects.filter(task__name=name)
            .order_by("started_at")
            .values_list("started_at", flat=True)
        )
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
        assert min(gaps) >= 2.0, (name, gaps)  # no slot ran twice
        assert max(gaps) <= 2.0 + 4.0, (name, gaps)  # none lost beyond the failover bound
