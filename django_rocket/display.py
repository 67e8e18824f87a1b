"""Small formatting helpers shared by the admin classes and its template tags."""

from __future__ import annotations

from datetime import timedelta

from django.utils.html import format_html
from django.utils.translation import gettext

from django_rocket.models import RunStatus

NOTHING = "—"


def format_runtime(value: timedelta | None) -> str:
    """Return a duration the way people read run times: "0.42 s", "3 min 05 s", "2 h 10 min"."""
    if value is None:
        return NOTHING
    seconds = value.total_seconds()
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def status_badge(status: str) -> str:
    """Return a run status as a coloured badge."""
    if not status:
        return format_html('<span class="rocket-badge rocket-none">{}</span>', gettext("never run"))
    label = RunStatus(status).label if status in RunStatus.values else status
    return format_html('<span class="rocket-badge rocket-{}">{}</span>', status, label)
