"""Changelist filters that read the run log through an index."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from django_rocket.conf import EXECUTIONS
from django_rocket.models import RunStatus, Task, TaskRun


class ExecutionFilter(admin.SimpleListFilter):
    """The executions a task may have: a fixed list, not a DISTINCT over every task."""

    title = _("execution")
    parameter_name = "execution"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(execution, execution) for execution in EXECUTIONS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task] | None:
        value = self.value()
        return queryset.filter(execution=value) if value else None


class LatestRunFilter(admin.SimpleListFilter):
    title = _("latest run")
    parameter_name = "latest_run"
    NEVER = "never"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        finished = [(v, label) for v, label in RunStatus.choices if v != RunStatus.QUEUED]
        return [*finished, (self.NEVER, _("Never run"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task] | None:
        value = self.value()
        if not value:
            return None
        latest = Subquery(
            TaskRun.objects.filter(task=OuterRef("pk"), started_at__isnull=False)
            .order_by("-started_at", "-id")
            .values("status")[:1]
        )
        queryset = queryset.annotate(latest_status=latest)
        if value == self.NEVER:
            return queryset.filter(latest_status__isnull=True)
        return queryset.filter(latest_status=value)
