"""Truth tables for the history conditions: events, running, retry and pipelines.

Cases marked "checked against Rocketry 2.5.1" were run against Rocketry with
the same history; the others are reasoned from SEMANTICS.md.
"""

from dataclasses import replace
from datetime import timedelta

import pytest

from django_rocket.conditions import (
    MemoryHistory,
    RunRecord,
    after_all_fail,
    after_all_success,
    after_any_fail,
    after_any_finish,
    after_any_success,
    after_fail,
    after_finish,
    after_success,
    daily,
    failed,
    finished,
    inacted,
    retry,
    running,
    started,
    succeeded,
    terminated,
    time_of_day,
)

from .helpers import at, ctx, run

T0 = at("2026-03-02 10:00")
MINUTE = timedelta(minutes=1)


def _done(when, outcome, task="t"):
    return run(at(when), at(when), outcome, task=task)


# Events ----------------------------------------------------------------------

THREE_FAILS = [_done(f"2026-03-02 10:{m}", "fail") for m in ("00", "10", "20")]


def test_counts_checked_against_rocketry():
    # checked against Rocketry 2.5.1
    now = ctx(at("2026-03-02 11:00"), *THREE_FAILS)
    assert (failed.today >= 3).is_true(now)
    assert not (failed.today > 3).is_true(now)
    assert not (failed.today < 3).is_true(now)
    assert (failed >= 2).is_true(now)
    sliding = failed.past("60 minutes") >= 3
    assert sliding.is_true(ctx(at("2026-03-02 11:00"), *THREE_FAILS))
    assert not sliding.is_true(ctx(at("2026-03-02 11:00:00.001"), *THREE_FAILS))


def test_latest_window_checked_against_rocketry():
    # checked against Rocketry 2.5.1: outside the window, the latest one counts
    history = [_done("2026-03-01 11:00", "fail")]
    assert failed.today.between("10:00", "12:00").is_true(ctx(at("2026-03-02 09:00"), *history))
    assert not failed.today.is_true(ctx(at("2026-03-02 09:00"), *history))


def test_finished_kinds_checked_against_rocketry():
    # checked against Rocketry 2.5.1
    now = at("2026-03-02 11:00")
    assert not finished.today.is_true(ctx(now, _done("2026-03-02 10:01", "inaction")))
    assert finished.today.is_true(ctx(now, _done("2026-03-02 10:01", "terminate")))
    assert not finished.today.is_true(ctx(now, _done("2026-03-02 10:01", "crash")))


@pytest.mark.parametrize(
    ("condition", "outcome", "expected"),
    [
        (succeeded, "success", True),
        (succeeded, "fail", False),
        (failed, "fail", True),
        (finished, "success", True),
        (finished, "fail", True),
        (terminated, "terminate", True),
        (terminated, "fail", False),
        (inacted, "inaction", True),
        (inacted, "success", False),
        (started, "crash", True),
    ],
)
def test_event_kinds(condition, outcome, expected):
    # reasoned from SEMANTICS.md
    history = [run(T0, T0 + MINUTE, outcome)]
    now = at("2026-03-02 12:00")
    assert condition.is_true(ctx(now, *history)) is expected
    assert condition.today.is_true(ctx(now, *history)) is expected
    assert not condition.today.is_true(ctx(at("2026-03-03 12:00"), *history))
    assert condition.is_true(ctx(at("2026-03-03 12:00"), *history)) is expected


@pytest.mark.parametrize(
    ("condition", "now", "expected"),
    [
        (succeeded.this_hour, "2026-03-02 10:59", True),
        (succeeded.this_hour, "2026-03-02 11:00", False),
        (succeeded.this_minute, "2026-03-02 10:30:59", True),
        (succeeded.this_minute, "2026-03-02 10:31", False),
        (succeeded.this_week, "2026-03-08 23:59", True),
        (succeeded.this_week, "2026-03-09 00:00", False),
        (succeeded.this_month, "2026-03-31 23:59", True),
        (succeeded.this_month, "2026-04-01 00:00", False),
        (succeeded.today.between("10:00", "11:00"), "2026-03-02 23:00", True),
        (succeeded.today.between("11:00", "12:00"), "2026-03-02 23:00", False),
        (succeeded.today.after("10:30"), "2026-03-02 23:00", True),
        (succeeded.today.before("10:30"), "2026-03-02 23:00", False),
        (succeeded.this_week.on("Mon"), "2026-03-04 10:00", True),
        (succeeded.past("30 minutes"), "2026-03-02 11:00", True),
        (succeeded.past("30 minutes"), "2026-03-02 11:00:00.000001", False),
    ],
)
def test_event_periods(condition, now, expected):
    # reasoned from SEMANTICS.md
    history = [_done("2026-03-02 10:30", "success")]
    assert condition.is_true(ctx(at(now), *history)) is expected


def test_named_task_events():
    # reasoned from SEMANTICS.md
    history = [_done("2026-03-02 10:30", "success", task="etl")]
    now = ctx(at("2026-03-02 11:00"), *history)
    assert succeeded("etl").today.is_true(now)
    assert not succeeded.today.is_true(now)
    assert str(succeeded("etl").today.between("10:00", "12:00") >= 2) == (
        "succeeded('etl').today.between('10:00', '12:00') >= 2"
    )
    assert succeeded("etl").depends_on("t") == frozenset({"etl"})
    assert succeeded.depends_on("t") == frozenset({"t"})


def test_event_next_change():
    # reasoned from SEMANTICS.md
    history = [_done("2026-03-02 10:30", "fail"), _done("2026-03-02 10:40", "fail")]
    now = ctx(at("2026-03-02 11:00"), *history)
    assert failed.today.next_change(now) == at("2026-03-03 00:00")
    assert failed.next_change(now) is None
    assert failed.past("1 hour").next_change(now) == at("2026-03-02 11:30:00.000001")
    between = failed.today.between("10:00", "12:00")
    assert between.next_change(ctx(at("2026-03-02 13:00"), *history)) == at("2026-03-03 10:00")


def test_comparisons_are_values_not_booleans():
    assert (failed.today >= 3) == (failed.today >= 3)
    assert (failed.today >= 3) != (failed.today > 3)
    assert failed.today != failed.this_hour
    with pytest.raises(TypeError, match="whole number"):
        failed.today >= "3"  # noqa: B015
    with pytest.raises(TypeError, match="already a comparison"):
        (failed.today >= 3) >= 4  # noqa: B015
    with pytest.raises(TypeError):
        failed.today.past("1 hour")
    with pytest.raises(TypeError, match="Name the task first"):
        failed.today("etl")


# running ----------------------------------------------------------------------


def _running(*starts):
    return MemoryHistory([RunRecord("t", index, start) for index, start in enumerate(starts)])


@pytest.mark.parametrize(
    ("condition", "now", "expected"),
    [
        (running.more_than("1 hour"), "10:59:59", False),
        (running.more_than("1 hour"), "11:00", True),
        (running.more_than("1 hour"), "11:00:01", True),
        (running.less_than("1 hour"), "10:59:59", True),
        (running.less_than("1 hour"), "11:00", True),
        (running.less_than("1 hour"), "11:00:01", False),
        (running >= 1, "10:30", True),
        (running >= 2, "10:30", False),
    ],
)
def test_running_checked_against_rocketry(condition, now, expected):
    # checked against Rocketry 2.5.1: ages are inclusive at both ends
    history = _running(at("2026-03-02 10:00"))
    assert condition.is_true(ctx(at(f"2026-03-02 {now}"), history=history)) is expected


def test_running_counts_and_names():
    # reasoned from SEMANTICS.md
    history = _running(T0, T0 + 10 * MINUTE)
    now = ctx(T0 + 30 * MINUTE, history=history)
    assert running.is_true(now)
    assert (running >= 2).is_true(now)
    assert not (running > 2).is_true(now)
    assert running.between("15 minutes", "25 minutes").is_true(now)
    assert not running.between("21 minutes", "25 minutes").is_true(now)
    assert not running("other").is_true(now)
    assert running("other").depends_on("t") == frozenset({"other"})
    assert str(running("other").more_than(3600) >= 2) == "running('other').more_than('1 hour') >= 2"


def test_running_ignores_finished_and_crashed_runs():
    # reasoned from SEMANTICS.md: a crashed run is never running
    history = _running(T0)
    history.record_finish("t", 0, T0 + MINUTE, "crash")
    assert not running.is_true(ctx(T0 + 2 * MINUTE, history=history))


def test_running_next_change_is_an_age_boundary():
    # reasoned from SEMANTICS.md
    history = _running(T0)
    now = ctx(T0 + 10 * MINUTE, history=history)
    assert running.next_change(now) is None
    assert running.more_than("1 hour").next_change(now) == T0 + timedelta(hours=1)
    assert running.less_than("1 hour").next_change(now) == T0 + timedelta(hours=1, microseconds=1)


# retry -------------------------------------------------------------------------


def _history(*runs):
    """Runs given as (start, outcome, trigger), one minute long each."""
    return MemoryHistory(
        RunRecord("t", index, at(start), at(start) + MINUTE, outcome, trigger)
        for index, (start, outcome, trigger) in enumerate(runs)
    )


def test_retry_counts_checked_against_rocketry():
    # checked against Rocketry 2.5.1: after three failures retry(3) still holds
    history = _history(
        ("2026-03-02 10:00", "fail", "scheduled"),
        ("2026-03-02 10:02", "fail", "retry"),
        ("2026-03-02 10:04", "fail", "retry"),
    )
    now = ctx(at("2026-03-02 10:06"), history=history)
    assert retry(3).is_true(now)
    assert not retry(2).is_true(now)
    assert retry.is_true(now)


def test_retry_chain_resets_with_a_fresh_run_the_next_day():
    # reasoned from SEMANTICS.md (Deviation: Rocketry never resets until a success)
    condition = daily | retry(3)
    day_one = [("2026-03-02 10:00", "fail", "scheduled")]
    day_one += [(f"2026-03-02 10:0{k}", "fail", "retry") for k in (2, 4, 6)]
    history = _history(*day_one)
    assert not retry(3).is_true(ctx(at("2026-03-02 10:08"), history=history))
    assert not condition.is_true(ctx(at("2026-03-02 10:08"), history=history))
    assert condition.is_true(ctx(at("2026-03-03 10:00"), history=history))
    history.record_start(RunRecord("t", "fresh", at("2026-03-03 10:00")))
    history.record_finish("t", "fresh", at("2026-03-03 10:01"), "fail")
    assert retry(3).is_true(ctx(at("2026-03-03 10:02"), history=history))


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([("2026-03-02 10:00", "success", "scheduled")], False),
        ([("2026-03-02 10:00", "terminate", "scheduled")], False),
        ([("2026-03-02 10:00", "inaction", "scheduled")], False),
        ([("2026-03-02 10:00", "crash", "scheduled")], False),
        ([("2026-03-02 10:00", "fail", "manual")], True),
        ([], False),
    ],
)
def test_retry_only_after_a_failure(runs, expected):
    # reasoned from SEMANTICS.md
    assert retry(1).is_true(ctx(at("2026-03-02 11:00"), history=_history(*runs))) is expected


def test_retry_not_while_running_and_not_when_disabled():
    # reasoned from SEMANTICS.md
    history = _history(("2026-03-02 10:00", "fail", "scheduled"))
    now = ctx(at("2026-03-02 11:00"), history=history)
    assert retry.is_true(now)
    assert not retry.is_true(replace(now, retry_disabled=True))
    assert not retry(0).is_true(now)
    history.record_start(RunRecord("t", "again", at("2026-03-02 10:30")))
    assert not retry.is_true(now)


def test_retry_decides_whether_a_start_is_a_retry():
    # reasoned from SEMANTICS.md: the scheduler's rule
    condition = (daily | retry(3)) & time_of_day.between("10:00", "12:00")
    history = _history(("2026-03-02 10:00", "fail", "scheduled"))
    now = ctx(at("2026-03-02 10:30"), history=history)
    is_retry = condition.is_true(now) and not condition.is_true(replace(now, retry_disabled=True))
    assert is_retry
    fresh = ctx(at("2026-03-03 10:30"), history=history)
    assert not (
        condition.is_true(fresh) and not condition.is_true(replace(fresh, retry_disabled=True))
    )


def test_retry_text_and_flags():
    assert str(retry) == "retry"
    assert str(retry(3)) == "retry(3)"
    assert retry(3).has_retry()
    assert (daily | ~retry).has_retry()
    assert not daily.has_retry()
    with pytest.raises(TypeError):
        retry(-1)
    with pytest.raises(TypeError):
        retry(3)(4)


# pipelines ------------------------------------------------------------------------


def test_after_checked_against_rocketry():
    # checked against Rocketry 2.5.1
    now = at("2026-03-02 11:00")
    same_time = [run(T0, task="t"), _done("2026-03-02 10:00", "success", task="a")]
    assert not after_success("a").is_true(ctx(now, *same_time))
    later = [run(T0, task="t"), _done("2026-03-02 10:00:01", "success", task="a")]
    assert after_success("a").is_true(ctx(now, *later))
    never_ran = [_done("2026-03-02 10:00", "success", task="a")]
    assert after_success("a").is_true(ctx(now, *never_ran))
    assert not after_success("a").is_true(ctx(now))
    assert not after_finish("a").is_true(ctx(now, _done("2026-03-02 10:00", "terminate", "a")))
    assert after_finish("a").is_true(ctx(now, _done("2026-03-02 10:00", "fail", "a")))
    only_a = [_done("2026-03-02 10:00", "success", task="a")]
    assert not after_all_success("a", "b").is_true(ctx(now, *only_a))
    assert after_any_success("a", "b").is_true(ctx(now, *only_a))


def test_after_uses_the_latest_start_and_finish():
    # reasoned from SEMANTICS.md
    now = at("2026-03-02 12:00")
    history = [
        _done("2026-03-02 09:00", "success", task="a"),
        run(at("2026-03-02 09:30"), task="t"),
        _done("2026-03-02 10:00", "fail", task="a"),
    ]
    assert not after_success("a").is_true(ctx(now, *history))
    assert after_fail("a").is_true(ctx(now, *history))
    assert after_finish("a").is_true(ctx(now, *history))
    assert after_all_fail("a").is_true(ctx(now, *history))
    assert after_any_finish("a", "b").is_true(ctx(now, *history))
    assert not after_all_fail("a", "b").is_true(ctx(now, *history))
    assert after_success("a").next_change(ctx(now, *history)) is None


def test_after_counts_an_end_from_its_own_instant():
    """An end stamped later than now (another host's clock runs ahead) waits for its
    instant: started at once, the run would start before it, and the end would still be
    "after its latest start" at the next look, which started a second run."""
    now = at("2026-03-02 11:00")
    ahead = now + timedelta(milliseconds=50)
    history = [run(T0, task="t"), run(T0, ahead, "success", task="a")]
    assert after_success("a").evaluate(ctx(now, *history)) == (False, ahead)
    assert after_success("a").evaluate(ctx(ahead, *history)) == (True, None)
    started = [*history, run(ahead, task="t")]  # the run it starts, at that instant
    assert after_success("a").evaluate(ctx(ahead + timedelta(seconds=1), *started)) == (
        False,
        None,
    )
    # Several dependencies: each counts from its own instant.
    other = run(T0, at("2026-03-02 10:30"), "success", task="b")
    assert after_any_success("a", "b").evaluate(ctx(now, *history, other)) == (True, None)
    assert after_all_success("a", "b").evaluate(ctx(now, *history, other)) == (False, ahead)
    assert after_all_success("a", "b").is_true(ctx(ahead, *history, other))
    assert not after_all_success("a", "b").is_true(ctx(now, *history))


def test_after_text_and_dependencies():
    assert str(after_all_success("a", "b")) == "after_all_success('a', 'b')"
    assert str(after_any_fail("x")) == "after_any_fail('x')"
    assert after_all_success("a", "b").depends_on("t") == frozenset({"a", "b", "t"})
    with pytest.raises(TypeError):
        after_all_success()
    with pytest.raises(TypeError):
        after_success("")
