"""Batched writes to the run log: one statement per batch, whatever its size.

The ORM's ``bulk_create`` and ``bulk_update`` split a batch by the database's
parameter limit (999 on SQLite with Django 5.2), so a tick that starts a
thousand runs would issue dozens of statements. ``executemany`` sends one
prepared statement with many parameter rows, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, models
from django.utils.duration import duration_microseconds

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


def _converter(field: Any) -> Callable[[Any], Any] | None:
    """How one column's values become database values; None when they already are.

    The same conversions as ``field.get_db_prep_save``, chosen once per batch instead of
    dispatched through the field's methods for every value: at a thousand runs a tick,
    that dispatch cost as much as the statement it prepared.
    """
    if isinstance(field, _PASS_THROUGH):
        return None
    features, ops = connection.features, connection.ops

    def generic(v: Any) -> Any:
        return field.get_db_prep_save(v, connection)

    if isinstance(field, models.DateTimeField):
        adapt = ops.adapt_datetimefield_value

        def convert_datetime(v: Any) -> Any:
            # Aware datetimes go straight to the backend; anything else takes the
            # field's path (and its naive-datetime warning).
            return adapt(v) if isinstance(v, datetime) and v.tzinfo is not None else generic(v)

        return convert_datetime
    if isinstance(field, models.UUIDField):
        if features.has_native_uuid_field:
            return lambda v: v if isinstance(v, uuid.UUID) else generic(v)

        def convert_uuid(v: Any) -> Any:
            if isinstance(v, uuid.UUID):
                return v.hex
            if isinstance(v, str) and len(v) == 36:  # str(UUID): 8-4-4-4-12 hex digits
                return v.replace("-", "")
            return generic(v)

        return convert_uuid
    if isinstance(field, models.DurationField):
        if features.has_native_duration_field:
            return None
        return lambda v: duration_microseconds(v) if isinstance(v, timedelta) else generic(v)
    return generic


def _prep(
    converters: list[Callable[[Any], Any] | None], values: Sequence[Any], memo: dict[Any, Any]
) -> list[Any]:
    """Values as the database takes them, one converter per column (see ``_converter``).

    ``memo`` caches converted datetimes for this batch: a tick writes one instant for all
    the runs it starts, so it is converted once, not once per row.
    """
    out = []
    for convert, v in zip(converters, values, strict=True):
        if v is None or convert is None:
            out.append(v)
        elif isinstance(v, datetime):
            key = (convert, v)
            if key not in memo:
                memo[key] = convert(v)
            out.append(memo[key])
        else:
            out.append(convert(v))
    return out


def _unnest(fields: list[Any]) -> str:
    """``UNNEST(%s::type[], ...)``: one array parameter per column (PostgreSQL)."""
    return "UNNEST({})".format(", ".join(f"%s::{f.cast_db_type(connection)}[]" for f in fields))


def _by_column(rows: list[list[Any]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


def insert_runs(rows: Iterable[Sequence[Any]]) -> None:
    """Insert runs; each row holds the values of START_FIELDS (ids for foreign keys).

    One statement either way: on PostgreSQL one INSERT ... SELECT FROM UNNEST of one
    array per column, elsewhere one prepared INSERT executed for every row (executemany).
    """
    fields = _columns(START_FIELDS)
    convert = [_converter(f) for f in fields]
    memo: dict[Any, Any] = {}
    params = [_prep(convert, row, memo) for row in rows]
    if not params:
        return
    qn = connection.ops.quote_name
    head = "INSERT INTO {} ({})".format(
        qn(TaskRun._meta.db_table), ", ".join(qn(f.column) for f in fields)
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"{head} SELECT * FROM {_unnest(fields)}", _by_column(params, len(fields))
            )
        else:
            cursor.executemany(f"{head} VALUES ({', '.join(['%s'] * len(fields))})", params)


def finish_runs(rows: Iterable[tuple[Any, Sequence[Any]]]) -> None:
    """Record finishes; each row is (run_id, values of FINISH_FIELDS).

    On PostgreSQL one UPDATE ... FROM UNNEST joined on the run id; elsewhere one prepared
    UPDATE executed for every row. A run id given twice keeps its last values, as
    executing the rows in order would.
    """
    fields = _columns(FINISH_FIELDS)
    convert = [_converter(f) for f in fields]
    key = TaskRun._meta.get_field("run_id")
    convert_key = _converter(key) or (lambda v: v)
    memo: dict[Any, Any] = {}
    last = {convert_key(run_id): values for run_id, values in rows}
    if not last:
        return
    params = [[*_prep(convert, values, memo), run_id] for run_id, values in last.items()]
    qn = connection.ops.quote_name
    table = qn(TaskRun._meta.db_table)
    assert key.column is not None  # a concrete field always has a column
    key_column = qn(key.column)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            names = [f"c{i}" for i in range(len(fields))] + ["k"]
            cursor.execute(
                "UPDATE {} SET {} FROM {} AS v({}) WHERE {}.{} = v.k".format(
                    table,
                    ", ".join(f"{qn(f.column)} = v.c{i}" for i, f in enumerate(fields)),
                    _unnest([*fields, key]),
                    ", ".join(names),
                    table,
                    key_column,
                ),
                _by_column(params, len(names)),
            )
        else:
            cursor.executemany(
                "UPDATE {} SET {} WHERE {} = %s".format(
                    table, ", ".join(f"{qn(f.column)} = %s" for f in fields), key_column
                ),
                params,
            )
