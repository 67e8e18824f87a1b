"""How the admin shows times, next runs and links: small functions returning safe HTML or text."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext, ngettext

from django_rocket.conf import conf
from django_rocket.display import NOTHING
from django_rocket.models import TaskRun
from django_rocket.ops.overview import NextRun


def exact_time(value: datetime) -> str:
    return formats.localize(timezone.localtime(value))


def time_ago(value: datetime | None, now: datetime, url: str = "") -> str:
    """Return "5 minutes ago" with the exact time in a tooltip, linked to ``url`` if given."""
    if value is None:
        return NOTHING
    if now - value < timedelta(minutes=1):
        text = gettext("just now")
    else:
        text = gettext("%(time)s ago") % {"time": timesince(value, now, depth=1)}
    if url:
        return format_html(
            '<a href="{}" title="{}"><time datetime="{}">{}</time></a>',
            url,
            exact_time(value),
            value.isoformat(),
            text,
        )
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), exact_time(value), text
    )


def run_time_ago(run: TaskRun | None, field: str) -> str:
    """Return how long ago ``run`` started or finished, linked to its page."""
    if run is None:
        return NOTHING
    return time_ago(getattr(run, field), timezone.now(), run_url(run.pk))


def format_next_run(next_run: NextRun, now: datetime) -> str:
    text = _next_run_text(next_run, now)
    if next_run.retry is None:
        return text
    return format_html(
        '{}<br><span class="rocket-retry">{}</span>',
        text,
        next_run.retry.describe(timezone.localtime(now)),
    )


def _next_run_text(next_run: NextRun, now: datetime) -> str:
    if next_run.state == "at" and next_run.at is not None:
        if next_run.at <= now:
            return gettext("now")
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            next_run.at.isoformat(),
            exact_time(next_run.at),
            gettext("in %(time)s") % {"time": timeuntil(next_run.at, now, depth=1)},
        )
    labels = {
        "due": (gettext("now"), gettext("Its start condition is true.")),
        "busy": (
            gettext("after this run"),
            gettext("Due, but its run in progress must finish first."),
        ),
        "event": (
            NOTHING,
            gettext("No time is known: another run must happen before it can start."),
        ),
        "paused": (gettext("paused"), gettext("Resume the task to let the scheduler start it.")),
        "undeclared": (
            gettext("not declared"),
            gettext("The task is no longer in ROCKET_TASKS."),
        ),
        "unknown": (NOTHING, gettext("The start condition cannot be evaluated here.")),
    }
    text, title = labels.get(next_run.state, (NOTHING, ""))
    return format_html('<span title="{}">{}</span>', title, text)


def run_url(pk: int) -> str:
    return reverse("admin:django_rocket_taskrun_change", args=[quote(pk)])


def no_scheduler_note() -> str:
    return gettext(
        "No scheduler has been seen in the last %(seconds)d seconds, so nothing starts "
        "until “manage.py runscheduler” is running."
    ) % {"seconds": conf.health_max_age}


def start_delay() -> str:
    seconds = math.ceil(conf.poll_interval)
    return ngettext(
        "The scheduler starts it within about a second.",
        "The scheduler starts it within about %(seconds)d seconds.",
        seconds,
    ) % {"seconds": seconds}


def name_list(names: list[str]) -> str:
    return ", ".join(f"“{name}”" for name in names)
