import signal
from types import FrameType
from typing import Any

from django.core.management.base import CommandParser
from django.db import OperationalError

from django_rocket.engine.scheduler import Scheduler
from django_rocket.management.arguments import positive_seconds
from django_rocket.management.base import RocketCommand
from django_rocket.management.console import console_story


class Command(RocketCommand):
    help = (
        "Run the scheduler: start each task when its condition is true and record every run. "
        "Example: python manage.py runscheduler --duration 3600"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Run one cycle: start what is due, wait for it to finish, and exit.",
        )
        parser.add_argument(
            "--duration",
            type=positive_seconds,
            metavar="SECONDS",
            help="Stop gracefully after this many seconds (at most 100 years).",
        )

    def check(self, *args: Any, **kwargs: Any) -> None:
        """Run the system checks, unless the database does not answer yet."""
        try:
            super().check(*args, **kwargs)
        except OperationalError:
            # Django 6.1 on MySQL asks the server its version to check model fields; the
            # scheduler waits for the database itself, and says so, at start-up.
            pass

    def handle(self, *args: Any, **options: Any) -> None:
        scheduler = Scheduler(once=options["once"], duration=options["duration"])

        def on_signal(signum: int, frame: FrameType | None) -> None:
            scheduler.signalled(signum)

        # SIGHUP (the terminal of an SSH session closing) stops it as SIGTERM does, so
        # that its runs are recorded, not left to crash recovery; unless it is ignored
        # (nohup): then it stays ignored.
        stops_on = [signal.SIGINT, signal.SIGTERM]
        if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
            stops_on.append(signal.SIGHUP)
        previous = {sig: signal.signal(sig, on_signal) for sig in stops_on}
        try:
            with console_story(options["verbosity"]):
                code = scheduler.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if code:
            raise SystemExit(code)
