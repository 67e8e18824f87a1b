from django.apps import AppConfig
from django.core import checks


class DjangoRocketConfig(AppConfig):
    name = "django_rocket"
    verbose_name = "Scheduler"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Not at the top: the checks import the registry, whose executors import the
        # models, and models cannot be imported before the app registry is ready.
        from django_rocket.checks import check_settings, check_tasks
        from django_rocket.db_checks import check_clocks, check_listen_database, check_mysql

        checks.register(check_tasks)
        checks.register(check_settings)
        checks.register(check_mysql, checks.Tags.database)
        checks.register(check_clocks, checks.Tags.database)
        checks.register(check_listen_database, checks.Tags.database)
