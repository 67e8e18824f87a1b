"""Batched writes to the run log: one statement per batch, whatever its size.

The ORM's ``bulk_create`` and ``bulk_update`` split a batch by the database's
parameter limit (999 on SQLite with Django 5.2), so a tick that starts a
thousand runs would issue dozens of statements. ``executemany`` sends one
prepared statement with many parameter rows, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, models

from django_rocket.models import TaskRun

START_FIELDS = (
    "task",
    "run_id",
    "status",
    "trigger",
    "retry_of",
    "started_at",
    "host",
    "pid",
    "scheduler",
    "message",
    "exc_text",
)
FINISH_FIELDS = ("status", "finished_at", "runtime", "message", "exc_text", "result")


# Fields whose Python value is already what the database driver takes (text, integers,
# foreign-key ids): get_db_prep_save would return it unchanged, one call per value.
_PASS_THROUGH = (models.CharField, models.TextField, models.IntegerField, models.ForeignKey)


def _columns(names: Sequence[str]) -> list[Any]:
    return [TaskRun._meta.get_field(name) for name in names]


def _prep(fields: list[Any], values: Sequence[Any], memo: dict[Any, Any]) -> list[Any]:
    """Values as the database takes them; converts only datetimes, UUIDs, durations, JSON.

    ``memo`` holds the datetimes converted for this batch: a tick writes one instant for
    all the runs it starts, so it is converted once, not once per row.
    """
    out = []
    for f, v in zip(fields, values, strict=True):
        if v is None or isinstance(f, _PASS_THROUGH):
            out.append(v)
        elif isinstance(v, datetime):
            key = (f.attname, v)
            if key not in memo:
                memo[key] = f.get_db_prep_save(v, connection)
            out.append(memo[key])
        else:
            out.append(f.get_db_prep_save(v, connection))
    return out


def insert_runs(rows: Iterable[Sequence[Any]]) -> None:
    """Insert runs; each row holds the values of START_FIELDS (ids for foreign keys)."""
    fields = _columns(START_FIELDS)
    qn = connection.ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        qn(TaskRun._meta.db_table),
        ", ".join(qn(f.column) for f in fields),
        ", ".join(["%s"] * len(fields)),
    )
    memo: dict[Any, Any] = {}
    params = [_prep(fields, row, memo) for row in rows]
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)


def finish_runs(rows: Iterable[tuple[Any, Sequence[Any]]]) -> None:
    """Record finishes; each row is (run_id, values of FINISH_FIELDS)."""
    fields = _columns(FINISH_FIELDS)
    key = TaskRun._meta.get_field("run_id")
    assert key.column is not None  # a concrete field always has a column
    qn = connection.ops.quote_name
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        qn(TaskRun._meta.db_table),
        ", ".join(f"{qn(f.column)} = %s" for f in fields),
        qn(key.column),
    )
    memo: dict[Any, Any] = {}
    params = [
        [*_prep(fields, values, memo), key.get_db_prep_save(run_id, connection)]
        for run_id, values in rows
    ]
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)
