"""The MySQL and MariaDB database checks: utf8mb4 and a fitting isolation level."""

from __future__ import annotations

import pytest
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, connection, connections

from django_rocket import db_checks

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
