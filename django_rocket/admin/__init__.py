"""The admin: declared tasks, their run log, and the scheduler processes.

Everything here is read-only except three requests — run now, retry, pause or
resume — which go through :mod:`django_rocket.ops.services` as POST requests and
need the ``django_rocket.run_task`` permission. Tasks come from settings only;
nothing in the admin accepts a function path or code.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import format_lazy
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from django_rocket import conf
from django_rocket.admin.charts import runtime_chart
from django_rocket.admin.pagination import EstimatedCountPaginator
from django_rocket.display import NOTHING, format_runtime, status_badge
from django_rocket.models import (
    RunStatus,
    SchedulerInstance,
    SchedulerRole,
    Task,
    TaskRun,
)
from django_rocket.ops import services

RUN_PERMISSION = "django_rocket.run_task"
CHART_RUNS = 50
INLINE_RUNS = 20
OVERVIEW = "rocket_overview"  # where a page's tasks carry their overview


# ---------------------------------------------------------------------- formatting


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


def format_next_run(next_run: services.NextRun, now: datetime) -> str:
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
    ) % {"seconds": conf.health_max_age()}


def start_delay() -> str:
    seconds = math.ceil(conf.poll_interval())
    return ngettext(
        "The scheduler starts it within about a second.",
        "The scheduler starts it within about %(seconds)d seconds.",
        seconds,
    ) % {"seconds": seconds}


def name_list(names: list[str]) -> str:
    return ", ".join(f"“{name}”" for name in names)


# ---------------------------------------------------------------------- shared


class RunPermissionMixin:
    """The ``run`` action permission: run now, retry, pause and resume."""

    def has_run_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(RUN_PERMISSION)


class ReadOnlyMixin:
    """Nobody adds, edits or deletes these rows in the admin; they come from settings and runs."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RocketModelAdmin(ReadOnlyMixin, RunPermissionMixin, admin.ModelAdmin):
    show_facets = admin.ShowFacets.NEVER

    class Media:
        css = {"all": ["django_rocket/admin.css"]}

    def object_view(
        self, request: HttpRequest, object_id: str, action: Callable[..., None]
    ) -> HttpResponse:
        """Apply a changelist action to one object from a button on its page."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(gettext("The object does not exist."))
        if not (self.has_view_permission(request, obj) and self.has_run_permission(request)):
            raise PermissionDenied
        action(self, request, self.model._default_manager.filter(pk=obj.pk))
        change = f"admin:{self.opts.app_label}_{self.opts.model_name}_change"
        return HttpResponseRedirect(reverse(change, args=[quote(obj.pk)]))

    def object_url(self, suffix: str, action: Callable[..., None]) -> Any:
        def view(request: HttpRequest, object_id: str) -> HttpResponse:
            return self.object_view(request, object_id, action)

        return path(
            f"<path:object_id>/{suffix}/",
            self.admin_site.admin_view(require_POST(view)),
            name=f"{self.opts.app_label}_{self.opts.model_name}_{suffix}",
        )


# ---------------------------------------------------------------------- tasks


class RecentRunFormSet(BaseInlineFormSet):
    """Show only the task's latest runs: a task may have millions."""

    def get_queryset(self) -> Any:
        if not hasattr(self, "_recent_runs"):
            self._recent_runs = list(super().get_queryset()[:INLINE_RUNS])
            for run in self._recent_runs:
                run.task = self.instance  # str(run) names the task; no query per row
        return self._recent_runs


class RecentRunInline(admin.TabularInline):
    model = TaskRun
    fk_name = "task"
    formset = RecentRunFormSet
    verbose_name_plural = format_lazy(
        "{} ({})", _("recent runs"), _("the latest %(count)d") % {"count": INLINE_RUNS}
    )
    fields = (
        "run_link",
        "status_badge",
        "trigger",
        "started_at",
        "runtime_display",
        "host",
        "message",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    classes = ("rocket-recent-runs",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("run"))
    def run_link(self, run: TaskRun) -> str:
        return format_html('<a href="{}">#{}</a>', run_url(run.pk), run.pk)

    @admin.display(description=_("status"))
    def status_badge(self, run: TaskRun) -> str:
        return status_badge(run.status)

    @admin.display(description=_("runtime"))
    def runtime_display(self, run: TaskRun) -> str:
        return format_runtime(run.runtime)


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


class TaskChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # The overview of the whole page in a fixed number of queries, not per row.
        self.result_list = list(self.result_list)
        overviews = services.task_overview(self.result_list)
        for task in self.result_list:
            setattr(task, OVERVIEW, overviews[task.pk])


@admin.register(Task)
class TaskAdmin(RocketModelAdmin):
    list_display = (
        "name",
        "enabled",
        "condition",
        "status",
        "last_run",
        "last_success",
        "last_failure",
        "next_run",
        "success_rate",
        "mean_runtime",
    )
    list_filter = ("enabled", "declared", LatestRunFilter, "execution")
    search_fields = ("name", "description", "func")
    fieldsets = (
        (None, {"fields": ("name", "description")}),
        (
            _("Declaration, from ROCKET_TASKS"),
            {"fields": ("func", "condition", "end_condition", "execution", "options")},
        ),
        (
            _("State"),
            {
                "fields": (
                    "enabled",
                    "declared",
                    "status",
                    "last_run",
                    "last_success",
                    "last_failure",
                    "next_run",
                    "success_rate",
                    "mean_runtime",
                )
            },
        ),
        (_("Record"), {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
    # Everything on the page is read-only: settings are the source of truth.
    readonly_fields = tuple(
        name for _, options in fieldsets for name in cast("tuple[str, ...]", options["fields"])
    )
    inlines = (RecentRunInline,)
    actions = ("run_now", "pause", "resume")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TaskChangeList

    def get_urls(self) -> list[Any]:
        return [
            self.object_url("run", TaskAdmin.run_now),
            self.object_url("pause", TaskAdmin.pause),
            self.object_url("resume", TaskAdmin.resume),
            *super().get_urls(),
        ]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Task | None = None,
    ) -> HttpResponse:
        if obj is not None:
            now = timezone.now()
            overview = services.task_overview([obj], now=now)[obj.pk]
            setattr(obj, OVERVIEW, overview)
            runs_url = reverse("admin:django_rocket_taskrun_changelist")
            context.update(
                overview=overview,
                chart=runtime_chart(services.recent_runs(obj, CHART_RUNS), now),
                can_run=self.has_run_permission(request),
                statuses=[c for c in RunStatus.choices if c[0] != RunStatus.QUEUED],
                all_runs_url=f"{runs_url}?task__id__exact={obj.pk}",
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- columns

    def _overview(self, task: Task) -> services.TaskOverview:
        overview = getattr(task, OVERVIEW, None)
        if overview is None:
            overview = services.task_overview([task])[task.pk]
            setattr(task, OVERVIEW, overview)
        return overview

    @admin.display(description=_("condition"), ordering="start_cond")
    def condition(self, task: Task) -> str:
        return format_html('<code class="rocket-cond">{}</code>', task.start_cond or NOTHING)

    @admin.display(description=_("end condition"))
    def end_condition(self, task: Task) -> str:
        if not task.end_cond:
            return NOTHING
        return format_html('<code class="rocket-cond">{}</code>', task.end_cond)

    @admin.display(description=_("status"))
    def status(self, task: Task) -> str:
        return status_badge(self._overview(task).status)

    @admin.display(description=_("last run"))
    def last_run(self, task: Task) -> str:
        return run_time_ago(self._overview(task).last_run, "started_at")

    @admin.display(description=_("last success"))
    def last_success(self, task: Task) -> str:
        return run_time_ago(self._overview(task).last_success, "finished_at")

    @admin.display(description=_("last failure"))
    def last_failure(self, task: Task) -> str:
        return run_time_ago(self._overview(task).last_failure, "finished_at")

    @admin.display(description=_("next run"))
    def next_run(self, task: Task) -> str:
        return format_next_run(self._overview(task).next_run, timezone.now())

    @admin.display(description=_("success rate"))
    def success_rate(self, task: Task) -> str:
        overview = self._overview(task)
        if overview.success_rate is None:
            return NOTHING
        title = ngettext(
            "Share of the latest %(count)d finished run that did not fail.",
            "Share of the latest %(count)d finished runs that did not fail.",
            overview.recent_finished,
        ) % {"count": overview.recent_finished}
        return format_html(
            '<span title="{}">{}</span>', title, f"{round(overview.success_rate * 100)} %"
        )

    @admin.display(description=_("mean runtime"))
    def mean_runtime(self, task: Task) -> str:
        return format_runtime(self._overview(task).mean_runtime)

    @admin.display(description=_("options"))
    def options(self, task: Task) -> str:
        spec = (services.declared_specs() or {}).get(task.name)
        if spec is None:
            return NOTHING
        timeout = format_runtime(spec.timeout) if spec.timeout is not None else gettext("never")
        rows = [
            (gettext("timeout"), timeout),
            (gettext("runs may overlap"), gettext("yes") if spec.multilaunch else gettext("no")),
            (gettext("parameters"), repr(spec.parameters) if spec.parameters else NOTHING),
        ]
        return format_html(
            '<dl class="rocket-options">{}</dl>',
            format_html_join("", "<dt>{}</dt><dd>{}</dd>", rows),
        )

    # -- actions

    @admin.action(description=_("Run the selected tasks now"), permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        queued: list[str] = []
        already: list[str] = []
        for task in queryset:
            try:
                run, created = services.queue_run(task, user=request.user)
            except services.RunRefused as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            if created:
                queued.append(task.name)
                self.log_change(request, task, gettext("Run now: queued run %s.") % run.run_id)
            else:
                already.append(task.name)
        if already:
            self.message_user(
                request,
                ngettext(
                    "%(names)s already has a queued run, so no second run was queued.",
                    "%(names)s already have a queued run, so no second run was queued.",
                    len(already),
                )
                % {"names": name_list(already)},
                messages.INFO,
            )
        if queued:
            text = ngettext(
                "Queued a run of %(names)s.", "Queued runs of %(names)s.", len(queued)
            ) % {"names": name_list(queued)}
            _report_to_scheduler(self, request, text, start_delay())

    @admin.action(description=_("Pause the selected tasks"), permissions=["run"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._set_enabled(request, queryset, False)

    @admin.action(description=_("Resume the selected tasks"), permissions=["run"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._set_enabled(request, queryset, True)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Task], enabled: bool) -> None:
        tasks = list(queryset.exclude(enabled=enabled))
        if not tasks:
            self.message_user(
                request,
                gettext("Nothing changed: already running on schedule.")
                if enabled
                else gettext("Nothing changed: already paused."),
                messages.INFO,
            )
            return
        services.set_enabled(Task.objects.filter(pk__in=[t.pk for t in tasks]), enabled)
        names = name_list([t.name for t in tasks])
        for task in tasks:
            self.log_change(request, task, gettext("Resumed.") if enabled else gettext("Paused."))
        if enabled:
            text = gettext("Resumed %(names)s.") % {"names": names}
            effect = gettext("The scheduler starts it again when its condition is true.")
        else:
            text = gettext("Paused %(names)s.") % {"names": names}
            effect = gettext(
                "The scheduler stops starting it at its next tick; a run in progress finishes. "
                "Run now still works while paused."
            )
        _report_to_scheduler(self, request, text, effect)


def _report_to_scheduler(
    model_admin: admin.ModelAdmin, request: HttpRequest, text: str, effect: str
) -> None:
    """Say what happened, and what the scheduler will do — or that none is running."""
    if services.active_scheduler() is None:
        model_admin.message_user(request, f"{text} {no_scheduler_note()}", messages.WARNING)
    else:
        model_admin.message_user(request, f"{text} {effect}", messages.SUCCESS)


# ---------------------------------------------------------------------- runs


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
    actions = ("retry",)
    fields = (
        "task_link",
        "run_id",
        "status_badge",
        "trigger_display",
        "retry_of_link",
        "retries_links",
        "queued_at",
        "started_at",
        "finished_at",
        "runtime_display",
        "host",
        "pid",
        "scheduler",
        "message",
        "traceback",
        "result_display",
    )
    readonly_fields = fields

    def get_urls(self) -> list[Any]:
        return [self.object_url("retry", TaskRunAdmin.retry), *super().get_urls()]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return IndexedChangeList

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> TaskRun | None:
        # The run page shows the task and the scheduler: one query, not three.
        queryset = self.get_queryset(request).select_related("task", "scheduler")
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
            and obj.status in services.RETRYABLE_STATUSES
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

    @admin.action(description=_("Retry the selected failed runs"), permissions=["run"])
    def retry(self, request: HttpRequest, queryset: QuerySet[TaskRun]) -> None:
        # One queued run per task at most, so retry each task's latest failed run.
        candidates = (
            queryset.filter(status__in=services.RETRYABLE_STATUSES)
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
                new, created = services.queue_run(run.task, retry_of=run, user=request.user)
            except services.RunRefused as exc:
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
            _report_to_scheduler(self, request, text, start_delay())


# ---------------------------------------------------------------------- schedulers


@admin.register(SchedulerInstance)
class SchedulerInstanceAdmin(RocketModelAdmin):
    list_display = (
        "__str__",
        "host",
        "pid",
        "role_badge",
        "alive",
        "started_at",
        "last_seen",
        "stopped_at",
        "version",
    )
    list_filter = ("role",)
    sortable_by = ("started_at", "last_seen")
    actions = None

    @admin.display(description=_("role"), ordering="role")
    def role_badge(self, instance: SchedulerInstance) -> str:
        return format_html(
            '<span class="rocket-badge rocket-role-{}">{}</span>',
            instance.role,
            instance.get_role_display(),
        )

    @admin.display(description=_("alive"), boolean=True)
    def alive(self, instance: SchedulerInstance) -> bool:
        if instance.role == SchedulerRole.STOPPED:
            return False
        return instance.last_seen >= timezone.now() - timedelta(seconds=conf.health_max_age())
