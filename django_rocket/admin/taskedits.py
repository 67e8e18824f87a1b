"""The task admin's edits: the admin history's old and new text, revert, the preview, Run at…."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from django_rocket.admin.base import report_to_scheduler
from django_rocket.admin.formatting import name_list
from django_rocket.conditions import ConditionSyntaxError, parse
from django_rocket.models import Task, TaskRun
from django_rocket.ops import RunRefused
from django_rocket.ops.overview import declared_specs
from django_rocket.ops.schedules import (
    PREVIEW_COUNT,
    effective_spec,
    queue_run_at,
    task_due_times,
)
from django_rocket.registry import scheduler_zone


class TaskEditsMixin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic in django-stubs only
    """What a user with ``change_task`` or ``run_task`` changes on tasks, beyond pause and run."""

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> Any:
        """Say what changed with the old and the new text, not only which fields."""
        if add:
            return super().construct_change_message(request, form, formsets, add)
        changes = [
            gettext("%(field)s: %(old)s → %(new)s")
            % {
                "field": getattr(Task._meta.get_field(name), "verbose_name", name),
                "old": _quoted(form.initial.get(name)),
                "new": _quoted(form.cleaned_data.get(name)),
            }
            for name in form.changed_data
        ]
        return gettext("Changed %(changes)s.") % {"changes": "; ".join(changes)}

    def revert_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Clear a declared task's condition overrides: its settings apply again."""
        task = self.get_object(request, unquote(object_id))
        if task is None:
            raise Http404(gettext("The object does not exist."))
        if not self.has_change_permission(request, task):
            raise PermissionDenied
        old = [
            (gettext("start condition override"), task.start_cond_override),
            (gettext("end condition override"), task.end_cond_override),
        ]
        if task.start_cond_override or task.end_cond_override:
            task.start_cond_override = task.end_cond_override = ""
            task.save(update_fields=["start_cond_override", "end_cond_override", "updated_at"])
            changes = "; ".join(f"{label}: {_quoted(text)} → “”" for label, text in old if text)
            self.log_change(
                request, task, gettext("Reverted to settings: %(changes)s.") % {"changes": changes}
            )
            report_to_scheduler(
                self,
                request,
                gettext("Reverted %(name)s to the conditions in settings.")
                % {"name": name_list([task.name])},
                gettext("The scheduler applies them at its next poll."),
            )
        else:
            self.message_user(request, gettext("Nothing changed: no override is set."))
        return HttpResponseRedirect(reverse("admin:django_rocket_task_change", args=[task.pk]))

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """Return as JSON when a condition (or the task's, if blank) would next be due."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        name = request.GET.get("task", "")
        text = request.GET.get("cond", "").strip()
        task = Task.objects.filter(name=name).first() if name else None
        try:
            if text:
                cond = parse(text)
            elif task is not None:
                spec = effective_spec(task, declared_specs())
                if spec is None:
                    return JsonResponse({"times": [], "empty": gettext("No valid condition.")})
                cond = spec.start_cond
            else:
                return JsonResponse({"times": [], "empty": gettext("Type a condition.")})
        except ConditionSyntaxError as exc:
            return JsonResponse(
                {"error": f"{exc.message}\n{exc.source_line()}\n{exc.caret_line()}"}
            )
        return JsonResponse(preview_data(task or Task(name=name or "preview"), cond))

    @admin.action(description=_("Run at…"), permissions=["run"])
    def run_at(self, request: HttpRequest, queryset: QuerySet[Task]) -> HttpResponse | None:
        """Ask for an instant, then queue one run of each selected task due at it."""
        tz = scheduler_zone()
        error = ""
        text = request.POST.get("due_at", "")
        if "apply" in request.POST:
            try:
                due_at = datetime.fromisoformat(text.strip())
            except ValueError:
                error = gettext("Enter a date and time, e.g. 2026-03-02T05:00.")
            else:
                if due_at.utcoffset() is None:
                    due_at = due_at.replace(tzinfo=tz)
                queued = []
                for task in queryset:
                    try:
                        run = queue_run_at(task, due_at, user=request.user)
                    except RunRefused as exc:
                        error = str(exc)
                        break
                    queued.append(task.name)
                    self.log_change(
                        request,
                        task,
                        gettext("Run at %(at)s: queued run %(run)s.")
                        % {"at": due_at.isoformat(), "run": run.run_id},
                    )
                if queued:
                    report_to_scheduler(
                        self,
                        request,
                        gettext("Queued a run of %(names)s at %(at)s.")
                        % {"names": name_list(queued), "at": due_at.astimezone(tz).isoformat()},
                        gettext("It is in the run list until then, where it can be cancelled."),
                    )
                if not error:
                    return None
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Run at…"),
            "opts": self.opts,
            "tasks": list(queryset),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "due_at": text,
            "error": error,
            "zone_name": str(tz),
        }
        return TemplateResponse(request, "admin/django_rocket/task/run_at.html", context)


def _quoted(text: Any) -> str:
    return f"“{text or ''}”"


def preview_data(task: Task, cond: Any, runs: list[TaskRun] | None = None) -> dict[str, Any]:
    """The next due times of ``cond`` for the task, as the change page and its preview show them."""
    now = timezone.now()
    times = task_due_times(task, cond, now, runs)
    return {
        "condition": str(cond),
        "times": [t.strftime("%Y-%m-%d %H:%M:%S %Z") for t in times],
        "empty": gettext(
            "Not due in the next year on its own: it waits for other tasks' runs, an event, "
            "or never becomes true."
        ),
        "count": PREVIEW_COUNT,
    }
