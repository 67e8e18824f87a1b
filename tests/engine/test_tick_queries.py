"""A tick's queries do not grow with the number of tasks or the size of the log."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, TaskRun
from django_rocket.registry import tasks as declared_tasks

pytestmark = pytest.mark.django_db(transaction=True)


def declare(settings, count: int) -> None:
    settings.ROCKET_TASKS = {
        f"t{i:04d}": {
            "func": "tests.support.tasks.noop",
            "start_cond": "every('10 seconds')",
            "execution": "main",
        }
        for i in range(count)
    }
    settings.ROCKET_HEARTBEAT = "1 hour"


def queries_of(scheduler: Scheduler) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        scheduler.tick()
    return [q["sql"] for q in ctx.captured_queries]


def profile(settings, clock, count: int) -> dict[str, int]:
    declare(settings, count)
    scheduler = Scheduler(declared_tasks(), clock=clock)
    scheduler.startup()
    starting = queries_of(scheduler)  # every task is due: all start in this tick
    assert TaskRun.objects.count() == count
    finishing = queries_of(scheduler)  # their finishes are written in one batch
    assert TaskRun.objects.filter(status=RunStatus.SUCCESS).count() == count
    clock.advance(timedelta(seconds=2))
    idle = queries_of(scheduler)  # nothing due; the poll sees the new rows
    clock.advance(timedelta(seconds=2))
    quiet = queries_of(scheduler)  # nothing changed since: the poll's probe alone
    scheduler.shutdown()
    return {
        "starting": len(starting),
        "finishing": len(finishing),
        "idle": len(idle),
        "quiet": len(quiet),
    }


def test_tick_queries_are_the_same_for_10_and_1000_tasks(settings, clock):
    small = profile(settings, clock, 10)
    TaskRun.objects.all().delete()
    large = profile(settings, clock, 1000)
    assert small == large, (small, large)
    assert large["quiet"] == 1
    assert large["idle"] <= 6
    assert large["starting"] <= 10
    assert large["finishing"] <= 8


def always_due(settings, count: int) -> None:
    settings.ROCKET_TASKS = {
        f"t{i:04d}": {"func": "tests.support.tasks.noop", "start_cond": "true", "execution": "main"}
        for i in range(count)
    }
    settings.ROCKET_HEARTBEAT = "1 hour"


def test_a_tick_that_records_finishes_and_starts_runs_commits_once(settings, clock, monkeypatch):
    """The finishes share the starts' transaction: one commit a busy tick, not two.

    On PostgreSQL the lease, the finishes and the starts are one statement, committed on
    its own: one round trip and no transaction around it (runlog.write_tick).
    """
    always_due(settings, 5)
    scheduler = Scheduler(declared_tasks(), clock=clock)
    scheduler.startup()
    scheduler.tick()  # starts all five; a main run ends inside the tick, reported for the next
    assert TaskRun.objects.filter(status=RunStatus.RUNNING).count() == 5
    commits: list[None] = []
    commit = connection.commit
    monkeypatch.setattr(connection, "commit", lambda: (commits.append(None), commit())[1])
    clock.advance(timedelta(seconds=1))
    with CaptureQueriesContext(connection) as ctx:
        scheduler.tick()  # records the five finishes and starts the five again
    writes = [
        q["sql"]
        for q in ctx.captured_queries
        if not q["sql"].startswith("SELECT") and "django_rocket_taskrun" in q["sql"]
    ]
    if connection.vendor == "postgresql":
        assert commits == []
        assert connection.get_autocommit()
        assert len(writes) == 1 and writes[0].startswith("WITH lease AS (UPDATE"), writes
    else:
        assert len(commits) == 1
    assert TaskRun.objects.filter(status=RunStatus.SUCCESS).count() == 5
    assert TaskRun.objects.filter(status=RunStatus.RUNNING).count() == 5
    scheduler.request_stop()
    scheduler.shutdown()
    assert TaskRun.objects.filter(status=RunStatus.SUCCESS).count() == 10


def test_start_up_looks_runs_up_by_id_without_ordering_them(settings, clock):
    """Rows read by id (the poll's "seen" set, the snapshot) carry no ORDER BY.

    With the model's default order (newest start first) SQLite answered the "seen" query
    by walking the whole (started_at, id) index: 36 ms warm and 0.45 s with a cold cache at
    1,000,000 rows, for 200 ids.
    """
    declare(settings, 3)
    Scheduler(declared_tasks(), clock=clock, duration=1).run()  # leaves a few runs behind
    scheduler = Scheduler(declared_tasks(), clock=clock)
    with CaptureQueriesContext(connection) as ctx:
        scheduler.startup()
    qn = connection.ops.quote_name
    table = qn("django_rocket_taskrun")
    by_id = [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].startswith("SELECT")
        and f"FROM {table}" in q["sql"]
        and (f"{table}.{qn('id')} >" in q["sql"] or f"{table}.{qn('id')} IN" in q["sql"])
    ]
    assert len(by_id) >= 2, ctx.captured_queries  # the "seen" set and the snapshot's rows
    assert [q for q in by_id if "ORDER BY" in q] == []
    scheduler.shutdown()


def test_the_probe_sees_a_row_that_commits_late_inside_the_look_back(settings, clock):
    """A run another process commits after a newer one (lower id) changes the probe."""
    from django_rocket.models import Task

    declare(settings, 1)
    scheduler = Scheduler(declared_tasks(), clock=clock)
    scheduler.startup()
    task, now = Task.objects.get(), clock.now()

    def run(**extra) -> TaskRun:
        return TaskRun(
            task=task, status=RunStatus.SUCCESS, started_at=now, finished_at=now, **extra
        )

    TaskRun.objects.bulk_create([run() for _ in range(5)])
    late = TaskRun.objects.order_by("-pk").values_list("pk", flat=True)[2]
    TaskRun.objects.filter(pk=late).delete()  # not committed yet when the probe reads
    before = scheduler.poller.probe()
    assert scheduler.poller.probe() == before  # nothing changed: the same answer
    run(pk=late).save(force_insert=True)  # commits now, below the newest id
    after = scheduler.poller.probe()
    assert after[0] == before[0]  # the newest id did not move
    assert after != before
    scheduler.shutdown()
