from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from django_rocket import alerts
from django_rocket.management.base import RocketCommand


class Command(RocketCommand):
    help = "Send a test email through ROCKET_ALERTS to check the mail settings and the receivers."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = alerts.EmailConfig.from_settings()
            if config is None:
                raise CommandError(
                    "ROCKET_ALERTS has no 'email' entry; add one such as "
                    "{'email': {'receivers': ['ops@example.com']}}."
                )
            server = alerts.destination(config.mailer)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        test = alerts.Alert(
            level="INFO",
            logger="django_rocket.task",
            message="A test alert from manage.py sendtestalert.",
            created=datetime.now(UTC),
            task_name="sendtestalert",
            is_test=True,
        )
        try:
            alerts.send(config, test)
        except Exception as exc:
            raise CommandError(
                f"Could not send the test alert through {server}: {alerts.describe_error(exc)}"
            ) from None
        receivers = ", ".join(config.receivers)
        self.stdout.write(self.style.SUCCESS(f"Sent a test alert to {receivers} through {server}."))
