from datetime import datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from django_rocket import alerts
from django_rocket.conf import conf
from django_rocket.display import format_runtime
from django_rocket.management.arguments import (
    iso_datetime,
    local,
    runnable_spec,
    task_name,
)
from django_rocket.management.base import RocketCommand, first_line
from django_rocket.models import RunStatus, Task, TaskRun, TaskSource
from django_rocket.ops import RunRefused, oneoff, queue_run
from django_rocket.ops.overview import active_scheduler
from django_rocket.ops.schedules import queue_run_at
from django_rocket.registry import TaskSpec


class Command(RocketCommand):
    help = (
        "Run a task (declared, or created by schedule()) now, or with --at queue one run "
        "for a given instant. With a scheduler alive, queue a manual run for it; with "
        "--wait, or when none is alive, run it in this process. A runtime task whose "
        "function ROCKET_TASK_FUNCTIONS does not allow is refused, never imported. The "
        "exit code is 0 if the run succeeded (or was queued), 1 otherwise. "
        "Example: python manage.py runtask nightly_report --wait"
    )

    # It validates the task it runs; a problem with another task must not stop it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "task",
            type=task_name,
            metavar="NAME",
            help="The task's name in ROCKET_TASKS, or a runtime task's (schedule()).",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Run it in this process and wait for the outcome, even if a scheduler is alive.",
        )
        parser.add_argument(
            "--at",
            type=iso_datetime,
            metavar="ISO-DATETIME",
            help="Queue one run for this instant instead of now (local time in "
            "ROCKET_TIME_ZONE without an offset); the active scheduler starts it then.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["at"] is not None:
            if options["wait"]:
                raise CommandError("--at and --wait do not go together: --at queues a run.")
            self.queue_at(options["task"], local(options["at"]))
            return
        spec = runnable_spec(options["task"])
        if not options["wait"]:
            scheduler = active_scheduler(conf.health_max_age)
            if scheduler is not None:
                self.queue(spec.name, f"{scheduler.host}:{scheduler.pid}")
                return
            self.stdout.write(
                "No active scheduler was seen in the last "
                f"{conf.health_max_age:g} seconds; running the task in this process."
            )
        self.run_here(spec, options["verbosity"])

    def queue(self, name: str, scheduler: str) -> None:
        task = Task.objects.filter(name=name).first()
        if task is None:
            raise CommandError(
                f"The running scheduler ({scheduler}) has not loaded the task {name!r}: it was "
                "added to ROCKET_TASKS after the scheduler started. Restart the scheduler, or "
                "run it here with --wait."
            )
        try:
            run, created = queue_run(task)
        except RunRefused as exc:
            raise CommandError(str(exc)) from None
        if created:
            self.stdout.write(f"Queued run {run.run_id} of {name!r} for the scheduler {scheduler}.")
        else:
            self.stdout.write(
                f"A manual run of {name!r} was already queued ({run.run_id}); "
                f"the scheduler {scheduler} starts it at its next poll."
            )

    def queue_at(self, name: str, at: datetime) -> None:
        task = Task.objects.filter(name=name, declared=True).first()
        if task is None or task.source == TaskSource.RUNTIME:
            runnable_spec(name)  # unknown, invalid, or a function off the allowlist
        if task is None:
            raise CommandError(
                f"The task {name!r} has no row yet: start the scheduler once so that it "
                "syncs ROCKET_TASKS, then queue the run."
            )
        try:
            run = queue_run_at(task, at)
        except RunRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Queued run {run.run_id} of {name!r} at {at.isoformat()}.")
        if active_scheduler(conf.health_max_age) is None:
            self.stdout.write(
                "No active scheduler was seen in the last "
                f"{conf.health_max_age:g} seconds; the run starts when one is running."
            )

    def run_here(self, spec: TaskSpec, verbosity: int) -> None:
        email = bool(conf.alerts.get("email"))
        if email:
            alerts.install_alerts()
        try:
            run = oneoff.run_in_process(spec, now=timezone.now)
        except oneoff.FinishNotRecorded as exc:
            why = (
                f"until {exc.given_up} told runtask to stop"
                if exc.given_up
                else "refused even without its message, traceback and result"
            )
            raise CommandError(
                f"{summary_of(exc.run, spec.name)}; but the database did not take this "
                f"outcome ({exc.attempts} attempt(s) over {exc.waited:.0f} s, {why}): "
                f"{first_line(exc.cause)}. "
                "Its row stays 'running' until a scheduler records it as crash, once its "
                "heartbeat is older than ROCKET_LEASE_TIMEOUT."
            ) from exc
        finally:
            if email:
                alerts.shutdown_alerts(timeout=10.0)
        summary = summary_of(run, spec.name)
        if run.status == RunStatus.SUCCESS:
            self.stdout.write(self.style.SUCCESS(summary))
            return
        if run.exc_text and verbosity >= 2:
            self.stderr.write(run.exc_text.rstrip())
        elif run.exc_text:
            summary += " (-v 2 shows the traceback, as does the run in the admin)"
        self.stderr.write(summary)
        raise SystemExit(1)


def summary_of(run: TaskRun, name: str) -> str:
    """One line: which run of which task ended how, after how long, and its message."""
    summary = (
        f"Run {run.run_id} of {name!r} ended with {run.status} after {format_runtime(run.runtime)}"
    )
    return f"{summary}: {run.message}" if run.message else summary
