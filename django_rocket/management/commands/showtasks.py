import json
from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from django_rocket.management.arguments import reading_history, scheduler_zone
from django_rocket.management.base import RocketCommand
from django_rocket.ops.explain import render_table, task_states


class Command(RocketCommand):
    help = (
        "List the declared tasks, then the runtime tasks, one line each: enabled, status, "
        "last run, last success, last failure, next change and the start condition the "
        "scheduler applies. "
        "Example: python manage.py showtasks --json"
    )

    # It shows misdeclared tasks itself, so one bad task must not hide the others.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="Print one JSON object instead of a table."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        zone = scheduler_zone()
        at = timezone.now().astimezone(zone)
        with reading_history("A task's condition"):
            states = task_states(at)
        if options["json"]:
            data = {
                "at": at.isoformat(),
                "time_zone": str(zone),
                "tasks": [state.to_dict() for state in states],
            }
            self.stdout.write(json.dumps(data, indent=2))
        elif not states:
            self.stdout.write("ROCKET_TASKS declares no task.")
        else:
            self.stdout.write(render_table(states, at))
