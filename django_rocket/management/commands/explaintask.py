import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from django_rocket.conditions import Condition, ConditionSyntaxError, parse
from django_rocket.management.arguments import (
    declared_spec,
    iso_datetime,
    local,
    reading_history,
    scheduler_zone,
    task_name,
    text,
)
from django_rocket.management.base import RocketCommand
from django_rocket.models import Task, TaskSource
from django_rocket.ops.explain import ConditionFailed, explain_task
from django_rocket.ops.schedules import effective_spec
from django_rocket.registry import TaskSpec


class Command(RocketCommand):
    help = (
        "Explain why a task is or is not due: its condition tree with each node's value, the "
        "run history it read, and when it may next change. "
        "Example: python manage.py explaintask nightly_report --at 2026-03-02T10:15"
    )

    # It reports a problem with the task it explains; others' problems must not stop it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "task", type=task_name, metavar="NAME", help="The task's name in ROCKET_TASKS."
        )
        parser.add_argument(
            "--at",
            type=iso_datetime,
            metavar="DATETIME",
            help="Evaluate at this instant instead of now, against the run log as stored "
            "(ISO 8601; without an offset it is local time in ROCKET_TIME_ZONE).",
        )
        parser.add_argument(
            "--condition",
            type=text,
            metavar="EXPR",
            help="Evaluate this condition instead of the task's start condition, against the "
            "task's history, e.g. \"daily & time_of_day.after('10:00')\".",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print one JSON object instead of text."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["task"]
        scheduler_zone()  # a zone that does not exist is an error before anything is read
        condition = None
        if options["condition"] is not None:
            try:
                condition = parse(options["condition"])
            except ConditionSyntaxError as exc:
                raise CommandError(f"--condition does not parse:\n{exc}") from None
        spec = self.spec(name, condition)
        at = local(options["at"]) if options["at"] is not None else None
        shown = str(condition if condition is not None else spec.start_cond)
        try:
            with reading_history(f"The condition {shown!r}"):
                explanation = explain_task(spec, at=at, condition=condition)
        except ConditionFailed as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(explanation.to_dict(), indent=2))
        else:
            self.stdout.write(explanation.render())

    def spec(self, name: str, condition: Condition | None) -> TaskSpec:
        """Return the task as the scheduler applies it, or with --condition one from history."""
        row = Task.objects.filter(name=name).first()
        try:
            spec = declared_spec(name)
        except CommandError:
            runtime = effective_spec(row, {}) if row is not None and row.declared else None
            if runtime is not None and row is not None and row.source == TaskSource.RUNTIME:
                return runtime
            if row is None or condition is None:
                raise
            return TaskSpec(name=name, func=row.func, start_cond=condition)
        return effective_spec(row, {name: spec}) or spec if row is not None else spec
