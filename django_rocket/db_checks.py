"""Database checks: the clocks agree; the listen database is a primary; MySQL and MariaDB:
utf8mb4 and a fitting isolation level.

Tagged ``database``, like Django's own MySQL checks: ``migrate`` runs them, and
``check --database default``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from django_rocket.conf import conf
from django_rocket.engine.clocks import TOLERANCE, describe_offset, server_clock_offset
from django_rocket.models import TaskRun

# Runs a scheduler reads must be committed (no READ UNCOMMITTED), and its plain reads
# must not lock rows the admin writes (SERIALIZABLE makes every read in a transaction
# a locking one on InnoDB).
FITTING_ISOLATION = ("READ-COMMITTED", "REPEATABLE-READ")
TEXT_COLUMNS = ("message", "exc_text")


def check_clocks(
    app_configs: Any = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Check that this machine's clock agrees with each database server's (not SQLite)."""
    messages: list[checks.CheckMessage] = []
    for alias in databases or ():
        try:
            offset = server_clock_offset(connections[alias])
        except DatabaseError:
            continue  # migrate, or the MySQL checks, say more
        if offset is not None and abs(offset) > TOLERANCE:
            messages.append(
                checks.Warning(
                    f"{describe_offset(offset, alias)}. A scheduler's lease expires at a "
                    "time one machine wrote and another compares with its own clock, and "
                    "conditions compare run times that different schedulers stamped.",
                    hint="Keep the clocks of the machines that run schedulers and the "
                    "database server in sync with NTP (chrony, systemd-timesyncd).",
                    id="django_rocket.W064",
                )
            )
    return messages


def check_listen_database(
    app_configs: Any = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Check that ``ROCKET_LISTEN_DATABASE`` is not a hot standby, when databases are checked.

    Whichever database the command checks (``migrate``'s, ``check --database``'s): the
    listen database is often another entry of ``DATABASES`` (a direct connection past a
    pooler), which nobody would name there.
    """
    alias = conf.listen_database
    if not databases or not isinstance(alias, str) or alias not in settings.DATABASES:
        return []  # E035 says what is wrong with the setting
    return listen_database_messages(connections[alias], alias)


def listen_database_messages(
    connection: BaseDatabaseWrapper, alias: str
) -> list[checks.CheckMessage]:
    """W065 if ``connection`` (``ROCKET_LISTEN_DATABASE``) is a PostgreSQL hot standby."""
    if connection.vendor != "postgresql":
        return []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            row = cursor.fetchone()
    except DatabaseError:
        return []  # the scheduler's listener says more, and retries
    if not row or not row[0]:
        return []
    settings_dict = connection.settings_dict
    where = f"{settings_dict.get('HOST') or 'localhost'}:{settings_dict.get('PORT') or 5432}"
    return [
        checks.Warning(
            f"ROCKET_LISTEN_DATABASE {alias!r} ({where}) is a hot standby "
            "(pg_is_in_recovery() is true): a standby refuses LISTEN and never sees the "
            "notifications sent on the primary, so run requests (Run now, runtask) wait "
            "for the scheduler's poll (ROCKET_POLL_INTERVAL).",
            hint="Point ROCKET_LISTEN_DATABASE at a DATABASES entry that connects to the "
            "primary (directly, past a pooler in transaction mode), or set it to None to "
            "rely on the poll alone.",
            id="django_rocket.W065",
        )
    ]


def check_mysql(
    app_configs: Any = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Check each MySQL or MariaDB database the run log may live in."""
    messages: list[checks.CheckMessage] = []
    for alias in databases or ():
        connection = connections[alias]
        if connection.vendor != "mysql":
            continue
        try:
            messages += _charset(connection, alias) + _isolation(connection, alias)
        except DatabaseError as exc:  # the migrate that follows says more
            messages.append(
                checks.Warning(
                    f"Could not check the MySQL database {alias!r}: {exc}",
                    hint="Check that the database is reachable with its settings.",
                    id="django_rocket.W063",
                )
            )
    return messages


def _charset(connection: BaseDatabaseWrapper, alias: str) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    table = TaskRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@character_set_connection, @@character_set_database")
        connection_charset, database_charset = cursor.fetchone()
        cursor.execute(
            "SELECT column_name, character_set_name FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s AND column_name IN (%s, %s)",
            [table, *TEXT_COLUMNS],
        )
        columns = dict(cursor.fetchall())
    if connection_charset != "utf8mb4":
        messages.append(
            checks.Warning(
                f"The connection to the database {alias!r} uses the character set "
                f"{connection_charset!r}, not utf8mb4: a run's message or traceback with "
                "4-byte characters (emoji, some CJK) cannot be recorded.",
                hint=f"Remove 'charset' from DATABASES[{alias!r}]['OPTIONS'] (Django's "
                "default is utf8mb4) or set it to 'utf8mb4'.",
                id="django_rocket.W060",
            )
        )
    stored = {c: cs for c, cs in columns.items() if cs} or {"(new tables)": database_charset}
    narrow = sorted(f"{c} ({cs})" for c, cs in stored.items() if cs != "utf8mb4")
    if narrow:
        messages.append(
            checks.Warning(
                f"The run log in the database {alias!r} stores text in a character set "
                f"other than utf8mb4: {', '.join(narrow)}. 4-byte characters in a run's "
                "message or traceback cannot be recorded.",
                hint=f"ALTER DATABASE ... CHARACTER SET utf8mb4 before migrating, or ALTER "
                f"TABLE {table} CONVERT TO CHARACTER SET utf8mb4 for an existing table.",
                id="django_rocket.W061",
            )
        )
    return messages


def _isolation(connection: BaseDatabaseWrapper, alias: str) -> list[checks.CheckMessage]:
    mariadb = getattr(connection, "mysql_is_mariadb", False)
    version = getattr(connection, "mysql_version", (0,))
    # MySQL 8 and MariaDB 11.1 renamed tx_isolation; MariaDB 10 knows only the old name.
    name = "tx_isolation" if mariadb and version < (11, 1) else "transaction_isolation"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT @@SESSION.{name}")
        (level,) = cursor.fetchone()
    if level in FITTING_ISOLATION:
        return []
    return [
        checks.Warning(
            f"The database {alias!r} runs transactions at {level}: "
            + (
                "a scheduler could read runs that are never committed."
                if level == "READ-UNCOMMITTED"
                else "every read in a transaction locks, so the scheduler and the admin "
                "wait for each other."
            ),
            hint=f"Remove 'isolation_level' from DATABASES[{alias!r}]['OPTIONS'] (Django's "
            "default, 'read committed') or set it to 'read committed' or 'repeatable read'.",
            id="django_rocket.W062",
        )
    ]
