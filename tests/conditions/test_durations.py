"""parse_duration and format_duration (reasoned from SEMANTICS.md)."""

from datetime import timedelta

import pytest

from django_rocket.conditions import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10 seconds", timedelta(seconds=10)),
        ("1 hour 30 minutes", timedelta(hours=1, minutes=30)),
        ("1 hour, 30 minutes", timedelta(hours=1, minutes=30)),
        ("00:10:00", timedelta(minutes=10)),
        ("1:02:03.5", timedelta(hours=1, minutes=2, seconds=3.5)),
        ("2 days 01:00:00", timedelta(days=2, hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("2 weeks", timedelta(weeks=2)),
        ("500 ms", timedelta(milliseconds=500)),
        ("1.5 hours", timedelta(minutes=90)),
        ("  3 Minutes ", timedelta(minutes=3)),
        ("45", timedelta(seconds=45)),
        (timedelta(minutes=5), timedelta(minutes=5)),
        (30, timedelta(seconds=30)),
        (0.25, timedelta(milliseconds=250)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "ten minutes", "10 lightyears", "10:00", "-5 seconds", "5 minutes and"]
)
def test_parse_duration_rejects_bad_text_with_help(text):
    with pytest.raises(ValueError, match="Write a duration like"):
        parse_duration(text)


def test_parse_duration_rejects_negative_and_odd_types():
    with pytest.raises(ValueError, match="negative"):
        parse_duration(timedelta(seconds=-1))
    with pytest.raises(TypeError):
        parse_duration(True)
    with pytest.raises(TypeError):
        parse_duration([10])


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(minutes=10), "10 minutes"),
        (timedelta(hours=1, minutes=30), "1 hour 30 minutes"),
        (timedelta(days=1), "1 day"),
        (timedelta(seconds=1, milliseconds=500), "1 second 500 milliseconds"),
        (timedelta(microseconds=7), "7 microseconds"),
        (timedelta(0), "0 seconds"),
    ],
)
def test_format_duration_round_trips(delta, text):
    assert format_duration(delta) == text
    assert parse_duration(text) == delta
