"""The scheduler's SQLite connections checkpoint their write-ahead log less often."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from django_rocket.engine.connection import (
    SQLITE_CHECKPOINT,
    SQLITE_DEFAULT_CHECKPOINT,
    sqlite_checkpoints_less,
)
from django_rocket.engine.scheduler import Scheduler

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("wal_autocheckpoint is SQLite's")


def checkpoint_pages(conn=connection) -> int:
    with conn.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        return int(cursor.fetchone()[0])


def set_pages(pages: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA wal_autocheckpoint = {pages}")


def in_a_new_thread() -> int:
    """What a connection opened in another thread (a thread run's, say) reads."""
    seen: list[int] = []

    def read() -> None:
        try:
            seen.append(checkpoint_pages(connections["default"]))
        finally:
            connections.close_all()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    return seen[0]


def test_open_and_new_connections_checkpoint_less_only_inside():
    set_pages(SQLITE_DEFAULT_CHECKPOINT)
    with sqlite_checkpoints_less():
        assert checkpoint_pages() == SQLITE_CHECKPOINT  # the connection already open
        assert in_a_new_thread() == SQLITE_CHECKPOINT  # one opened meanwhile
    assert in_a_new_thread() == SQLITE_DEFAULT_CHECKPOINT  # after: SQLite's own default


def test_a_value_chosen_in_init_command_is_kept():
    set_pages(500)  # as "PRAGMA wal_autocheckpoint=500" in init_command would
    with sqlite_checkpoints_less():
        assert checkpoint_pages() == 500


def test_the_scheduler_runs_with_fewer_checkpoints(settings, clock):
    settings.ROCKET_TASKS = {}
    set_pages(SQLITE_DEFAULT_CHECKPOINT)
    seen: list[int] = []

    class Looking(Scheduler):
        def tick(self) -> float:
            seen.append(checkpoint_pages())
            self.request_stop()
            return super().tick()

    Looking(clock=clock).run()
    assert seen == [SQLITE_CHECKPOINT]
