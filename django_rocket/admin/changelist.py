"""Changelists whose pages cost a fixed number of index-backed queries, whatever the log's size.

The run log's paginator does not count a million rows on every page view.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import DatabaseError, connections
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from django_rocket.ops.overview import task_overview

OVERVIEW = "rocket_overview"  # where a page's tasks carry their overview


class TaskChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # The overview of the whole page in a fixed number of queries, not per row.
        self.result_list = list(self.result_list)
        overviews = task_overview(self.result_list)
        for task in self.result_list:
            setattr(task, OVERVIEW, overviews[task.pk])


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
