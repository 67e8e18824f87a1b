from typing import Any

from django.core.management.base import CommandParser

from django_rocket.conditions import format_duration
from django_rocket.engine.retention import BATCH_SIZE, prune_runs
from django_rocket.management.arguments import MAX_ROWS, positive_duration, row_count
from django_rocket.management.base import RocketCommand


class Command(RocketCommand):
    help = (
        "Delete runs that finished longer ago than --older-than, in batches, keeping the runs "
        "conditions still read (each task's latest start and latest finish of each outcome, "
        "its open retry chain) and every run in progress or queued. "
        "Example: python manage.py pruneruns --older-than '90 days' --keep-failed --dry-run"
    )

    # The run log can be pruned whatever state ROCKET_TASKS is in.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=positive_duration,
            required=True,
            metavar="DURATION",
            help="Age of the runs to delete, counted from their finish: '90 days', '12 hours'; "
            "at most 100 years.",
        )
        parser.add_argument(
            "--keep-failed",
            action="store_true",
            help="Also keep runs that ended fail, crash or terminate.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=row_count,
            default=BATCH_SIZE,
            metavar="N",
            help=f"Runs deleted per transaction, 1 to {MAX_ROWS}. Default: {BATCH_SIZE}.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = prune_runs(
            options["older_than"],
            keep_failed=options["keep_failed"],
            dry_run=options["dry_run"],
            batch_size=options["batch_size"],
        )
        age = format_duration(options["older_than"])
        verb = "Would delete" if result.dry_run else "Deleted"
        message = (
            f"{verb} {result.deleted} run(s) that finished more than {age} ago "
            f"(before {result.cutoff.isoformat(timespec='seconds')})"
        )
        if not result.dry_run:
            message += f" in {result.batches} batch(es)"
        if result.kept:
            message += f"; kept {result.kept} old run(s) that conditions still read"
        self.stdout.write(message + ".")
