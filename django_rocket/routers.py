"""Keep django-rocket's tables on the database its scheduler uses, whatever other routers say.

The scheduler writes the run log through the ``default`` connection and must read it there
too: a read replica lags behind, and a scheduler that takes over reading a lagging copy
misses the runs of the last seconds and starts them again. A project whose
``DATABASE_ROUTERS`` send reads elsewhere (to replicas, say) puts this router first::

    DATABASE_ROUTERS = ["django_rocket.routers.RunLogRouter", "myproject.routers.Replicas"]

Check ``django_rocket.E036`` says when it is needed.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, models

APP_LABEL = "django_rocket"


class RunLogRouter:
    """Send every read and write of django-rocket's models to ``default``; others pass on."""

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str | None:
        return DEFAULT_DB_ALIAS if model._meta.app_label == APP_LABEL else None

    db_for_write = db_for_read

    def allow_relation(self, obj1: models.Model, obj2: models.Model, **hints: Any) -> bool | None:
        if obj1._meta.app_label == APP_LABEL and obj2._meta.app_label == APP_LABEL:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return db == DEFAULT_DB_ALIAS if app_label == APP_LABEL else None
