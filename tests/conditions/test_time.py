"""Truth tables for the time windows: time_of_*, the period conditions and every().

Cases marked "checked against Rocketry 2.5.1" were run against Rocketry with
the same values; the others are reasoned from SEMANTICS.md.
"""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from django_rocket.conditions import (
    daily,
    every,
    hourly,
    minutely,
    monthly,
    secondly,
    time_of_day,
    time_of_hour,
    time_of_minute,
    time_of_month,
    time_of_week,
    weekly,
)

from .helpers import at, ctx, run

# 2026-03-02 is a Monday.
ROCKETRY_TIME_OF = [
    (time_of_week.between("Mon", "Fri"), "2026-03-06 23:59", True),
    (time_of_week.between("Mon", "Fri"), "2026-03-07 00:00", False),
    (time_of_month.between("28th", "3rd"), "2026-03-03 23:59", True),
    (time_of_month.between("28th", "3rd"), "2026-03-04 00:00", False),
    (time_of_month.between("28th", "3rd"), "2026-02-28 00:00", True),
    (time_of_day.between(10, 13), "2026-03-02 13:59", True),
    (time_of_day.between(10, 13), "2026-03-02 14:00", False),
    (time_of_day.between("10:00", "12:00"), "2026-03-02 12:00", False),
    (time_of_day.at("10:30"), "2026-03-02 11:29", True),
    (time_of_day.at("10:30"), "2026-03-02 11:30", False),
    (time_of_day.between("22:00", "02:00"), "2026-03-02 01:00", True),
    (time_of_day.between("10:00", "10:00"), "2026-03-02 09:00", True),
    (time_of_week.before("Mon"), "2026-03-02 23:00", True),
    (time_of_hour.between("15:00", "45:00"), "2026-03-02 10:45", False),
    (time_of_minute.between(15, 45), "2026-03-02 10:00:45", True),
    (time_of_minute.between("15", "45"), "2026-03-02 10:00:45", False),
]


@pytest.mark.parametrize(("condition", "now", "expected"), ROCKETRY_TIME_OF)
def test_time_of_windows_checked_against_rocketry(condition, now, expected):
    # checked against Rocketry 2.5.1
    assert condition.is_true(ctx(at(now))) is expected


REASONED_TIME_OF = [
    # left-closed, right-open
    (time_of_day.between("10:00", "12:00"), "2026-03-02 10:00", True),
    (time_of_day.between("10:00", "12:00"), "2026-03-02 09:59:59.999999", False),
    (time_of_day.between("10:00", "12:00"), "2026-03-02 11:59:59.999999", True),
    # overnight
    (time_of_day.between("22:00", "02:00"), "2026-03-02 22:00", True),
    (time_of_day.between("22:00", "02:00"), "2026-03-02 02:00", False),
    (time_of_day.between("22:00", "02:00"), "2026-03-02 12:00", False),
    (time_of_day.before("08:00"), "2026-03-02 00:00", True),
    (time_of_day.before("08:00"), "2026-03-02 08:00", False),
    (time_of_day.after("20:00"), "2026-03-02 23:59:59", True),
    (time_of_day.after("20:00"), "2026-03-02 19:59", False),
    (time_of_day.between("22:00", "24:00"), "2026-03-02 23:59:59.999999", True),
    (time_of_day.at(23), "2026-03-02 23:30", True),
    (time_of_day.at("23:30"), "2026-03-03 00:29", True),
    (time_of_day.at("23:30"), "2026-03-03 00:30", False),
    (time_of_hour.between("45:00", "15:00"), "2026-03-02 10:50", True),
    (time_of_hour.between("45:00", "15:00"), "2026-03-02 10:10", True),
    (time_of_hour.between("45:00", "15:00"), "2026-03-02 10:30", False),
    (time_of_hour.at(30), "2026-03-02 10:30:59", True),
    (time_of_hour.at(30), "2026-03-02 10:31", False),
    (time_of_minute.before("30"), "2026-03-02 10:00:29", True),
    (time_of_minute.before("30"), "2026-03-02 10:00:30", False),
    # weekly edges: Sunday to Monday wraps
    (time_of_week.between("Sat", "Sun"), "2026-03-08 23:59:59", True),
    (time_of_week.between("Sat", "Sun"), "2026-03-09 00:00", False),
    (time_of_week.between("Fri 18:00", "Mon 08:00"), "2026-03-08 12:00", True),
    (time_of_week.between("Fri 18:00", "Mon 08:00"), "2026-03-09 07:59", True),
    (time_of_week.between("Fri 18:00", "Mon 08:00"), "2026-03-09 08:00", False),
    (time_of_week.on("Sunday"), "2026-03-08 00:00", True),
    (time_of_week.on(1), "2026-03-02 12:00", True),
    (time_of_week.between(1, 5), "2026-03-06 12:00", True),
    # monthly edges
    (time_of_month.between("1st", "5th"), "2026-03-05 23:59", True),
    (time_of_month.between("1st", "5th"), "2026-03-06 00:00", False),
    (time_of_month.on("31st"), "2026-03-31 12:00", True),
    (time_of_month.on("31st"), "2026-04-01 00:00", False),
    (time_of_month.after("29th"), "2026-02-28 12:00", False),
    (time_of_month.between("28th", "31st"), "2026-02-28 23:59", True),
    (time_of_month.between("15th 12:00", "16th"), "2026-03-15 11:59", False),
    (time_of_month.between("15th 12:00", "16th"), "2026-03-16 23:59", True),
    (time_of_month.starting("15th"), "2026-03-01 00:00", True),
]


@pytest.mark.parametrize(("condition", "now", "expected"), REASONED_TIME_OF)
def test_time_of_windows(condition, now, expected):
    # reasoned from SEMANTICS.md
    assert condition.is_true(ctx(at(now))) is expected


def test_time_of_next_change_is_the_next_boundary():
    # reasoned from SEMANTICS.md
    window = time_of_day.between("10:00", "12:00")
    assert window.next_change(ctx(at("2026-03-02 09:00"))) == at("2026-03-02 10:00")
    assert window.next_change(ctx(at("2026-03-02 10:00"))) == at("2026-03-02 12:00")
    assert window.next_change(ctx(at("2026-03-02 12:00"))) == at("2026-03-03 10:00")
    assert time_of_day.next_change(ctx(at("2026-03-02 12:00"))) is None
    month = time_of_month.on("31st")
    assert month.next_change(ctx(at("2026-04-05 00:00"))) == at("2026-05-31 00:00")


def test_time_zone_decides_the_local_window():
    # reasoned from SEMANTICS.md
    berlin = ZoneInfo("Europe/Berlin")
    window = time_of_day.between("10:00", "12:00")
    assert window.is_true(ctx(at("2026-03-02 09:30"), tz=berlin))  # 10:30 in Berlin
    assert not window.is_true(ctx(at("2026-03-02 11:30"), tz=berlin))


@pytest.mark.parametrize(
    ("method", "values", "message"),
    [
        ("between", ("25:00", "26:00"), "not a valid start for a time of day"),
        ("between", ("10:00", "noon"), "not a valid end"),
        ("at", (24,), "time of day"),
        ("on", ("Funday",), "weekday"),
    ],
)
def test_bad_window_values_say_what_to_write(method, values, message):
    family = time_of_week if method == "on" else time_of_day
    with pytest.raises(ValueError, match=message):
        getattr(family, method)(*values)


def test_a_window_cannot_be_narrowed_twice():
    with pytest.raises(TypeError, match="already narrowed"):
        time_of_day.between("10:00", "12:00").after("11:00")


# Period conditions ---------------------------------------------------------

START = at("2026-03-02 10:00")


def _done(when, outcome="success", started=None):
    return run(at(started) if started else at(when), at(when), outcome)


ROCKETRY_PERIODS = [
    # (condition, runs, now, expected)
    (daily, [_done("2026-03-01 10:00", "fail")], "2026-03-02 00:00", True),
    (daily, [_done("2026-03-02 10:01", "inaction")], "2026-03-02 11:00", False),
    (daily, [_done("2026-03-02 10:01", "terminate")], "2026-03-02 11:00", False),
    (daily, [_done("2026-03-02 10:01", "crash")], "2026-03-02 11:00", True),
    (daily, [run(at("2026-03-02 10:00"))], "2026-03-02 11:00", True),
    (daily.between("10:00", "12:00"), [_done("2026-03-02 09:05")], "2026-03-02 10:30", True),
    (
        daily & time_of_day.between("10:00", "12:00"),
        [_done("2026-03-02 09:05")],
        "2026-03-02 10:30",
        False,
    ),
    (daily.between("22:00", "02:00"), [_done("2026-03-02 23:05")], "2026-03-03 01:00", False),
    (daily.between("22:00", "02:00"), [_done("2026-03-02 23:05")], "2026-03-03 22:00", True),
    (daily, [_done("2026-03-03 00:05", started="2026-03-02 23:00")], "2026-03-03 10:00", False),
    (weekly.on("Mon"), [], "2026-03-02 10:00", True),
    (weekly.on("Mon"), [], "2026-03-03 10:00", False),
    (monthly.starting("15th"), [_done("2026-03-14 10:00")], "2026-03-15 10:00", True),
    (monthly.starting("15th"), [_done("2026-03-14 10:00")], "2026-03-14 11:00", False),
]


@pytest.mark.parametrize(("condition", "runs", "now", "expected"), ROCKETRY_PERIODS)
def test_periods_checked_against_rocketry(condition, runs, now, expected):
    # checked against Rocketry 2.5.1
    assert condition.is_true(ctx(at(now), *runs)) is expected


def test_midnight_belongs_to_the_new_day():
    # reasoned from SEMANTICS.md (Deviation: Rocketry gives 00:00:00 to the old day)
    runs = [_done("2026-03-01 10:00")]
    assert daily.is_true(ctx(at("2026-03-02 00:00"), *runs))
    assert not daily.is_true(ctx(at("2026-03-01 23:59:59.999999"), *runs))
    finished_at_midnight = [_done("2026-03-02 00:00")]
    assert not daily.is_true(ctx(at("2026-03-02 00:00"), *finished_at_midnight))
    assert daily.is_true(ctx(at("2026-03-01 23:00"), *finished_at_midnight))


REASONED_PERIODS = [
    (hourly, [_done("2026-03-02 09:59:59")], "2026-03-02 10:00", True),
    (hourly, [_done("2026-03-02 10:00")], "2026-03-02 10:59:59", False),
    (minutely, [_done("2026-03-02 10:00:30")], "2026-03-02 10:01", True),
    (secondly, [_done("2026-03-02 10:00:00")], "2026-03-02 10:00:00.999999", False),
    (secondly, [_done("2026-03-02 10:00:00")], "2026-03-02 10:00:01", True),
    (weekly, [_done("2026-03-08 23:59")], "2026-03-09 00:00", True),
    (weekly, [_done("2026-03-02 00:00")], "2026-03-08 23:59", False),
    (monthly, [_done("2026-02-28 23:59")], "2026-03-01 00:00", True),
    (monthly, [_done("2026-03-01 00:00")], "2026-03-31 23:59", False),
    (daily.at("10:00"), [], "2026-03-02 11:00", False),
    (daily.at("10:00"), [], "2026-03-02 10:59", True),
    (daily.after("20:00"), [_done("2026-03-02 19:00")], "2026-03-02 21:00", True),
    (daily.before("08:00"), [], "2026-03-02 08:00", False),
    (
        weekly.between("Fri 18:00", "Mon 08:00"),
        [_done("2026-03-07 10:00")],
        "2026-03-09 07:00",
        False,
    ),
    (
        weekly.between("Fri 18:00", "Mon 08:00"),
        [_done("2026-03-07 10:00")],
        "2026-03-13 18:00",
        True,
    ),
    (monthly.between("28th", "3rd"), [_done("2026-02-28 10:00")], "2026-03-02 10:00", False),
    (monthly.between("28th", "3rd"), [_done("2026-02-28 10:00")], "2026-03-28 10:00", True),
    (daily.starting("06:00"), [_done("2026-03-02 05:00")], "2026-03-02 06:00", True),
    (daily.starting("06:00"), [_done("2026-03-02 07:00")], "2026-03-03 05:59", False),
]


@pytest.mark.parametrize(("condition", "runs", "now", "expected"), REASONED_PERIODS)
def test_periods(condition, runs, now, expected):
    # reasoned from SEMANTICS.md
    assert condition.is_true(ctx(at(now), *runs)) is expected


def test_period_next_change():
    # reasoned from SEMANTICS.md
    assert daily.next_change(ctx(at("2026-03-02 10:00"))) == at("2026-03-03 00:00")
    narrow = daily.between("10:00", "12:00")
    assert narrow.next_change(ctx(at("2026-03-02 08:00"))) == at("2026-03-02 10:00")
    assert narrow.next_change(ctx(at("2026-03-02 11:00"))) == at("2026-03-02 12:00")
    assert monthly.next_change(ctx(at("2026-02-10 08:00"))) == at("2026-03-01 00:00")
    assert weekly.next_change(ctx(at("2026-03-04 08:00"))) == at("2026-03-09 00:00")


def test_daily_explains_its_window_and_the_finish():
    history = [_done("2026-03-02 09:00")]
    explanation = daily.explain(ctx(at("2026-03-02 10:00"), *history))
    assert explanation.value is False
    assert explanation.text == "daily"
    assert explanation.facts["window"] == [at("2026-03-02 00:00"), at("2026-03-03 00:00")]
    assert explanation.facts["finished_in_window"] == at("2026-03-02 09:00")
    assert explanation.next_change == at("2026-03-03 00:00")
    assert explanation.to_dict()["facts"]["window"] == [
        "2026-03-02T00:00:00+00:00",
        "2026-03-03T00:00:00+00:00",
    ]


# every ----------------------------------------------------------------------


def test_every_checked_against_rocketry():
    # checked against Rocketry 2.5.1: the boundary is inclusive
    history = [run(START)]
    assert not every("10 minutes").is_true(ctx(START + timedelta(minutes=10), *history))
    assert every("10 minutes").is_true(ctx(START + timedelta(minutes=10, milliseconds=1), *history))
    # checked against Rocketry 2.5.1: based="finish" counts an inaction
    inacted = [_done("2026-03-02 10:01", "inaction", started="2026-03-02 10:00")]
    assert not every("1 hour", based="finish").is_true(ctx(at("2026-03-02 10:30"), *inacted))


@pytest.mark.parametrize(
    ("based", "outcome", "expected"),
    [
        ("run", None, False),
        ("success", "success", False),
        ("success", "fail", True),
        ("fail", "fail", False),
        ("fail", "success", True),
        ("finish", "terminate", False),
        ("finish", "crash", True),
    ],
)
def test_every_based_on(based, outcome, expected):
    # reasoned from SEMANTICS.md
    start = at("2026-03-02 10:00")
    finish = None if outcome is None else start + timedelta(minutes=1)
    history = [run(start, finish, outcome)]
    assert every("1 hour", based=based).is_true(ctx(at("2026-03-02 10:30"), *history)) is expected


def test_every_without_history_and_its_next_change():
    # reasoned from SEMANTICS.md
    assert every("1 hour").is_true(ctx(START))
    assert every("1 hour").next_change(ctx(START)) is None
    assert every("1 hour").next_change(ctx(START, run(START))) == START + timedelta(
        hours=1, microseconds=1
    )
    assert str(every(timedelta(minutes=90))) == "every('1 hour 30 minutes')"
    assert str(every("600", based="success")) == "every('10 minutes', based='success')"
    with pytest.raises(ValueError, match="based"):
        every("1 hour", based="crash")
