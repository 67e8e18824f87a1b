"""A ``runtask`` run says it is alive while it runs, and crash recovery believes it.

Crash recovery cannot look for a ``runtask`` process on another host or in another
container. It used to take such a run as gone once it was older than its task's
timeout plus the lease, but ``runtask`` does not enforce the timeout: a manual run
that went on past it (a backfill, a slow export from a cron container) was recorded as
``crash`` and alerted as one while it went on, and its task could start beside it. The
process now writes the row's ``last_seen`` every ``ROCKET_HEARTBEAT``, and recovery
judges it by that, as it judges a scheduler.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import timedelta

import pytest
from django.db import connection

from django_rocket import registry
from django_rocket.conditions import parse
from django_rocket.engine.leadership import Here, pid_namespace
from django_rocket.models import RunStatus, SchedulerInstance, SchedulerRole, TaskRun
from django_rocket.ops import oneoff
from tests.conftest import wait_until
from tests.support.recovery import (
    recover,
    runtask_in_namespaces,
    runtask_row,
    unshare_refused,
    waiting_by_hand,
)

HOST = socket.gethostname()
NAMESPACE = "batch-boot/pid:9"  # a runtask in a container on batch-host


def ten_minute_timeout() -> dict:
    spec = registry.TaskSpec(
        name="by-hand",
        func="tests.support.tasks.noop",
        start_cond=parse("false"),
        timeout=timedelta(minutes=10),
    )
    return {"by-hand": spec}


# -- crash recovery reads the heartbeat


@pytest.mark.django_db
def test_a_run_elsewhere_that_beats_is_not_crashed_past_its_timeout(clock):
    run = runtask_row(clock.now(), host="batch-host", pid=31, namespace=NAMESPACE, seen=clock.now())
    clock.advance(timedelta(hours=3))  # far past its timeout (10 min) and the lease
    TaskRun.objects.filter(pk=run.pk).update(last_seen=clock.now() - timedelta(seconds=29))
    assert recover(clock.now(), specs=ten_minute_timeout()).crashed == 0
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


@pytest.mark.django_db
def test_a_run_elsewhere_whose_heartbeat_stopped_is_crashed_after_the_lease(clock):
    run = runtask_row(clock.now(), host="batch-host", pid=31, namespace=NAMESPACE, seen=clock.now())
    clock.advance(timedelta(seconds=30))
    assert recover(clock.now(), specs=ten_minute_timeout()).crashed == 0  # not longer yet
    clock.advance(timedelta(seconds=1))  # well inside its timeout: the heartbeat decides
    assert recover(clock.now(), specs=ten_minute_timeout()).crashed == 1
    run.refresh_from_db()
    assert run.status == RunStatus.CRASH
    assert run.message.startswith(
        "The process batch-host:31 that ran it (runtask) last recorded that it was alive at "
        f"{(clock.now() - timedelta(seconds=31)).isoformat()}, longer ago than the lease "
        "(30.0 s); detected at "
    ), run.message


@pytest.mark.django_db
def test_after_an_outage_heartbeats_are_judged_a_lease_later(clock):
    """Every process's heartbeat failed while the database was away, its own included.

    A ``runtask`` that waited out the outage writes its finish within a second of the
    database's return; recovery recorded it as ``crash`` first (alerted, and perhaps
    retried beside it) as soon as the database answered it again.
    """
    run = runtask_row(clock.now(), host="batch-host", pid=31, namespace=NAMESPACE, seen=clock.now())
    clock.advance(timedelta(minutes=2))  # away: no one could write anything
    back = clock.now()
    assert recover(clock.now(), specs=ten_minute_timeout(), answering_since=back).crashed == 0
    clock.advance(timedelta(seconds=29))
    assert recover(clock.now(), specs=ten_minute_timeout(), answering_since=back).crashed == 0
    clock.advance(timedelta(seconds=1))  # a lease of answers, and no beat from it
    assert recover(clock.now(), specs=ten_minute_timeout(), answering_since=back).crashed == 1
    run.refresh_from_db()
    assert run.status == RunStatus.CRASH


@pytest.mark.django_db
def test_after_an_outage_a_scheduler_elsewhere_is_judged_a_lease_later(clock):
    other = SchedulerInstance.objects.create(
        host="other-host", pid=7, role=SchedulerRole.ACTIVE, last_seen=clock.now()
    )
    run = runtask_row(clock.now(), host="other-host", pid=7, namespace=NAMESPACE)
    TaskRun.objects.filter(pk=run.pk).update(scheduler=other)
    clock.advance(timedelta(minutes=2))
    back = clock.now()
    assert recover(clock.now(), answering_since=back).crashed == 0
    clock.advance(timedelta(seconds=30))
    assert recover(clock.now(), answering_since=back).crashed == 1
    run.refresh_from_db()
    assert run.message.startswith("The scheduler other-host:7 stopped while this run was")


@pytest.mark.django_db
def test_a_live_pid_here_does_not_outweigh_a_stopped_heartbeat(clock):
    """The pid was reused (a restart numbers processes from the start again)."""
    run = runtask_row(clock.now(), host=HOST, pid=os.getpid(), namespace=pid_namespace())
    TaskRun.objects.filter(pk=run.pk).update(last_seen=clock.now())
    here = Here(HOST, 1, pid_namespace())
    assert recover(clock.now(), here=here).crashed == 0
    clock.advance(timedelta(minutes=1))
    assert recover(clock.now(), here=here).crashed == 1  # as for a scheduler: no heartbeat, gone
    run.refresh_from_db()
    assert run.status == RunStatus.CRASH


@pytest.mark.django_db
def test_a_row_written_before_the_heartbeat_keeps_the_timeout_rule(clock):
    run = runtask_row(clock.now(), host="batch-host", pid=31, namespace=NAMESPACE)
    clock.advance(timedelta(minutes=10, seconds=30))
    assert recover(clock.now(), specs=ten_minute_timeout()).crashed == 0
    clock.advance(timedelta(seconds=1))
    assert recover(clock.now(), specs=ten_minute_timeout()).crashed == 1
    run.refresh_from_db()
    assert "(its timeout, plus the lease)" in run.message, run.message


# -- runtask writes it


@pytest.fixture
def by_hand(settings, tmp_path):
    """A task that runs until told to return, and runtask's heartbeat every 20 ms."""
    marker, release = tmp_path / "started", tmp_path / "release"
    settings.ROCKET_HEARTBEAT = 0.02
    settings.ROCKET_TASKS = {
        "by-hand": {
            "func": "tests.support.tasks.wait_for_file",
            "start_cond": "false",
            "timeout": "10 minutes",
            "parameters": {"marker": str(marker), "release": str(release), "limit": 60},
        }
    }
    return registry.tasks()["by-hand"], marker, release


class RunHere(threading.Thread):
    """``run_in_process`` on a thread of its own, so the test can watch its row."""

    def __init__(self, spec, clock) -> None:
        super().__init__(name="runtask-here")
        self.spec, self.clock = spec, clock
        self.run_row: TaskRun | None = None

    def run(self) -> None:
        try:
            self.run_row = oneoff.run_in_process(self.spec, now=self.clock.now)
        finally:
            connection.close()


def last_seen():
    return TaskRun.objects.values_list("last_seen", flat=True).get()


def heartbeats() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("rocket-runtask-heart")]


@pytest.mark.django_db(transaction=True)
def test_runtask_writes_last_seen_while_the_function_runs_and_stops_after(clock, by_hand):
    spec, marker, release = by_hand
    here = RunHere(spec, clock)
    here.start()
    try:
        wait_until(marker.exists, what="the function to start")
        assert last_seen() == clock.now()  # written with the row, before the function
        for _ in range(2):
            clock.advance(timedelta(seconds=5))
            wait_until(lambda: last_seen() == clock.now(), limit=10, what="a heartbeat")
    finally:
        release.write_text("go")
        here.join(30)
    assert here.run_row is not None and here.run_row.status == RunStatus.SUCCESS
    assert heartbeats() == []  # its thread ended with the run
    row = TaskRun.objects.get()
    assert (row.status, row.last_seen) == (RunStatus.SUCCESS, clock.now())


@pytest.mark.django_db(transaction=True)
def test_a_run_crashed_meanwhile_stops_the_heartbeat_and_its_finish_is_kept(clock, by_hand, caplog):
    spec, marker, release = by_hand
    here = RunHere(spec, clock)
    here.start()
    try:
        wait_until(marker.exists, what="the function to start")
        # A scheduler that could not see this process gave up on it.
        TaskRun.objects.update(status=RunStatus.CRASH, message="gone, it seemed")
        clock.advance(timedelta(seconds=5))
        wait_until(lambda: not heartbeats(), limit=10, what="the heartbeat to stop")
        assert last_seen() < clock.now()  # it did not write over the crash
    finally:
        release.write_text("go")
        here.join(30)
    assert "is no longer recorded as running" in caplog.text
    row = TaskRun.objects.get()
    assert (row.status, row.message) == (RunStatus.SUCCESS, "")  # the finish is the truth


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_the_database_refused_costs_one_beat(clock, by_hand, caplog):
    if connection.vendor != "postgresql":
        pytest.skip("ends the heartbeat's own session with pg_terminate_backend")
    spec, marker, release = by_hand
    here = RunHere(spec, clock)
    here.start()
    try:
        wait_until(marker.exists, what="the function to start")
        clock.advance(timedelta(seconds=5))
        wait_until(lambda: last_seen() == clock.now(), limit=10, what="a heartbeat")
        with connection.cursor() as cursor:  # every session but this test's
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        wait_until(
            lambda: "Could not record that run" in caplog.text, limit=10, what="a failed beat"
        )
        clock.advance(timedelta(seconds=5))
        wait_until(lambda: last_seen() == clock.now(), limit=10, what="a beat after it")
    finally:
        release.write_text("go")
        here.join(30)
    assert TaskRun.objects.get().status == RunStatus.SUCCESS


# -- end to end: a real runtask on another host, beside a real scheduler


@pytest.mark.slow
def test_a_runtask_on_another_host_outliving_its_timeout_is_not_crashed(
    scheduler_process, tmp_path
):
    """A real runtask as in a cron container on its own host, beside a real scheduler.

    Its task's timeout is one second and the scheduler's lease one second, so the
    scheduler's crash recovery, which runs every lease, gave the run up after about two
    seconds: here it runs through several of those, and ends ``success``.
    """
    why = unshare_refused("--uts", "--pid")
    if why:
        pytest.skip(why)
    tasks, marker, release = waiting_by_hand(tmp_path, timeout="1 second")
    fast = {"ROCKET_HEARTBEAT": 0.2, "ROCKET_LEASE_TIMEOUT": 1, "ROCKET_POLL_INTERVAL": 0.2}
    scheduler = scheduler_process(tasks, fast)
    wait_until(
        lambda: SchedulerInstance.objects.filter(role=SchedulerRole.ACTIVE).exists(),
        what="the scheduler to become active",
    )
    with runtask_in_namespaces(
        tasks, namespaces=("--uts", "--pid"), first="hostname batch-host", settings=fast
    ) as proc:
        wait_until(marker.exists, limit=60, what="runtask to start its run")
        run = TaskRun.objects.get(task__name="by_hand")
        assert (run.host, run.scheduler) == ("batch-host", None)

        def ran_for(seconds: float) -> bool:
            row = TaskRun.objects.get(pk=run.pk)
            assert row.status == RunStatus.RUNNING, row.message
            return row.last_seen >= row.started_at + timedelta(seconds=seconds)

        # Four times its timeout plus the lease, with recovery running every second.
        wait_until(lambda: ran_for(8), limit=60, what="the run to go on past its timeout")
        release.write_text("go")
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        run.refresh_from_db()
        assert (run.status, run.message) == (RunStatus.SUCCESS, "")
        assert "crash" not in scheduler.output().lower()


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_last_seen_only_where_it_was_written(admin_client, clock):
    run = runtask_row(clock.now(), host="batch-host", pid=31, namespace=NAMESPACE, seen=clock.now())
    page = admin_client.get(f"/admin/django_rocket/taskrun/{run.pk}/change/").content.decode()
    assert "Last seen" in page
    TaskRun.objects.update(last_seen=None)
    page = admin_client.get(f"/admin/django_rocket/taskrun/{run.pk}/change/").content.decode()
    assert "Last seen" not in page
