"""during(start, end): a fixed calendar interval, Rocketry's StaticInterval.

The boundary cases were asked of Rocketry 2.5.1:
``datetime in StaticInterval("2026-12-01", "2027-01-06 12:00")``.
"""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from django_rocket.conditions import daily, during, parse

from .helpers import at, ctx


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-30 23:59:59.999999", False),
        ("2026-12-01 00:00", True),
        ("2026-12-24 10:00", True),
        ("2027-01-06 11:59:59.999999", True),
        ("2027-01-06 12:00", False),
        ("2027-01-07 00:00", False),
    ],
)
def test_during_checked_against_rocketry(now, expected):
    # checked against Rocketry 2.5.1
    assert during("2026-12-01", "2027-01-06 12:00").is_true(ctx(at(now))) is expected


def test_open_sides_checked_against_rocketry():
    # checked against Rocketry 2.5.1: StaticInterval(None, end) and StaticInterval(start, None)
    assert during(end="2027-01-06").is_true(ctx(at("2020-01-01 00:00")))
    assert not during(end="2027-01-06").is_true(ctx(at("2027-01-06 00:00")))
    assert not during(start="2027-01-06").is_true(ctx(at("2020-01-01 00:00")))
    assert during(start="2027-01-06").is_true(ctx(at("2030-01-01 00:00")))


def test_naive_values_are_local_and_aware_ones_instants():
    berlin = ZoneInfo("Europe/Berlin")
    condition = during("2026-12-24 18:00", "2026-12-26")
    assert condition.next_change(ctx(at("2026-12-24 12:00", berlin), tz=berlin)) == at(
        "2026-12-24 18:00", berlin
    )
    assert condition.next_change(ctx(at("2026-12-25 12:00", berlin), tz=berlin)) == at(
        "2026-12-26 00:00", berlin
    )
    assert condition.next_change(ctx(at("2026-12-27 12:00", berlin), tz=berlin)) is None
    aware = during(datetime(2026, 12, 24, 17, tzinfo=UTC))
    assert aware.is_true(ctx(at("2026-12-24 18:00", berlin), tz=berlin))
    assert not aware.is_true(ctx(at("2026-12-24 17:59", berlin), tz=berlin))


def test_during_renders_and_parses_back():
    for condition in (
        during("2026-12-01", "2027-01-06 12:00"),
        during(date(2026, 12, 1)),
        during(end=datetime(2027, 1, 6, tzinfo=UTC)),
        daily & during("2026-12-01 10:30:15", "2026-12-02"),
    ):
        assert parse(str(condition)) == condition
    assert str(during(date(2026, 12, 1), "2026-12-02T00:00:00")) == (
        "during('2026-12-01', '2026-12-02')"
    )


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-13-01", None, "not a valid start"),
        ("2026-12-02", "2026-12-01", "before the end"),
        (None, "tomorrow", "not a valid end"),
        (12, None, "dates, datetimes"),
    ],
)
def test_bad_during_values(start, end, message):
    with pytest.raises((TypeError, ValueError), match=message):
        during(start, end)
