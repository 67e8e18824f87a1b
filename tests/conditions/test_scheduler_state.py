"""The scheduler conditions and the constants, with Rocketry 2.5.1's answers.

Rocketry was asked with its scheduler's ``startup_time`` and ``n_cycles`` set
and its clock fixed at 12:00 (``cond.observe(session=session)``).
"""

from datetime import timedelta

import pytest

from django_rocket.conditions import (
    Context,
    MemoryHistory,
    always,
    never,
    parse,
    scheduler_cycles,
    scheduler_running,
    time_of_second,
)

from .helpers import at

NOW = at("2026-03-02 12:00")


def _ctx(started_minutes_ago=None, cycles=None, now=NOW):
    started = None if started_minutes_ago is None else NOW - timedelta(minutes=started_minutes_ago)
    return Context(
        task="t",
        now=now,
        history=MemoryHistory(),
        tz=NOW.tzinfo,
        scheduler_started_at=started,
        scheduler_cycles=cycles,
    )


# checked against Rocketry 2.5.1: (condition, started minutes ago, value)
RUNNING = [
    ("scheduler_running(more_than='1 hour')", 5, False),
    ("scheduler_running(more_than='1 hour')", 10, False),
    ("scheduler_running(more_than='1 hour')", 30, False),
    ("scheduler_running(more_than='1 hour')", 60, True),
    ("scheduler_running(more_than='1 hour')", 90, True),
    ("scheduler_running(less_than='10 minutes')", 5, True),
    ("scheduler_running(less_than='10 minutes')", 10, True),
    ("scheduler_running(less_than='10 minutes')", 30, False),
    ("scheduler_running(less_than='10 minutes')", 60, False),
    ("scheduler_running(less_than='10 minutes')", 90, False),
    ("scheduler_running(more_than='10 minutes', less_than='1 hour')", 5, False),
    ("scheduler_running(more_than='10 minutes', less_than='1 hour')", 10, True),
    ("scheduler_running(more_than='10 minutes', less_than='1 hour')", 30, True),
    ("scheduler_running(more_than='10 minutes', less_than='1 hour')", 60, True),
    ("scheduler_running(more_than='10 minutes', less_than='1 hour')", 90, False),
    ("scheduler started 10 minutes ago", 5, True),
    ("scheduler started 10 minutes ago", 10, True),
    ("scheduler started 10 minutes ago", 30, False),
    ("scheduler started 10 minutes ago", 60, False),
    ("scheduler started 10 minutes ago", 90, False),
    ("scheduler has run over 10 minutes", 5, False),
    ("scheduler has run over 10 minutes", 10, False),
    ("scheduler has run over 10 minutes", 30, True),
    ("scheduler has run over 10 minutes", 60, True),
    ("scheduler has run over 10 minutes", 90, True),
]


@pytest.mark.parametrize(("text", "minutes", "expected"), RUNNING)
def test_scheduler_running_checked_against_rocketry(text, minutes, expected):
    assert parse(text).is_true(_ctx(started_minutes_ago=minutes)) is expected


# checked against Rocketry 2.5.1: (condition, cycles completed, value)
CYCLES = [
    ("scheduler_cycles(more_than=2)", 0, False),
    ("scheduler_cycles(more_than=2)", 1, False),
    ("scheduler_cycles(more_than=2)", 2, False),
    ("scheduler_cycles(more_than=2)", 3, True),
    ("scheduler_cycles(less_than=2)", 0, True),
    ("scheduler_cycles(less_than=2)", 1, True),
    ("scheduler_cycles(less_than=2)", 2, False),
    ("scheduler_cycles(less_than=2)", 3, False),
    ("scheduler has more than 2 cycles", 0, False),
    ("scheduler has more than 2 cycles", 1, False),
    ("scheduler has more than 2 cycles", 2, False),
    ("scheduler has more than 2 cycles", 3, True),
    ("scheduler has less than 2 cycles", 0, True),
    ("scheduler has less than 2 cycles", 1, True),
    ("scheduler has less than 2 cycles", 2, False),
    ("scheduler has less than 2 cycles", 3, False),
    ("scheduler has 2 cycles", 0, False),
    ("scheduler has 2 cycles", 1, False),
    ("scheduler has 2 cycles", 2, True),
    ("scheduler has 2 cycles", 3, False),
]


@pytest.mark.parametrize(("text", "cycles", "expected"), CYCLES)
def test_scheduler_cycles_checked_against_rocketry(text, cycles, expected):
    assert parse(text).is_true(_ctx(cycles=cycles)) is expected


def test_outside_a_scheduler_they_are_false():
    context = _ctx()
    assert not scheduler_running.is_true(context)
    assert not scheduler_running(more_than="1 minute").is_true(context)
    assert not scheduler_cycles(less_than=10).is_true(context)
    assert scheduler_running.evaluate(context) == (False, None)


def test_scheduler_running_next_change():
    started = NOW - timedelta(minutes=5)
    condition = scheduler_running(more_than="10 minutes", less_than="1 hour")
    assert condition.next_change(_ctx(started_minutes_ago=5)) == started + timedelta(minutes=10)
    inside = _ctx(started_minutes_ago=30)
    assert condition.next_change(inside) == NOW - timedelta(minutes=30) + timedelta(
        hours=1, microseconds=1
    )
    assert condition.next_change(_ctx(started_minutes_ago=90)) is None
    assert scheduler_cycles(more_than=2).next_change(_ctx(cycles=0)) is None


def test_scheduler_conditions_render_and_parse_back():
    for condition in (
        scheduler_running,
        scheduler_running(more_than="1 hour"),
        scheduler_running(more_than="10 minutes", less_than="1 hour"),
        scheduler_cycles(exactly=0),
        scheduler_cycles(more_than=1, less_than=9),
    ):
        assert parse(str(condition)) == condition
    assert parse("scheduler started 10 minutes ago") == scheduler_running(less_than="10 minutes")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: scheduler_cycles(more_than=-1), "whole number"),
        (lambda: scheduler_cycles(exactly=1, less_than=3), "exactly"),
        (lambda: scheduler_running(more_than="1 hour", less_than="1 minute"), "shorter"),
        (lambda: scheduler_running(more_than="1 hour")(less_than="2 hours"), "already"),
    ],
)
def test_bad_scheduler_conditions(build, message):
    with pytest.raises((TypeError, ValueError), match=message):
        build()


def test_the_context_wants_an_aware_start():
    with pytest.raises(ValueError, match="aware"):
        Context(
            task="t",
            now=NOW,
            history=MemoryHistory(),
            tz=NOW.tzinfo,
            scheduler_started_at=NOW.replace(tzinfo=None),
        )


def test_always_and_never():
    # Rocketry 2.5.1 names them as time periods; its string parser crashes on a bare
    # "always" (TypeError: 'StaticInterval' object is not callable). Here they are true/false.
    assert always.is_true(_ctx()) and not never.is_true(_ctx())
    assert parse("always") == always
    assert parse("never | always true") == never | always


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-03-02 12:00:00.099999", False),
        ("2026-03-02 12:00:00.100000", True),
        ("2026-03-02 12:00:00.499999", True),
        ("2026-03-02 12:00:00.500000", False),
    ],
)
def test_time_of_second_checked_against_rocketry(now, expected):
    # checked against Rocketry 2.5.1: datetime in TimeOfSecond("100", "500")
    assert time_of_second.between("100", "500").is_true(_ctx(now=at(now))) is expected


@pytest.mark.parametrize("text", ["env 'prod'", "param 'x' exists", "param 'x' is 'y'"])
def test_session_parameters_are_refused_with_a_way_out(text):
    with pytest.raises(ValueError, match="custom condition"):
        parse(text)
