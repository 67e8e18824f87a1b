"""A bounded history answers every condition exactly as the full history does.

Random run sequences (starts, finishes of every outcome, retries, a second task,
jumps of a second to a day across DST changes, trims, restarts that rebuild the
bounded history from the runs the full one holds) go through a
:class:`MemoryHistory` that keeps everything and a :class:`BoundedHistory` told
what the conditions need; every condition of the vocabulary must give the same
``evaluate`` (value and next change) from both, at every step.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_rocket.conditions import (
    Condition,
    Context,
    MemoryHistory,
    RunRecord,
    after_all_finish,
    after_any_fail,
    after_fail,
    after_finish,
    after_success,
    cron,
    crontime,
    daily,
    every,
    failed,
    finished,
    hourly,
    inacted,
    minutely,
    monthly,
    retry,
    running,
    started,
    succeeded,
    terminated,
    time_of_day,
    weekly,
)
from django_rocket.conditions.bounded import BoundedHistory
from django_rocket.conditions.needs import Needs, merge_needs
from django_rocket.conditions.tasks import TaskEvent

VOCABULARY: list[Condition] = [
    # latest events only
    every("10 minutes"),
    every("1 hour", based="finish"),
    daily,
    hourly,
    minutely,
    weekly,
    monthly,
    daily.between("10:00", "12:00"),
    hourly.starting("30:00"),
    cron("*/5 * * * *"),
    crontime("0 * * * *"),
    after_success("u"),
    after_fail("u"),
    after_finish("u"),
    after_all_finish("u", "t"),
    after_any_fail("u", "t"),
    succeeded,
    failed,
    started("u"),
    running,
    running.more_than("30 minutes"),
    running.less_than("10 minutes") >= 1,
    running.today,
    # the retry chain
    retry,
    retry(1),
    retry(3),
    retry(3, delay="1 minute", backoff=2, max_delay="5 minutes", jitter=True),
    retry(2, delay="30 seconds", on=["ConnectionError"]),
    # counts per calendar period
    failed.today >= 2,
    succeeded.this_hour,
    started.this_minute,
    finished.this_week >= 3,
    started("u").this_month >= 4,
    inacted.today,
    # sliding windows
    started.past("10 minutes") >= 2,
    failed.past("1 hour"),
    finished("u").past("90 minutes") <= 1,
    terminated.past("1 day") > 0,
    # windows of the past
    failed.today.between("10:00", "12:00") >= 1,
    succeeded.today.before("03:00"),
    started.this_hour.after("45:00") >= 2,
    finished.this_week.on("Mon"),
    # over all time
    failed >= 3,
    started("u") < 5,
    # combinations
    (daily | retry(3)) & time_of_day.between("08:00", "20:00"),
    ~(failed.today >= 2) & every("5 minutes"),
    after_success("u") | (failed.past("30 minutes") >= 2),
]
TASKS = ("t", "u")
NEEDS = merge_needs(cond.needs(task) for cond in VOCABULARY for task in TASKS)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
# Near a spring-forward and a fall-back in Berlin and New York, and a plain day.
STARTS = [
    datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
    datetime(2026, 11, 1, 4, 0, tzinfo=UTC),
    datetime(2026, 10, 25, 0, 0, tzinfo=UTC),
    datetime(2026, 6, 15, 9, 50, tzinfo=UTC),
]
STEPS = st.one_of(
    st.integers(0, 120),
    st.sampled_from([0, 1, 59, 60, 300, 599, 600, 3599, 3600, 7200, 86_399, 86_400]),
    st.integers(0, 3 * 86_400),
)
ACTIONS = st.lists(
    st.tuples(
        STEPS,
        st.sampled_from(["start", "start", "finish", "finish", "trim", "restart"]),
        st.sampled_from(TASKS),
        st.sampled_from(["scheduled", "retry", "retry", "manual"]),
        st.sampled_from(["success", "fail", "fail", "terminate", "inaction", "crash"]),
        st.integers(0, 10),
    ),
    max_size=60,
)


CONNECTION = ("builtins.ConnectionError", "builtins.OSError", "builtins.Exception")
VALUE = ("builtins.ValueError", "builtins.Exception")


def rebuild(full: MemoryHistory, tz: ZoneInfo) -> BoundedHistory:
    """What start-up loads: every run the log holds, in start order."""
    runs = sorted(
        (run for task in TASKS for run in full.runs(task)), key=lambda r: (r.started_at, r.run_id)
    )
    return BoundedHistory(NEEDS, tz, runs)


def assert_same(full: MemoryHistory, bounded: BoundedHistory, now: datetime, tz: ZoneInfo) -> None:
    for task in TASKS:
        assert bounded.last_run(task) == full.last_run(task), (task, now)
        whole = Context(task=task, now=now, history=full, tz=tz)
        kept = Context(task=task, now=now, history=bounded, tz=tz)
        for cond in VOCABULARY:
            assert cond.evaluate(kept) == cond.evaluate(whole), (cond, task, now)
            assert cond.is_true(kept) == cond.is_true(whole), (cond, task, now)
            if isinstance(cond, TaskEvent):  # what explaintask shows: the same count
                assert cond.facts(kept) == cond.facts(whole), (cond, task, now)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone=st.sampled_from(ZONES),
    start=st.sampled_from(STARTS),
    actions=ACTIONS,
    data=st.data(),
)
def test_every_condition_answers_the_same_from_the_bounded_history(
    zone: str, start: datetime, actions: list, data: st.DataObject
) -> None:
    tz = ZoneInfo(zone)
    full = MemoryHistory()
    bounded = BoundedHistory(NEEDS, tz)
    twin = BoundedHistory(NEEDS, tz)  # told the same, every start through record_start
    open_runs: list[tuple[str, int]] = []
    now = start
    for number, (step, action, task, trigger, outcome, pick) in enumerate(actions):
        now += timedelta(seconds=step)
        if action == "start":
            record = RunRecord(task, number, now, trigger=trigger)
            full.record_start(record)
            if pick % 2:
                bounded.record_start(record)
            else:  # the scheduler's way: no RunRecord made, and it keeps no more
                bounded.start_run(task, number, now, trigger)
            twin.record_start(record)
            open_runs.append((task, number))
        elif action == "finish" and open_runs:
            task, run_id = open_runs.pop(pick % len(open_runs))
            # A failure's exception, for retry(on=...): a ConnectionError or a ValueError.
            types = CONNECTION if pick % 2 else VALUE
            types = types if outcome == "fail" else ()
            full.record_finish(task, run_id, now, outcome, types)
            bounded.record_finish(task, run_id, now, outcome, types)
            twin.record_finish(task, run_id, now, outcome, types)
        elif action == "trim":
            bounded.trim(now)
            twin.trim(now)
        elif action == "restart":
            bounded, twin = rebuild(full, tz), rebuild(full, tz)
        assert_same(full, bounded, now, tz)
        assert [bounded.size(t) for t in TASKS] == [twin.size(t) for t in TASKS]
    # And later on, when only time has passed.
    for step in data.draw(st.lists(STEPS, max_size=4)):
        now += timedelta(seconds=step)
        bounded.trim(now)
        assert_same(full, bounded, now, tz)


def test_a_run_recorded_as_already_finished_counts_once() -> None:
    tz = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    full, bounded = MemoryHistory(), BoundedHistory(NEEDS, tz)
    for number in range(5):
        record = RunRecord("t", number, now, now + timedelta(minutes=1), "fail", "retry")
        full.record_start(record)
        bounded.record_start(record)
        now += timedelta(hours=1)
    assert_same(full, bounded, now, tz)
    assert bounded.count("t", "fail", None, None) == 5


def test_a_finish_of_a_run_not_in_progress_is_refused() -> None:
    bounded = BoundedHistory({}, UTC)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    bounded.record_start(RunRecord("t", 1, now, now, "success"))
    with pytest.raises(KeyError, match="not in progress"):
        bounded.record_finish("t", 1, now, "fail")
    with pytest.raises(ValueError, match="already recorded"):
        bounded.record_start(RunRecord("t", 1, now))
    with pytest.raises(ValueError, match="already recorded"):
        bounded.start_run("t", 1, now, "scheduled")


def test_needs_say_what_each_kind_of_condition_reads() -> None:
    day = (failed.today >= 3).needs("t")["t"]
    assert [kind for kind, _ in day.periods] == ["fail"]
    assert (retry(2) | daily).needs("t") == {"t": Needs(chain=3)}
    assert started("u").past("10 minutes").needs("t") == {
        "u": Needs(windows=frozenset({("start", timedelta(minutes=10))}))
    }
    assert (failed >= 3).needs("t") == {"t": Needs(totals=frozenset({"fail"}))}
    assert (every("1 minute") & after_success("u") & running).needs("t") == {}
