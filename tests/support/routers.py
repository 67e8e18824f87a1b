"""Database routers as projects write them, for check E036 and RunLogRouter."""


class Replicas:
    """Reads go to a replica, writes to the primary: the common setup."""

    def db_for_read(self, model, **hints):
        return "replica"

    def db_for_write(self, model, **hints):
        return "default"


class RocketElsewhere:
    """Puts django-rocket's tables on another database altogether."""

    def db_for_read(self, model, **hints):
        return "other" if model._meta.app_label == "django_rocket" else None

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, **hints):
        return db == "other" if app_label == "django_rocket" else None


class Broken:
    def db_for_read(self, model, **hints):
        raise RuntimeError("no replica configured")
