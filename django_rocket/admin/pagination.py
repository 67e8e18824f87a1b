"""A paginator for the run log that does not count a million rows on every page view."""

from __future__ import annotations

import json
from typing import Any

from django.core.paginator import Paginator
from django.db import DatabaseError, connections
from django.db.models import Max, Min, QuerySet
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
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
