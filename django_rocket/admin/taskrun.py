"""The run log pages: read-only, sorted and searched only through indexes; retry."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from django_rocket.admin.base import RocketModelAdmin, report_to_scheduler
from django_rocket.admin.changelist import EstimatedCountPaginator, IndexedChangeList
from django_rocket.admin.formatting import run_url, start_delay
from django_rocket.display import NOTHING, format_runtime, status_badge
from django_rocket.models import RunStatus, Task, TaskRun
from django_rocket.ops import RunRefused, queue_run
from django_rocket.ops.queue import RETRYABLE_STATUSES


@admin.register(TaskRun)
class TaskRunAdmin(RocketModelAdmin):
    list_display = (
        "run",
        "task_name",
        "status_badge",
        "trigger_display",
        "started_at",
        "runtime_display",
        "host",
    )
    list_filter = ("task", "status", "trigger")
    # Only orderings an index serves: the log may hold millions of rows.
    sortable_by = ("run", "started_at")
    date_hierarchy = "started_at"
    list_select_related = ("task",)
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    search_fields = ("run_id",)
    search_help_text = _("Paste a run id, or type part of a task name.")
    actions = ("retry", "cancel")
    fields = (
        "task_link",
        "run_id",
        "status_badge",
        "trigger_display",
        "retry_of_link",
        "retries_links",
        "queued_at",
        "due_at",
        "started_at",
        "finished_at",
        "runtime_display",
        "host",
        "pid",
        "last_seen",
        "scheduler",
        "message",
        "traceback",
        "result_display",
    )
    readonly_fields = fields

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """``last seen`` only where a runtask process wrote it; the scheduler's runs have none."""
        fields = super().get_fields(request, obj)
        if obj is None or obj.last_seen is None:
            return [name for name in fields if name != "last_seen"]
        return fields

    def get_urls(self) -> list[Any]:
        return [self.object_url("retry", TaskRunAdmin.retry), *super().get_urls()]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return IndexedChangeList

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> TaskRun | None:
        # The run page shows the task and the scheduler: one query, not three.
        queryset: QuerySet[TaskRun] = self.get_queryset(request).select_related("task", "scheduler")
        try:
            # A run id names the run too: an alert links to it without asking the database
            # for the row's number (alerts.message.admin_url_for), which may be unreachable
            # as the alert is sent. A pk is an integer, never 32 hex digits.
            return queryset.get(run_id=uuid.UUID(object_id))
        except TaskRun.DoesNotExist:
            return None
        except ValueError:
            pass
        try:
            return queryset.get(pk=TaskRun._meta.pk.to_python(object_id))
        except (TaskRun.DoesNotExist, ValidationError, ValueError):
            return None

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[TaskRun], search_term: str
    ) -> tuple[QuerySet[TaskRun], bool]:
        # Both lookups are index-backed; a substring search over the log would not be.
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(run_id=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(task__in=Task.objects.filter(name__icontains=term)), False

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: TaskRun | None = None,
    ) -> HttpResponse:
        context["can_retry"] = (
            obj is not None
            and obj.status in RETRYABLE_STATUSES
            and self.has_run_permission(request)
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- columns

    @admin.display(description=_("run"), ordering="pk")
    def run(self, run: TaskRun) -> str:
        return f"#{run.pk}"

    @admin.display(description=_("task"))
    def task_name(self, run: TaskRun) -> str:
        return run.task.name

    @admin.display(description=_("task"))
    def task_link(self, run: TaskRun) -> str:
        url = reverse("admin:django_rocket_task_change", args=[quote(run.task_id)])
        return format_html('<a href="{}">{}</a>', url, run.task.name)

    @admin.display(description=_("status"))
    def status_badge(self, run: TaskRun) -> str:
        return status_badge(run.status)

    @admin.display(description=_("trigger"))
    def trigger_display(self, run: TaskRun) -> str:
        label = run.get_trigger_display()
        if run.retry_of_id is None:
            return label
        return format_html(
            '{} <a href="{}" title="{}">↻ #{}</a>',
            label,
            run_url(run.retry_of_id),
            gettext("Retry of run #%s") % run.retry_of_id,
            run.retry_of_id,
        )

    @admin.display(description=_("runtime"))
    def runtime_display(self, run: TaskRun) -> str:
        return format_runtime(run.runtime)

    @admin.display(description=_("retry of"))
    def retry_of_link(self, run: TaskRun) -> str:
        if run.retry_of_id is None:
            return NOTHING
        return format_html('<a href="{}">#{}</a>', run_url(run.retry_of_id), run.retry_of_id)

    @admin.display(description=_("retried by"))
    def retries_links(self, run: TaskRun) -> str:
        retries = list(run.retries.order_by("pk").values_list("pk", "status"))
        if not retries:
            return NOTHING
        return format_html_join(
            ", ",
            '<a href="{}">#{}</a> {}',
            ((run_url(pk), pk, status_badge(status)) for pk, status in retries),
        )

    @admin.display(description=_("traceback"))
    def traceback(self, run: TaskRun) -> str:
        if not run.exc_text:
            return NOTHING
        return format_html('<pre class="rocket-traceback">{}</pre>', run.exc_text)

    @admin.display(description=_("result"))
    def result_display(self, run: TaskRun) -> str:
        if run.result is None:
            return NOTHING
        text = json.dumps(run.result, indent=2, ensure_ascii=False, sort_keys=True)
        return format_html('<pre class="rocket-result">{}</pre>', text)

    # -- actions

    @admin.action(description=_("Cancel the selected queued runs"), permissions=["run"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[TaskRun]) -> None:
        """Delete queued runs (Run now, Run at…) the scheduler has not started yet."""
        runs = list(queryset.filter(status=RunStatus.QUEUED).select_related("task")[:1000])
        for run in runs:
            self.log_change(request, run.task, gettext("Cancelled queued run %s.") % run.run_id)
        # Only still queued: one the scheduler took meanwhile is a run, and stays.
        cancelled = TaskRun.objects.filter(pk__in=[r.pk for r in runs]).queued().delete()[0]
        if cancelled:
            self.message_user(
                request,
                ngettext(
                    "Cancelled %(count)d queued run.", "Cancelled %(count)d queued runs.", cancelled
                )
                % {"count": cancelled},
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request, gettext("Only queued runs can be cancelled."), messages.WARNING
            )

    @admin.action(description=_("Retry the selected failed runs"), permissions=["run"])
    def retry(self, request: HttpRequest, queryset: QuerySet[TaskRun]) -> None:
        # One queued run per task at most, so retry each task's latest failed run.
        candidates = (
            queryset.filter(status__in=RETRYABLE_STATUSES)
            .select_related("task")
            .order_by("-started_at", "-id")[:1000]
        )
        latest: dict[int, TaskRun] = {}
        for run in candidates:
            latest.setdefault(run.task_id, run)
        if not latest:
            self.message_user(
                request,
                gettext("Only failed, crashed or terminated runs can be retried."),
                messages.WARNING,
            )
            return
        queued: list[str] = []
        for run in latest.values():
            try:
                new, created = queue_run(run.task, retry_of=run, user=request.user)
            except RunRefused as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            if created:
                queued.append(f"#{run.pk} ({run.task.name})")
                self.log_change(request, run.task, gettext("Retry: queued run %s.") % new.run_id)
            else:
                self.message_user(
                    request,
                    gettext(
                        "“%(task)s” already has a queued run (#%(pk)s), so the retry of "
                        "#%(run)s was not queued."
                    )
                    % {"task": run.task.name, "pk": new.pk, "run": run.pk},
                    messages.INFO,
                )
        if queued:
            text = ngettext(
                "Queued a retry of run %(runs)s.", "Queued retries of runs %(runs)s.", len(queued)
            ) % {"runs": ", ".join(queued)}
            report_to_scheduler(self, request, text, start_delay())
