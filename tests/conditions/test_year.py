"""time_of_year and yearly: windows in the calendar year.

Rocketry 2.5.1 has the period (``rocketry.time.TimeOfYear``) but no condition
for it in ``rocketry.conds``; the window values were checked against the
period, the once-a-year behaviour is reasoned from SEMANTICS.md.
"""

from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest

from django_rocket.conditions import parse, time_of_year, yearly

from .helpers import at, ctx, run, simulate

# checked against Rocketry 2.5.1: datetime in TimeOfYear(...)
ROCKETRY = [
    ("time_of_year.between('Mar', 'Jun')", "2026-04-10 00:00", True),
    ("time_of_year.between('Mar', 'Jun')", "2026-06-30 23:59", True),
    ("time_of_year.between('Mar', 'Jun')", "2026-07-01 00:00:01", False),
    ("time_of_year.between('Mar', 'Jun')", "2026-03-01 00:00:01", True),
    ("time_of_year.at('Dec')", "2026-12-31 23:00", True),
    ("time_of_year.at('Dec')", "2026-11-30 23:00", False),
    ("time_of_year.between('Nov', 'Feb')", "2026-01-15 00:00", True),
    ("time_of_year.between('Nov', 'Feb')", "2026-03-15 00:00", False),
    ("time_of_year.between(3, 6)", "2026-06-15 00:00", True),
    ("time_of_year.between(3, 6)", "2026-07-15 00:00", False),
    ("time_of_year.at('March')", "2026-03-15 00:00", True),
    ("time_of_year.before('Mar')", "2026-03-15 00:00", True),
    ("time_of_year.before('Mar')", "2026-02-15 00:00", True),
    ("time_of_year.after('Mar')", "2026-02-15 00:00", False),
    ("time_of_year.after('Mar')", "2026-03-15 00:00", True),
    ("time_of_year.at('Feb')", "2028-02-29 12:00", True),
]


@pytest.mark.parametrize(("text", "now", "expected"), ROCKETRY)
def test_time_of_year_checked_against_rocketry(text, now, expected):
    assert parse(text).is_true(ctx(at(now))) is expected


@pytest.mark.parametrize(
    ("condition", "now", "expected"),
    [
        (time_of_year.between("Dec 24th", "Dec 26th"), "2026-12-26 23:59", True),
        (time_of_year.between("Dec 24th", "Dec 26th"), "2026-12-27 00:00", False),
        (time_of_year.after("Dec 24th 18:00"), "2026-12-24 17:59", False),
        (time_of_year.after("Dec 24th 18:00"), "2026-12-31 23:59", True),
        (time_of_year.at("Feb 29th"), "2027-03-01 00:00", False),  # no Feb 29 in 2027
        (time_of_year.at("Feb 29th"), "2028-02-29 10:00", True),
        (time_of_year.before("Feb"), "2026-02-28 23:59", True),
        (time_of_year.before("Feb"), "2026-03-01 00:00", False),
    ],
)
def test_days_and_times_in_the_year(condition, now, expected):
    # reasoned from SEMANTICS.md
    assert condition.is_true(ctx(at(now))) is expected


def test_yearly_runs_once_a_year_in_its_window():
    # reasoned from SEMANTICS.md
    condition = yearly.between("Mar", "Jun")
    assert condition.is_true(ctx(at("2026-03-01 00:00")))
    ran = [run(at("2026-03-01 00:00"), at("2026-03-01 00:01"), "success")]
    assert not condition.is_true(ctx(at("2026-05-01 00:00"), *ran))
    assert condition.is_true(ctx(at("2027-03-01 00:00"), *ran))
    assert condition.next_change(ctx(at("2026-07-01 00:00"), *ran)) == at("2027-03-01 00:00")
    starts = simulate(yearly.on("Dec"), at("2026-01-01 00:00"), at("2029-01-01 00:00"), UTC)
    assert starts == [at("2026-12-01"), at("2027-12-01"), at("2028-12-01")]


def test_yearly_follows_the_local_new_year():
    tz = ZoneInfo("Pacific/Auckland")
    starts = simulate(yearly, at("2026-06-01", tz), at("2028-06-01", tz), tz)
    assert starts[1:] == [at("2027-01-01", tz), at("2028-01-01", tz)]
    assert starts[1] - starts[0] > timedelta(days=200)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Smarch", "not a valid"),
        (13, "not a valid"),
        ("Feb 30th", "not a valid"),
        ("Jan 32nd", "not a valid"),
    ],
)
def test_bad_year_values(value, message):
    with pytest.raises(ValueError, match=message):
        time_of_year.after(value)


def test_year_windows_render_and_parse_back():
    for condition in (
        yearly,
        yearly.between("Mar", "Jun"),
        yearly.at("Dec"),
        time_of_year.between("Nov", "Feb"),
        time_of_year.between("Dec 24th", "Dec 26th"),
        time_of_year.after("Dec 24th 18:00"),
        time_of_year.starting("Apr"),
        time_of_year.at("Feb 29th"),
    ):
        assert parse(str(condition)) == condition, str(condition)
