"""cron() and crontime(): field syntax, day-of-month OR day-of-week, history, next match.

Cases marked "checked against Rocketry 2.5.1" were run against Rocketry; the
others are reasoned from SEMANTICS.md.
"""

from datetime import timedelta

import pytest

from django_rocket.conditions import cron, crontime

from .helpers import at, ctx, run

# 2026-03-13 is a Friday, 2026-03-06 a Friday, 2026-03-12 a Thursday, 2026-03-02 a Monday.
ROCKETRY = [
    ("0 0 13 * 5", "2026-03-13 00:00", True),
    ("0 0 13 * 5", "2026-03-06 00:00", True),
    ("0 0 13 * 5", "2026-03-12 00:00", False),
    ("0 0 13 * 5", "2026-04-13 00:00", True),
    ("0 0 */2 * 1", "2026-03-14 00:00", False),
    ("0 0 */2 * 1", "2026-03-13 00:00", True),
    ("0 0 * * 1", "2026-03-13 00:00", False),
    ("0 0 */2 * 1", "2026-03-02 00:00", True),
    ("*/15 9-17 * * mon-fri", "2026-03-02 09:15:30", True),
    ("*/15 9-17 * * mon-fri", "2026-03-02 09:16", False),
    ("0 9 * * 7", "2026-03-01 09:00", True),
    ("0 9 * * sun", "2026-03-01 09:00", True),
    # Any day field other than "*" is restricted, so the two are ORed.
    ("0 0 1-31 * mon", "2026-03-10 00:00", True),
    ("0 0 */1 * mon", "2026-03-10 00:00", True),
    ("0 0 1 * 0-6", "2026-03-10 00:00", True),
    ("0 0 1 * 1-7", "2026-03-10 00:00", True),
    # Day-of-week ranges ending at Sunday, and ranges that wrap.
    ("0 0 * * fri-sun", "2026-03-08 00:00", True),
    ("0 0 * * fri-sun", "2026-03-07 00:00", True),
    ("0 0 * * fri-sun", "2026-03-09 00:00", False),
    ("0 0 * * sat-sun", "2026-03-08 00:00", True),
    ("0 0 * * sat-sun", "2026-03-06 00:00", False),
    ("5-1 * * * *", "2026-03-02 10:00", True),
    ("5-1 * * * *", "2026-03-02 10:03", False),
    ("5-1 * * * *", "2026-03-02 10:59", True),
    ("0 22-2 * * *", "2026-03-02 23:00", True),
    ("0 22-2 * * *", "2026-03-02 01:00", True),
    ("0 22-2 * * *", "2026-03-02 03:00", False),
    ("0 0 * nov-feb *", "2026-01-01 00:00", True),
    ("0 0 * nov-feb *", "2026-03-01 00:00", False),
    ("*/20 * * * *", "2026-03-02 10:40", True),
    ("*/20 * * * *", "2026-03-02 10:41", False),
    ("0 9 * * mon-fri", "2026-03-07 09:00", False),
]


@pytest.mark.parametrize(("expr", "now", "expected"), ROCKETRY)
def test_crontime_checked_against_rocketry(expr, now, expected):
    # checked against Rocketry 2.5.1
    assert crontime(expr).is_true(ctx(at(now))) is expected


REASONED = [
    ("30 2 * * *", "2026-03-02 02:30:59.999999", True),
    ("30 2 * * *", "2026-03-02 02:31", False),
    ("0-10/5 * * * *", "2026-03-02 07:10", True),
    ("0-10/5 * * * *", "2026-03-02 07:15", False),
    ("5/20 * * * *", "2026-03-02 07:45", True),
    ("0 12 1,15 * *", "2026-03-15 12:00", True),
    ("0 12 1,15 * *", "2026-03-16 12:00", False),
    ("0 12 * jan,mar *", "2026-03-16 12:00", True),
    ("0 12 * JAN-FEB *", "2026-03-16 12:00", False),
    ("0 12 * * MONDAY", "2026-03-02 12:00", True),
    ("0 0 1 * *", "2026-04-01 00:00", True),
    ("0 0 29 2 *", "2028-02-29 00:00", True),
    ("0 0 31 * mon", "2026-03-09 00:00", True),  # a Monday, OR
    ("0 0 * * mon", "2026-03-10 00:00", False),  # day of month "*": AND
]


# Deviations from Rocketry 2.5.1, as croniter (and every cron) reads them: weekday steps
# count from Sunday = 0 (Rocketry's */2 is Mon, Wed, Fri, Sun and its 1-5/2 Tue, Thu, Sat),
# and "5/20" is 5, 25, 45 (Rocketry raises RecursionError).
DIFFERS_FROM_ROCKETRY = [
    ("0 0 * * */2", "2026-03-01 00:00", True),  # Sunday
    ("0 0 * * */2", "2026-03-03 00:00", True),  # Tuesday
    ("0 0 * * */2", "2026-03-02 00:00", False),  # Monday
    ("0 0 * * 1-5/2", "2026-03-02 00:00", True),  # Monday
    ("0 0 * * 1-5/2", "2026-03-06 00:00", True),  # Friday
    ("0 0 * * 1-5/2", "2026-03-03 00:00", False),  # Tuesday
    ("5/20 * * * *", "2026-03-02 07:25", True),
    ("5/20 * * * *", "2026-03-02 07:20", False),
]


@pytest.mark.parametrize(("expr", "now", "expected"), DIFFERS_FROM_ROCKETRY)
def test_cron_steps_as_every_cron_reads_them(expr, now, expected):
    # reasoned from croniter and POSIX cron; a documented difference from Rocketry
    assert crontime(expr).is_true(ctx(at(now))) is expected


@pytest.mark.parametrize(("expr", "now", "expected"), REASONED)
def test_crontime(expr, now, expected):
    # reasoned from SEMANTICS.md
    assert crontime(expr).is_true(ctx(at(now))) is expected


def test_cron_runs_once_in_its_minute_checked_against_rocketry():
    # checked against Rocketry 2.5.1
    history = [run(at("2026-03-02 09:00:30"))]
    assert not cron("0 9 * * *").is_true(ctx(at("2026-03-02 09:00:45"), *history))
    assert cron("0 9 * * *").is_true(ctx(at("2026-03-03 09:00:45"), *history))


def test_cron_ignores_starts_outside_its_minute():
    # reasoned from SEMANTICS.md
    history = [run(at("2026-03-02 08:59:59.999999"))]
    assert cron("0 9 * * *").is_true(ctx(at("2026-03-02 09:00:10"), *history))


@pytest.mark.parametrize(
    ("expr", "now", "expected"),
    [
        ("0 9 * * *", "2026-03-02 08:00", "2026-03-02 09:00"),
        ("0 9 * * *", "2026-03-02 09:00:20", "2026-03-02 09:01"),
        ("0 9 * * *", "2026-03-02 09:01", "2026-03-03 09:00"),
        ("0 9 * * mon-fri", "2026-03-06 10:00", "2026-03-09 09:00"),
        ("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"),
        ("*/10 * * * *", "2026-03-02 23:55", "2026-03-03 00:00"),
    ],
)
def test_cron_next_change(expr, now, expected):
    # reasoned from SEMANTICS.md
    assert crontime(expr).next_change(ctx(at(now))) == at(expected)
    assert cron(expr).next_change(ctx(at(now))) == at(expected)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "five fields"),
        ("1 2 3 4 5 6 7 8", "five fields"),
        ("@often", "@yearly"),
        ("60 * * * *", r"the minute field '60' is not valid \(croniter: .*out of range\)"),
        ("* 24 * * *", "the hour field '24'"),
        ("* * 0 * *", "the day of month field '0'"),
        ("* * * 13 *", "the month field '13'"),
        ("* * * * 8", "the day of week field '8'"),
        ("*/0 * * * *", "step '0'"),
        ("* * * * funday", "the day of week field 'funday'"),
        ("0 0 31 2 *", "never occurs"),
        ("L * * * *", "the minute field 'L'"),
        ("0 0 * * 5#6", "the day of week field '5#6'"),
        ("* * * * * 60", "the second field '60'"),
        ("R 3 * * *", "use H"),
        ("0 R(0-3) * * *", "use H"),
    ],
)
def test_bad_cron_expressions(expr, message):
    with pytest.raises(ValueError, match=message):
        cron(expr)


def test_cron_text_is_normalised():
    assert str(cron("0  9 * *   MON-FRI")) == "cron('0 9 * * mon-fri')"
    assert str(cron("0 9 * * Monday-Friday")) == "cron('0 9 * * mon-fri')"
    assert str(cron("0 9 * MARCH *")) == "cron('0 9 * mar *')"
    assert cron("0 9 * * MON-FRI") == cron("0 9 * * mon-fri")
    assert str(crontime("*/5 * * * *")) == "crontime('*/5 * * * *')"
    assert cron("* * * * *").depends_on("t") == frozenset({"t"})
    assert crontime("* * * * *").depends_on("t") == frozenset()


def test_cron_explains_its_minute():
    explanation = cron("0 9 * * *").explain(ctx(at("2026-03-02 09:00:20")))
    assert explanation.value is True
    assert explanation.facts["window"] == [at("2026-03-02 09:00"), at("2026-03-02 09:01")]
    assert explanation.next_change == at("2026-03-02 09:01")
    later = cron("0 9 * * *").explain(ctx(at("2026-03-02 10:00")))
    assert later.facts == {"next_match": at("2026-03-03 09:00")}
    assert later.next_change == at("2026-03-03 09:00") + timedelta(0)
