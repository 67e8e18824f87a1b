"""What croniter brings as the cron engine: aliases, L/W/#, seconds, years, H, keyword fields.

Rocketry 2.5.1 has none of these (its cron reads five plain fields), so the
expected values are croniter's documented meanings; the DST property checks
the croniter-based matching against a brute-force reading of our DST rules.
"""

import importlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from django_rocket.conditions import ConditionSyntaxError, cron, crontime, parse
from django_rocket.conditions.cron import _Engine

from .helpers import at, ctx, day_bounds, run, simulate

# The module, which the package's name ``cron`` (the function) hides.
cron_module = importlib.import_module("django_rocket.conditions.cron")

# 2026-02-28 is a Saturday, 2026-03-15 a Sunday, 2026-03-13 the second Friday of March.


@pytest.mark.parametrize(
    ("alias", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_aliases_match_like_their_expression(alias, same_as):
    condition, expected = crontime(alias), crontime(same_as)
    assert str(condition) == f"crontime({alias!r})"
    for now in ("2026-01-01 00:00", "2026-03-01 00:00:30", "2026-03-02 00:00", "2026-03-02 05:00"):
        context = ctx(at(now))
        assert condition.is_true(context) is expected.is_true(context), (alias, now)
        assert condition.next_change(context) == expected.next_change(context), (alias, now)


@pytest.mark.parametrize(
    ("expr", "now", "expected"),
    [
        ("0 0 L * *", "2026-02-28 00:00", True),  # the last day of February
        ("0 0 L * *", "2026-03-30 00:00", False),
        ("0 0 L * *", "2026-03-31 00:00", True),
        ("0 0 15W * *", "2026-03-16 00:00", True),  # the 15th is a Sunday: Monday the 16th
        ("0 0 15W * *", "2026-03-15 00:00", False),
        ("0 0 15W * *", "2026-04-15 00:00", True),  # a Wednesday
        ("0 0 * * 5#2", "2026-03-13 00:00", True),  # the second Friday
        ("0 0 * * 5#2", "2026-03-06 00:00", False),
        ("0 0 * * L5", "2026-03-27 00:00", True),  # the last Friday
        ("0 0 * * L5", "2026-03-20 00:00", False),
        ("* * * * * 30", "2026-03-02 10:00:30.5", True),
        ("* * * * * 30", "2026-03-02 10:00:31", False),
        ("0 9 * * * 0 2027", "2026-03-02 09:00", False),
        ("0 9 * * * 0 2027", "2027-03-02 09:00", True),
    ],
)
def test_croniter_syntax(expr, now, expected):
    assert crontime(expr).is_true(ctx(at(now))) is expected


def test_a_seconds_field_makes_one_second_windows():
    condition = cron("* * * * * */20")
    assert condition.next_change(ctx(at("2026-03-02 10:00:05"))) == at("2026-03-02 10:00:20")
    inside = ctx(at("2026-03-02 10:00:20.25"))
    assert condition.next_change(inside) == at("2026-03-02 10:00:21")
    ran = ctx(at("2026-03-02 10:00:20.5"), run(at("2026-03-02 10:00:20.1")))
    assert not condition.is_true(ran)
    assert condition.is_true(ctx(at("2026-03-02 10:00:40"), run(at("2026-03-02 10:00:20.1"))))


def test_l_and_hash_next_change():
    assert crontime("0 0 L * *").next_change(ctx(at("2026-02-01 12:00"))) == at("2026-02-28 00:00")
    assert crontime("0 0 * * 5#2").next_change(ctx(at("2026-03-14 00:00"))) == at(
        "2026-04-10 00:00"
    )


def test_letters_render_as_capitals_and_names_in_lower_case():
    assert str(cron("h 3 * * MON")) == "cron('H 3 * * mon')"
    assert str(crontime("0 0 l * *")) == "crontime('0 0 L * *')"
    assert str(crontime("0 0 15w * *")) == "crontime('0 0 15W * *')"
    assert str(crontime("0 0 * * l5")) == "crontime('0 0 * * L5')"
    assert str(crontime("@DAILY")) == "crontime('@daily')"
    assert cron("h 3 * * *") == cron("H 3 * * *")


def test_keyword_fields_as_in_rocketry():
    assert cron(minute="*/5", hour="9-17") == cron("*/5 9-17 * * *")
    assert crontime(day_of_week="mon", hour=9, minute=0) == crontime("0 9 * * mon")
    assert cron() == cron("* * * * *")
    assert parse("cron(minute='*/5', hour='9-17')") == cron("*/5 9-17 * * *")
    assert parse("crontime(day_of_month='1,15', month='jan')") == crontime("* * 1,15 jan *")
    with pytest.raises(TypeError, match="not both"):
        cron("* * * * *", minute="5")


def test_a_bad_keyword_field_points_at_its_keyword():
    text = "cron(minute='0', hour='25')"
    with pytest.raises(ConditionSyntaxError) as info:
        parse(text)
    assert info.value.column == text.index("hour")
    assert "hour" in info.value.message


@pytest.mark.parametrize(
    ("text", "at_fault"),
    [
        ("cron('0 0 * * 5#6')", "5#6"),
        ("daily & cron 0 61 * * *", "61"),
        ('crontime("*/5 * 32 * *")', "32"),
        ("cron('0 0 31 2 *')", "31"),
        ("cron('0 0 * * *  99')", "99"),
    ],
)
def test_the_caret_points_at_the_field_croniter_refuses(text, at_fault):
    with pytest.raises(ConditionSyntaxError) as info:
        parse(text)
    assert info.value.column == text.index(at_fault)
    caret = str(info.value).splitlines()[-1]
    assert caret.index("^") - 4 == text.index(at_fault)


def test_croniter_s_reason_is_in_the_message():
    with pytest.raises(ConditionSyntaxError, match=r"croniter: .*out of range"):
        parse("cron('0 61 * * *')")


def _minute_of(condition, task):
    context = ctx(at("2026-03-02 00:00"), task=task)
    return condition.next_change(context)


def test_hashed_minutes_are_seeded_by_the_task_name():
    condition = cron("H 3 * * *")
    first = _minute_of(condition, "etl")
    assert first.hour == 3
    # The same task gets the same minute from another object and another day.
    assert _minute_of(cron("H 3 * * *"), "etl") == first
    following = condition.next_change(ctx(first + timedelta(minutes=5), task="etl"))
    assert following == first + timedelta(days=1)
    facts = condition.explain(ctx(at("2026-03-02 00:00"), task="etl")).facts
    assert facts["expression_for_task"] == f"{first.minute} 3 * * *"


def test_a_thousand_hashed_tasks_spread_over_the_hour():
    condition = cron("H 3 * * *")
    minutes = [_minute_of(condition, f"task-{index}").minute for index in range(1000)]
    busiest = max(minutes.count(minute) for minute in set(minutes))
    assert len(set(minutes)) == 60
    assert busiest < 40  # 1,000 / 60 is about 17


def test_hashed_ranges_and_steps():
    condition = crontime("H(0-9) H/6 * * *")
    for task in ("a", "b", "c", "d"):
        minute, hours = condition.schedule.resolved(task).split()[:2]
        assert 0 <= int(minute) <= 9
        assert len(hours.split(",")) == 4


def test_steady_ticks_ask_croniter_nothing(monkeypatch):
    calls = []
    original = _Engine._after

    def counting(self, wall):
        calls.append(wall)
        return original(self, wall)

    monkeypatch.setattr(_Engine, "_after", counting)
    condition = cron("*/15 * * * *")
    start = at("2026-03-02 10:14:00")
    for second in range(0, 3 * 60, 1):
        condition.evaluate(ctx(start + timedelta(seconds=second)))
    # Three minutes of ticks cross one match (10:15) and need the next one (10:30).
    assert len(calls) <= 4
    assert condition.next_change(ctx(start)) == at("2026-03-02 10:15")


def test_an_expression_that_never_matches_again_is_false_for_good(monkeypatch):
    condition = crontime("0 0 * * * 0 2026")
    context = ctx(at("2027-01-01 00:00"))
    assert condition.evaluate(context) == (False, None)
    calls = []
    original = _Engine._after

    def counting(self, wall):
        calls.append(wall)
        return original(self, wall)

    monkeypatch.setattr(_Engine, "_after", counting)
    # croniter is not asked again.
    monkeypatch.setattr(cron_module.croniter, "get_next", None)
    assert condition.evaluate(ctx(at("2027-01-01 00:05"))) == (False, None)
    assert calls


def test_a_match_years_away_is_found():
    assert crontime("0 0 * * * 0 2040").next_change(ctx(at("2026-03-02 10:00"))) == at(
        "2040-01-01 00:00"
    )
    # The fifth Monday of February: a leap year whose Feb 29 is a Monday.
    assert crontime("0 0 * 2 1#5").next_change(ctx(at("2026-03-02 10:00"))) == at(
        "2044-02-29 00:00"
    )


def test_a_long_name_does_not_take_the_blame():
    with pytest.raises(ValueError, match="the second field '61'"):
        cron("0 9 * * monday 61")


# The DST rules, read minute by minute in UTC: a matching wall-clock minute runs
# the first time the clock shows it, and the matching minutes a spring-forward
# gap skips run once, at the first minute after the gap.


def _reference(expr: str, tz, day: str) -> list[datetime]:
    from croniter import croniter

    (minutes, hours, *_), _ = croniter.expand(expr)

    def match(wall: datetime) -> bool:
        return (minutes == ["*"] or wall.minute in minutes) and (
            hours == ["*"] or wall.hour in hours
        )

    start, end = day_bounds(day, tz)
    seen: set[datetime] = set()
    runs = []
    previous = None
    # From the evening before, so that a gap at midnight is seen whole.
    moment = start - timedelta(hours=3)
    while moment < end:
        wall = moment.astimezone(tz).replace(tzinfo=None)
        due = wall not in seen and match(wall)
        if previous is not None and wall - previous > timedelta(minutes=1):
            skipped = previous + timedelta(minutes=1)
            while skipped < wall:
                due = due or match(skipped)
                skipped += timedelta(minutes=1)
        if due and moment >= start:
            runs.append(moment)
        seen.add(wall)
        previous = wall
        moment += timedelta(minutes=1)
    return runs


DST_DAYS = [
    ("Europe/Berlin", "2026-03-29"),
    ("Europe/Berlin", "2026-10-25"),
    ("America/New_York", "2026-03-08"),
    ("America/New_York", "2026-11-01"),
    ("Australia/Lord_Howe", "2026-10-04"),  # a 30-minute jump
    ("Australia/Lord_Howe", "2026-04-05"),
    ("America/Santiago", "2026-09-06"),  # the clock jumps at midnight
    ("Europe/Berlin", "2026-03-30"),
]
MINUTES = st.sampled_from(["*/7", "0,30", "15", "*/20", "59", "0-5", "45-50/2", "31"])
HOURS = st.sampled_from(["*", "0", "1", "2", "3", "1-3", "*/2", "22-2", "0,2,4"])


@settings(max_examples=40, deadline=None)
@given(place=st.sampled_from(DST_DAYS), minute=MINUTES, hour=HOURS)
def test_cron_follows_the_dst_rules(place, minute, hour):
    zone, day = place
    tz = ZoneInfo(zone)
    expr = f"{minute} {hour} * * *"
    start, end = day_bounds(day, tz)
    expected = _reference(expr, tz, day)
    starts = simulate(cron(expr), start, end, tz)
    assert [instant.astimezone(UTC) for instant in starts] == expected
    # Polled minute by minute, as a scheduler that ignores next_change would.
    condition = crontime(expr)
    polled = []
    moment = start
    while moment < end:
        if condition.is_true(ctx(moment, tz=tz)):
            polled.append(moment)
        moment += timedelta(minutes=1)
    assert polled == expected


def test_the_engine_imports_no_django():
    assert "django" not in cron_module.__dict__
    assert cron_module.croniter.__module__.startswith("croniter")


# Whatever order a scheduler, the admin and explaintask ask in, the remembered
# answers must be croniter's own: on UTC (no DST) the condition is croniter.
EXPRESSIONS = [
    "*/7 * * * *",
    "0 0 L * *",
    "30 9 15W * *",
    "0 12 * * 5#2",
    "0 0 * * L5",
    "5-1 9-17/2 * * mon-fri",
    "0 0 29 2 *",
    "* * * * * */20",
    "15 3 1,15 * sun",
    "@weekly",
]


@settings(max_examples=60, deadline=None)
@given(
    expr=st.sampled_from(EXPRESSIONS),
    moments=st.lists(
        st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31)),
        min_size=1,
        max_size=12,
    ),
)
def test_remembered_answers_are_croniter_s_in_any_order(expr, moments):
    from croniter import croniter

    condition = crontime(expr)
    step = timedelta(seconds=1) if len(expr.split()) > 5 else timedelta(minutes=1)
    for moment in moments:
        now = moment.replace(tzinfo=UTC)
        floor = moment.replace(microsecond=0)
        if step == timedelta(minutes=1):
            floor = floor.replace(second=0)
        matches = (
            croniter.match(expr, floor)
            if step == timedelta(minutes=1)
            else (floor.second % 20 == 0)
        )
        assert condition.is_true(ctx(now)) is matches, (expr, moment)
        expected = floor + step if matches else croniter(expr, floor).get_next(datetime)
        assert condition.next_change(ctx(now)) == expected.replace(tzinfo=UTC), (expr, moment)


def test_a_stray_fold_on_an_unambiguous_time_is_ignored():
    # fold=1 only means something on a repeated wall-clock time.
    now = datetime(2026, 1, 1, 0, 0, fold=1, tzinfo=UTC)
    assert crontime("*/7 * * * *").is_true(ctx(now))
    berlin = ZoneInfo("Europe/Berlin")
    assert crontime("0 12 * * *").is_true(
        ctx(datetime(2026, 3, 2, 12, fold=1, tzinfo=berlin), tz=berlin)
    )
