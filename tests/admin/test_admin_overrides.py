"""Condition overrides and runtime tasks in the admin: permissions, validation, history."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_rocket.admin.changelist import OVERVIEW
from django_rocket.executors.django_tasks.framework import framework
from django_rocket.models import Task, TaskSource
from tests.executors.test_tasks_execution import require
from tests.support.admin_helpers import DECLARED, VIEW_PERMS, make_task, staff_user

pytestmark = pytest.mark.django_db

REMIND = "tests.support.runtime_tasks.remind"


@pytest.fixture(autouse=True)
def declared(settings):
    settings.ROCKET_TASKS = DECLARED
    settings.ROCKET_TASK_FUNCTIONS = ["tests.support.runtime_tasks.*"]


@pytest.fixture
def report() -> Task:
    return make_task("report")


def client_with(client: Client, *perms: str) -> Client:
    client.force_login(staff_user("-".join(["staff", *perms]), *VIEW_PERMS, *perms))
    return client


def change_url(task: Task) -> str:
    return reverse("admin:django_rocket_task_change", args=[task.pk])


def override_form(task: Task, start: str = "", end: str = "") -> dict[str, str]:
    return {
        "start_cond_override": start,
        "end_cond_override": end,
        # The inline of recent runs is read-only but its management form is posted.
        "runs-TOTAL_FORMS": "0",
        "runs-INITIAL_FORMS": "0",
        "runs-MIN_NUM_FORMS": "0",
        "runs-MAX_NUM_FORMS": "1000",
    }


def test_a_viewer_cannot_override(client, report):
    viewer = client_with(client)
    page = viewer.get(change_url(report))
    assert page.status_code == 200
    assert b'name="start_cond_override"' not in page.content
    response = viewer.post(change_url(report), override_form(report, "daily"))
    assert response.status_code == 403
    report.refresh_from_db()
    assert report.start_cond_override == ""


def test_an_override_is_saved_with_old_and_new_text_in_the_history(client, report):
    editor = client_with(client, "django_rocket.change_task")
    page = editor.get(change_url(report))
    assert b'name="start_cond_override"' in page.content
    assert b'name="func"' not in page.content  # the declaration itself stays in settings
    before = Task.objects.get(pk=report.pk).updated_at
    response = editor.post(change_url(report), override_form(report, "daily.at('22:00')"))
    assert response.status_code == 302, response.content.decode()[:2000]
    report.refresh_from_db()
    assert report.start_cond_override == "daily.at('22:00')"
    assert report.effective_start_cond == "daily.at('22:00')"
    assert report.updated_at > before  # what the scheduler's poll watches
    entry = LogEntry.objects.get(object_id=str(report.pk), action_flag=CHANGE)
    assert entry.get_change_message() == (
        "Changed start condition override: “” → “daily.at('22:00')”."
    )
    # The page marks the override and shows the declared condition beside it.
    page = editor.get(change_url(report))
    assert b"rocket-override" in page.content
    assert "Settings declare: every(&#x27;1 hour&#x27;)" in page.content.decode()
    assert b"Revert to settings" in page.content


def test_a_bad_override_shows_its_caret_and_is_not_saved(client, report):
    editor = client_with(client, "django_rocket.change_task")
    response = editor.post(change_url(report), override_form(report, "daily.at('25:00')"))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<pre class="rocket-caret">' in html
    caret = html.split('<pre class="rocket-caret">')[1].split("</pre>")[0]
    text, marker = caret.split("\n")
    assert text == "daily.at(&#x27;25:00&#x27;)"
    assert marker.strip() == "^" and len(marker) - 1 > 0
    report.refresh_from_db()
    assert report.start_cond_override == ""
    assert not LogEntry.objects.exists()


def test_revert_to_settings_clears_the_override_and_is_logged(client, report):
    report.start_cond_override = "daily"
    report.end_cond_override = "running.more_than('1 hour')"
    report.save()
    url = reverse("admin:django_rocket_task_revert", args=[report.pk])
    assert client_with(client, "django_rocket.run_task").post(url).status_code == 403
    editor = client_with(client, "django_rocket.change_task")
    assert editor.get(url).status_code == 405
    assert editor.post(url).status_code == 302
    report.refresh_from_db()
    assert (report.start_cond_override, report.end_cond_override) == ("", "")
    message = LogEntry.objects.get().get_change_message()
    assert message.startswith("Reverted to settings: start condition override: “daily” → “”")
    assert "end condition override: “running.more_than('1 hour')” → “”" in message


def test_the_preview_lists_the_next_due_times_or_the_caret(client, report):
    viewer = client_with(client)
    url = reverse("admin:django_rocket_task_preview")
    # The preview starts from the real now: an hour twelve hours away is never the current one.
    hour = (timezone.now().hour + 12) % 24
    data = viewer.get(url, {"task": "report", "cond": f"daily.at('{hour:02}:00')"}).json()
    assert len(data["times"]) == 5
    assert all(t.endswith(f"{hour:02}:00:00 UTC") for t in data["times"])
    error = viewer.get(url, {"task": "report", "cond": "daily &"}).json()["error"]
    assert error.splitlines()[1:] == ["daily &", "       ^"]
    # Blank: the condition the scheduler applies (the declared one here).
    assert viewer.get(url, {"task": "report"}).json()["condition"] == "every('1 hour')"
    page = viewer.get(change_url(report)).content.decode()
    assert page.count("<li>", page.index("rocket-preview-times")) >= 5
    client.logout()
    assert client.get(url, {"cond": "daily"}).status_code == 302  # to the login page


# -- runtime tasks


def add_form(**values: str) -> dict[str, str]:
    form = {
        "name": "remind-7",
        "description": "",
        "func": REMIND,
        "start_cond": "every('1 hour')",
        "end_cond": "",
        "parameters": json.dumps({"customer": 7}),
        "execution": "main",
        "timeout": "",
        "enabled": "on",
    }
    form.update(values)
    return form


def test_adding_needs_add_task_and_the_setting(client, settings):
    add = reverse("admin:django_rocket_task_add")
    assert client_with(client, "django_rocket.change_task").get(add).status_code == 403
    editor = client_with(client, "django_rocket.add_task")
    assert editor.get(add).status_code == 200
    settings.ROCKET_TASK_FUNCTIONS = None
    assert editor.get(add).status_code == 403


def test_add_task_creates_a_runtime_task(client):
    editor = client_with(client, "django_rocket.add_task")
    response = editor.post(reverse("admin:django_rocket_task_add"), add_form())
    assert response.status_code == 302, response.content.decode()[:3000]
    task = Task.objects.get(name="remind-7")
    assert (task.source, task.declared, task.parameters) == (
        TaskSource.RUNTIME,
        True,
        {"customer": 7},
    )


@pytest.mark.parametrize(
    ("values", "field", "text"),
    [
        ({"func": "tests.support.forbidden_tasks.boom"}, "func", "ROCKET_TASK_FUNCTIONS"),
        ({"name": "report"}, "name", "declared in ROCKET_TASKS"),
        ({"parameters": '{"client": 1}'}, "parameters", "do not fit the signature"),
        ({"start_cond": "every(1 hour)"}, "start_cond", "rocket-caret"),
        ({"timeout": "soon"}, "timeout", "not a duration"),
    ],
)
def test_add_task_validates_as_schedule_does(client, values, field, text):
    editor = client_with(client, "django_rocket.add_task")
    response = editor.post(reverse("admin:django_rocket_task_add"), add_form(**values))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert text in str(errors[field])
    assert not Task.objects.filter(source=TaskSource.RUNTIME).exists()


def test_a_runtime_task_is_edited_with_its_declaration(client):
    task = make_task("remind-7", func=REMIND, source=TaskSource.RUNTIME, parameters={})
    editor = client_with(client, "django_rocket.change_task")
    page = editor.get(change_url(task)).content.decode()
    assert 'name="func"' in page and 'name="start_cond_override"' not in page
    form = {k: v for k, v in add_form(start_cond="daily").items() if k not in ("name", "enabled")}
    response = editor.post(change_url(task), {**form, **override_form(task)} | form)
    assert response.status_code == 302, response.content.decode()[:3000]
    task.refresh_from_db()
    assert (task.start_cond, task.parameters) == ("daily", {"customer": 7})
    message = LogEntry.objects.get().get_change_message()
    assert "start condition: “every('1 hour')” → “daily”" in message


def test_the_next_run_follows_the_override_and_runtime_tasks(client, report):
    report.start_cond_override = "false"
    report.save()
    make_task("remind-7", func=REMIND, source=TaskSource.RUNTIME, start_cond="every('1 hour')")
    viewer = client_with(client)
    page = viewer.get(reverse("admin:django_rocket_task_changelist"))
    overviews = {t.name: getattr(t, OVERVIEW) for t in page.context["cl"].result_list}
    assert overviews["report"].next_run.state == "event"  # "false": declared says hourly
    assert overviews["remind-7"].next_run.state == "due"


@pytest.fixture
def two_backends(settings):
    require()
    immediate = f"{framework().name}.backends.immediate.ImmediateBackend"
    settings.TASKS = {
        "default": {"BACKEND": immediate},
        "narrow": {"BACKEND": immediate, "QUEUES": ["reports"]},
    }
    settings.ROCKET_TASK_FUNCTIONS = [
        "tests.support.runtime_tasks.*",
        "tests.support.remote_tasks.*",
    ]


def remote_form(**values: str) -> dict[str, str]:
    form = {
        "name": "sum",
        "func": "tests.support.remote_tasks.add",
        "parameters": json.dumps({"a": 1, "b": 2}),
        "execution": "tasks",
        "timeout": "1 hour",
    }
    return add_form(**(form | values))


def test_add_task_takes_the_execution_options(client, two_backends):
    editor = client_with(client, "django_rocket.add_task")
    add = reverse("admin:django_rocket_task_add")
    page = editor.get(add).content.decode()
    assert all(f'name="{field}"' in page for field in ("backend", "queue", "multilaunch"))
    response = editor.post(add, remote_form(backend="narrow", queue="reports", multilaunch="on"))
    assert response.status_code == 302, response.content.decode()[:3000]
    task = Task.objects.get(name="sum")
    assert (task.execution, task.backend, task.queue, task.multilaunch) == (
        "tasks",
        "narrow",
        "reports",
        True,
    )


@pytest.mark.parametrize(
    ("values", "field", "text"),
    [
        ({"backend": "nope"}, "backend", "not configured in TASKS"),
        ({"backend": "narrow"}, "queue", "cannot be enqueued"),
        ({"execution": "thread", "queue": "reports"}, "queue", "only applies to execution"),
    ],
)
def test_bad_execution_options_are_field_errors(client, two_backends, values, field, text):
    editor = client_with(client, "django_rocket.add_task")
    response = editor.post(reverse("admin:django_rocket_task_add"), remote_form(**values))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {field}, errors
    assert text in str(errors[field])
    assert not Task.objects.filter(name="sum").exists()
