"""Retries that wait: delay, backoff, max_delay, jitter and ``on`` (issue 22).

Reasoned from SEMANTICS.md and the issue; the property tests check the event-driven
scheduler (trusting ``next_change``) against a brute-force minute-by-minute poll.
"""

from dataclasses import replace
from datetime import UTC, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_rocket.conditions import (
    ConditionSyntaxError,
    Context,
    MemoryHistory,
    RunRecord,
    daily,
    every,
    parse,
    retry,
    time_of_day,
)
from django_rocket.conditions.retrying import exception_matches, jitter_offset, retry_wait

from .helpers import at, ctx

MINUTE = timedelta(minutes=1)
CONNECTION = ("builtins.ConnectionRefusedError", "builtins.ConnectionError", "builtins.OSError")


def _failed(*finishes, history=None, exception_types=()):
    """A history of failed runs finishing at ``finishes``: a scheduled run, then retries."""
    history = history or MemoryHistory()
    for index, finish in enumerate(finishes):
        trigger = "scheduled" if index == 0 else "retry"
        history.record_start(RunRecord("t", f"run-{index}", at(finish) - MINUTE, trigger=trigger))
        history.record_finish("t", f"run-{index}", at(finish), "fail", exception_types)
    return history


# the wait ------------------------------------------------------------------


def test_wait_grows_by_backoff_and_stops_at_max_delay():
    delay = timedelta(minutes=5)
    waits = [retry_wait(k, delay, 2.0, timedelta(minutes=30)) for k in range(1, 6)]
    assert waits == [timedelta(minutes=m) for m in (5, 10, 20, 30, 30)]


def test_wait_without_delay_is_zero_and_a_long_chain_does_not_overflow():
    assert retry_wait(3, None, 2.0) == timedelta(0)
    assert retry_wait(100_000, timedelta(seconds=1), 10.0) > timedelta(days=36_500)
    assert retry_wait(100_000, timedelta(seconds=1), 10.0, timedelta(hours=1)) == timedelta(hours=1)


def test_jitter_is_fixed_by_the_run_id_and_bounded():
    delay = timedelta(minutes=10)
    first = retry_wait(1, delay, jitter=0.25, run_id="a")
    assert first == retry_wait(1, delay, jitter=0.25, run_id="a")
    waits = {retry_wait(1, delay, jitter=0.25, run_id=index) for index in range(200)}
    assert len(waits) > 150
    assert min(waits) >= timedelta(minutes=7.5)
    assert max(waits) <= timedelta(minutes=12.5)
    assert min(waits) < timedelta(minutes=8) and max(waits) > timedelta(minutes=12)
    assert all(-1 <= jitter_offset(index) < 1 for index in range(200))


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (["ConnectionError"], True),
        (["OSError"], True),
        (["builtins.ConnectionError"], True),
        (["requests.ConnectionError"], False),
        (["TimeoutError"], False),
        (["ValueError", "OSError"], True),
    ],
)
def test_on_matches_the_class_or_a_base_by_name(wanted, expected):
    assert exception_matches(wanted, CONNECTION) is expected


# the condition ----------------------------------------------------------------


def test_retry_waits_for_its_delay_and_says_when():
    condition = retry(3, delay="10 minutes")
    history = _failed("2026-03-02 10:01")
    before = ctx(at("2026-03-02 10:10:59"), history=history)
    assert not condition.is_true(before)
    assert condition.next_change(before) == at("2026-03-02 10:11")
    assert condition.is_true(ctx(at("2026-03-02 10:11"), history=history))
    assert condition.due(before) == (1, at("2026-03-02 10:11"))


def test_backoff_lengthens_each_wait_of_the_chain():
    condition = retry(3, delay="10 minutes", backoff=2)
    history = _failed("2026-03-02 10:01", "2026-03-02 10:12")
    now = ctx(at("2026-03-02 10:13"), history=history)
    assert condition.due(now) == (2, at("2026-03-02 10:32"))
    history.record_start(RunRecord("t", "r2", at("2026-03-02 10:32"), trigger="retry"))
    history.record_finish("t", "r2", at("2026-03-02 10:33"), "fail")
    assert condition.due(ctx(at("2026-03-02 10:34"), history=history)) == (
        3,
        at("2026-03-02 11:13"),
    )
    history.record_start(RunRecord("t", "r3", at("2026-03-02 11:13"), trigger="retry"))
    history.record_finish("t", "r3", at("2026-03-02 11:14"), "fail")
    late = ctx(at("2026-03-03 09:00"), history=history)
    assert condition.due(late) is None and not condition.is_true(late)
    assert condition.next_change(late) is None


def test_jittered_due_is_the_one_explained():
    condition = retry(3, delay="10 minutes", jitter=True)
    history = _failed("2026-03-02 10:01")
    now = ctx(at("2026-03-02 10:02"), history=history)
    _, due = condition.due(now)
    assert due == at("2026-03-02 10:11") + timedelta(minutes=10) * 0.25 * jitter_offset("run-0")
    assert due != at("2026-03-02 10:11")
    assert condition.next_change(now) == due
    assert not condition.is_true(ctx(due - timedelta(microseconds=1), history=history))
    assert condition.is_true(ctx(due, history=history))


def test_on_retries_only_the_named_exceptions():
    history = _failed("2026-03-02 10:01", exception_types=CONNECTION)
    now = ctx(at("2026-03-02 11:00"), history=history)
    assert retry(3, on=["ConnectionError"]).is_true(now)
    assert not retry(3, on=["ValueError"]).is_true(now)
    assert retry(3, on=["ValueError"]).next_change(now) is None
    unknown = ctx(at("2026-03-02 11:00"), history=_failed("2026-03-02 10:01"))
    assert not retry(3, on=["ConnectionError"]).is_true(unknown)
    assert retry(3).is_true(unknown)


def test_retry_with_no_options_keeps_its_meaning():
    history = _failed("2026-03-02 10:01")
    now = ctx(at("2026-03-02 10:01"), history=history)
    assert retry(3) == retry(3, delay=None, backoff=1.0, max_delay=None, jitter=False, on=None)
    assert retry(3).is_true(now) and retry(3).next_change(now) is None
    assert str(retry(3)) == "retry(3)" and str(retry) == "retry"


def test_a_disabled_retry_is_false_and_does_not_wake_the_scheduler():
    history = _failed("2026-03-02 10:01")
    now = replace(ctx(at("2026-03-02 10:02"), history=history), retry_disabled=True)
    assert retry(3, delay="10 minutes").evaluate(now) == (False, None)


@pytest.mark.parametrize(
    ("text", "python"),
    [
        ("retry 3 times after 5 minutes", retry(3, delay="5 minutes")),
        ("retry once after 10 seconds", retry(1, delay=10)),
        (
            "retry 3 times after 5 minutes with backoff 2 up to 1 hour with jitter",
            retry(3, delay="5 minutes", backoff=2, max_delay="1 hour", jitter=True),
        ),
        (
            "retry 5 times after 1 minute with jitter 0.1 on ConnectionError, TimeoutError",
            retry(5, delay=60, jitter=0.1, on=["ConnectionError", "TimeoutError"]),
        ),
        ("retry on requests.exceptions.Timeout", retry(on=["requests.exceptions.Timeout"])),
        (
            "retry(3, delay='5 minutes', backoff=2, max_delay='1 hour', jitter=True, "
            "on=['ConnectionError'])",
            retry(
                3,
                delay="5 minutes",
                backoff=2,
                max_delay="1 hour",
                jitter=True,
                on=["ConnectionError"],
            ),
        ),
        (
            "(daily | retry 3 times after 10 minutes) & time_of_day.between('10:00', '12:00')",
            (daily | retry(3, delay="10 minutes")) & time_of_day.between("10:00", "12:00"),
        ),
    ],
)
def test_english_and_python_forms_agree_and_round_trip(text, python):
    assert parse(text) == python
    assert parse(str(python)) == python


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("retry(3, backoff=0.5)", "backoff must be a number >= 1"),
        ("retry(3, delay='0 seconds')", "delay must be a positive duration"),
        ("retry(3, max_delay='-5 s')", "Cannot read the duration"),
        ("retry(3, jitter=1.5)", "jitter must be True"),
        ("retry(3, on='ConnectionError')", "on must be a list"),
        ("retry(3, on=[])", "on is empty"),
        ("retry(3, on=['not a name'])", "not an exception name"),
        ("retry 3 times with backoff 2 with backoff 3", "backoff is given twice"),
        ("retry(3, on=['a', 3])", "a string"),
    ],
)
def test_bad_options_are_syntax_errors_naming_the_option(text, fragment):
    with pytest.raises(ConditionSyntaxError) as info:
        parse(text)
    assert fragment in str(info.value)


# windows, and next_change against a brute-force poll ---------------------------


def _simulate(condition, start, end, outcomes, *, poll=None):
    """Run a task that finishes at once with ``outcomes`` (cycled) from ``start`` to ``end``.

    With ``poll`` the scheduler wakes every ``poll``; without, it sleeps until the
    condition's ``next_change``. Return the (instant, trigger) of every run.
    """
    history = MemoryHistory()
    runs: list[tuple] = []
    now = start
    while now < end:
        context = Context(task="t", now=now, history=history, tz=UTC)
        if condition.is_true(context) and (not runs or runs[-1][0] != now):
            disabled = condition.is_true(replace(context, retry_disabled=True))
            trigger = "scheduled" if disabled else "retry"
            run_id = len(runs)
            outcome = outcomes[run_id % len(outcomes)]
            history.record_start(RunRecord("t", run_id, now, now, outcome, trigger))
            runs.append((now, trigger))
            continue
        if poll is not None:
            now += poll
            continue
        following = condition.next_change(context)
        if following is None:
            break
        assert following > now, f"{condition}: next change {following} not after {now}"
        now = following
    return runs


_OPTIONS = st.fixed_dictionaries(
    {
        "n": st.integers(min_value=0, max_value=4),
        "delay": st.integers(min_value=1, max_value=90).map(lambda m: timedelta(minutes=m)),
        "backoff": st.sampled_from([1, 2, 3]),
        "max_delay": st.sampled_from([None, timedelta(minutes=30), timedelta(hours=2)]),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    options=_OPTIONS,
    window=st.sampled_from([("10:00", "12:00"), ("09:30", "10:15"), ("23:00", "01:00")]),
    base=st.sampled_from(["daily", "every", "none"]),
    outcomes=st.lists(st.sampled_from(["fail", "success"]), min_size=1, max_size=5),
)
def test_next_change_matches_a_minute_by_minute_poll(options, window, base, outcomes):
    cond = retry(**options)
    if base == "daily":
        cond = daily | cond
    elif base == "every":
        cond = every("3 hours") | cond
    else:
        cond = daily.between(*window) | cond
    cond = cond & time_of_day.between(*window)
    start, end = at("2026-03-02 00:00"), at("2026-03-05 00:00")
    trusted = _simulate(cond, start, end, outcomes)
    polled = _simulate(cond, start, end, outcomes, poll=MINUTE)
    assert trusted == polled


def test_a_retry_due_after_the_window_closes_waits_for_the_condition():
    cond = (daily | retry(3, delay="50 minutes")) & time_of_day.between("10:00", "12:00")
    runs = _simulate(cond, at("2026-03-02 00:00"), at("2026-03-04 00:00"), ["fail"])
    assert runs == [
        (at("2026-03-02 10:00"), "scheduled"),
        (at("2026-03-02 10:50"), "retry"),
        (at("2026-03-02 11:40"), "retry"),
        # the third retry would be due at 12:30, outside the window: the next day
        # starts a fresh chain instead
        (at("2026-03-03 10:00"), "scheduled"),
        (at("2026-03-03 10:50"), "retry"),
        (at("2026-03-03 11:40"), "retry"),
    ]


@settings(max_examples=60, deadline=None)
@given(
    delay=st.integers(min_value=1, max_value=7200),
    backoff=st.floats(min_value=1, max_value=4),
    jitter=st.sampled_from([0.0, 0.1, 0.25, 0.9]),
    chain=st.integers(min_value=1, max_value=6),
    offset=st.integers(min_value=0, max_value=10**6),
)
def test_value_is_constant_until_next_change(delay, backoff, jitter, chain, offset):
    cond = retry(delay=delay, backoff=backoff, jitter=jitter)
    history = _failed(*[f"2026-03-02 10:{minute:02}" for minute in range(1, chain + 1)])
    now = at("2026-03-02 10:10") + timedelta(milliseconds=offset)
    value, change = cond.evaluate(ctx(now, history=history))
    if change is None:
        assert value
        return
    assert not value and change > now
    step = (change - now) / 7
    for k in range(7):
        assert not cond.is_true(ctx(now + step * k, history=history))
    assert not cond.is_true(ctx(change - timedelta(microseconds=1), history=history))
    assert cond.is_true(ctx(change, history=history))


_DURATIONS = st.integers(min_value=1, max_value=10**15).map(lambda us: timedelta(microseconds=us))
_NAMES = st.from_regex(r"[A-Za-z_]\w{0,8}(\.[A-Za-z_]\w{0,8}){0,2}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(
    n=st.none() | st.integers(min_value=0, max_value=1000),
    delay=st.none() | _DURATIONS,
    backoff=st.floats(min_value=1, max_value=10),
    max_delay=st.none() | _DURATIONS,
    jitter=st.booleans() | st.floats(min_value=0, max_value=0.99),
    on=st.none() | st.lists(_NAMES, min_size=1, max_size=3),
)
def test_any_retry_renders_to_text_that_parses_back_equal(n, delay, backoff, max_delay, jitter, on):
    cond = retry(n, delay=delay, backoff=backoff, max_delay=max_delay, jitter=jitter, on=on)
    assert parse(str(cond)) == cond
