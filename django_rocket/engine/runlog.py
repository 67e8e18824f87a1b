"""Batched writes to the run log: one statement per batch, whatever its size.

The ORM's ``bulk_create`` and ``bulk_update`` split a batch by the database's
parameter limit (999 on SQLite with Django 5.2), so a tick that starts a
thousand runs would issue dozens of statements. Here a batch is one statement:
on SQLite one prepared statement executed for every row (``executemany``), on
PostgreSQL one statement reading every row from one JSON document. On MySQL and
MariaDB the driver turns an ``executemany`` INSERT into multi-row INSERTs (64 KiB
each), and a batch of finishes is one UPDATE joined to ``JSON_TABLE`` over one JSON
document (MySQL 8, MariaDB 10.6 and later; row by row before), split only where
it would pass a few MiB.
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, connection, models, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from django.utils.duration import duration_microseconds

from django_rocket.models import FINISH_FIELDS, RunStatus, SchedulerLease, TaskRun

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

# The lease a write is fenced by: its name, the token held, its new expiry.
Fence = tuple[str, int, datetime]

# A value the database (DataError, IntegrityError) or its driver (UnicodeEncodeError: a
# lone surrogate has no UTF-8) refuses. Not an outage: the same write fails the same way
# on every retry, so the writers fall back to run by run instead of backing off.
REFUSED = (DataError, IntegrityError, UnicodeEncodeError)


# Fields whose Python value is already what the database driver takes (text, integers,
# foreign-key ids): get_db_prep_save would return it unchanged, one call per value.
_PASS_THROUGH = (models.CharField, models.TextField, models.IntegerField, models.ForeignKey)


@functools.cache
def _columns(names: tuple[str, ...]) -> list[Any]:
    return [TaskRun._meta.get_field(name) for name in names]


def _converter(field: Any) -> Callable[[Any], Any] | None:
    """How one column's values become database values; None when they already are.

    The same conversions as ``field.get_db_prep_save``, chosen once per batch instead of
    dispatched through the field's methods for every value: at a thousand runs a tick,
    that dispatch cost as much as the statement it prepared. A converter is never given
    None (it stays None).
    """
    if isinstance(field, _PASS_THROUGH):
        return None
    features, ops = connection.features, connection.ops

    def generic(v: Any) -> Any:
        return field.get_db_prep_save(v, connection)

    if isinstance(field, models.DateTimeField):
        adapt = ops.adapt_datetimefield_value
        if connection.vendor == "sqlite" and settings.USE_TZ:
            # What SQLite's adapt_datetimefield_value does to an aware datetime, without
            # its checks and look-ups per value: naive in the connection's zone, as text.
            zone = connection.timezone

            def sqlite_datetime(v: Any) -> Any:
                if isinstance(v, datetime) and v.tzinfo is not None:
                    return str(v.astimezone(zone).replace(tzinfo=None))
                return generic(v)

            return sqlite_datetime

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
    if (
        isinstance(field, models.JSONField)
        and field.encoder is None
        and type(ops).adapt_json_value is BaseDatabaseOperations.adapt_json_value
    ):
        # JSONField.get_db_prep_value ends in adapt_json_value: json.dumps here. An empty
        # list (the exception types of most runs) is the same text every time.
        dumps = json.dumps
        empty = dumps([])

        def convert_json(v: Any) -> Any:
            if type(v) is list and not v:
                return empty
            return dumps(v) if type(v) in _JSON_PLAIN else generic(v)

        return convert_json
    return generic


# Types json.dumps encodes as JSONField would (a subclass may define its own conversion).
_JSON_PLAIN = frozenset({list, dict, str, int, float, bool})


def _prep_rows(
    converters: Sequence[Callable[[Any], Any] | None], rows: Sequence[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    """Rows as the database takes them, converted column by column (see ``_converter``).

    A column holding the same object in every row (the tick's instant, the host, the
    status of the runs starting) is converted once: a thousand runs a tick share it.
    """
    if not rows:
        return []
    count = len(rows)
    columns: list[Sequence[Any]] = []
    for convert, column in zip(converters, zip(*rows, strict=True), strict=True):
        if convert is None:
            columns.append(column)
            continue
        first = column[0]
        if count == 1 or len(set(map(id, column))) == 1:
            columns.append((None if first is None else convert(first),) * count)
        else:
            columns.append([None if v is None else convert(v) for v in column])
    return list(zip(*columns, strict=True))


def _json_value(field: Any) -> Callable[[Any], Any] | None:
    """How one column's values go into the JSON document of a PostgreSQL batch.

    Text the column's type parses, as ``json_to_recordset`` hands each member to it:
    ISO 8601 for datetimes, the canonical form for UUIDs, days and seconds for
    durations. A result (``JSONField``) is embedded as JSON; None when the value
    already is what JSON carries.
    """
    if isinstance(field, (*_PASS_THROUGH, models.JSONField)):
        return None
    if isinstance(field, models.DateTimeField):

        def datetime_text(v: Any) -> Any:
            if isinstance(v, datetime) and v.tzinfo is not None:
                return v.isoformat()
            # Naive or not a datetime: the field's own path (and its warning).
            prepared = field.get_db_prep_save(v, connection)
            return prepared.isoformat() if isinstance(prepared, datetime) else prepared

        return datetime_text
    if isinstance(field, models.UUIDField):
        return _uuid_text
    if isinstance(field, models.DurationField):
        # Days apart from the seconds, as psycopg sends a timedelta: '-1 days 86398.5 seconds'.
        return lambda v: f"{v.days} days {v.seconds}.{v.microseconds:06d} seconds"
    return lambda v: field.get_db_prep_save(v, connection)


def _document(fields: list[Any], rows: Iterable[Sequence[Any]]) -> str:
    """The rows as one JSON array of objects with members c0, c1, ... (PostgreSQL).

    psycopg composes one string instead of quoting every element of one array per
    column, as it did for UNNEST: at a thousand rows, about 9 µs of client CPU a
    row instead of 18 to insert, and 12 instead of 18 to finish.
    """
    convert = [_json_value(f) for f in fields]
    names = [f"c{i}" for i in range(len(fields))]
    return json.dumps(
        [dict(zip(names, row, strict=True)) for row in _prep_rows(convert, list(rows))],
        separators=(",", ":"),
    )


def _dialect() -> str:
    """How this connection's batches are written: postgresql, json_table or rows."""
    if connection.vendor == "postgresql":
        return "postgresql"
    if connection.vendor == "mysql" and not (
        getattr(connection, "mysql_is_mariadb", False)
        and getattr(connection, "mysql_version", (0,)) < (10, 6)
    ):
        return "json_table"
    return "rows"


# A statement must fit MySQL's max_allowed_packet (16 MiB by default on MariaDB, 64 MiB on
# MySQL 8); a batch of finishes with long tracebacks or results is split to stay well below.
MYSQL_DOCUMENT_BYTES = 4 * 1024 * 1024


def _mysql_documents(rows: Iterable[tuple[Any, Sequence[Any]]]) -> Iterator[str]:
    """Finishes as the database takes them, in JSON arrays of objects c0, c1, ... (MySQL).

    One array unless the batch passes MYSQL_DOCUMENT_BYTES. Not ASCII-escaped: a lone
    surrogate then fails in the driver (UnicodeEncodeError, refused) as it does row by
    row. UUIDs the driver would take as objects go as text.
    """
    convert = [*(_converter(f) for f in _columns(FINISH_FIELDS)), None]
    names = [f"c{i}" for i in range(len(convert))]
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
    chunk: list[str] = []
    size = 0
    for values in _prep_rows(convert, [(*values, run_id) for run_id, values in rows]):
        row = encode(dict(zip(names, values, strict=True)))
        length = len(row.encode("utf-8", "surrogatepass"))
        if chunk and size + length > MYSQL_DOCUMENT_BYTES:
            yield f"[{','.join(chunk)}]"
            chunk, size = [], 0
        chunk.append(row)
        size += length + 1
    if chunk:
        yield f"[{','.join(chunk)}]"


def _json_table(fields: list[Any]) -> str:
    """``JSON_TABLE(%s, '$[*]' COLUMNS (c0 type PATH '$.c0', ...)) AS v`` (MySQL, MariaDB).

    Text goes through as ``longtext``, so that the column it is assigned to refuses what
    it would refuse row by row (strict mode) instead of the JSON table truncating it; the
    run id, as ASCII text, is compared in the run_id column's own collation, along its
    unique index.
    """
    columns = []
    for i, f in enumerate(fields):
        if isinstance(f, models.UUIDField):
            kind = "char(36) CHARACTER SET ascii"
        elif isinstance(f, (models.CharField, models.TextField, models.JSONField)):
            kind = "longtext"
        else:
            kind = f.db_type(connection)
        columns.append(f"c{i} {kind} PATH '$.c{i}'")
    return f"JSON_TABLE(%s, '$[*]' COLUMNS ({', '.join(columns)})) AS v"


@functools.cache
def _statement(vendor: str, kind: str) -> str:
    """The SQL of one kind of batch for this database vendor, composed once per process.

    Composing it (the fields' column types, quoted names) cost about 0.2 ms a batch.
    """
    qn = connection.ops.quote_name
    table = qn(TaskRun._meta.db_table)
    if kind == "insert":
        fields = _columns(START_FIELDS)
        if vendor != "postgresql":
            head = f"INSERT INTO {table} ({', '.join(qn(f.column) for f in fields)})"
            return f"{head} VALUES ({', '.join(['%s'] * len(fields))})"
        return _insert_from_document("v")
    fields = _columns(FINISH_FIELDS)
    run_id = TaskRun._meta.get_field("run_id")
    assert run_id.column is not None  # a concrete field always has a column
    key = qn(run_id.column)
    # "finish_running": only a run still running (every finish the scheduler writes; see
    # engine/recorder.py write_finishes).
    status = TaskRun._meta.get_field("status")
    assert status.column is not None
    still = f" AND {table}.{qn(status.column)} = '{RunStatus.RUNNING.value}'"
    still = still if kind == "finish_running" else ""
    if vendor == "json_table":
        assignments = ", ".join(f"{table}.{qn(f.column)} = v.c{i}" for i, f in enumerate(fields))
        source = _json_table([*fields, run_id])
        return (
            f"UPDATE {table} JOIN {source} ON {table}.{key} = v.c{len(fields)} "
            f"SET {assignments}{' WHERE' + still[4:] if still else ''}"
        )
    if vendor != "postgresql":
        assignments = ", ".join(f"{qn(f.column)} = %s" for f in fields)
        return f"UPDATE {table} SET {assignments} WHERE {key} = %s{still}"
    assignments = ", ".join(f"{qn(f.column)} = v.c{i}" for i, f in enumerate(fields))
    if still:
        source, update = _finish_running_parts()
        return f"WITH {source} {update}"
    source = _recordset([*fields, run_id])
    return f"UPDATE {table} SET {assignments} FROM {source} WHERE {table}.{key} = v.c{len(fields)}"


def _finish_running_parts() -> tuple[str, str]:
    """PostgreSQL's conditional finish: the CTE ``v`` of the rows, and the UPDATE reading it.

    Found through the run id's unique index whatever the statistics say: the ids also come
    as an array (= ANY over the document, parsed once), which the planner costs as a few
    index probes, and the status each run must still have comes with the run (the last
    member), as a join condition. Compared with a constant 'running', the planner took the
    partial index rocket_run_open, whose bitmap scan visits every dead entry of it
    (finished runs not yet vacuumed: tens of thousands under a steady load, 2-4 ms a batch
    and growing); with the join alone and stale statistics, a sequential scan of the table.
    """
    qn = connection.ops.quote_name
    table = qn(TaskRun._meta.db_table)
    fields = _columns(FINISH_FIELDS)
    run_id = TaskRun._meta.get_field("run_id")
    status = TaskRun._meta.get_field("status")
    assert run_id.column is not None and status.column is not None
    key = qn(run_id.column)
    assignments = ", ".join(f"{qn(f.column)} = v.c{i}" for i, f in enumerate(fields))
    source = f"v AS MATERIALIZED (SELECT * FROM {_recordset([*fields, run_id, status])})"
    update = (
        f"UPDATE {table} SET {assignments} FROM v "
        f"WHERE {table}.{key} = ANY(ARRAY(SELECT v.c{len(fields)} FROM v)) "
        f"AND {table}.{key} = v.c{len(fields)} "
        f"AND {table}.{qn(status.column)} = v.c{len(fields) + 1}"
    )
    return source, update


def _insert_from_document(alias: str) -> str:
    """PostgreSQL's INSERT of START_FIELDS from a JSON document of rows named ``alias``."""
    qn = connection.ops.quote_name
    fields = _columns(START_FIELDS)
    return (
        f"INSERT INTO {qn(TaskRun._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"SELECT {_select(fields, alias)} FROM {_recordset(fields, alias)}"
    )


def _select(fields: list[Any], alias: str = "v") -> str:
    return ", ".join(f"{alias}.c{i}" for i in range(len(fields)))


def _recordset(fields: list[Any], alias: str = "v") -> str:
    """``json_to_recordset(%s::json) AS v(c0 type, ...)``: a batch's rows (PostgreSQL).

    Each member goes through its column type's input function: ISO 8601 datetimes,
    UUID text, interval text; a ``jsonb`` column takes the member's JSON as it is.
    """
    columns = ", ".join(f"c{i} {f.cast_db_type(connection)}" for i, f in enumerate(fields))
    return f"json_to_recordset(%s::json) AS {alias}({columns})"


def insert_runs(rows: Iterable[Sequence[Any]]) -> None:
    """Insert runs; each row holds the values of START_FIELDS (ids for foreign keys).

    One statement either way: on PostgreSQL one INSERT ... SELECT FROM a JSON document
    of the rows, elsewhere one prepared INSERT executed for every row (executemany).
    """
    rows = list(rows)
    if not rows:
        return
    fields = _columns(START_FIELDS)
    sql = _statement(connection.vendor, "insert")  # MySQL: executemany, as on SQLite
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(sql, [_document(fields, rows)])
        else:
            cursor.executemany(sql, _prep_rows([_converter(f) for f in fields], rows))


def finish_runs(rows: Iterable[tuple[Any, Sequence[Any]]], *, only_running: bool = False) -> int:
    """Record finishes; each row is (run_id, values of FINISH_FIELDS).

    On PostgreSQL one UPDATE ... FROM a JSON document of the rows, joined on the run id;
    on MySQL and MariaDB one UPDATE joined to JSON_TABLE over such a document; elsewhere
    one prepared UPDATE executed for every row. A run id given twice keeps its last
    values, as executing the rows in order would. With ``only_running``, a run that is
    no longer ``running`` is left as it is. Return how many runs were written.
    """
    fields = _columns(FINISH_FIELDS)
    key = TaskRun._meta.get_field("run_id")
    last = _last_values(rows)
    if not last:
        return 0
    dialect = _dialect()
    sql = _statement(dialect, "finish_running" if only_running else "finish")
    with connection.cursor() as cursor:
        if dialect == "postgresql":
            if only_running:
                document = _running_document(last)
            else:
                document = _document([*fields, key], ([*v, run_id] for run_id, v in last.items()))
            cursor.execute(sql, [document])
            return int(cursor.rowcount)
        if dialect == "json_table":
            written = 0
            for document in _mysql_documents(last.items()):
                cursor.execute(sql, [document])
                written += cursor.rowcount  # rows matched: Django asks MySQL for FOUND_ROWS
            return written
        convert = [*(_converter(f) for f in fields), None]  # the key: converted above
        cursor.executemany(sql, _prep_rows(convert, [(*v, run_id) for run_id, v in last.items()]))
        return int(cursor.rowcount)  # summed over the rows (sqlite3, as DB-API allows)


def _uuid_text(v: Any) -> str:
    """A UUID as text for PostgreSQL's uuid input: a run id in its canonical form as it is.

    The ids the scheduler makes are canonical text already (``recorder.new_run_ids``);
    parsing each into a ``UUID`` and back cost a microsecond a run, twice for a finish.
    """
    if type(v) is str and len(v) == 36:
        return v.lower()
    return str(v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)))


def _last_values(rows: Iterable[tuple[Any, Sequence[Any]]]) -> dict[Any, Sequence[Any]]:
    """Finishes by run id (converted as the column takes it); a run given twice keeps its last."""
    if connection.vendor == "postgresql":  # the document carries the ids as text
        return {_uuid_text(run_id): values for run_id, values in rows}
    convert_key = _converter(TaskRun._meta.get_field("run_id")) or (lambda v: v)
    return {convert_key(run_id): values for run_id, values in rows}


def _running_document(last: dict[Any, Sequence[Any]]) -> str:
    """The JSON document of ``_finish_running_parts``: each finish, its id, and 'running'."""
    fields = _columns(FINISH_FIELDS)
    key = TaskRun._meta.get_field("run_id")
    status = TaskRun._meta.get_field("status")
    running = RunStatus.RUNNING.value
    return _document([*fields, key, status], ([*v, run_id, running] for run_id, v in last.items()))


def writes_tick_at_once() -> bool:
    """Whether :func:`write_tick` can write a tick here: on PostgreSQL."""
    return connection.vendor == "postgresql"


@functools.cache
def renew_lease_statement() -> str:
    """``UPDATE lease SET expires_at = %s WHERE name = %s AND token = %s`` (a Fence's values).

    Composed once: through the ORM, renewing cost as much as writing a tick's hundred
    runs on SQLite. Leadership.renew runs it; on PostgreSQL it opens the tick statement.
    """
    qn = connection.ops.quote_name
    meta = SchedulerLease._meta
    column = {f.name: qn(f.column) for f in meta.concrete_fields if f.column}
    return (
        f"UPDATE {qn(meta.db_table)} SET {column['expires_at']} = %s "
        f"WHERE {column['name']} = %s AND {column['token']} = %s"
    )


@functools.cache
def _tick_statement() -> str:
    """PostgreSQL: renew the lease, finish runs, insert runs, in one statement (write_tick)."""
    finishes, update = _finish_running_parts()
    return (
        f"WITH lease AS ({renew_lease_statement()} RETURNING 1), "
        f"{finishes}, "
        f"finished AS ({update} AND EXISTS (SELECT FROM lease) RETURNING 1), "
        f"started AS ({_insert_from_document('s')} WHERE EXISTS (SELECT FROM lease) "
        "RETURNING 1) "
        "SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM finished)"
    )


def write_tick(
    finishes: Iterable[tuple[Any, Sequence[Any]]],
    starts: Iterable[Sequence[Any]],
    fence: Fence,
) -> int | None:
    """Renew the lease, finish runs still running and insert runs: one statement (PostgreSQL).

    ``fence`` is the lease's name, the token this process holds and the new expiry. The
    finishes and the starts are written only if the lease is still this process's; the
    statement commits on its own (autocommit), so a tick's write is one round trip instead
    of five (BEGIN, the finishes, the lease, the starts, COMMIT). Inside a transaction it
    is one savepoint of it. Return how many runs were finished, or None if the lease was
    lost and nothing was written.
    """
    name, token, expires_at = fence
    params = (
        expires_at,
        name,
        token,
        _running_document(_last_values(finishes)),
        _document(_columns(START_FIELDS), starts),
    )
    autocommit = connection.get_autocommit() and not connection.in_atomic_block
    savepoint = contextlib.nullcontext() if autocommit else transaction.atomic()
    with savepoint, connection.cursor() as cursor:
        cursor.execute(_tick_statement(), params)
        held, finished = cursor.fetchone()
    return int(finished) if held else None
