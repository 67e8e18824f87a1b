"""Admin pages issue a fixed number of queries however many rows they show.

Each page is viewed once to warm per-process caches (content types), then
counted. Every page reads the session and the user, and the health banner
looks for an active scheduler: three queries before the page's own.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from django_rocket.models import RunStatus, Task, TaskRun, TaskSource
from tests.support.admin_helpers import DECLARED, alive_scheduler, make_run, make_runs, make_task

pytestmark = pytest.mark.django_db

# + count, the tasks, overview (ids per task, then runs); no total count, no DISTINCT
#   for a filter. Past one page, the page's names are read first (from the name index).
TASK_CHANGELIST = 3 + 4
TASK_CHANGELIST_PAGED = TASK_CHANGELIST + 1
# + tasks for the filter, capped count, page of runs with their task,
#   date hierarchy (first and last start; one EXISTS per period).
RUN_CHANGELIST = 3 + 5
# + the task, inline runs, overview (2), chart runs.
TASK_PAGE = 3 + 5
# + the run with its task and scheduler, its retries.
RUN_PAGE = 3 + 2
# + count, total count, page of instances.
SCHEDULER_CHANGELIST = 3 + 3


def measure(client, assert_num_queries, expected: int, url: str, params=None):
    client.get(url, params)
    with assert_num_queries(expected):
        return client.get(url, params)


@pytest.fixture(autouse=True)
def setup(settings, client, django_user_model):
    settings.ROCKET_TASKS = DECLARED
    alive_scheduler()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com"))


@pytest.mark.parametrize("count", [5, 50])
def test_task_changelist(client, django_assert_num_queries, count):
    for i in range(count):
        task = make_task(f"task-{i:02d}")
        make_runs(task, 25)
        make_run(task, RunStatus.QUEUED)
    url = reverse("admin:django_rocket_task_changelist")
    response = measure(client, django_assert_num_queries, TASK_CHANGELIST, url)
    assert len(response.context["cl"].result_list) == count


@pytest.mark.parametrize("count", [3, 30])
def test_task_changelist_last_page(client, django_assert_num_queries, count):
    """A deep page costs what the first does: 100,000 runtime tasks are 1,000 pages."""
    Task.objects.bulk_create(
        Task(
            name=f"rt-{i:04d}",
            func="tests.support.tasks.noop",
            start_cond="daily",
            execution="main",
            source=TaskSource.RUNTIME,
        )
        for i in range(100 + count)
    )
    for task in Task.objects.filter(name__gte="rt-0100"):
        make_runs(task, 3)
    url = reverse("admin:django_rocket_task_changelist")
    response = measure(client, django_assert_num_queries, TASK_CHANGELIST_PAGED, url, {"p": 2})
    names = [task.name for task in response.context["cl"].result_list]
    assert names == [f"rt-{i:04d}" for i in range(100, 100 + count)]
    assert response.context["cl"].result_count == 100 + count


def test_task_changelist_sorts_only_by_name(client):
    """Sorting 100,000 tasks by a column no index serves would read them all per page."""
    make_task("b-task", enabled=False)
    make_task("a-task", enabled=True)
    url = reverse("admin:django_rocket_task_changelist")
    by_enabled = client.get(url, {"o": "2"})  # the "enabled" column, as a hand-made link
    assert [t.name for t in by_enabled.context["cl"].result_list] == ["a-task", "b-task"]
    by_name_desc = client.get(url, {"o": "-1"})
    assert [t.name for t in by_name_desc.context["cl"].result_list] == ["b-task", "a-task"]


def test_task_changelist_filters_by_execution(client):
    make_task("in-thread", execution="thread")
    make_task("in-process", execution="process")
    url = reverse("admin:django_rocket_task_changelist")
    page = client.get(url, {"execution": "thread"})
    assert [t.name for t in page.context["cl"].result_list] == ["in-thread"]
    assert "?execution=tasks" in client.get(url).content.decode()  # listed even if unused


@pytest.mark.parametrize("count", [5, 50])
def test_run_changelist(client, django_assert_num_queries, count):
    tasks = [make_task(f"task-{i}") for i in range(5)]
    runs = [make_run(tasks[i % 5], RunStatus.FAIL, started_at=timezone.now()) for i in range(count)]
    for run in runs[1::2]:
        make_run(run.task, RunStatus.SUCCESS, trigger="manual", retry_of=run)
    url = reverse("admin:django_rocket_taskrun_changelist")
    response = measure(client, django_assert_num_queries, RUN_CHANGELIST, url)
    assert len(response.context["cl"].result_list) == count + len(runs[1::2])
    response = measure(
        client, django_assert_num_queries, RUN_CHANGELIST, url, {"status__exact": "fail"}
    )
    assert response.context["cl"].result_count == count


@pytest.mark.parametrize("count", [5, 50])
def test_task_page(client, django_assert_num_queries, count):
    task = make_task("report")
    make_runs(task, count)
    url = reverse("admin:django_rocket_task_change", args=[task.pk])
    response = measure(client, django_assert_num_queries, TASK_PAGE, url)
    assert len(response.context["chart"].bars) == count


@pytest.mark.parametrize("count", [5, 50])
def test_run_page(client, django_assert_num_queries, count):
    task = make_task("report")
    failed = make_run(task, RunStatus.FAIL, scheduler=alive_scheduler(role="stopped"))
    TaskRun.objects.bulk_create(
        TaskRun(task=task, status=RunStatus.SUCCESS, retry_of=failed) for _ in range(count)
    )
    url = reverse("admin:django_rocket_taskrun_change", args=[failed.pk])
    measure(client, django_assert_num_queries, RUN_PAGE, url)


@pytest.mark.parametrize("count", [5, 50])
def test_scheduler_changelist(client, django_assert_num_queries, count):
    for _ in range(count - 1):
        alive_scheduler(role="standby", last_seen=timezone.now() - timedelta(seconds=3))
    url = reverse("admin:django_rocket_schedulerinstance_changelist")
    measure(client, django_assert_num_queries, SCHEDULER_CHANGELIST, url)
