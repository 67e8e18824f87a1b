"""The scheduler processes: who is active, who stands by, who stopped."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from django_rocket.admin.base import RocketModelAdmin
from django_rocket.conf import conf
from django_rocket.models import SchedulerInstance, SchedulerRole


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
        return instance.last_seen >= timezone.now() - timedelta(seconds=conf.health_max_age)
