"""The services behind the admin: queueing runs, pausing, scheduler health, the task overview."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_rocket import RocketError
from django_rocket.admin.changelist import EstimatedCountPaginator, estimate_count
from django_rocket.admin.charts import runtime_chart
from django_rocket.display import format_runtime
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun
from django_rocket.ops import queue
from django_rocket.ops.overview import (
    RECENT_RUNS,
    NextRun,
    active_scheduler,
    declared_specs,
    recent_runs,
    task_overview,
)
from tests.support.admin_helpers import DECLARED, alive_scheduler, make_run, make_runs, make_task

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def declared(settings):
    settings.ROCKET_TASKS = DECLARED


# ---------------------------------------------------------------------- queue_run


def test_queue_run_creates_one_queued_manual_run():
    task = make_task()
    run, created = queue.queue_run(task)
    assert created
    assert (run.status, run.trigger, run.task, run.retry_of) == (
        RunStatus.QUEUED,
        RunTrigger.MANUAL,
        task,
        None,
    )
    again, created = queue.queue_run(task)
    assert (again, created) == (run, False)
    assert TaskRun.objects.count() == 1


def test_queue_run_survives_losing_the_race(monkeypatch):
    """Two requests both see no queued run; the database constraint lets one insert win."""
    task = make_task()
    winner, _ = queue.queue_run(task)
    monkeypatch.setattr(queue, "_queued_run", lambda task: None)
    run, created = queue.queue_run(task)
    assert (run, created) == (winner, False)
    assert TaskRun.objects.count() == 1


def test_queue_run_losing_to_a_run_that_already_started(monkeypatch):
    task = make_task()
    winner, _ = queue.queue_run(task)
    # The scheduler starts the winner; a late duplicate must not queue a second run.
    TaskRun.objects.filter(pk=winner.pk).update(status=RunStatus.RUNNING)
    make_run(task, RunStatus.QUEUED, trigger=RunTrigger.SCHEDULED)  # hold the constraint
    monkeypatch.setattr(queue, "_queued_run", lambda task: None)
    run, created = queue.queue_run(task)
    assert (run, created) == (winner, False)
    assert TaskRun.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_submissions_create_one_run():
    task = make_task()
    barrier = threading.Barrier(4)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def submit():
        try:
            barrier.wait()
            run, created = queue.queue_run(task)
            results.append((run.pk, created))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert TaskRun.objects.count() == 1
    assert {pk for pk, _ in results} == {TaskRun.objects.get().pk}
    assert sum(created for _, created in results) == 1


def test_retry_links_to_the_failed_run():
    task = make_task()
    failed = make_run(task, RunStatus.FAIL)
    run, created = queue.queue_run(task, retry_of=failed)
    assert created
    assert run.retry_of == failed
    assert list(failed.retries.all()) == [run]


@pytest.mark.parametrize("status", [RunStatus.SUCCESS, RunStatus.INACTION, RunStatus.RUNNING])
def test_only_failures_can_be_retried(status):
    task = make_task()
    with pytest.raises(queue.RunRefused, match="only failed, crashed or terminated"):
        queue.queue_run(task, retry_of=make_run(task, status))


def test_retry_must_belong_to_the_task():
    failed = make_run(make_task("a"), RunStatus.FAIL)
    with pytest.raises(queue.RunRefused, match="is not a run of the task"):
        queue.queue_run(make_task("b"), retry_of=failed)


def test_undeclared_task_is_refused():
    task = make_task(declared=False)
    with pytest.raises(RocketError, match="no longer declared in ROCKET_TASKS"):
        queue.queue_run(task)
    assert not TaskRun.objects.exists()


# ---------------------------------------------------------------------- set_enabled


def test_set_enabled_moves_updated_at_for_the_scheduler():
    task = make_task()
    before = task.updated_at
    assert queue.set_enabled(task, False) == 1
    assert task.enabled is False
    stored = Task.objects.get()
    assert stored.enabled is False
    assert stored.updated_at > before
    assert stored.updated_at == task.updated_at
    assert queue.set_enabled(task, False) == 0
    assert Task.objects.get().updated_at == stored.updated_at


def test_set_enabled_on_a_queryset():
    make_task("a")
    make_task("b", enabled=False)
    assert queue.set_enabled(Task.objects.all(), False) == 1
    assert queue.set_enabled(Task.objects.all(), True) == 2
    assert Task.objects.filter(enabled=True).count() == 2


# ---------------------------------------------------------------------- active_scheduler


def test_active_scheduler():
    assert active_scheduler() is None
    alive_scheduler(role="standby")
    alive_scheduler(role="active", last_seen=timezone.now() - timedelta(seconds=61))
    assert active_scheduler() is None
    assert active_scheduler(max_age=120) is not None
    assert active_scheduler(max_age=timedelta(minutes=2)) is not None
    fresh = alive_scheduler(role="active")
    assert active_scheduler() == fresh


def test_active_scheduler_reads_the_setting(settings):
    alive_scheduler(last_seen=timezone.now() - timedelta(seconds=90))
    assert active_scheduler() is None
    settings.ROCKET_HEALTH_MAX_AGE = 100
    assert active_scheduler() is not None


# ---------------------------------------------------------------------- task_overview


def test_overview_of_a_task_that_never_ran():
    task = make_task()
    overview = task_overview([task])[task.pk]
    assert overview.status == ""
    assert overview.last_run is overview.last_success is overview.last_failure is None
    assert overview.success_rate is None
    assert overview.mean_runtime is None
    assert overview.next_run == NextRun("due")


def test_overview_statistics_over_recent_runs():
    task = make_task()
    start = timezone.now() - timedelta(hours=2)
    # 25 old failures fall outside the window of the latest 20 runs.
    for i in range(25):
        make_run(task, RunStatus.FAIL, started_at=start + timedelta(seconds=i), runtime=100)
    outcomes = [RunStatus.SUCCESS] * 15 + [RunStatus.FAIL] * 3 + [RunStatus.INACTION] * 2
    runs = [
        make_run(task, status, started_at=start + timedelta(minutes=10 + i), runtime=2)
        for i, status in enumerate(outcomes)
    ]
    overview = task_overview([task])[task.pk]
    assert overview.recent_finished == 20
    assert overview.success_rate == pytest.approx(17 / 20)
    assert overview.mean_runtime == timedelta(seconds=2)
    assert overview.status == RunStatus.INACTION
    assert overview.last_run == runs[-1]
    assert overview.last_success == runs[14]
    assert overview.last_failure == runs[17]


def test_overview_status_prefers_running_then_queued():
    task = make_task()
    make_run(task, RunStatus.FAIL)
    assert task_overview([task])[task.pk].status == RunStatus.FAIL
    make_run(task, RunStatus.QUEUED)
    assert task_overview([task])[task.pk].status == RunStatus.QUEUED
    make_run(task, RunStatus.RUNNING, started_at=timezone.now())
    overview = task_overview([task])[task.pk]
    assert overview.status == RunStatus.RUNNING
    assert overview.next_run.state in ("busy", "at")


def test_last_failure_is_the_latest_of_fail_crash_terminate():
    task = make_task()
    now = timezone.now()
    make_run(task, RunStatus.FAIL, started_at=now - timedelta(hours=3))
    crash = make_run(task, RunStatus.CRASH, started_at=now - timedelta(hours=1))
    make_run(task, RunStatus.TERMINATE, started_at=now - timedelta(hours=2))
    assert task_overview([task])[task.pk].last_failure == crash


def test_overview_takes_two_queries_for_any_number_of_tasks():
    tasks = [make_task(f"t{i}") for i in range(12)]
    for task in tasks:
        make_runs(task, 30)
    declared_specs()  # imports the task modules once
    with CaptureQueriesContext(connection) as queries:
        overviews = task_overview(tasks)
    assert len(queries.captured_queries) == 2
    assert all(o.recent_finished == RECENT_RUNS for o in overviews.values())


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({"enabled": False}, "paused"),
        ({"declared": False}, "undeclared"),
        ({"name": "not-in-settings"}, "unknown"),
    ],
)
def test_next_run_states(fields, state):
    task = make_task(**{"name": "report", **fields})
    assert task_overview([task])[task.pk].next_run.state == state


def test_next_run_after_a_recent_run():
    task = make_task("report")  # every('1 hour')
    started = timezone.now() - timedelta(minutes=20)
    make_run(task, RunStatus.SUCCESS, started_at=started)
    next_run = task_overview([task])[task.pk].next_run
    assert next_run.state == "at"
    assert next_run.at == pytest.approx(started + timedelta(hours=1), abs=timedelta(seconds=1))


def test_next_run_of_a_condition_on_another_task(settings):
    settings.ROCKET_TASKS = {
        **DECLARED,
        "notify": {"func": "tests.support.tasks.noop", "start_cond": "after_success('report')"},
    }
    report, notify = make_task("report"), make_task("notify")
    make_run(notify, RunStatus.SUCCESS, started_at=timezone.now() - timedelta(minutes=5))
    assert task_overview([notify])[notify.pk].next_run.state == "event"
    make_run(report, RunStatus.SUCCESS, started_at=timezone.now() - timedelta(minutes=1))
    # The report task is not on the page, but its history is read: notify is due.
    assert task_overview([notify])[notify.pk].next_run.state == "due"


def test_next_run_is_unknown_only_for_a_broken_task(settings):
    settings.ROCKET_TASKS = {
        **DECLARED,
        "broken": {"func": "no.such.module", "start_cond": "daily"},
    }
    broken, report = make_task("broken"), make_task("report")
    overviews = task_overview([broken, report])
    assert overviews[broken.pk].next_run == NextRun("unknown")
    assert overviews[report.pk].next_run == NextRun("due")


def test_next_run_is_unknown_when_rocket_tasks_is_not_a_dict(settings):
    settings.ROCKET_TASKS = ["report"]
    task = make_task("report")
    assert task_overview([task])[task.pk].next_run == NextRun("unknown")


def test_recent_runs_oldest_first():
    task = make_task()
    runs = make_runs(task, 8)
    make_run(task, RunStatus.QUEUED)
    assert recent_runs(task, 5) == runs[-5:]


# ---------------------------------------------------------------------- chart, counts, formats


def test_runtime_chart_geometry():
    task = make_task()
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    short = make_run(task, started_at=now - timedelta(hours=2), runtime=1)
    long = make_run(task, RunStatus.FAIL, started_at=now - timedelta(hours=1), runtime=4)
    running = make_run(task, RunStatus.RUNNING, started_at=now - timedelta(seconds=2))
    chart = runtime_chart([short, long, running], now)
    heights = [bar.height for bar in chart.bars]
    assert heights[1] == chart.height
    assert heights[0] == pytest.approx(2 + (chart.height - 2) / 4, abs=0.01)
    assert heights[2] == pytest.approx(2 + (chart.height - 2) / 2, abs=0.01)
    assert chart.longest == timedelta(seconds=4)
    assert [bar.x for bar in chart.bars] == sorted(bar.x for bar in chart.bars)
    assert chart.bars[-1].x + chart.bars[-1].width <= chart.width
    assert runtime_chart([], now).bars == []


def test_paginator_counts_exactly_up_to_its_limit(monkeypatch):
    task = make_task()
    make_runs(task, 12)
    monkeypatch.setattr(EstimatedCountPaginator, "exact_limit", 20)
    paginator = EstimatedCountPaginator(TaskRun.objects.order_by("-pk"), 5)
    assert (paginator.count, paginator.estimated) == (12, False)
    monkeypatch.setattr(EstimatedCountPaginator, "exact_limit", 5)
    paginator = EstimatedCountPaginator(TaskRun.objects.order_by("-pk"), 5)
    assert paginator.count >= 6
    assert paginator.estimated
    assert estimate_count(TaskRun.objects.all()) >= 1


def test_paginator_accepts_a_list():
    assert EstimatedCountPaginator([1, 2, 3], 2).count == 3


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0.4213, "0.42 s"),
        (12.34, "12.3 s"),
        (185, "3 min 05 s"),
        (7800, "2 h 10 min"),
        (3 * 86400 + 7200, "3 d 2 h"),
    ],
)
def test_format_runtime(seconds, text):
    value = None if seconds is None else timedelta(seconds=seconds)
    assert format_runtime(value) == text
