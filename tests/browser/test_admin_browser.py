"""The admin in a real browser: headless Chromium, driven by Playwright, against a live server.

A real ``runscheduler`` subprocess runs against the same test database, so
"Run now" is started by the scheduler and the page shows its final status.
Screenshots of the task page and the run list land in ``test-artifacts/``.

Debian's Chromium is used (``apt-get install chromium``; ``ROCKET_CHROMIUM``
names another binary); Playwright's own browser download is not needed.
Without Chromium the test is skipped, unless ``ROCKET_BROWSER=required`` (as
in CI), when it fails.
"""

from __future__ import annotations

import os
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun
from django_rocket.ops import overview
from tests.conftest import ROOT, wait_until
from tests.support.admin_helpers import make_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("ROCKET_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "rocket-admin-pw"

TASKS = {
    "nightly_report": {
        "func": "tests.support.tasks.returns_value",
        "start_cond": "every('1 hour')",
        "execution": "thread",
        "description": "Builds the nightly sales report.",
    },
    "sync_prices": {
        "func": "tests.support.tasks.fails",
        "start_cond": "every('6 hours')",
        "execution": "thread",
        "description": "Pulls prices from the supplier.",
    },
}


@pytest.fixture
def playwright_api():
    """Return Playwright's sync API, or skip (fail if ROCKET_BROWSER=required) without a browser."""
    required = os.environ.get("ROCKET_BROWSER", "").lower() == "required"
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "Playwright is not installed (pip install playwright)"
    else:
        if not CHROMIUM.exists():
            problem = f"Chromium is missing at {CHROMIUM} (apt-get install -y chromium)"
    if problem:
        if required:
            pytest.fail(f"{problem}, and ROCKET_BROWSER=required.")
        pytest.skip(f"{problem}; set ROCKET_BROWSER=required to make this a failure.")
    return sync_playwright


def _history() -> int:
    """Give both tasks some past runs to show; return the pk of a failed run to retry."""
    now = timezone.now()
    report = Task.objects.create(name="nightly_report", func="tests.support.tasks.returns_value")
    prices = Task.objects.create(name="sync_prices", func="tests.support.tasks.fails")
    for i in range(24):
        started = now - timedelta(minutes=10 + 60 * (24 - i))
        status = RunStatus.FAIL if i in (6, 7, 15) else RunStatus.SUCCESS
        make_run(report, status, started_at=started, runtime=20 + (i * 7) % 30)
    make_run(report, RunStatus.SUCCESS, started_at=now - timedelta(minutes=10), runtime=31)
    failed = make_run(
        prices,
        RunStatus.FAIL,
        started_at=now - timedelta(hours=1),
        runtime=3.2,
        message="ValueError: boom",
        exc_text="Traceback (most recent call last):\n"
        '  File "tasks.py", line 20, in fails\nValueError: boom',
    )
    return failed.pk


@pytest.mark.django_db(transaction=True)
def test_pause_resume_and_run_now_in_a_browser(
    playwright_api, live_server, scheduler_process, settings, django_user_model
):
    settings.ROCKET_TASKS = TASKS
    failed_run = _history()
    failed, failed_run_id = TaskRun.objects.values_list("task_id", "run_id").get(pk=failed_run)
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    scheduler = scheduler_process(TASKS)
    wait_until(overview.active_scheduler, 30, "the scheduler to become active")
    ARTIFACTS.mkdir(exist_ok=True)

    # Playwright's sync API keeps an event loop running in this thread, so the ORM
    # is only used before and after this block; the live server has its own thread.
    with playwright_api() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(10_000)
            admin = f"{live_server.url}/admin/"
            page.goto(f"{admin}login/?next=/admin/django_rocket/task/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_selector("#result_list")
            assert page.locator(".rocket-health").count() == 0

            page.click("#result_list >> text=nightly_report")
            page.wait_for_selector("button:has-text('Pause')")

            page.click("button:has-text('Pause')")
            page.wait_for_selector(".messagelist >> text=Paused “nightly_report”")
            assert page.locator("button:has-text('Resume')").is_visible()

            page.click("button:has-text('Resume')")
            page.wait_for_selector(".messagelist >> text=Resumed “nightly_report”")

            page.click("button:has-text('Run now')")
            message = page.locator(".messagelist li").first.inner_text()
            assert message.startswith("Queued a run of “nightly_report”."), message
            assert "within about a second" in message

            manual = f"{admin}django_rocket/taskrun/?trigger__exact=manual"
            assert _reload_until_finished(page, manual, limit=20) == "Success"
            page.click("#result_list tbody tr >> nth=0 >> th a")
            page.wait_for_selector(".field-status_badge")
            assert page.locator(".field-trigger_display .readonly").inner_text().strip() == "Manual"

            # Retry the failed run of the other task: a manual run linked to the original.
            page.goto(f"{admin}django_rocket/taskrun/?status__exact=fail&task__id__exact={failed}")
            page.click("#result_list tbody tr >> nth=0 >> th a")
            page.click("button:has-text('Retry')")
            page.wait_for_selector(".messagelist >> text=Queued a retry of run")
            retries = f"{manual}&task__id__exact={failed}"
            assert _reload_until_finished(page, retries, limit=20) == "Fail"
            retry_link = page.locator("#result_list tbody tr >> nth=0 >> .field-trigger_display a")
            assert retry_link.inner_text().strip() == f"↻ #{failed_run}"

            # An alert email's link: the run's page at its run id.
            page.goto(f"{admin}django_rocket/taskrun/{failed_run_id}/change/")
            run_id_field = page.locator(".field-run_id .readonly").inner_text().strip()
            assert run_id_field == str(failed_run_id)
            assert "ValueError: boom" in page.locator(".rocket-traceback").inner_text()

            page.goto(f"{admin}django_rocket/taskrun/")
            page.screenshot(path=str(ARTIFACTS / "admin-runs.png"), full_page=True)

            page.goto(f"{admin}django_rocket/task/")
            page.click("#result_list >> text=nightly_report")
            page.wait_for_selector(".rocket-chart svg")
            assert page.locator(".rocket-bar").count() == 26
            page.screenshot(path=str(ARTIFACTS / "admin-task.png"), full_page=True)
        finally:
            browser.close()

    scheduler.stop()
    run = TaskRun.objects.get(trigger=RunTrigger.MANUAL, task__name="nightly_report")
    assert run.status == RunStatus.SUCCESS
    retry = TaskRun.objects.get(trigger=RunTrigger.MANUAL, task__name="sync_prices")
    assert (retry.status, retry.retry_of_id) == (RunStatus.FAIL, failed_run)
    assert Task.objects.get(name="nightly_report").enabled
    assert (ARTIFACTS / "admin-task.png").stat().st_size > 10_000


def _reload_until_finished(page, url: str, limit: float) -> str:
    """Reload the run list until the newest run has a final status; return its label."""
    deadline = time.monotonic() + limit
    status = ""
    while time.monotonic() < deadline:
        page.goto(url)
        badge = page.locator("#result_list tbody tr >> nth=0 >> .rocket-badge")
        if badge.count():
            status = badge.inner_text().strip()
            if not re.fullmatch(r"Queued|Running", status):
                return status
        page.wait_for_timeout(300)
    raise AssertionError(f"The run did not finish within {limit}s; last status {status!r}.")
