"""Value forms Rocketry 2.5.1 accepts, with its answers as the expected values.

Each expected value was asked of Rocketry's own period classes
(``datetime in TimeOfMinute("15:00", "30:00")`` and so on).
"""

import pytest

import django_rocket.conditions as c
from django_rocket.conditions import parse, parse_duration

from .helpers import at, ctx

# checked against Rocketry 2.5.1
ROCKETRY = [
    ("time_of_minute.between('15:00', '30:00')", "2026-03-02 10:00:14.999999", False),
    ("time_of_minute.between('15:00', '30:00')", "2026-03-02 10:00:15", True),
    ("time_of_minute.between('15:00', '30:00')", "2026-03-02 10:00:29.999999", True),
    ("time_of_minute.between('15:00', '30:00')", "2026-03-02 10:00:30", False),
    ("time_of_minute.at('12:00')", "2026-03-02 10:00:11.999999", False),
    ("time_of_minute.at('12:00')", "2026-03-02 10:00:12", True),
    ("time_of_minute.at('12:00')", "2026-03-02 10:00:12.999999", True),
    ("time_of_minute.at('12:00')", "2026-03-02 10:00:13", False),
    ("time_of_minute.after('45:00')", "2026-03-02 10:00:44.999999", False),
    ("time_of_minute.after('45:00')", "2026-03-02 10:00:45", True),
    ("time_of_minute.after('45:00')", "2026-03-02 10:00:59.999999", True),
    ("time_of_day.between('10:00:00.1234567', '12:00')", "2026-03-02 10:00:00.123455", False),
    ("time_of_day.between('10:00:00.1234567', '12:00')", "2026-03-02 10:00:00.123456", True),
    ("time_of_day.between({'hour': 10}, {'hour': 12})", "2026-03-02 09:59:59.999999", False),
    ("time_of_day.between({'hour': 10}, {'hour': 12})", "2026-03-02 10:00", True),
    ("time_of_day.between({'hour': 10}, {'hour': 12})", "2026-03-02 11:59:59.999999", True),
    ("time_of_day.between({'hour': 10}, {'hour': 12})", "2026-03-02 12:00", False),
    (
        "time_of_day.between({'hour': 10, 'minute': 30}, {'hour': 12})",
        "2026-03-02 10:29:59.999999",
        False,
    ),
    ("time_of_day.between({'hour': 10, 'minute': 30}, {'hour': 12})", "2026-03-02 10:30", True),
    ("time_of_hour.between('1 quarter', '2 quarter')", "2026-03-02 10:14:59.999999", False),
    ("time_of_hour.between('1 quarter', '2 quarter')", "2026-03-02 10:15", True),
    ("time_of_hour.between('1 quarter', '2 quarter')", "2026-03-02 10:29:59.999999", True),
    ("time_of_hour.between('1 quarter', '2 quarter')", "2026-03-02 10:30", False),
    ("time_of_hour.between('1q', '3q')", "2026-03-02 10:14:59.999999", False),
    ("time_of_hour.between('1q', '3q')", "2026-03-02 10:15", True),
    ("time_of_hour.between('1q', '3q')", "2026-03-02 10:44:59.999999", True),
    ("time_of_hour.between('1q', '3q')", "2026-03-02 10:45", False),
]


@pytest.mark.parametrize(("python", "now", "expected"), ROCKETRY)
def test_value_forms_checked_against_rocketry(python, now, expected):
    # The Python forms are evaluated here, in the test, over the public vocabulary.
    condition = eval(python, {}, vars(c))
    assert condition.is_true(ctx(at(now))) is expected


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        ("time of minute between 15:00 and 30:00", "time_of_minute.between('15', '30')"),
        ("minutely starting 45:00", "minutely.starting('45')"),
        ("minutely after 45:00", "minutely.after('45')"),
        ("time_of_minute.at('12:00')", "time_of_minute.at('12')"),
        ("time_of_minute.at('12:00.5')", "time_of_minute.at('12.5')"),
        ("daily.at('10:00:00.1234567')", "daily.at('10:00:00.123456')"),
        (
            "time_of_hour.between('1 quarter', '3 quarters')",
            "time_of_hour.between('15:00', '45:00')",
        ),
    ],
)
def test_colon_minute_values_fractions_and_quarters_in_strings(text, same_as):
    assert parse(text) == parse(same_as)


def test_dict_values_are_points():
    assert c.time_of_day.between({"hour": 10}, {"hour": 12}) == c.time_of_day.between(
        "10:00", "12:00"
    )
    assert c.time_of_week.between({"day": 0}, {"day": 4, "hour": 18}) == c.time_of_week.between(
        "Mon", "Fri 18:00"
    )
    assert c.daily.at({"hour": 3, "minute": 30}) == c.daily.at("03:30")
    assert c.time_of_minute.after({"second": 45}) == c.time_of_minute.after("45")


@pytest.mark.parametrize(
    "value",
    [{}, {"hours": 10}, {"hour": 10.5}, {"hour": -1}, {"hour": 25}, {"hour": True}],
)
def test_bad_dict_values(value):
    with pytest.raises(ValueError, match="not a valid start"):
        c.time_of_day.after(value)


def test_a_colon_minute_value_must_end_in_00():
    # Rocketry would read '15:30' as 15 seconds, silently dropping ':30'.
    with pytest.raises(ValueError, match="not a valid"):
        c.time_of_minute.at("15:30")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1.5 hours", 5400), ("0.5 days", 43200), ("1 day 2.5 hours", 95400), (".5 h", 1800)],
)
def test_fractional_durations_checked_against_rocketry(text, seconds):
    # checked against Rocketry 2.5.1 (rocketry.pybox.time.to_timedelta)
    assert parse_duration(text).total_seconds() == seconds
