import os
import sys
from collections.abc import Iterable
from typing import Any, NoReturn, TextIO

from django.core.management.base import CommandError, CommandParser, OutputWrapper

from django_rocket.conf import conf
from django_rocket.management.arguments import (
    MAX_ROWS,
    file_path,
    iso_datetime,
    local,
    quoted,
    row_count,
    task_name,
    unknown_task,
)
from django_rocket.management.base import RocketCommand
from django_rocket.models import Task
from django_rocket.ops.export import CHUNK_SIZE, FORMATS, export_lines

# Lines are joined into blocks of about this many characters before each write.
BLOCK = 1 << 16


class Command(RocketCommand):
    help = (
        "Export the run log, one row per run (task_name, run_id, status, trigger, started_at, "
        "finished_at, runtime, message, exc_text), oldest first, streamed in constant memory. "
        "Example: python manage.py exportruns --format jsonl --since 2026-03-01 --output runs.jsonl"
    )

    # The run log is readable whatever state ROCKET_TASKS is in.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=FORMATS, default="csv", help="Default: csv.")
        parser.add_argument(
            "--task", type=task_name, metavar="NAME", help="Only the runs of this task."
        )
        parser.add_argument(
            "--since",
            type=iso_datetime,
            metavar="DATETIME",
            help="Only runs started at or after this instant (ISO 8601; without an offset it "
            "is local time in ROCKET_TIME_ZONE).",
        )
        parser.add_argument(
            "--output",
            type=file_path,
            metavar="FILE",
            help="Write to this file instead of standard output.",
        )
        parser.add_argument(
            "--chunk-size",
            type=row_count,
            default=CHUNK_SIZE,
            metavar="N",
            help=f"Rows fetched from the database at a time, 1 to {MAX_ROWS}. "
            f"Default: {CHUNK_SIZE}.",
        )
        parser.add_argument(
            "--raw-csv",
            action="store_true",
            help="Write CSV cells as stored, without the quote put before a leading =, +, -, "
            "@, tab or carriage return that stops spreadsheets running them as formulas. "
            "Only for a consumer that is not a spreadsheet.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["raw_csv"] and options["format"] != "csv":
            raise CommandError("--raw-csv applies to --format csv only; leave it out with jsonl.")
        name = options["task"]
        if name is not None and not Task.objects.filter(name=name).exists():
            raw = conf.tasks
            known = set(Task.objects.values_list("name", flat=True))
            known |= {str(n) for n in raw} if isinstance(raw, dict) else set()
            raise unknown_task(name, known, where="the run log")
        since = local(options["since"]) if options["since"] is not None else None
        lines = export_lines(
            options["format"],
            task=name,
            since=since,
            chunk_size=options["chunk_size"],
            escape_formulas=not options["raw_csv"],
        )
        path = options["output"]
        if path is None:
            try:
                self.write(lines, self.stdout, header=False)
            except BrokenPipeError:
                close = getattr(lines, "close", None)
                if close is not None:
                    close()  # its database cursor, while the connection is still open
                reader_gone()
            return
        try:
            with open(path, "w", encoding="utf-8", newline="") as out:
                count = self.write(lines, out, header=options["format"] == "csv")
        except OSError as exc:
            raise CommandError(
                f"Cannot write the export to {quoted(path, limit=200)}: {exc.strerror}."
            ) from None
        self.stdout.write(f"Exported {count} run(s) to {path}.")

    def write(self, lines: Iterable[str], out: OutputWrapper | TextIO, *, header: bool) -> int:
        """Write the lines in blocks; return the number of runs written."""
        count = -1 if header else 0
        block: list[str] = []
        size = 0
        for line in lines:
            block.append(line)
            size += len(line)
            count += 1
            if size >= BLOCK:
                self.emit(out, block)
                block, size = [], 0
        if block:
            self.emit(out, block)
        return count

    def emit(self, out: OutputWrapper | TextIO, block: list[str]) -> None:
        if isinstance(out, OutputWrapper):  # self.stdout: lines already end in "\n"
            out.write("".join(block), ending="")
        else:
            out.write("".join(block))


def reader_gone() -> NoReturn:
    """Stop quietly when standard output's reader has gone (``exportruns | head``).

    As the Python documentation advises for SIGPIPE: standard output is pointed at
    /dev/null, so that flushing it at exit raises nothing more, and the exit code is 1.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise SystemExit(1)
