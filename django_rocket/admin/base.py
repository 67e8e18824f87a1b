"""The permissions and the object-page buttons every django-rocket ModelAdmin shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from django_rocket.admin.formatting import no_scheduler_note
from django_rocket.ops.overview import active_scheduler

RUN_PERMISSION = "django_rocket.run_task"


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


class RocketModelAdmin(ReadOnlyMixin, RunPermissionMixin, admin.ModelAdmin):  # type: ignore[type-arg]  # generic in django-stubs only
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


def report_to_scheduler(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, text: str, effect: str
) -> None:
    """Say what happened, and what the scheduler will do — or that none is running."""
    if active_scheduler() is None:
        model_admin.message_user(request, f"{text} {no_scheduler_note()}", messages.WARNING)
    else:
        model_admin.message_user(request, f"{text} {effect}", messages.SUCCESS)
