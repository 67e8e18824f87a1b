"""time_of_year and yearly: windows in the calendar year.

Rocketry 2.5.1 has the period (``rocketry.time.TimeOfYear``) but no condition
for it in ``rocketry.conds``; the window values were checked against the
period, the once-a-year behaviour is reasoned from SEMANTICS.md.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(1, 12),
    last=st.integers(1, 12),
    moment=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Auckland", "America/Santiago"]),
)
def test_a_month_window_holds_in_exactly_its_months(first, last, moment, zone):
    tz = ZoneInfo(zone)
    now = moment.replace(tzinfo=tz)
    month = now.astimezone(tz).month
    inside = first <= month <= last if first <= last else month >= first or month <= last
    condition = time_of_year.between(MONTH_NAMES[first - 1], MONTH_NAMES[last - 1])
    assert condition.is_true(ctx(now, tz=tz)) is inside
    # The value holds until its next change, which lies at the start of a month.
    change = condition.next_change(ctx(now, tz=tz))
    if change is not None:
        local = change.astimezone(tz)
        assert local.day == 1 or (local - timedelta(hours=1)).day == 1
        assert condition.is_true(ctx(change, tz=tz)) is not inside
