"""Template tags for the django-rocket admin pages: the health banner and a cheap date hierarchy."""

from __future__ import annotations

import calendar
from datetime import date, datetime
from typing import Any

from django import template
from django.conf import settings
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet, Subquery
from django.utils import formats, timezone
from django.utils.text import capfirst
from django.utils.translation import gettext

from django_rocket.conf import conf
from django_rocket.display import format_runtime
from django_rocket.ops import overview

register = template.Library()
register.filter("rocket_runtime", format_runtime)


@register.inclusion_tag("admin/django_rocket/health_banner.html")
def rocket_health_banner() -> dict[str, Any]:
    """Warn when no active scheduler has been seen within ROCKET_HEALTH_MAX_AGE."""
    if overview.active_scheduler() is not None:
        return {"healthy": True}
    return {
        "healthy": False,
        "last_seen": overview.last_seen_scheduler(),
        "max_age": conf.health_max_age,
    }


@register.inclusion_tag("admin/date_hierarchy.html")
def rocket_date_hierarchy(cl: ChangeList) -> dict[str, Any]:
    """Build the admin's date drill-down in at most two index-backed queries.

    Django's own tag lists the years, months or days that hold rows with a
    ``SELECT DISTINCT`` over every matching row, which reads the whole log.
    This one reads the first and last dates, then asks one ``EXISTS`` per
    candidate period (at most 31), each answered by an index probe.
    """
    field = cl.date_hierarchy
    params = {part: cl.params.get(f"{field}__{part}") for part in ("year", "month", "day")}
    year, month, day = (int(v) if v else None for v in params.values())

    def link(filters: dict[str, Any]) -> str:
        return cl.get_query_string(filters, [f"{field}__"])

    queryset = cl.queryset
    first = last = None
    if not year:
        first, last = _bounds(queryset, field)
        if first is None or last is None:
            return {"show": False}
        if first.year == last.year:
            year = first.year
            if first.month == last.month:
                month = first.month
        day = day if month else None
    year_key, month_key, day_key = (f"{field}__{part}" for part in ("year", "month", "day"))
    if year and month and day:
        when = date(year, month, day)
        return {
            "show": True,
            "back": {
                "link": link({year_key: year, month_key: month}),
                "title": capfirst(formats.date_format(when, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(formats.date_format(when, "MONTH_DAY_FORMAT"))}],
        }
    if year and month:
        days = [date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
        periods = [(d, _next_day(d)) for d in days]
        return {
            "show": True,
            "back": {"link": link({year_key: year}), "title": str(year)},
            "choices": [
                {
                    "link": link({year_key: year, month_key: month, day_key: start.day}),
                    "title": capfirst(formats.date_format(start, "MONTH_DAY_FORMAT")),
                }
                for start, _end in _existing(queryset, field, periods)
            ],
        }
    if year:
        periods = [
            (date(year, m, 1), date(year + 1, 1, 1) if m == 12 else date(year, m + 1, 1))
            for m in range(1, 13)
        ]
        return {
            "show": True,
            "back": {"link": link({}), "title": gettext("All dates")},
            "choices": [
                {
                    "link": link({year_key: year, month_key: start.month}),
                    "title": capfirst(formats.date_format(start, "YEAR_MONTH_FORMAT")),
                }
                for start, _end in _existing(queryset, field, periods)
            ],
        }
    # No year was chosen, so the bounds were read above.
    assert first is not None
    assert last is not None
    periods = [(date(y, 1, 1), date(y + 1, 1, 1)) for y in range(first.year, last.year + 1)]
    return {
        "show": True,
        "back": None,
        "choices": [
            {"link": link({year_key: str(start.year)}), "title": str(start.year)}
            for start, _end in _existing(queryset, field, periods)
        ],
    }


def _next_day(day: date) -> date:
    return date.fromordinal(day.toordinal() + 1)


def _bounds(queryset: QuerySet[Any], field: str) -> tuple[datetime | None, datetime | None]:
    """Return the earliest and latest value of ``field``, local time, in one query."""
    dated = queryset.filter(**{f"{field}__isnull": False}).order_by()
    row = (
        queryset.model._default_manager.order_by()
        .annotate(
            rocket_first=Subquery(dated.order_by(field).values(field)[:1]),
            rocket_last=Subquery(dated.order_by(f"-{field}").values(field)[:1]),
        )
        .values("rocket_first", "rocket_last")[:1]
    )
    found = list(row)
    if not found:
        return None, None
    first, last = found[0]["rocket_first"], found[0]["rocket_last"]
    if settings.USE_TZ:
        first = timezone.localtime(first) if first else None
        last = timezone.localtime(last) if last else None
    return first, last


def _existing(
    queryset: QuerySet[Any], field: str, periods: list[tuple[date, date]]
) -> list[tuple[date, date]]:
    """Return the periods that hold at least one row, asking all of them in one query."""

    def moment(day: date) -> datetime:
        start = datetime(day.year, day.month, day.day)
        return timezone.make_aware(start) if settings.USE_TZ else start

    manager = queryset.model._default_manager
    # Each probe reads the first row of its period in index order. (An EXISTS lets
    # PostgreSQL pick a sequential scan that stops at the first match, which is fast or
    # reads the whole table depending on where the scan happens to start.) The period's
    # bounds come first in the WHERE clause because SQLite bounds its index range with
    # the first constraints it meets, and the page's own date filter (the whole month,
    # say) would otherwise make every probe start from the beginning of that month.
    probes = {
        f"rocket_{index}": Subquery(
            (
                manager.filter(**{f"{field}__gte": moment(start), f"{field}__lt": moment(end)})
                & queryset
            )
            .order_by(field)
            .values(field)[:1]
        )
        for index, (start, end) in enumerate(periods)
    }
    found = list(manager.order_by().annotate(**probes).values(*probes)[:1])
    if not found:
        return []
    return [
        period for index, period in enumerate(periods) if found[0][f"rocket_{index}"] is not None
    ]
