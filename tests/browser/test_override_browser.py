"""A condition override in a real browser: the caret, the preview, saving, the scheduler, revert.

Headless Chromium against a live server and a real ``runscheduler`` subprocess (see
test_admin_browser.py for how Chromium is found).
"""

from __future__ import annotations

import time

import pytest
from django.contrib.admin.models import LogEntry

from django_rocket.models import Task, TaskRun
from django_rocket.ops import overview
from tests.browser.test_admin_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PASSWORD
from tests.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TASKS = {
    "nightly_report": {
        "func": "tests.support.tasks.returns_value",
        "start_cond": "false",  # never, until tonight's emergency override
        "execution": "thread",
    }
}


@pytest.mark.django_db(transaction=True)
def test_override_with_caret_preview_scheduler_and_revert(
    playwright_api, live_server, scheduler_process, settings, django_user_model
):
    settings.ROCKET_TASKS = TASKS
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    scheduler = scheduler_process(TASKS)
    wait_until(overview.active_scheduler, 30, "the scheduler to become active")
    wait_until(lambda: Task.objects.filter(name="nightly_report").exists(), 30, "the task row")
    task = Task.objects.get(name="nightly_report")
    ARTIFACTS.mkdir(exist_ok=True)

    with playwright_api() as pw:  # no ORM inside: Playwright runs an event loop here
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(10_000)
            admin = f"{live_server.url}/admin/"
            task_page = f"{admin}django_rocket/task/{task.pk}/change/"
            page.goto(f"{admin}login/?next={task_page}")
            page.fill("#id_username", "admin")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_selector("#id_start_cond_override")

            # A typo: the preview shows the caret under it, without saving.
            page.fill("#id_start_cond_override", "daily.at('25:00')")
            page.click("button.rocket-preview-button")
            error = page.wait_for_selector(".rocket-preview-error").inner_text()
            lines = error.splitlines()
            assert lines[1] == "daily.at('25:00')"
            assert lines[2].strip() == "^"

            # Saving it shows the same caret in the form, and saves nothing.
            page.click("input[name=_save]")
            caret = page.wait_for_selector(".field-start_cond_override pre.rocket-caret")
            source, marker = caret.inner_text().splitlines()
            assert source == "daily.at('25:00')"
            assert marker.strip() == "^" and 0 < marker.index("^") < len(source)

            # The fixed text: five due times, then save.
            page.fill("#id_start_cond_override", "every('1 hour')")
            page.click("button.rocket-preview-button")
            page.wait_for_selector(".rocket-preview-times li >> nth=4")
            assert page.locator(".rocket-preview-times li").count() == 5
            page.screenshot(path=str(ARTIFACTS / "admin-override.png"), full_page=True)
            page.click("input[name=_save]")
            page.wait_for_selector(".messagelist .success")
            assert page.locator(".field-condition .rocket-override").count() == 1

            # The running scheduler applies it at its next poll: the run appears.
            runs = f"{admin}django_rocket/taskrun/?task__id__exact={task.pk}"
            deadline = time.monotonic() + 20
            while page.goto(runs) and page.locator("#result_list tbody tr").count() == 0:
                assert time.monotonic() < deadline, "the override was not applied in 20 s"
                page.wait_for_timeout(250)

            page.goto(task_page)
            page.click("button:has-text('Revert to settings')")
            page.wait_for_selector(".messagelist >> text=Reverted “nightly_report”")
            assert page.locator("button:has-text('Revert to settings')").count() == 0
        finally:
            browser.close()

    scheduler.stop()
    task.refresh_from_db()
    assert task.start_cond_override == ""
    assert TaskRun.objects.filter(task=task).count() >= 1
    history = [e.get_change_message() for e in LogEntry.objects.order_by("pk")]
    assert history == [
        "Changed start condition override: “” → “every('1 hour')”.",
        "Reverted to settings: start condition override: “every('1 hour')” → “”.",
    ]
