"""The task pages: each task's overview, its recent runs and chart; run now, pause, resume.

Users with ``change_task`` override a declared task's conditions (and revert to
settings) and edit runtime tasks; with ``add_task`` they add runtime tasks, when
``ROCKET_TASK_FUNCTIONS`` turns them on. Every change is in the admin history with
the old and new text.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.forms import ModelForm
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import format_lazy
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from django_rocket.admin.base import ReadOnlyMixin, RocketModelAdmin, report_to_scheduler
from django_rocket.admin.changelist import OVERVIEW, KeysFirstPaginator, TaskChangeList
from django_rocket.admin.charts import runtime_chart
from django_rocket.admin.filters import ExecutionFilter, LatestRunFilter
from django_rocket.admin.formatting import (
    format_next_run,
    name_list,
    run_time_ago,
    run_url,
    start_delay,
)
from django_rocket.admin.taskedits import TaskEditsMixin, preview_data
from django_rocket.admin.taskforms import RUNTIME_FIELDS, TaskForm
from django_rocket.conf import conf
from django_rocket.display import NOTHING, format_runtime, status_badge
from django_rocket.models import RunStatus, Task, TaskRun, TaskSource
from django_rocket.ops import RunRefused, queue_run, set_enabled
from django_rocket.ops.overview import TaskOverview, declared_specs, recent_runs, task_overview
from django_rocket.ops.schedules import (
    effective_spec,
)

CHART_RUNS = 50
INLINE_RUNS = 20


class RecentRunFormSet(BaseInlineFormSet):  # type: ignore[type-arg]  # generic in django-stubs only
    """Show only the task's latest runs: a task may have millions."""

    def get_queryset(self) -> Any:
        if not hasattr(self, "_recent_runs"):
            self._recent_runs = list(super().get_queryset()[:INLINE_RUNS])
            for run in self._recent_runs:
                run.task = self.instance  # str(run) names the task; no query per row
        return self._recent_runs


class RecentRunInline(ReadOnlyMixin, admin.TabularInline):  # type: ignore[type-arg]  # generic in django-stubs only
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

    @admin.display(description=_("run"))
    def run_link(self, run: TaskRun) -> str:
        return format_html('<a href="{}">#{}</a>', run_url(run.pk), run.pk)

    @admin.display(description=_("status"))
    def status_badge(self, run: TaskRun) -> str:
        return status_badge(run.status)

    @admin.display(description=_("runtime"))
    def runtime_display(self, run: TaskRun) -> str:
        return format_runtime(run.runtime)


@admin.register(Task)
class TaskAdmin(TaskEditsMixin, RocketModelAdmin):
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
    list_filter = ("enabled", "declared", "source", LatestRunFilter, ExecutionFilter)
    # 100,000 runtime tasks: sort only by what an index serves, count cheaply, and read
    # a deep page's names from the name index first (see admin/changelist.py).
    sortable_by = ("name",)
    show_full_result_count = False
    paginator = KeysFirstPaginator
    search_fields = ("name", "description", "func")
    form = TaskForm
    state_fieldset: Any = (
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
    )
    record_fieldset: Any = (
        _("Record"),
        {"fields": ("source", "created_at", "updated_at"), "classes": ("collapse",)},
    )
    fieldsets = (
        (None, {"fields": ("name", "description")}),
        (
            _("Declaration, from ROCKET_TASKS"),
            {"fields": ("func", "condition", "end_condition", "execution", "options")},
        ),
        (
            _("Condition override"),
            {
                "fields": ("start_cond_override", "end_cond_override"),
                "description": _(
                    "Replaces the declared condition until you revert to settings; a running "
                    "scheduler applies it at its next poll."
                ),
            },
        ),
        state_fieldset,
        record_fieldset,
    )
    runtime_fieldsets = (
        (None, {"fields": ("name", "description")}),
        (_("Declaration, by schedule()"), {"fields": RUNTIME_FIELDS}),
        state_fieldset,
        record_fieldset,
    )
    add_fieldsets = (
        (None, {"fields": ("name", "description")}),
        (_("Declaration"), {"fields": (*RUNTIME_FIELDS, "enabled")}),
    )
    inlines = (RecentRunInline,)
    actions = ("run_now", "run_at", "pause", "resume")

    class Media:
        js = ["django_rocket/preview.js"]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TaskChangeList

    def get_urls(self) -> list[Any]:
        return [
            self.object_url("run", TaskAdmin.run_now),
            self.object_url("pause", TaskAdmin.pause),
            self.object_url("resume", TaskAdmin.resume),
            path(
                "<path:object_id>/revert/",
                self.admin_site.admin_view(require_POST(self.revert_view)),
                name="django_rocket_task_revert",
            ),
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name="django_rocket_task_preview",
            ),
            *super().get_urls(),
        ]

    # -- who may edit what

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Runtime tasks only, and only when ROCKET_TASK_FUNCTIONS turns them on.
        return conf.task_functions is not None and admin.ModelAdmin.has_add_permission(
            self, request
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else ()  # a task being added has no runs

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return self.add_fieldsets
        return self.runtime_fieldsets if obj.source == TaskSource.RUNTIME else self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        editable = (
            RUNTIME_FIELDS
            if obj.source == TaskSource.RUNTIME and obj.name not in (conf.tasks or {})
            else ("start_cond_override", "end_cond_override")
        )
        shown = [f for _, opts in self.get_fieldsets(request, obj) for f in opts["fields"]]
        return tuple(f for f in shown if f not in editable)

    def save_model(
        self, request: HttpRequest, obj: Task, form: ModelForm[Task], change: bool
    ) -> None:
        if not change:
            obj.source = TaskSource.RUNTIME
            obj.declared = True
        super().save_model(request, obj, form, change)

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
            overview = task_overview([obj], now=now)[obj.pk]
            setattr(obj, OVERVIEW, overview)
            runs_url = reverse("admin:django_rocket_taskrun_changelist")
            spec = effective_spec(obj, declared_specs())
            runs = recent_runs(obj, CHART_RUNS)
            context.update(
                preview=preview_data(obj, spec.start_cond, runs) if spec is not None else None,
                condition_source=spec.condition_source if spec is not None else "",
                can_revert=self.has_change_permission(request, obj)
                and bool(obj.start_cond_override or obj.end_cond_override),
                overview=overview,
                chart=runtime_chart(runs, now),
                can_run=self.has_run_permission(request),
                statuses=[c for c in RunStatus.choices if c[0] != RunStatus.QUEUED],
                all_runs_url=f"{runs_url}?task__id__exact={obj.pk}",
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- columns

    def action_checkbox(self, obj: Any) -> SafeString:
        # Django's markup, without a form widget template rendered per row: that was a
        # quarter of the time a page of 100 tasks took to render.
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            format_html(gettext("Select this object for an action - {}"), str(obj)),
        )

    def _overview(self, task: Task) -> TaskOverview:
        overview = getattr(task, OVERVIEW, None)
        if overview is None:
            overview = task_overview([task])[task.pk]
            setattr(task, OVERVIEW, overview)
        return overview

    @admin.display(description=_("condition"))
    def condition(self, task: Task) -> str:
        return _condition_html(task.start_cond, task.start_cond_override)

    @admin.display(description=_("end condition"))
    def end_condition(self, task: Task) -> str:
        return _condition_html(task.end_cond, task.end_cond_override)

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
    def options(self, task: Task) -> str:  # a declared task's, from settings
        spec = (declared_specs() or {}).get(task.name)
        if spec is None:
            return NOTHING
        timeout = format_runtime(spec.timeout) if spec.timeout is not None else gettext("never")
        rows = [
            (gettext("timeout"), timeout),
            (gettext("runs may overlap"), gettext("yes") if spec.multilaunch else gettext("no")),
            (gettext("parameters"), repr(spec.parameters) if spec.parameters else NOTHING),
        ]
        if spec.execution == "tasks":
            rows += [
                (gettext("backend"), spec.backend or "default"),
                (gettext("queue"), spec.queue or "default"),
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
                run, created = queue_run(task, user=request.user)
            except RunRefused as exc:
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
            report_to_scheduler(self, request, text, start_delay())

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
        set_enabled(Task.objects.filter(pk__in=[t.pk for t in tasks]), enabled)
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
        report_to_scheduler(self, request, text, effect)


def _condition_html(declared: str, override: str) -> str:
    """The condition the scheduler applies; an override is marked, with the declared one."""
    if not override:
        return format_html('<code class="rocket-cond">{}</code>', declared) if declared else NOTHING
    return format_html(
        '<code class="rocket-cond">{}</code> <span class="rocket-override" title="{}">{}</span>',
        override,
        gettext("Settings declare: %(cond)s") % {"cond": declared or NOTHING},
        gettext("override"),
    )
