"""One run at a given time: ``runtask NAME --at``, the admin's "Run at…", cancel, the scheduler."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun
from django_rocket.ops import queue_run
from django_rocket.registry import tasks as declared_tasks
from tests.support.admin_helpers import VIEW_PERMS, staff_user

TASKS = {"report": {"func": "tests.support.tasks.noop", "start_cond": "false", "execution": "main"}}


@pytest.fixture(autouse=True)
def tasks(settings):
    settings.ROCKET_TASKS = TASKS
    settings.ROCKET_TIME_ZONE = "Europe/Paris"
    settings.ROCKET_HEARTBEAT = "1 hour"


def runtask(*args: str) -> str:
    out = StringIO()
    call_command("runtask", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_at_queues_one_run_due_at_that_local_instant():
    task = Task.objects.create(name="report", func="tests.support.tasks.noop")
    tomorrow = (timezone.now() + timedelta(days=1)).date()
    out = runtask("report", "--at", f"{tomorrow}T05:00")
    run = TaskRun.objects.get()
    assert (run.status, run.trigger, run.task_id) == (RunStatus.QUEUED, RunTrigger.MANUAL, task.pk)
    assert run.due_at == datetime(tomorrow.year, tomorrow.month, tomorrow.day, 4, tzinfo=UTC)
    assert f"Queued run {run.run_id} of 'report' at {tomorrow}T05:00:00+01:00" in out
    assert "No active scheduler" in out
    # Several instants may be queued, and "Run now" is not mistaken for one of them.
    runtask("report", "--at", f"{tomorrow}T06:00")
    _, created = queue_run(task)
    assert created and TaskRun.objects.queued().count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("report", "--at", "2020-01-01T00:00"), "is in the past"),
        (("report", "--at", "tomorrow"), "not an ISO 8601"),
        (("report", "--at", "2099-01-01T00:00", "--wait"), "do not go together"),
        (("nope", "--at", "2099-01-01T00:00"), "no task 'nope'"),
    ],
)
def test_at_refuses_what_cannot_run(args, message):
    Task.objects.create(name="report", func="tests.support.tasks.noop")
    with pytest.raises(CommandError, match=message):
        runtask(*args)
    assert not TaskRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_scheduler_starts_it_at_its_instant(clock):
    scheduler = Scheduler(declared_tasks(), clock=clock)
    scheduler.startup()
    scheduler.tick()
    due_at = clock.now() + timedelta(hours=2)
    TaskRun.objects.create(
        task=Task.objects.get(name="report"),
        status=RunStatus.QUEUED,
        trigger=RunTrigger.MANUAL,
        due_at=due_at,
    )
    clock.advance(1)
    scheduler.tick()  # the poll follows it; not due yet
    assert TaskRun.objects.get().status == RunStatus.QUEUED
    sleep = scheduler.tick()
    assert sleep <= 2 * 3600  # the loop wakes for it, though the condition never changes
    clock.set(due_at)
    scheduler.tick()
    scheduler.tick()
    run = TaskRun.objects.get()
    assert (run.status, run.started_at) == (RunStatus.SUCCESS, due_at)
    scheduler.shutdown()


@pytest.mark.django_db
def test_run_at_in_the_admin_queues_and_cancel_removes(client):
    task = Task.objects.create(name="report", func="tests.support.tasks.noop")
    client.force_login(staff_user("operator", *VIEW_PERMS, "django_rocket.run_task"))
    changelist = reverse("admin:django_rocket_task_changelist")
    form = {"action": "run_at", ACTION_CHECKBOX_NAME: [str(task.pk)]}
    page = client.post(changelist, form)
    assert page.status_code == 200
    assert b'name="due_at"' in page.content and b"Europe/Paris" in page.content
    bad = client.post(changelist, {**form, "apply": "1", "due_at": "2020-01-01T00:00"})
    assert "is in the past" in bad.content.decode()
    done = client.post(changelist, {**form, "apply": "1", "due_at": "2099-03-02T05:00"})
    assert done.status_code == 302
    run = TaskRun.objects.get()
    assert run.due_at == datetime(2099, 3, 2, 4, tzinfo=UTC)
    runs = reverse("admin:django_rocket_taskrun_changelist")
    client.post(runs, {"action": "cancel", ACTION_CHECKBOX_NAME: [str(run.pk)]})
    assert not TaskRun.objects.exists()


@pytest.mark.django_db
def test_run_at_needs_the_run_permission(client):
    task = Task.objects.create(name="report", func="tests.support.tasks.noop")
    client.force_login(staff_user("viewer", *VIEW_PERMS))
    changelist = reverse("admin:django_rocket_task_changelist")
    client.post(
        changelist,
        {
            "action": "run_at",
            ACTION_CHECKBOX_NAME: [str(task.pk)],
            "apply": "1",
            "due_at": "2099-01-01T00:00",
        },
    )
    assert not TaskRun.objects.exists()
