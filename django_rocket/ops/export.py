"""Export the run log as CSV or JSON Lines, streamed in constant memory.

Rows are read with ``values_list(...).iterator(chunk_size=...)`` (a server-side
cursor on PostgreSQL, inside one transaction so that a pooler in transaction mode such as
PgBouncer keeps it on one session; chunked fetches on SQLite; on MySQL and MariaDB, whose driver
buffers whole result sets, one page after another), in start order along the
``(started_at, id)`` index, and written as they arrive: memory does not grow
with the number of runs.

CSV cells that a spreadsheet would run as a formula (OWASP's "CSV injection")
are escaped by default: see :func:`escape_formula`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Q, QuerySet

from django_rocket.models import TaskRun

FORMATS = ("csv", "jsonl")
COLUMNS = (
    "task_name",
    "run_id",
    "status",
    "trigger",
    "started_at",
    "finished_at",
    "runtime",
    "message",
    "exc_text",
)
_FIELDS = (
    "task__name",
    "run_id",
    "status",
    "trigger",
    "started_at",
    "finished_at",
    "runtime",
    "message",
    "exc_text",
)
CHUNK_SIZE = 2000
# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_rows(
    *, task: str | None = None, since: datetime | None = None, chunk_size: int = CHUNK_SIZE
) -> Iterator[tuple[object, ...]]:
    """Yield one tuple of COLUMNS per started run, oldest first; times in UTC, runtime in s."""
    runs = TaskRun.objects.filter(started_at__isnull=False)
    if task is not None:
        runs = runs.filter(task__name=task)
    if since is not None:
        runs = runs.filter(started_at__gte=since)
    for name, run_id, status, trigger, started, finished, runtime, message, exc_text in _stream(
        runs, chunk_size
    ):
        yield (
            name,
            str(run_id),
            status,
            trigger,
            _iso(started),
            _iso(finished),
            runtime.total_seconds() if runtime is not None else None,
            message,
            exc_text,
        )


def _stream(runs: QuerySet[TaskRun], chunk_size: int) -> Iterator[tuple[Any, ...]]:
    """The rows of ``_FIELDS`` in (started_at, id) order, read ``chunk_size`` at a time.

    MySQL's driver buffers a whole result set client-side, so there the rows are read
    page by page after the last (started_at, id) seen, each page along the index.
    """
    ordered = runs.order_by("started_at", "id")
    if connection.vendor != "mysql":
        # PostgreSQL: in a transaction, so that the server-side cursor lives as long as it,
        # on one session. Without one it outlives each fetch's transaction (WITH HOLD), and
        # a pooler in transaction mode (PgBouncer) may send the next fetch to a session
        # without it. Not SQLite: an IMMEDIATE transaction would hold the write lock.
        pooled = connection.vendor == "postgresql" and connection.get_autocommit()
        with transaction.atomic() if pooled else contextlib.nullcontext():
            yield from ordered.values_list(*_FIELDS).iterator(chunk_size=chunk_size)
        return
    page = ordered.values_list(*_FIELDS, "id")
    after = Q()
    while True:
        rows = list(page.filter(after)[:chunk_size])
        for row in rows:
            yield row[:-1]
        if len(rows) < chunk_size:
            return
        started, pk = rows[-1][_FIELDS.index("started_at")], rows[-1][-1]
        after = Q(started_at__gt=started) | Q(started_at=started, id__gt=pk)


def export_lines(
    fmt: str,
    *,
    task: str | None = None,
    since: datetime | None = None,
    chunk_size: int = CHUNK_SIZE,
    escape_formulas: bool = True,
) -> Iterator[str]:
    """Yield the export as text: a header line then one line per run (CSV), or one object each.

    ``escape_formulas=False`` writes CSV cells as stored (see :func:`escape_formula`).
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    rows = export_rows(task=task, since=since, chunk_size=chunk_size)
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(dict(zip(COLUMNS, row, strict=True))) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        cells = ["" if value is None else value for value in row]
        writer.writerow([escape_formula(c) for c in cells] if escape_formulas else cells)
        yield buffer.getvalue()


def escape_formula(value: object) -> object:
    """Put a single quote before a text cell a spreadsheet would run as a formula, as OWASP says."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None
