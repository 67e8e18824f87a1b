import threading
from datetime import timedelta
from typing import Any, NoReturn

from django.core.management.base import CommandParser
from django.db import DatabaseError, connections
from django.utils import timezone

from django_rocket.conf import conf
from django_rocket.display import format_runtime
from django_rocket.management.arguments import positive_seconds
from django_rocket.management.base import RocketCommand
from django_rocket.models import SchedulerInstance, SchedulerRole
from django_rocket.ops import overview

# Seconds the check waits for the database's answer.
DEFAULT_TIMEOUT = 10.0


class Command(RocketCommand):
    help = (
        "Exit 0 if an active scheduler was seen within --max-age seconds, else exit 1 with a "
        "one-line reason: for container health checks and monitoring. "
        "Example: python manage.py checkscheduler --max-age 60"
    )
    # A health probe must be cheap, and must not fail because a task elsewhere is misdeclared.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-age",
            type=positive_seconds,
            metavar="SECONDS",
            help="How recent the scheduler's heartbeat must be, above 0 and at most 100 years. "
            "Default: ROCKET_HEALTH_MAX_AGE.",
        )
        parser.add_argument(
            "--timeout",
            type=positive_seconds,
            default=DEFAULT_TIMEOUT,
            metavar="SECONDS",
            help="How long to wait for the database's answer before failing (a database "
            "that stopped answering without closing the connection would hold the check "
            f"for minutes). Default: {DEFAULT_TIMEOUT:g}.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        max_age = options["max_age"] if options["max_age"] is not None else conf.health_max_age
        active, last = self.read(max_age, options["timeout"])
        now = timezone.now()
        if active is not None:
            age = format_runtime(max(now - active.last_seen, timedelta(0)))
            self.stdout.write(
                f"OK: scheduler {active.host}:{active.pid} is active, seen {age} ago."
            )
            return
        if last is None:
            self.fail("no scheduler has ever run against this database.")
        who = f"{last.host}:{last.pid}"
        age = format_runtime(now - last.last_seen)
        if last.role == SchedulerRole.STOPPED:
            self.fail(f"no active scheduler; the last one, {who}, stopped {age} ago.")
        if last.last_seen >= now - timedelta(seconds=max_age):
            self.fail(f"no active scheduler; {who} is on standby (seen {age} ago).")
        self.fail(
            f"no active scheduler seen in the last {max_age:g} s; the last, {who} "
            f"({last.role}), was seen {age} ago."
        )

    def read(
        self, max_age: float, timeout: float
    ) -> tuple[SchedulerInstance | None, SchedulerInstance | None]:
        """The active scheduler and the last one seen, read within ``timeout`` seconds.

        Read in a thread of its own: a database that stopped answering without closing
        the connection (a network partition) holds the driver until the operating system
        gives up on TCP, and the check must answer long before.
        """
        answer: list[tuple[SchedulerInstance | None, SchedulerInstance | None] | Exception] = []

        def ask() -> None:
            try:
                active = overview.active_scheduler(max_age)
                answer.append(
                    (active, overview.last_seen_scheduler() if active is None else active)
                )
            except Exception as exc:  # raised again below, in the command's own thread
                answer.append(exc)
            finally:
                connections.close_all()  # this thread's

        thread = threading.Thread(target=ask, name="checkscheduler-read", daemon=True)
        thread.start()
        thread.join(timeout)
        if not answer:
            self.fail(f"the database did not answer within {timeout:g} s (--timeout).")
        result = answer[0]
        if isinstance(result, DatabaseError):
            self.fail(f"cannot read the scheduler table: {str(result).strip().splitlines()[0]}")
        if isinstance(result, Exception):
            raise result  # not the database's answer: as if read here, not as a timeout
        return result

    def fail(self, reason: str) -> NoReturn:
        self.stderr.write(f"FAIL: {reason}")
        raise SystemExit(1)
