import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError
from django.utils import timezone

from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun

pytestmark = pytest.mark.django_db


def make_task(name: str = "report") -> Task:
    return Task.objects.create(name=name, func="tests.support.tasks.noop", start_cond="daily")


def test_task_name_is_unique():
    make_task("a")
    with pytest.raises(IntegrityError):
        make_task("a")


def test_run_id_is_unique():
    task = make_task()
    run_id = uuid.uuid4()
    TaskRun.objects.create(task=task, run_id=run_id, status=RunStatus.RUNNING)
    with pytest.raises(IntegrityError):
        TaskRun.objects.create(task=task, run_id=run_id, status=RunStatus.RUNNING)


def test_run_defaults_and_str():
    task = make_task()
    run = TaskRun.objects.create(task=task, status=RunStatus.QUEUED)
    assert isinstance(run.run_id, uuid.UUID)
    assert run.trigger == RunTrigger.SCHEDULED
    assert str(run) == f"report {run.run_id}"
    assert not run.is_finished


def test_queryset_vocabulary():
    task = make_task()
    other = make_task("other")
    now = timezone.now()
    statuses = ["queued", "running", "success", "fail", "terminate", "inaction", "crash"]
    for i, status in enumerate(statuses):
        TaskRun.objects.create(task=task, status=status, started_at=now + timedelta(seconds=i))
    TaskRun.objects.create(task=other, status="fail", started_at=now)
    runs = TaskRun.objects.for_task("report")
    assert runs.count() == 7
    assert set(runs.queued().values_list("status", flat=True)) == {"queued"}
    assert set(runs.running().values_list("status", flat=True)) == {"running"}
    assert set(runs.open().values_list("status", flat=True)) == {"queued", "running"}
    assert set(runs.finished().values_list("status", flat=True)) == {
        "success",
        "fail",
        "terminate",
        "inaction",
        "crash",
    }
    assert runs.failed().count() == 1
    assert TaskRun.objects.failed().count() == 2
    assert runs.succeeded().get().status == "success"


def test_task_queryset():
    make_task("a")
    Task.objects.create(name="b", func="x.y", declared=False)
    Task.objects.create(name="c", func="x.y", enabled=False)
    assert list(Task.objects.declared().values_list("name", flat=True)) == ["a", "c"]
    assert list(Task.objects.enabled().values_list("name", flat=True)) == ["a"]


def test_custom_permission_exists():
    from django.contrib.auth.models import Permission

    assert Permission.objects.filter(codename="run_task", content_type__app_label="django_rocket")


def test_deleting_a_task_deletes_its_runs_but_retry_link_is_nulled():
    task = make_task()
    first = TaskRun.objects.create(task=task, status=RunStatus.FAIL)
    retry = TaskRun.objects.create(
        task=task, status=RunStatus.FAIL, retry_of=first, trigger=RunTrigger.RETRY
    )
    first.delete()
    retry.refresh_from_db()
    assert retry.retry_of is None
    task.delete()
    assert not TaskRun.objects.exists()


def test_migrations_are_complete():
    call_command("makemigrations", "django_rocket", "--check", "--dry-run", verbosity=0)
