"""manage.py check shows croniter's reason for a bad cron field, with the caret under it."""

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError


def test_check_puts_the_caret_under_the_cron_field_croniter_refuses(settings):
    text = "daily & cron('0 61 * * *')"
    settings.ROCKET_TASKS = {"report": {"func": "tests.support.tasks.noop", "start_cond": text}}
    with pytest.raises(SystemCheckError) as info:
        call_command("check")
    report = str(info.value)
    assert "django_rocket.E006" in report
    assert "the hour field '61' is not valid (croniter: " in report
    lines = report.splitlines()
    source = next(index for index, line in enumerate(lines) if line.strip() == text)
    caret = lines[source + 1]
    assert caret.index("^") - lines[source].index(text) == text.index("61")
