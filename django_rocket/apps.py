from django.apps import AppConfig


class DjangoRocketConfig(AppConfig):
    name = "django_rocket"
    verbose_name = "Scheduler"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_rocket import checks, db_checks  # noqa: F401 - registers the system checks
