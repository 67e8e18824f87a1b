"""The run-request listener checks that notifications reach it (PostgreSQL, real servers).

Through a real PgBouncer in transaction pooling mode, LISTEN succeeds and nothing ever
arrives: the listener must say so, once, and name the setting that fixes it. On a direct
connection its probe arrives and it says nothing. Waits are bounded polls of the
listener's state; PROBE_SECONDS is shortened so that the lost probe is declared quickly.
"""

import logging
import threading

import psycopg
import pytest
from django.db import connection

from django_rocket.engine import listener as listener_module
from django_rocket.engine.listener import CHANNEL, PROBE, Listener
from tests.conftest import wait_until

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's"),
    pytest.mark.django_db,  # the test database's connection settings
]

LOST = "Run requests do not reach this scheduler by LISTEN/NOTIFY"


@pytest.fixture
def started():
    listeners: list[Listener] = []

    def start(params: dict, notify_params: dict | None) -> Listener:
        listener = Listener(threading.Event(), params, notify_params)
        listeners.append(listener)
        listener._thread.start()
        wait_until(listener.listening.is_set, what="the listener to listen")
        return listener

    yield start
    for listener in listeners:
        listener.close()


def through(bouncer) -> dict:
    return {**connection.get_connection_params(), "host": "127.0.0.1", "port": bouncer.port}


def notify(params: dict, payload: str) -> None:
    """Send a notification as another process would (its own autocommit connection)."""
    with psycopg.connect(**{**params, "autocommit": True}) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])


def test_a_listener_whose_probe_arrives_says_nothing_and_hears_requests(started, caplog):
    caplog.set_level(logging.INFO, logger="django_rocket.scheduler")
    direct = connection.get_connection_params()
    listener = started(direct, direct)
    wait_until(lambda: listener.delivers is True, what="the probe to arrive")
    assert not listener.heard()  # its own probe is not a run request

    notify(direct, f"{PROBE}another-scheduler")  # another scheduler starting up
    notify(direct, "")  # a run request
    wait_until(listener.heard, what="the run request")
    assert not listener.heard()  # the foreign probe woke nothing more
    assert LOST not in caplog.text


def test_behind_pgbouncer_in_transaction_mode_the_listener_warns_once(
    started, pgbouncer, caplog, monkeypatch
):
    monkeypatch.setattr(listener_module, "PROBE_SECONDS", 1.0)
    caplog.set_level(logging.INFO, logger="django_rocket.scheduler")
    pooled = through(pgbouncer)
    # Requests are sent through the pooler, as the web app behind it sends them.
    listener = started(pooled, pooled)
    wait_until(lambda: listener.delivers is False, what="the probe to be declared lost")
    notify(pooled, "")
    wait_until(lambda: LOST in caplog.text, what="the warning")
    warnings = [r for r in caplog.records if LOST in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    message = warnings[0].getMessage()
    assert "ROCKET_LISTEN_DATABASE" in message
    assert "ROCKET_POLL_INTERVAL" in message
    assert not listener.heard()  # what the warning is about: the request was lost


def test_listening_directly_hears_requests_sent_through_pgbouncer(started, pgbouncer, caplog):
    """ROCKET_LISTEN_DATABASE's fix: listen directly, while requests go through the pooler."""
    caplog.set_level(logging.INFO, logger="django_rocket.scheduler")
    pooled = through(pgbouncer)
    listener = started(connection.get_connection_params(), pooled)
    wait_until(lambda: listener.delivers is True, what="the probe to arrive")
    notify(pooled, "")
    wait_until(listener.heard, what="the run request sent through the pooler")
    assert LOST not in caplog.text


def test_a_hot_standby_refusing_listen_is_named_once_as_an_error(standby, caplog):
    """A standby refuses LISTEN ("during recovery"), and never sees the primary's notifies.

    Before, that read as "Lost the connection", with a traceback, and was retried for ever.
    """
    caplog.set_level(logging.INFO, logger="django_rocket.scheduler")
    primary = standby.params(standby.primary_port)
    listener = Listener(threading.Event(), standby.params(standby.port), primary, alias="replica")
    listener._thread.start()
    try:
        wait_until(lambda: "refuses LISTEN" in caplog.text, what="the error")
    finally:
        listener.close()
    (record,) = [r for r in caplog.records if "refuses LISTEN" in r.getMessage()]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert message.startswith("ROCKET_LISTEN_DATABASE 'replica' refuses LISTEN (")
    assert "during recovery" in message and "set it to None" in message
    assert "Lost the connection" not in caplog.text
    assert not listener.listening.is_set()
