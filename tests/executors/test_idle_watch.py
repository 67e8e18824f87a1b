"""IdleWatch: ask the server whether an idle connection still answers, only when it may not.

tests/processes/test_server_idle_limit.py runs real processes against a server that
closes idle sessions; here the idle time comes from a fake monotonic clock, and the
session is closed by another connection, as the server's timeout would close it.
"""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_rocket.executors.local import IdleWatch, revive_idle_connection

LIMIT = 20  # seconds: the session's idle limit set by the test


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def set_idle_limit(seconds: int) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SET idle_session_timeout = '{seconds}s'")
        else:
            cursor.execute(f"SET SESSION wait_timeout = {seconds}")


def close_from_elsewhere() -> None:
    """End this connection's session from another one, as the server's timeout does."""
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_backend_pid()")
            else:
                cursor.execute("SELECT CONNECTION_ID()")
            session = cursor.fetchone()[0]
        with other.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_terminate_backend(%s)", [session])
            else:
                cursor.execute(f"KILL {int(session)}")
        if connection.vendor == "postgresql":
            other.commit()
    finally:
        other.close()


@pytest.fixture
def server(transactional_db):
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("an idle limit is a database server's (set DATABASE_URL)")
    connection.ensure_connection()
    set_idle_limit(LIMIT)
    yield
    connection.close()  # the session's limit goes with it


def test_a_connection_idle_for_less_than_half_the_limit_is_not_asked(server):
    clock = Monotonic()
    with IdleWatch(monotonic=clock) as watch:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert not watch.wrapping
        watch.revive()  # reads the limit of this connection, and from then on notes its use
        assert watch.wrapping
        assert watch.last_used == clock.now
        raw = connection.connection
        clock.now += LIMIT / 2 - 0.5
        with CaptureQueriesContext(connection) as queries:
            watch.revive()
        assert len(queries) == 0
        assert watch.last_used == clock.now - (LIMIT / 2 - 0.5)  # nothing was asked
        clock.now += 1  # past half the limit: the server is asked, and answers
        watch.revive()
        assert watch.last_used == clock.now
        assert connection.connection is raw
        assert watch.revived == 0


def test_a_connection_the_server_closed_is_closed_and_the_next_statement_reconnects(server):
    clock = Monotonic()
    with IdleWatch(monotonic=clock) as watch:
        revive_idle_connection()  # through the execute wrappers, as the scheduler calls it
        close_from_elsewhere()
        clock.now += LIMIT
        revive_idle_connection()
        assert watch.revived == 1
        assert connection.connection is None
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone()[0] == 1


def test_a_closed_session_met_while_reading_the_limit_is_closed_too(server):
    clock = Monotonic()
    with IdleWatch(monotonic=clock) as watch:
        close_from_elsewhere()  # before the limit of this connection was ever read
        watch.revive()
        assert watch.revived == 1
        assert connection.connection is None


def test_inside_a_transaction_nothing_is_asked_or_closed(server):
    clock = Monotonic()
    with IdleWatch(monotonic=clock) as watch, transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        raw = connection.connection
        clock.now += 10 * LIMIT
        watch.revive()
        assert connection.connection is raw
        assert watch.last_used == clock.now - 10 * LIMIT


@pytest.mark.django_db(transaction=True)
def test_sqlite_has_no_idle_limit_and_is_never_asked():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite has no server to close a session")
    clock = Monotonic()
    with IdleWatch(monotonic=clock) as watch:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        raw = connection.connection
        clock.now += 10**6
        with CaptureQueriesContext(connection) as queries:
            watch.revive()
        assert len(queries) == 0
        assert connection.connection is raw
        assert watch.revived == 0
        assert not watch.wrapping


def test_where_the_server_has_no_limit_no_statement_is_wrapped(server):
    if connection.vendor != "postgresql":
        pytest.skip("only PostgreSQL can have no idle limit (wait_timeout is at least 1 s)")
    set_idle_limit(0)
    clock = Monotonic()
    with IdleWatch(monotonic=clock) as watch:
        watch.revive()
        assert not watch.wrapping
        assert watch not in connection.execute_wrappers
        raw = connection.connection
        clock.now += 10**6
        watch.revive()
        assert connection.connection is raw
        assert watch.revived == 0
    set_idle_limit(LIMIT)


def test_leaving_the_watch_unwraps_the_connection(server):
    with IdleWatch() as watch:
        revive_idle_connection()
        assert watch in connection.execute_wrappers
    assert watch not in connection.execute_wrappers
    revive_idle_connection()  # no watch any more: nothing happens


def test_without_an_idle_watch_revive_idle_connection_does_nothing(transactional_db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    raw = connection.connection
    with CaptureQueriesContext(connection) as queries:
        revive_idle_connection()
    assert len(queries) == 0
    assert connection.connection is raw


def test_a_new_connection_is_asked_nothing_more_than_its_limit(server, monkeypatch):
    clock = Monotonic()
    asked: list[bool] = []
    usable = connection.is_usable
    monkeypatch.setattr(connection, "is_usable", lambda: asked.append(usable()) or asked[-1])
    with IdleWatch(monotonic=clock) as watch:
        watch.revive()  # reads the limit of this connection
        connection.close()
        set_idle_limit(LIMIT)  # a new connection, with the same limit
        clock.now += 10 * LIMIT  # long after the watch last saw the old one used
        watch.revive()  # reading the new one's limit showed that it answers
        assert asked == []
        assert watch.revived == 0
        clock.now += LIMIT
        watch.revive()
        assert asked == [True]
