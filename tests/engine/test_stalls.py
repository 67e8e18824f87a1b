"""StallWatch: a tick that lasts longer than the lease is reported once, with where it waits.

The watch's clock is a fake; the stuck thread is real, blocked in a function whose name
the report must show. tests/processes/test_stalled_loop.py stalls a real scheduler.
"""

import logging
import threading

import pytest

from django_rocket.engine.stalls import StallWatch
from tests.conftest import wait_until


class Monotonic:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def waits_in_a_function_with_a_name(entered: threading.Event, release: threading.Event) -> None:
    entered.set()
    release.wait(30)


@pytest.fixture
def stuck_thread():
    """A thread inside a step of the watch, blocked until released."""
    clock = Monotonic()
    watch = StallWatch(30.0, monotonic=clock)
    entered, release, done = threading.Event(), threading.Event(), threading.Event()

    def step() -> None:
        watch.enter("tick")
        try:
            waits_in_a_function_with_a_name(entered, release)
        finally:
            watch.leave()
            done.set()

    thread = threading.Thread(target=step)
    thread.start()
    assert entered.wait(10)
    yield watch, clock, release, done
    release.set()
    thread.join(10)


def test_a_step_shorter_than_the_limit_is_not_reported(stuck_thread, caplog):
    watch, clock, _, _ = stuck_thread
    clock.now += 29.9
    with caplog.at_level(logging.INFO, "django_rocket.scheduler"):
        assert watch.check() is False
    assert watch.reported == 0
    assert caplog.records == []


def test_a_stuck_step_is_reported_once_with_its_stack_and_its_end(stuck_thread, caplog):
    watch, clock, release, done = stuck_thread
    clock.now += 31
    with caplog.at_level(logging.INFO, "django_rocket.scheduler"):
        assert watch.check() is True
        clock.now += 60
        assert watch.check() is False  # once per stuck step
        release.set()
        assert done.wait(10)
    assert watch.reported == 1
    stuck, went_on = caplog.records
    assert stuck.levelno == logging.ERROR
    text = stuck.getMessage()
    assert text.startswith(
        "The scheduler's tick has lasted 31 s, longer than ROCKET_LEASE_TIMEOUT (30 s): it is "
        "stuck."
    ), text
    assert "in waits_in_a_function_with_a_name" in text
    assert "release.wait(30)" in text
    assert "tcp_user_timeout and keepalives_interval on PostgreSQL" in text
    assert "read_timeout and connect_timeout on MySQL and MariaDB" in text
    assert "'Networks that drop packets' in the deployment guide" in text
    assert went_on.levelno == logging.INFO
    assert went_on.getMessage() == "The scheduler's tick went on after 91 s."


def test_each_stuck_step_is_reported(caplog):
    clock = Monotonic()
    watch = StallWatch(2.0, monotonic=clock)
    with caplog.at_level(logging.INFO, "django_rocket.scheduler"):
        for _ in range(2):
            watch.enter("start-up")
            clock.now += 3
            assert watch.check() is True
            watch.leave()
        clock.now += 100
        assert watch.check() is False  # between steps: sleeping is not stuck
    assert watch.reported == 2
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.INFO] * 2


def test_the_thread_reports_a_stuck_step_by_itself():
    watch = StallWatch(0.0, every=0.01)  # real monotonic: any step is over the limit
    watch.enter("tick")
    watch.start()
    try:
        wait_until(lambda: watch.reported, 10, "the watch's thread to report the step")
    finally:
        watch.leave()
        watch.stop()
    assert watch.reported == 1
