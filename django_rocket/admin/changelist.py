"""Changelists whose pages cost a fixed number of index-backed queries, whatever the table's size.

The run log's paginator does not count a million rows on every page view, and a deep
page of tasks reads its keys from an index before it reads its rows.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import FieldDoesNotExist
from django.core.paginator import Page, Paginator
from django.db import DatabaseError, connections
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from django_rocket.ops.overview import task_overview

OVERVIEW = "rocket_overview"  # where a page's tasks carry their overview


class IndexedChangeList(ChangeList):
    """Ignore sort requests for columns outside ``sortable_by``, even hand-made ones.

    The run log may hold millions of rows; sorting it by a column no index
    serves would read all of them on every page view.
    """

    def get_ordering_field(self, field_name: Any) -> Any:
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[Any]:
        ordering = list(super().get_ordering(request, queryset))
        # Break ties in the direction of the first key, so one index serves both.
        if len(ordering) > 1 and ordering[-1] in ("pk", "-pk") and isinstance(ordering[0], str):
            ordering[-1] = "-pk" if ordering[0].startswith("-") else "pk"
        return ordering


class TaskChangeList(IndexedChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # The overview of the whole page in a fixed number of queries, not per row.
        self.result_list = list(self.result_list)
        overviews = task_overview(self.result_list)
        for task in self.result_list:
            setattr(task, OVERVIEW, overviews[task.pk])


class EstimatedCountPaginator(Paginator):  # type: ignore[type-arg]  # generic in django-stubs only
    """Count exactly up to ``exact_limit`` rows; above that, estimate.

    The exact count stops reading after ``exact_limit + 1`` rows. Past that,
    PostgreSQL's planner estimate (``EXPLAIN``, fed by ``reltuples`` and the
    column statistics) is used; elsewhere an unfiltered log is estimated from
    its id range and a filtered one is counted. ``estimated`` says which.
    """

    exact_limit = 10_000

    def __init__(self, object_list: Any, per_page: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(object_list, per_page, *args, **kwargs)
        self.estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        rows = queryset.order_by().values("pk")
        capped = rows[: self.exact_limit + 1].count()
        if capped <= self.exact_limit:
            return capped
        estimate = estimate_count(rows)
        if estimate is None:
            return rows.count()
        self.estimated = True
        return max(estimate, capped)


def estimate_count(queryset: QuerySet[Any]) -> int | None:
    """Return a cheap estimate of ``queryset.count()``, or None if there is none."""
    connection = connections[queryset.db]
    if connection.vendor == "postgresql":
        try:
            plan = json.loads(queryset.explain(format="json"))
        except (DatabaseError, ValueError):
            return None
        if isinstance(plan, list):
            plan = plan[0]
        return int(plan["Plan"]["Plan Rows"])
    if not queryset.query.where:
        # Rows are only ever appended, and pruned from the oldest end, so the id range is close.
        # Two single-aggregate queries: SQLite answers each from the primary key alone.
        first = queryset.aggregate(value=Min("pk"))["value"]
        last = queryset.aggregate(value=Max("pk"))["value"]
        return 0 if first is None else last - first + 1
    return None


class KeysFirstPaginator(Paginator):  # type: ignore[type-arg]  # generic in django-stubs only
    """Read a page's keys from an index, then the page's rows by key; count exactly.

    ``OFFSET 99900`` over whole rows reads (and on PostgreSQL fetches from the heap) the
    99,900 rows before the page; over the unique ``key`` alone it walks the key's index
    only (an index-only scan on PostgreSQL once the table is vacuumed). The rows of the
    page are then read by key, in the same order. Two queries a page, whatever the page.

    The count is exact (one ``COUNT(*)``, tens of milliseconds at 100,000 rows): an
    estimate could put the last page of a bookmarked link past the end.
    """

    key = "name"  # unique, and its index serves the default ordering

    def page(self, number: Any) -> Page[Any]:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        queryset = self.object_list
        # The admin's history page pages through LogEntry rows with the same paginator.
        if isinstance(queryset, QuerySet) and _has_unique(queryset, self.key):
            keys = list(queryset.values_list(self.key, flat=True)[bottom:top])
            rows: Any = queryset.filter(**{f"{self.key}__in": keys})
        else:
            rows = queryset[bottom:top]
        page: Page[Any] = self._get_page(rows, number, self)  # type: ignore[attr-defined]  # missing from django-stubs
        return page


def _has_unique(queryset: QuerySet[Any], name: str) -> bool:
    try:
        return bool(queryset.model._meta.get_field(name).unique)
    except FieldDoesNotExist:
        return False
