"""A ``main`` run's timeout stops it in the scheduler's loop (executors/mainstop.py).

The loop that enforces other runs' timeouts is the one a ``main`` function holds: before,
such a run went on past its timeout for as long as it liked. These tests call the wrapped
function in pytest's main thread, where ``SIGALRM``'s handler runs inside the function;
the function waits on an event far longer than the timeout, and only the timer ends it.
"""

import logging
import os
import signal
import socket
import threading
import time
from datetime import timedelta

import pytest

from django_rocket.executors.mainstop import MainRunStop
from django_rocket.executors.outcome import call_task
from django_rocket.executors.statementwatch import StatementWatch
from django_rocket.models import RunStatus
from tests.conftest import wait_until

FOREVER = 30.0  # what the functions wait for, far beyond every timeout here


@pytest.fixture(autouse=True)
def _alarm_left_as_found():
    """No test leaves a timer or a handler of SIGALRM behind (nor finds one)."""
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    before = signal.getsignal(signal.SIGALRM)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, before)


def waits(cleaned: list[str], *, returns_at_once: bool = False):
    def func() -> str:
        try:
            if returns_at_once:
                return "returned"
            threading.Event().wait(FOREVER)
            return "waited it out"
        finally:
            cleaned.append("finally")

    return func


def test_a_main_run_past_its_timeout_is_terminated_with_where_it_was():
    stop, cleaned = MainRunStop(), []
    wrapped = stop.wrap("m", waits(cleaned), timedelta(milliseconds=50))
    ending = call_task(wrapped, {}, 10_000)
    assert ending["status"] == RunStatus.TERMINATE
    assert ending["message"] == "Timed out after 0:00:00.050000."
    assert "in func" in ending["exc_text"]  # the traceback says where it was
    assert cleaned == ["finally"]
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL  # given back
    assert stop.calling is None and not stop.armed


def test_a_main_run_within_its_timeout_is_a_success_and_leaves_no_timer():
    stop, cleaned = MainRunStop(), []
    wrapped = stop.wrap("m", waits(cleaned, returns_at_once=True), timedelta(hours=1))
    ending = call_task(wrapped, {}, 10_000)
    assert (ending["status"], ending["result"]) == (RunStatus.SUCCESS, "returned")
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # an hour's timer would be left
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL


def test_without_a_timeout_no_timer_is_set():
    stop = MainRunStop()
    seen = []
    wrapped = stop.wrap("m", lambda: seen.append(signal.getitimer(signal.ITIMER_REAL)[0]))
    assert call_task(wrapped, {}, 10_000)["status"] == RunStatus.SUCCESS
    assert seen == [0.0]


def test_a_process_that_uses_sigalrm_keeps_it_and_is_told(caplog):
    """Task code (or a library) with its own SIGALRM handler: the timeout gives way."""
    rang = []
    mine = signal.signal(signal.SIGALRM, lambda *_: rang.append("theirs"))
    stop = MainRunStop()
    seen = []

    def func() -> str:
        seen.append(signal.getsignal(signal.SIGALRM))
        return "done"

    with caplog.at_level(logging.WARNING, logger="django_rocket.scheduler"):
        ending = call_task(stop.wrap("m", func, timedelta(milliseconds=1)), {}, 10_000)
    assert ending["status"] == RunStatus.SUCCESS
    assert seen and seen[0] is not stop._alarm  # theirs stayed in place during the run
    assert signal.getsignal(signal.SIGALRM) is not stop._alarm
    assert "uses SIGALRM already" in caplog.text and "not enforced" in caplog.text
    assert "'m'" in caplog.text
    signal.signal(signal.SIGALRM, mine)


def test_a_running_timer_is_not_taken_over(caplog):
    signal.signal(signal.SIGALRM, signal.SIG_IGN)  # a timer that must not kill pytest
    signal.setitimer(signal.ITIMER_REAL, 100)
    stop = MainRunStop()
    with caplog.at_level(logging.WARNING, logger="django_rocket.scheduler"):
        ending = call_task(stop.wrap("m", lambda: "done", timedelta(seconds=1)), {}, 10_000)
    assert ending["status"] == RunStatus.SUCCESS
    assert 99 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100  # theirs, untouched
    assert "a timer is running" in caplog.text


def stopped_inside(stop: MainRunStop, grace: float, cleaned: list[str]):
    """A function during which the scheduler is told to stop (its handler runs in it)."""

    def func() -> str:
        stop.signalled("SIGTERM", again=False, grace=grace, grace_text=f"{grace:g} seconds")
        return waits(cleaned)()

    return func


def test_a_timeout_sooner_than_the_grace_ends_the_run_as_a_timeout():
    stop, cleaned = MainRunStop(), []
    wrapped = stop.wrap("m", stopped_inside(stop, 60.0, cleaned), timedelta(milliseconds=50))
    ending = call_task(wrapped, {}, 10_000)
    assert (ending["status"], ending["message"]) == (
        RunStatus.TERMINATE,
        "Timed out after 0:00:00.050000.",
    )
    assert cleaned == ["finally"]
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_a_grace_sooner_than_the_timeout_ends_the_run_as_a_stop():
    stop, cleaned = MainRunStop(), []
    wrapped = stop.wrap("m", stopped_inside(stop, 0.05, cleaned), timedelta(hours=1))
    ending = call_task(wrapped, {}, 10_000)
    assert ending["status"] == RunStatus.TERMINATE
    assert ending["message"] == (
        "Stopped by SIGTERM: the main run did not return within ROCKET_SHUTDOWN_GRACE "
        "(0.05 seconds)."
    )
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # the hour's timer too
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
    assert not stop.stopping  # the next main run starts with no stop in progress


def test_a_function_that_swallows_the_stop_gets_it_again(monkeypatch):
    """``except BaseException`` around a wait: before, the first stop was its last."""
    monkeypatch.setattr("django_rocket.executors.mainstop.STOP_AGAIN_AFTER", 0.05)
    stop, swallowed = MainRunStop(), []

    def func() -> str:
        for _ in range(3):
            try:
                threading.Event().wait(FOREVER)
            except BaseException as exc:  # the point of the test
                swallowed.append(type(exc).__name__)
        return "outlived every stop"

    ending = call_task(stop.wrap("m", func, timedelta(milliseconds=50)), {}, 10_000)
    assert swallowed == ["StopSignal", "StopSignal", "StopSignal"]  # then it returned
    assert ending["status"] == RunStatus.SUCCESS  # what it did, once it returned
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_stop_swallowed_in_a_loop_ends_the_run_at_the_next_one(monkeypatch):
    monkeypatch.setattr("django_rocket.executors.mainstop.STOP_AGAIN_AFTER", 0.05)
    stop, swallowed = MainRunStop(), []

    def func() -> str:
        try:
            threading.Event().wait(FOREVER)
        except BaseException:  # swallowed once
            swallowed.append("first")
        threading.Event().wait(FOREVER)  # the repeat ends it here
        return "never"

    ending = call_task(stop.wrap("m", func, timedelta(milliseconds=50)), {}, 10_000)
    assert swallowed == ["first"]
    assert (ending["status"], ending["message"]) == (
        RunStatus.TERMINATE,
        "Timed out after 0:00:00.050000.",
    )


@pytest.fixture
def quiet_sigterm():
    """A SIGTERM handler that does nothing: as runscheduler's does while a statement holds it."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    yield
    signal.signal(signal.SIGTERM, previous)


def killed_by_the_watchdog(stop: MainRunStop, killed: threading.Event, signals: int):
    """A function that gets SIGTERM ``signals`` times, then waits for the watchdog's kill."""

    def func() -> str:
        for sent in range(1, signals + 1):
            os.kill(os.getpid(), signal.SIGTERM)
            wait_until(lambda: stop.heard == sent, limit=10, what="the watchdog")  # noqa: B023
        return "killed" if killed.wait(FOREVER) else "waited it out"

    return func


@pytest.mark.parametrize(("signals", "grace"), [(1, "0.05 seconds"), (2, "1 hour")])
def test_the_watchdog_hears_a_stop_the_handler_cannot_run_for(
    settings, caplog, quiet_sigterm, signals, grace
):
    """On MySQL the handler waits for the statement; the watchdog hears the signal itself.

    It ends the statement once the grace has passed since the signal, or at a second.
    """
    settings.ROCKET_SHUTDOWN_GRACE = grace
    killed = threading.Event()
    stop = MainRunStop(killer=lambda: killed.set)
    wrapped = stop.wrap("m", killed_by_the_watchdog(stop, killed, signals))
    with caplog.at_level(logging.WARNING, "django_rocket.scheduler"):
        ending = call_task(wrapped, {}, 10_000)
    assert (ending["status"], ending.get("result")) == (RunStatus.SUCCESS, "killed")
    assert f"ROCKET_SHUTDOWN_GRACE ({grace}) has passed, or at a second signal" in caplog.text
    assert signal.set_wakeup_fd(-1) == -1  # given back: no one's
    assert (stop.heard, stop.heard_at, stop.watch) == (0, None, None)


def test_a_wakeup_fd_someone_set_stays_theirs(quiet_sigterm):
    theirs, other_end = socket.socketpair()
    theirs.setblocking(False)
    killed = threading.Event()
    stop = MainRunStop(killer=lambda: killed.set)
    taken: list[bool] = []
    assert signal.set_wakeup_fd(theirs.fileno()) == -1
    try:
        wrapped = stop.wrap("m", lambda: taken.append(stop.watch.wakeup_taken))
        ending = call_task(wrapped, {}, 10_000)
        assert signal.set_wakeup_fd(-1) == theirs.fileno()
    finally:
        signal.set_wakeup_fd(-1)
        theirs.close()
        other_end.close()
    assert ending["status"] == RunStatus.SUCCESS
    assert taken == [False]


def test_a_function_that_takes_sigalrm_is_not_stopped_and_is_told(caplog):
    """A signal-based timeout inside the function replaces the scheduler's timer.

    Its run then went on past its timeout without a word; now a warning says why.
    """
    stop = MainRunStop()

    def takes_the_timer() -> str:
        woke = threading.Event()
        theirs = signal.signal(signal.SIGALRM, lambda signum, frame: woke.set())
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.6)  # replaces the scheduler's
            woke.wait(FOREVER)
        finally:
            signal.signal(signal.SIGALRM, theirs)  # as such a library puts it back
        return "its own timer"

    with caplog.at_level(logging.WARNING, "django_rocket.scheduler"):
        ending = call_task(stop.wrap("m", takes_the_timer, timedelta(milliseconds=50)), {}, 10_000)
    assert (ending["status"], ending.get("result")) == (RunStatus.SUCCESS, "its own timer")
    assert "Task 'm' ran past its timeout (0:00:00.050000)" in caplog.text
    assert "its function set SIGALRM's handler or timer itself" in caplog.text
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL  # given back all the same


def test_a_run_within_its_timeout_or_stopped_at_it_is_not_warned_about(caplog):
    with caplog.at_level(logging.WARNING, "django_rocket.scheduler"):
        within = call_task(
            MainRunStop().wrap("m", waits([], returns_at_once=True), timedelta(hours=1)), {}, 1000
        )
        stopped = call_task(
            MainRunStop().wrap("m", waits([]), timedelta(milliseconds=50)), {}, 1000
        )
    assert (within["status"], stopped["status"]) == (RunStatus.SUCCESS, RunStatus.TERMINATE)
    assert "ran past its timeout" not in caplog.text


def test_a_watchdog_whose_hearing_fails_goes_on_watching(caplog, quiet_sigterm):
    """Its socket is the interpreter's wakeup fd until the call ends: it must not die."""
    killed = threading.Event()

    def hear(watch: StatementWatch, number: int) -> None:
        raise RuntimeError("a hearing that fails")

    watch = StatementWatch.start(lambda: killed.set, hear)
    assert watch is not None and watch.wakeup_taken
    try:
        with caplog.at_level(logging.WARNING, "django_rocket.scheduler"):
            os.kill(os.getpid(), signal.SIGTERM)
            wait_until(lambda: "Could not act on signal 15" in caplog.text, what="the warning")
        watch.kill_at = time.monotonic()
        assert killed.wait(10)  # still watching
    finally:
        watch.end()
    assert signal.set_wakeup_fd(-1) == -1
