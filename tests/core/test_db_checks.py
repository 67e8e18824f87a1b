"""The database checks: clocks that agree; MySQL and MariaDB: utf8mb4, a fitting isolation level."""

from __future__ import annotations

import re
import time

import pytest
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, connection, connections

from django_rocket import db_checks
from django_rocket.engine import clocks

mysql_only = pytest.mark.skipif(connection.vendor != "mysql", reason="MySQL and MariaDB only")


def wrapper(**options: str):
    """A second connection to the test database with other OPTIONS."""
    default = connections[DEFAULT_DB_ALIAS]
    settings = {**default.settings_dict}
    settings["OPTIONS"] = {**settings.get("OPTIONS", {}), **options}
    return type(default)(settings, alias="other")


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.id for m in messages if m.id]


@pytest.mark.django_db
def test_the_test_database_passes():
    assert db_checks.check_mysql(databases=["default"]) == []


def test_runs_only_for_the_databases_it_is_given():
    assert db_checks.check_mysql(databases=None) == []


@mysql_only
@pytest.mark.django_db
def test_a_3_byte_connection_charset_warns():
    other = wrapper(charset="utf8mb3")
    try:
        messages = db_checks._charset(other, "other")
    finally:
        other.close()
    assert ids(messages) == ["django_rocket.W060"]
    assert "'utf8mb3'" in messages[0].msg


@mysql_only
@pytest.mark.django_db(transaction=True)
def test_a_3_byte_column_warns():
    table = connection.ops.quote_name("django_rocket_taskrun")
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE {table} MODIFY exc_text longtext CHARACTER SET utf8mb3 NOT NULL"
        )
    try:
        messages = db_checks._charset(connection, "default")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                f"ALTER TABLE {table} MODIFY exc_text longtext CHARACTER SET utf8mb4 NOT NULL"
            )
    assert ids(messages) == ["django_rocket.W061"]
    assert "exc_text (utf8mb3)" in messages[0].msg


@mysql_only
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("read committed", []),
        ("repeatable read", []),
        ("serializable", ["django_rocket.W062"]),
        ("read uncommitted", ["django_rocket.W062"]),
    ],
)
def test_isolation_levels_that_do_not_fit_warn(level, expected):
    other = wrapper(isolation_level=level)
    try:
        assert ids(db_checks._isolation(other, "other")) == expected
    finally:
        other.close()


server_only = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite reads this machine's clock"
)


@pytest.mark.django_db
def test_clocks_that_agree_give_no_message():
    assert db_checks.check_clocks(databases=["default"]) == []
    assert db_checks.check_clocks(databases=None) == []


@server_only
@pytest.mark.django_db
@pytest.mark.parametrize(("by", "side"), [(90.0, "ahead of"), (-90.0, "behind")])
def test_a_machine_clock_off_from_the_servers_warns(monkeypatch, by, side):
    class Skewed:
        @staticmethod
        def time() -> float:
            return time.time() + by

    monkeypatch.setattr(clocks, "time", Skewed)
    (message,) = db_checks.check_clocks(databases=["default"])
    assert message.id == "django_rocket.W064"
    assert re.match(rf"This machine's clock is (89|90)\.\d s {side} the clock of the", message.msg)
    assert "NTP" in message.hint


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only")
@pytest.mark.django_db
def test_sqlite_has_no_server_clock_to_compare(monkeypatch):
    monkeypatch.setattr(clocks, "time", type("Skewed", (), {"time": lambda: 0.0}))
    assert db_checks.check_clocks(databases=["default"]) == []


postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the scheduler listens only on PostgreSQL"
)


def postgresql_at(port: int, alias: str):
    """A connection to the ``postgres`` database of a PostgreSQL server on this machine."""
    from django.db.backends.postgresql.base import DatabaseWrapper
    from django.db.utils import ConnectionHandler

    entry = {"ENGINE": "django.db.backends.postgresql", "NAME": "postgres", "USER": "postgres"}
    entry.update(HOST="127.0.0.1", PORT=str(port))
    # Django fills in what an entry leaves out (OPTIONS, TIME_ZONE...) as for DATABASES.
    configured = ConnectionHandler().configure_settings({"default": entry})["default"]
    return DatabaseWrapper(configured, alias)


@postgresql_only
@pytest.mark.django_db
def test_a_hot_standby_as_the_listen_database_warns(standby):
    """A real standby: pg_is_in_recovery() is true there, and not on its primary."""
    replica = postgresql_at(standby.port, "replica")
    primary = postgresql_at(standby.primary_port, "direct")
    try:
        (warning,) = db_checks.listen_database_messages(replica, "replica")
        assert db_checks.listen_database_messages(primary, "direct") == []
    finally:
        replica.close()
        primary.close()
    assert warning.id == "django_rocket.W065"
    assert warning.msg.startswith(
        f"ROCKET_LISTEN_DATABASE 'replica' (127.0.0.1:{standby.port}) is a hot standby"
    )
    assert "refuses LISTEN" in warning.msg and "ROCKET_POLL_INTERVAL" in warning.msg
    assert "set it to None" in warning.hint


@pytest.mark.django_db
def test_the_listen_database_check_reads_the_setting_and_runs_only_when_asked(settings):
    # The test database is no standby; on SQLite and MySQL nothing listens at all.
    assert db_checks.check_listen_database(databases=["default"]) == []
    assert db_checks.check_listen_database(databases=None) == []
    settings.ROCKET_LISTEN_DATABASE = None
    assert db_checks.check_listen_database(databases=["default"]) == []
    settings.ROCKET_LISTEN_DATABASE = "no-such-alias"  # E035's to report
    assert db_checks.check_listen_database(databases=["default"]) == []


@postgresql_only
@pytest.mark.django_db
def test_check_database_reports_a_standby_as_the_listen_database(standby, monkeypatch):
    """What ``check --database default`` runs, with ``default`` on the standby."""
    replica = postgresql_at(standby.port, "default")
    monkeypatch.setattr(db_checks, "connections", {"default": replica})
    try:
        messages = checks.run_checks(tags=[checks.Tags.database], databases=["default"])
    finally:
        replica.close()
    assert "django_rocket.W065" in ids(messages)
