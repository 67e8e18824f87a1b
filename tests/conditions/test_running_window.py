"""running limited to a period's window, and Rocketry's deprecated running() call forms.

The window cases were asked of Rocketry 2.5.1's ``TaskRunning(period=TimeOfDay(...))``
with a run in progress that started at the given instant.
"""

import warnings

import pytest

from django_rocket.conditions import parse, running

from .helpers import at, ctx, run

# checked against Rocketry 2.5.1:
# (run started at, now, running.today.between('10:00', '12:00'), running.today)
ROCKETRY = [
    ("2026-03-02 11:00", "2026-03-02 11:30", True, True),
    ("2026-03-02 11:00", "2026-03-02 14:00", True, True),
    ("2026-03-02 11:00", "2026-03-03 09:00", True, False),
    ("2026-03-02 11:00", "2026-03-03 10:30", False, False),
    ("2026-03-02 09:00", "2026-03-02 11:30", False, True),
    ("2026-03-02 09:00", "2026-03-02 14:00", False, True),
    ("2026-03-02 09:00", "2026-03-03 09:00", False, False),
    ("2026-03-02 09:00", "2026-03-03 10:30", False, False),
    ("2026-03-01 23:00", "2026-03-02 11:30", False, False),
    ("2026-03-01 23:00", "2026-03-02 14:00", False, False),
    ("2026-03-01 23:00", "2026-03-03 09:00", False, False),
    ("2026-03-01 23:00", "2026-03-03 10:30", False, False),
]


@pytest.mark.parametrize(("started", "now", "in_window", "today"), ROCKETRY)
def test_running_in_a_window_checked_against_rocketry(started, now, in_window, today):
    context = ctx(at(now), run(at(started)))
    assert running.today.between("10:00", "12:00").is_true(context) is in_window
    assert running.today.is_true(context) is today


def test_running_in_a_window_next_change_and_count():
    history = [run(at("2026-03-02 11:00")), run(at("2026-03-02 11:10"))]
    condition = running.today.between("10:00", "12:00")
    assert condition.next_change(ctx(at("2026-03-02 14:00"), *history)) == at("2026-03-03 10:00")
    assert (condition >= 2).is_true(ctx(at("2026-03-02 14:00"), *history))
    finished = [run(at("2026-03-02 11:00"), at("2026-03-02 11:30"), "success")]
    assert not condition.is_true(ctx(at("2026-03-02 11:45"), *finished))
    explanation = condition.explain(ctx(at("2026-03-02 14:00"), *history))
    assert explanation.facts["window"] == [at("2026-03-02 10:00"), at("2026-03-02 12:00")]


def test_running_periods_render_and_parse_back():
    for condition in (
        running.today,
        running("etl").this_hour,
        running.this_week.between("Mon", "Fri"),
        running.today.after("10:00") >= 2,
    ):
        assert parse(str(condition)) == condition


def test_an_age_and_a_period_do_not_mix():
    with pytest.raises(TypeError, match="already has"):
        running.more_than("1 hour").today  # noqa: B018
    with pytest.raises(TypeError, match="already has"):
        running.today.more_than("1 hour")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("running()", "running"),
        ("running(more_than='1 hour')", "running.more_than('1 hour')"),
        ("running(less_than='10 minutes')", "running.less_than('10 minutes')"),
        (
            "running(more_than='1 minute', less_than='1 hour')",
            "running.between('1 minute', '1 hour')",
        ),
        ("running('etl', more_than='1 hour')", "running('etl').more_than('1 hour')"),
        ("running(task='etl')", "running('etl')"),
    ],
)
def test_rocketry_deprecated_running_calls(old, new):
    # Rocketry 2.5.1 accepts these with a DeprecationWarning; they read one way only.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse(old) == parse(new)
