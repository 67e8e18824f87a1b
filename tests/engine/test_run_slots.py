"""ROCKET_MAX_THREADS and ROCKET_MAX_PROCESSES: due runs beyond the cap wait for a slot.

Thread runs block on in-process gates (tests.support.tasks.GATES), process runs on a
release file, so a slot stays taken until the test releases it. The scheduler's clock is
a FakeClock that moves only when a test moves it; waiting for a real thread or process
to end uses wait_until.
"""

from __future__ import annotations

import logging
import threading

import pytest

from django_rocket import registry
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, TaskRun
from tests.conftest import wait_until
from tests.support import tasks

pytestmark = pytest.mark.django_db(transaction=True)

GATED = "tests.support.tasks.thread_identity"


@pytest.fixture
def declare(settings):
    gates: list[str] = []

    def declare(names: list[str], *, max_threads: int | None, timeout: str = "1 hour") -> None:
        settings.ROCKET_MAX_THREADS = max_threads
        settings.ROCKET_HEARTBEAT = "1 hour"
        settings.ROCKET_TASKS = {
            name: {
                "func": GATED,
                "start_cond": "every('1 hour')",
                "execution": "thread",
                "parameters": {"gate": name},
                "timeout": timeout,
            }
            for name in names
        }
        for name in names:
            tasks.GATES[name] = threading.Event()
            gates.append(name)

    yield declare
    for name in gates:  # never leave a worker blocked behind a failed assertion
        tasks.GATES.pop(name).set()


def statuses() -> dict[str, str]:
    return dict(TaskRun.objects.values_list("task__name", "status"))


def release(scheduler: Scheduler, name: str, free: int) -> None:
    """Let ``name``'s run return, and wait until its thread is free again."""
    tasks.GATES[name].set()
    wait_until(lambda: scheduler.runner.thread_slots() == free, 30, f"{name}'s thread to free")


def start(clock) -> Scheduler:
    scheduler = Scheduler(registry.tasks(), clock=clock)
    scheduler.startup()
    scheduler.tick()  # takes the lease, loads the snapshot
    return scheduler


def test_due_thread_runs_beyond_the_cap_wait_and_start_as_soon_as_a_thread_frees(
    declare, clock, caplog
):
    declare(["a", "b", "c"], max_threads=2)
    with caplog.at_level(logging.INFO, logger="django_rocket.scheduler"):
        scheduler = start(clock)
        scheduler.tick()
    try:
        # Two threads, two runs; the third task has no row at all: nothing started and failed.
        assert statuses() == {"a": RunStatus.RUNNING, "b": RunStatus.RUNNING}
        assert scheduler.planner.waiting["thread"] == {"c"}
        waits = [r.getMessage() for r in caplog.records if "ROCKET_MAX_THREADS" in r.getMessage()]
        assert waits == [
            "All 2 threads of ROCKET_MAX_THREADS are in use; 1 due task(s) wait for one ('c'). "
            "They start as threads free, if their conditions still hold."
        ]
        scheduler.tick()  # still no thread: still waiting, and not logged again
        assert "c" not in statuses()
        assert len([r for r in caplog.records if "ROCKET_MAX_THREADS" in r.getMessage()]) == 1

        release(scheduler, "a", free=1)
        scheduler.tick()  # the same instant: the freed thread, not the poll, starts "c"
        assert statuses() == {
            "a": RunStatus.SUCCESS,
            "b": RunStatus.RUNNING,
            "c": RunStatus.RUNNING,
        }
        assert scheduler.planner.waiting["thread"] == set()
        release(scheduler, "b", free=1)
        release(scheduler, "c", free=2)
        scheduler.tick()
        assert statuses() == dict.fromkeys("abc", RunStatus.SUCCESS)
    finally:
        for gate in ("b", "c"):
            tasks.GATES[gate].set()
        scheduler.shutdown()


def test_without_a_cap_every_due_thread_run_starts_at_once(declare, clock):
    declare(["a", "b", "c"], max_threads=None)
    scheduler = start(clock)
    try:
        scheduler.tick()
        assert statuses() == dict.fromkeys("abc", RunStatus.RUNNING)
        assert scheduler.runner.thread_slots() is None
    finally:
        for gate in "abc":
            tasks.GATES[gate].set()
        scheduler.shutdown()


def test_a_timed_out_run_whose_function_goes_on_keeps_its_thread(declare, clock):
    """A thread cannot be killed: the cap counts threads in use, not runs still followed."""
    declare(["a", "b"], max_threads=1, timeout="1 second")
    scheduler = start(clock)
    try:
        scheduler.tick()
        assert statuses() == {"a": RunStatus.RUNNING}
        clock.advance(2)
        scheduler.tick()  # past a's timeout: flagged, but its function has not returned
        assert scheduler.runner.thread_slots() == 0
        assert "b" not in statuses()

        release(scheduler, "a", free=1)
        scheduler.tick()
        assert statuses() == {"a": RunStatus.TERMINATE, "b": RunStatus.RUNNING}
    finally:
        tasks.GATES["b"].set()
        scheduler.shutdown()


def test_a_task_waiting_for_a_process_starts_as_soon_as_one_ends(settings, clock, tmp_path):
    """ROCKET_MAX_PROCESSES' waiting tasks, too, start when a slot frees, not a poll later."""
    settings.ROCKET_MAX_PROCESSES = 1
    settings.ROCKET_HEARTBEAT = "1 hour"
    settings.ROCKET_TASKS = {
        name: {
            "func": "tests.support.tasks.wait_for_file",
            "start_cond": "every('1 hour')",
            "execution": "process",
            "parameters": {
                "marker": str(tmp_path / f"{name}.started"),
                "release": str(tmp_path / f"{name}.release"),
            },
        }
        for name in ("p1", "p2")
    }
    scheduler = start(clock)
    try:
        scheduler.tick()
        assert statuses() == {"p1": RunStatus.RUNNING}
        assert scheduler.planner.waiting["process"] == {"p2"}
        (tmp_path / "p1.release").touch()
        wait_until(lambda: scheduler.runner.process_slots() == 1, 60, "p1's process to end")
        scheduler.tick()
        assert statuses() == {"p1": RunStatus.SUCCESS, "p2": RunStatus.RUNNING}
    finally:
        for name in ("p1", "p2"):
            (tmp_path / f"{name}.release").touch()
        scheduler.shutdown()
