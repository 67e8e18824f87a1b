"""Daylight-saving transitions, simulated with a minimal scheduler (reasoned from SEMANTICS.md).

2026 transitions: Europe/Berlin springs forward on 29 March (02:00 -> 03:00)
and falls back on 25 October (03:00 -> 02:00); America/New_York springs
forward on 8 March (02:00 -> 03:00) and falls back on 1 November (02:00 -> 01:00).
"""

from datetime import timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from django_rocket.conditions import (
    Context,
    MemoryHistory,
    RunRecord,
    cron,
    daily,
    every,
    hourly,
    time_of_day,
)

from .helpers import at, day_bounds, simulate, step_simulate

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")

SPRING = [(BERLIN, "2026-03-29"), (NEW_YORK, "2026-03-08")]
FALL = [(BERLIN, "2026-10-25"), (NEW_YORK, "2026-11-01")]
DAYS = SPRING + FALL


def _runs_on(condition, tz, day, poll=None):
    begin, end = day_bounds(day, tz)
    # Start the day before so that nothing is due just because history is empty.
    warm_up = begin - timedelta(hours=12)
    if poll is None:
        starts = simulate(condition, warm_up, end, tz)
    else:
        starts = step_simulate(condition, warm_up, end, tz, poll)
    return [start for start in starts if start >= begin]


@pytest.mark.parametrize(("tz", "day"), DAYS)
@pytest.mark.parametrize("condition", [daily.at("02:30"), cron("30 2 * * *")], ids=str)
def test_a_time_on_a_transition_day_runs_exactly_once(condition, tz, day):
    runs = _runs_on(condition, tz, day)
    assert len(runs) == 1
    assert len(_runs_on(condition, tz, day, poll=timedelta(minutes=1))) == 1


@pytest.mark.parametrize(("tz", "day"), SPRING)
@pytest.mark.parametrize("condition", [daily.at("02:30"), cron("30 2 * * *")], ids=str)
def test_a_skipped_time_runs_at_the_first_instant_after_the_gap(condition, tz, day):
    (start,) = _runs_on(condition, tz, day)
    assert start == at(f"{day} 03:00", tz)


def test_a_repeated_time_runs_at_its_first_occurrence():
    (start,) = _runs_on(daily.at("02:30"), BERLIN, "2026-10-25")
    assert start == at("2026-10-25 00:30")  # 02:30 summer time (aware times in a fold
    # never compare equal across zones, so the expectation is written in UTC)
    assert start.astimezone(BERLIN).utcoffset() == timedelta(hours=2)
    (start,) = _runs_on(cron("30 1 * * *"), NEW_YORK, "2026-11-01")
    assert start.astimezone(NEW_YORK).utcoffset() == timedelta(hours=-4)


@pytest.mark.parametrize(
    ("tz", "day", "count"), [(*SPRING[0], 23), (*SPRING[1], 23), (*FALL[0], 25), (*FALL[1], 25)]
)
def test_hourly_follows_real_hours(tz, day, count):
    assert len(_runs_on(hourly, tz, day)) == count
    assert len(_runs_on(hourly, tz, day, poll=timedelta(minutes=1))) == count


@pytest.mark.parametrize(("tz", "day"), DAYS)
def test_daily_runs_once(tz, day):
    assert len(_runs_on(daily, tz, day)) == 1
    assert len(_runs_on(daily & time_of_day.between("01:00", "04:00"), tz, day)) == 1


@pytest.mark.parametrize(("tz", "day", "hours"), [(*SPRING[0], 23), (*FALL[1], 25)])
def test_every_keeps_real_spacing(tz, day, hours):
    runs = _runs_on(every("15 minutes"), tz, day)
    gaps = {later - earlier for earlier, later in pairwise(runs)}
    assert gaps == {timedelta(minutes=15, microseconds=1)}
    assert len(runs) in (hours * 4 - 1, hours * 4)


@pytest.mark.parametrize(("tz", "day", "count"), [(*SPRING[1], 46), (*FALL[1], 48)])
def test_cron_every_half_hour_matches_each_wall_time_once(tz, day, count):
    # The skipped 02:00 and 02:30 merge into 03:00; the repeated 01:00-02:00 runs once.
    assert len(_runs_on(cron("*/30 * * * *"), tz, day)) == count


def test_a_window_inside_the_gap_keeps_its_length_after_it():
    condition = time_of_day.between("02:10", "02:20")
    starts = _runs_on(daily.between("02:10", "02:20"), BERLIN, "2026-03-29")
    assert starts == [at("2026-03-29 03:00", BERLIN)]
    context = Context(
        task="t", now=at("2026-03-29 03:05", BERLIN), history=MemoryHistory(), tz=BERLIN
    )
    assert condition.is_true(context)
    assert condition.next_change(context) == at("2026-03-29 03:10", BERLIN)


def test_documented_history_example():
    history = MemoryHistory(
        [
            RunRecord(
                "report",
                run_id=1,
                started_at=at("2026-03-02 09:00"),
                finished_at=at("2026-03-02 09:05"),
                outcome="success",
            )
        ]
    )
    context = Context(task="report", now=at("2026-03-02 12:00"), history=history, tz=BERLIN)
    assert not daily.is_true(context)
    assert daily.next_change(context) == at("2026-03-03 00:00", BERLIN)
