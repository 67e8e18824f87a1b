"""The admin through the Django test client: every page, action and permission case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_rocket.models import RunStatus, RunTrigger, SchedulerInstance, Task, TaskRun
from tests.support.admin_helpers import (
    DECLARED,
    VIEW_PERMS,
    alive_scheduler,
    make_run,
    make_runs,
    make_task,
    staff_user,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def declared(settings):
    settings.ROCKET_TASKS = DECLARED


@pytest.fixture
def report() -> Task:
    return make_task("report", description="Builds the nightly report.")


@pytest.fixture
def failed_run(report) -> TaskRun:
    return make_run(
        report,
        RunStatus.FAIL,
        message="ValueError: boom",
        exc_text="Traceback (most recent call last):\nValueError: boom",
    )


@pytest.fixture
def viewer_client(client) -> Client:
    client.force_login(staff_user("viewer", *VIEW_PERMS))
    return client


@pytest.fixture
def operator_client(client) -> Client:
    client.force_login(staff_user("operator", *VIEW_PERMS, "django_rocket.run_task"))
    return client


@pytest.fixture
def superuser_client(client, django_user_model) -> Client:
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com"))
    return client


def task_url(task: Task, action: str = "change") -> str:
    return reverse(f"admin:django_rocket_task_{action}", args=[task.pk])


def run_url(run: TaskRun, action: str = "change") -> str:
    return reverse(f"admin:django_rocket_taskrun_{action}", args=[run.pk])


def texts(response) -> list[str]:
    """Return the messages shown on the page a followed POST landed on."""
    return [str(m) for m in response.context["messages"]]


def all_pages(task: Task, run: TaskRun) -> list[str]:
    return [
        reverse("admin:app_list", args=["django_rocket"]),
        reverse("admin:django_rocket_task_changelist"),
        task_url(task),
        task_url(task, "history"),
        reverse("admin:django_rocket_taskrun_changelist"),
        run_url(run),
        reverse("admin:django_rocket_schedulerinstance_changelist"),
    ]


# ---------------------------------------------------------------------- pages and who sees them


def test_anonymous_is_sent_to_the_login_page(client, report, failed_run):
    for url in all_pages(report, failed_run):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url
    for action in ("run", "pause", "resume"):
        response = client.post(task_url(report, action))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    assert client.post(run_url(failed_run, "retry")).status_code == 302
    assert not TaskRun.objects.queued().exists()
    assert Task.objects.get().enabled


def test_viewer_sees_every_page_but_no_buttons(viewer_client, report, failed_run):
    alive_scheduler()
    for url in all_pages(report, failed_run):
        response = viewer_client.get(url)
        assert response.status_code == 200, url
    page = viewer_client.get(task_url(report)).content.decode()
    assert "Run now" not in page
    assert task_url(report, "pause") not in page
    assert "Builds the nightly report." in page
    run_page = viewer_client.get(run_url(failed_run)).content.decode()
    assert run_url(failed_run, "retry") not in run_page
    changelist = viewer_client.get(reverse("admin:django_rocket_task_changelist"))
    assert "run_now" not in changelist.content.decode()


def test_staff_without_view_permission_is_refused(client, report, failed_run):
    client.force_login(staff_user("nobody"))
    assert client.get(task_url(report)).status_code == 403
    assert client.get(reverse("admin:django_rocket_taskrun_changelist")).status_code == 403
    assert client.post(task_url(report, "run")).status_code == 403
    assert not TaskRun.objects.queued().exists()


def test_viewer_cannot_act(viewer_client, report, failed_run):
    for action in ("run", "pause", "resume"):
        assert viewer_client.post(task_url(report, action)).status_code == 403
    assert viewer_client.post(run_url(failed_run, "retry")).status_code == 403
    response = viewer_client.post(
        reverse("admin:django_rocket_task_changelist"),
        {"action": "run_now", "_selected_action": [report.pk], "index": 0},
    )
    assert response.status_code in (200, 302)
    response = viewer_client.post(
        reverse("admin:django_rocket_task_changelist"),
        {"action": "pause", "_selected_action": [report.pk], "index": 0},
    )
    assert not TaskRun.objects.queued().exists()
    assert Task.objects.get().enabled


def test_nobody_adds_edits_or_deletes(superuser_client, report, failed_run):
    assert superuser_client.get(reverse("admin:django_rocket_task_add")).status_code == 403
    assert superuser_client.get(reverse("admin:django_rocket_taskrun_add")).status_code == 403
    assert superuser_client.post(task_url(report), {"name": "x", "func": "os.system"}).status_code
    assert Task.objects.get().func == "tests.support.tasks.noop"
    assert superuser_client.get(task_url(report, "delete")).status_code == 403
    assert superuser_client.get(run_url(failed_run, "delete")).status_code == 403
    page = superuser_client.get(task_url(report)).content.decode()
    assert 'name="func"' not in page
    assert 'name="start_cond"' not in page


# ---------------------------------------------------------------------- run now


def test_run_now_queues_one_manual_run(operator_client, report):
    alive_scheduler()
    response = operator_client.post(task_url(report, "run"), follow=True)
    assert response.redirect_chain == [(task_url(report), 302)]
    run = TaskRun.objects.get()
    assert (run.status, run.trigger, run.retry_of) == (RunStatus.QUEUED, RunTrigger.MANUAL, None)
    assert run.queued_at is not None
    assert texts(response) == [
        "Queued a run of “report”. The scheduler starts it within about a second."
    ]


def test_double_submission_creates_one_run(operator_client, report):
    alive_scheduler()
    first = operator_client.post(task_url(report, "run"), follow=True)
    second = operator_client.post(task_url(report, "run"), follow=True)
    assert TaskRun.objects.count() == 1
    assert "Queued a run" in texts(first)[0]
    assert texts(second) == ["“report” already has a queued run, so no second run was queued."]


def test_run_now_says_when_no_scheduler_is_alive(operator_client, report):
    alive_scheduler(last_seen=timezone.now() - timedelta(minutes=5))
    response = operator_client.post(task_url(report, "run"), follow=True)
    [message] = list(get_messages(response.wsgi_request))
    assert message.level_tag == "warning"
    assert "No scheduler has been seen in the last 60 seconds" in str(message)
    assert TaskRun.objects.queued().count() == 1


def test_run_now_refuses_a_task_no_longer_declared(operator_client):
    gone = make_task("gone", declared=False)
    response = operator_client.post(task_url(gone, "run"), follow=True)
    assert "no longer declared in ROCKET_TASKS" in texts(response)[0]
    assert not TaskRun.objects.exists()


def test_get_on_an_action_url_does_nothing(operator_client, report, failed_run):
    for url in (task_url(report, "run"), task_url(report, "pause"), run_url(failed_run, "retry")):
        assert operator_client.get(url).status_code == 405
    assert not TaskRun.objects.queued().exists()
    assert Task.objects.get().enabled


def test_actions_need_the_csrf_token(report):
    from tests.support.admin_helpers import staff_user as make_user

    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("op", *VIEW_PERMS, "django_rocket.run_task"))
    assert client.post(task_url(report, "run")).status_code == 403
    assert client.post(task_url(report, "pause")).status_code == 403
    assert not TaskRun.objects.exists()
    # With the token from the page, the same request goes through.
    page = client.get(task_url(report))
    token = page.cookies["csrftoken"].value
    response = client.post(task_url(report, "run"), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert TaskRun.objects.queued().count() == 1


def test_superuser_can_act_without_the_explicit_permission(superuser_client, report):
    superuser_client.post(task_url(report, "run"), follow=True)
    assert TaskRun.objects.queued().count() == 1


def test_unknown_object_is_a_404(operator_client):
    assert (
        operator_client.post(reverse("admin:django_rocket_task_run", args=[999])).status_code == 404
    )


# ---------------------------------------------------------------------- pause and resume


def test_pause_and_resume(operator_client, report):
    alive_scheduler()
    before = report.updated_at
    response = operator_client.post(task_url(report, "pause"), follow=True)
    report.refresh_from_db()
    assert not report.enabled
    assert report.updated_at > before
    assert texts(response)[0].startswith("Paused “report”. The scheduler stops starting it")
    page = operator_client.get(task_url(report)).content.decode()
    assert task_url(report, "resume") in page
    assert task_url(report, "pause") not in page

    paused_at = report.updated_at
    response = operator_client.post(task_url(report, "resume"), follow=True)
    report.refresh_from_db()
    assert report.enabled
    assert report.updated_at > paused_at
    assert texts(response)[0].startswith("Resumed “report”.")


def test_pause_twice_changes_nothing_the_second_time(operator_client, report):
    operator_client.post(task_url(report, "pause"), follow=True)
    report.refresh_from_db()
    stamp = report.updated_at
    response = operator_client.post(task_url(report, "pause"), follow=True)
    report.refresh_from_db()
    assert report.updated_at == stamp
    assert texts(response) == ["Nothing changed: already paused."]


def test_changelist_actions_on_several_tasks(operator_client, report):
    alive_scheduler()
    other = make_task("sync")
    url = reverse("admin:django_rocket_task_changelist")
    selected = [report.pk, other.pk]
    operator_client.post(
        url, {"action": "pause", "_selected_action": selected, "index": 0}, follow=True
    )
    assert not Task.objects.filter(enabled=True).exists()
    operator_client.post(
        url, {"action": "resume", "_selected_action": selected, "index": 0}, follow=True
    )
    assert Task.objects.filter(enabled=True).count() == 2
    response = operator_client.post(
        url, {"action": "run_now", "_selected_action": selected, "index": 0}, follow=True
    )
    assert TaskRun.objects.queued().count() == 2
    assert "Queued runs of “report”, “sync”." in texts(response)[0]


def test_actions_are_logged_in_the_task_history(operator_client, report):
    operator_client.post(task_url(report, "pause"), follow=True)
    operator_client.post(task_url(report, "run"), follow=True)
    history = operator_client.get(task_url(report, "history")).content.decode()
    assert "Paused." in history
    assert "Run now: queued run" in history


# ---------------------------------------------------------------------- retry


def test_retry_a_failed_run(operator_client, report, failed_run):
    alive_scheduler()
    page = operator_client.get(run_url(failed_run)).content.decode()
    assert run_url(failed_run, "retry") in page
    response = operator_client.post(run_url(failed_run, "retry"), follow=True)
    assert response.redirect_chain == [(run_url(failed_run), 302)]
    retry = TaskRun.objects.queued().get()
    assert (retry.trigger, retry.retry_of_id) == (RunTrigger.MANUAL, failed_run.pk)
    assert texts(response) == [
        f"Queued a retry of run #{failed_run.pk} (report). "
        "The scheduler starts it within about a second."
    ]
    # The two runs link to each other.
    original = operator_client.get(run_url(failed_run)).content.decode()
    assert f'href="{run_url(retry)}"' in original
    assert f'href="{run_url(failed_run)}"' in operator_client.get(run_url(retry)).content.decode()


def test_retry_twice_queues_one_run(operator_client, failed_run):
    operator_client.post(run_url(failed_run, "retry"), follow=True)
    response = operator_client.post(run_url(failed_run, "retry"), follow=True)
    assert TaskRun.objects.queued().count() == 1
    assert "already has a queued run" in texts(response)[0]


def test_a_successful_run_has_no_retry(operator_client, report):
    ok = make_run(report, RunStatus.SUCCESS)
    assert run_url(ok, "retry") not in operator_client.get(run_url(ok)).content.decode()
    response = operator_client.post(run_url(ok, "retry"), follow=True)
    assert texts(response) == ["Only failed, crashed or terminated runs can be retried."]
    assert not TaskRun.objects.queued().exists()


def test_retry_action_takes_each_tasks_latest_failure(operator_client, report):
    other = make_task("sync")
    now = timezone.now()
    make_run(report, RunStatus.FAIL, started_at=now - timedelta(hours=2))
    latest = make_run(report, RunStatus.CRASH, started_at=now - timedelta(hours=1))
    other_fail = make_run(other, RunStatus.TERMINATE, started_at=now - timedelta(hours=1))
    make_run(other, RunStatus.SUCCESS)
    operator_client.post(
        reverse("admin:django_rocket_taskrun_changelist"),
        {
            "action": "retry",
            "_selected_action": list(TaskRun.objects.values_list("pk", flat=True)),
            "index": 0,
        },
    )
    retried = set(TaskRun.objects.queued().values_list("retry_of_id", flat=True))
    assert retried == {latest.pk, other_fail.pk}


# ---------------------------------------------------------------------- what the pages show


def test_task_changelist_columns(superuser_client, report):
    alive_scheduler()
    now = timezone.now()
    make_run(report, RunStatus.SUCCESS, started_at=now - timedelta(hours=3), runtime=2)
    make_run(report, RunStatus.FAIL, started_at=now - timedelta(hours=2), runtime=4)
    make_run(
        report, RunStatus.SUCCESS, started_at=now - timedelta(minutes=30, seconds=30), runtime=3
    )
    page = superuser_client.get(reverse("admin:django_rocket_task_changelist")).content.decode()
    page = page.replace("\xa0", " ")
    assert "every(&#x27;1 hour&#x27;)" in page
    assert 'class="rocket-badge rocket-success"' in page
    assert "30 minutes ago" in page
    assert "67 %" in page  # two of the three runs did not fail
    assert "3.00 s" in page  # the mean runtime
    assert "in 29 minutes" in page  # every('1 hour') after a run 30 minutes ago


def test_task_changelist_filters_and_search(superuser_client, report):
    make_run(report, RunStatus.FAIL)
    make_task("sync", enabled=False)
    url = reverse("admin:django_rocket_task_changelist")
    assert superuser_client.get(url, {"enabled__exact": "0"}).context["cl"].result_count == 1
    assert superuser_client.get(url, {"latest_run": "fail"}).context["cl"].result_count == 1
    assert superuser_client.get(url, {"latest_run": "never"}).context["cl"].result_count == 1
    assert superuser_client.get(url, {"q": "nightly"}).context["cl"].result_count == 1


def test_task_page_shows_declaration_chart_and_recent_runs(superuser_client, report):
    runs = make_runs(report, 30)
    page = superuser_client.get(task_url(report)).content.decode()
    assert "<svg" in page
    assert page.count('class="rocket-bar ') == 30
    assert f'href="{run_url(runs[-1])}"' in page
    # The inline lists only the latest runs.
    assert page.count('class="rocket-badge rocket-') >= 20
    assert f">#{runs[-1].pk}<" in page
    assert f">#{runs[0].pk}<" not in page
    assert "Declaration, from ROCKET_TASKS" in page
    assert "runs may overlap" in page


def test_run_page_shows_traceback_escaped_in_pre(superuser_client, report):
    run = make_run(
        report,
        RunStatus.FAIL,
        exc_text='Traceback:\n  raise ValueError("<script>alert(1)</script>")',
        result={"note": "<b>bold</b>"},
    )
    page = superuser_client.get(run_url(run)).content.decode()
    assert (
        '<pre class="rocket-traceback">Traceback:\n  raise ValueError(&quot;&lt;script&gt;'
        "alert(1)&lt;/script&gt;&quot;)</pre>" in page
    )
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script>alert(1)" not in page


def test_a_run_page_answers_at_its_run_id(superuser_client, report, failed_run):
    """The alert emails link to a run by its id (no look-up of its number as they go)."""
    retry_by_number = reverse("admin:django_rocket_taskrun_retry", args=[failed_run.pk])
    for form in (str(failed_run.run_id), failed_run.run_id.hex):
        page = superuser_client.get(
            reverse("admin:django_rocket_taskrun_change", args=[form])
        ).content.decode()
        assert str(failed_run.run_id) in page
        assert "Traceback (most recent call last):\nValueError: boom" in page
        assert f'action="{retry_by_number}"' in page  # the page's own links use its number
    retry = reverse("admin:django_rocket_taskrun_retry", args=[failed_run.run_id])
    assert superuser_client.post(retry).status_code == 302  # its actions answer there too
    unknown = superuser_client.get(
        reverse("admin:django_rocket_taskrun_change", args=["0193a6c4-1f2e-7b3a-9c4d-5e6f7a8b9c0d"])
    )
    assert unknown.status_code == 302  # the admin's "does not exist" message, as for a number


def test_everything_from_task_data_is_escaped(superuser_client):
    alive_scheduler(host="<i>host</i>")
    evil = make_task(
        "<script>alert('name')</script>",
        description="<script>alert('description')</script>",
        start_cond="every('1 hour') <script>",
    )
    run = make_run(
        evil,
        RunStatus.FAIL,
        message="<script>alert('message')</script>",
        exc_text="<script>alert('traceback')</script>",
        host="<script>alert('host')</script>",
    )
    operator_pages = [
        reverse("admin:django_rocket_task_changelist"),
        task_url(evil),
        reverse("admin:django_rocket_taskrun_changelist"),
        run_url(run),
        reverse("admin:django_rocket_schedulerinstance_changelist"),
    ]
    for url in operator_pages:
        page = superuser_client.get(url).content.decode()
        assert "<script>alert" not in page, url
        assert "<i>host" not in page, url
    response = superuser_client.post(task_url(evil, "pause"), follow=True)
    assert "<script>alert" not in response.content.decode()
    assert "&lt;script&gt;" in response.content.decode()
    # The health banner names the last scheduler seen: escaped too.
    SchedulerInstance.objects.update(last_seen=timezone.now() - timedelta(hours=1))
    page = superuser_client.get(task_url(evil)).content.decode()
    assert "rocket-health" in page
    assert "&lt;i&gt;host&lt;/i&gt;" in page
    assert "<i>host" not in page


def test_run_changelist_columns_filters_and_search(superuser_client, report, failed_run):
    retry = make_run(report, RunStatus.SUCCESS, trigger=RunTrigger.MANUAL, retry_of=failed_run)
    url = reverse("admin:django_rocket_taskrun_changelist")
    page = superuser_client.get(url).content.decode()
    assert 'class="rocket-badge rocket-fail"' in page
    assert f'href="{run_url(failed_run)}" title="Retry of run #{failed_run.pk}"' in page
    assert "worker-1" in page
    assert "1.50 s" in page
    for params, expected in [
        ({"status__exact": "fail"}, [failed_run]),
        ({"trigger__exact": "manual"}, [retry]),
        ({"task__id__exact": report.pk}, [retry, failed_run]),
        ({"q": str(retry.run_id)}, [retry]),
        ({"q": "repo"}, [retry, failed_run]),
        ({"q": "nothing-like-this"}, []),
    ]:
        cl = superuser_client.get(url, params).context["cl"]
        assert list(cl.result_list) == expected, params


def test_run_changelist_sorts_only_by_indexed_columns(superuser_client, report):
    make_runs(report, 3)
    url = reverse("admin:django_rocket_taskrun_changelist")
    default = superuser_client.get(url).context["cl"].queryset.query.order_by
    assert default == ("-started_at", "-id")
    # Column 7 is the host: not offered, and ignored when asked for by hand (the id remains).
    by_host = superuser_client.get(url, {"o": "7"}).context["cl"].queryset.query.order_by
    assert by_host == ("-pk",)
    by_start = superuser_client.get(url, {"o": "5"}).context["cl"].queryset.query.order_by
    assert by_start == ("started_at", "pk")


def test_run_date_hierarchy(superuser_client, report):
    for when in (
        datetime(2025, 12, 30, 10, tzinfo=UTC),
        datetime(2026, 3, 2, 9, tzinfo=UTC),
        datetime(2026, 3, 17, 9, tzinfo=UTC),
        datetime(2026, 5, 1, 9, tzinfo=UTC),
    ):
        make_run(report, started_at=when)
    url = reverse("admin:django_rocket_taskrun_changelist")

    def choices(params):
        return superuser_client.get(url, params).content.decode()

    years = choices({})
    assert "?started_at__year=2025" in years
    assert "?started_at__year=2026" in years
    months = choices({"started_at__year": "2026"})
    assert "started_at__month=3" in months
    assert "started_at__month=5" in months
    assert "started_at__month=4" not in months
    days = choices({"started_at__year": "2026", "started_at__month": "3"})
    assert "started_at__day=2" in days
    assert "started_at__day=17" in days
    assert "started_at__day=3&" not in days
    cl = superuser_client.get(
        url, {"started_at__year": "2026", "started_at__month": "3", "started_at__day": "17"}
    ).context["cl"]
    assert cl.result_count == 1


def test_run_changelist_estimates_big_counts(superuser_client, report, monkeypatch):
    from django_rocket.admin.changelist import EstimatedCountPaginator

    make_runs(report, 30)
    monkeypatch.setattr(EstimatedCountPaginator, "exact_limit", 10)
    url = reverse("admin:django_rocket_taskrun_changelist")
    response = superuser_client.get(url)
    cl = response.context["cl"]
    assert cl.paginator.estimated
    assert cl.result_count >= 11
    assert "about" in response.content.decode()
    # Filtered views count exactly while the filter keeps them small.
    cl = superuser_client.get(url, {"status__exact": "fail"}).context["cl"]
    assert cl.result_count == 7
    assert not cl.paginator.estimated


def test_scheduler_list(superuser_client):
    alive_scheduler(host="alpha", pid=11)
    alive_scheduler(host="beta", pid=12, role="standby")
    alive_scheduler(host="gamma", pid=13, role="stopped", stopped_at=timezone.now())
    page = superuser_client.get(
        reverse("admin:django_rocket_schedulerinstance_changelist")
    ).content.decode()
    for text in ("alpha", "beta", "gamma", "rocket-role-active", "rocket-role-standby"):
        assert text in page
    assert "No active scheduler" not in page


# ---------------------------------------------------------------------- health banner


@pytest.mark.parametrize(
    ("scheduler", "warned"),
    [
        (None, True),
        ({"role": "active"}, False),
        ({"role": "active", "last_seen": timedelta(minutes=2)}, True),
        ({"role": "standby"}, True),
        ({"role": "stopped"}, True),
    ],
)
def test_health_banner(superuser_client, report, failed_run, scheduler, warned):
    if scheduler is not None:
        age = scheduler.pop("last_seen", timedelta(0))
        alive_scheduler(last_seen=timezone.now() - age, **scheduler)
    for url in all_pages(report, failed_run):
        if "history" in url:
            continue
        page = superuser_client.get(url).content.decode()
        assert ("rocket-health" in page) is warned, url
    index = superuser_client.get(reverse("admin:index")).content.decode()
    assert "rocket-health" not in index  # other apps' pages are left alone


def test_health_banner_threshold_is_a_setting(superuser_client, settings):
    alive_scheduler(last_seen=timezone.now() - timedelta(seconds=90))
    url = reverse("admin:django_rocket_task_changelist")
    assert "rocket-health" in superuser_client.get(url).content.decode()
    settings.ROCKET_HEALTH_MAX_AGE = 120
    assert "rocket-health" not in superuser_client.get(url).content.decode()


def test_task_page_says_when_a_waiting_retry_is_due(superuser_client, settings, report):
    cond = "every('1 hour') | retry(3, delay='1 hour', backoff=2, jitter=0.1)"
    settings.ROCKET_TASKS = {"report": {**DECLARED["report"], "start_cond": cond}}
    failed = make_run(report, RunStatus.FAIL, exception_types=["builtins.OSError"])
    page = superuser_client.get(task_url(report)).content.decode()
    assert '<span class="rocket-retry">retry 1 of 3 due at ' in page
    assert "(backoff 2\N{MULTIPLICATION SIGN}, jitter ±10 %)" in page
    # An hour after the failure, moved by the jitter that run's id fixes.
    from django_rocket.conditions.retrying import jitter_offset

    wait = timedelta(hours=1) * (1 + 0.1 * jitter_offset(str(failed.run_id)))
    due = timezone.localtime(failed.finished_at + wait)
    assert f"retry 1 of 3 due at {due.strftime('%H:%M:%S')} (" in page or due.date() != (
        timezone.localdate()
    )
