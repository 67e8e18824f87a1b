"""Property tests: DST over a year of days, and next_change (reasoned from SEMANTICS.md)."""

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_rocket.conditions import (
    Context,
    MemoryHistory,
    RunRecord,
    after_all_finish,
    after_any_success,
    after_fail,
    after_success,
    cron,
    crontime,
    daily,
    every,
    failed,
    finished,
    hourly,
    minutely,
    monthly,
    retry,
    running,
    started,
    succeeded,
    time_of_day,
    time_of_hour,
    time_of_minute,
    time_of_month,
    time_of_week,
    weekly,
)
from django_rocket.conditions.periods import resolve_wall

from .helpers import day_bounds, simulate

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Santiago and Cairo change the clock at midnight; Kolkata has a half-hour offset and
# Lord Howe a half-hour DST shift, so hours there do not line up with UTC hours.
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "America/Santiago", "Africa/Cairo"]
EVERY_ZONE = [*ZONES, "Asia/Kolkata", "Australia/Lord_Howe"]

days_2026 = st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31))


@SETTINGS
@given(
    zone=st.sampled_from(EVERY_ZONE),
    day=days_2026,
    hour=st.integers(0, 22),
    minute=st.integers(0, 59),
)
def test_a_daily_time_runs_once_every_local_day(zone, day, hour, minute):
    tz = ZoneInfo(zone)
    begin, end = day_bounds(day.isoformat(), tz)
    wall = datetime(day.year, day.month, day.day, hour, minute)
    expected = resolve_wall(wall, tz)
    for condition in (daily.at(f"{hour:02d}:{minute:02d}"), cron(f"{minute} {hour} * * *")):
        starts = [s for s in simulate(condition, begin - timedelta(hours=2), end, tz) if s >= begin]
        assert starts == [expected], condition
    # The run is at the wall time, or at the first instant after a gap that skips it.
    assert expected.astimezone(tz).replace(tzinfo=None) >= wall


@SETTINGS
@given(zone=st.sampled_from(ZONES), day=days_2026)
def test_daily_and_hourly_over_a_year_of_days(zone, day):
    tz = ZoneInfo(zone)
    begin, end = day_bounds(day.isoformat(), tz)
    assert simulate(daily, begin, end, tz) == [begin]
    hours = (end - begin) / timedelta(hours=1)
    assert len(simulate(hourly, begin, end, tz)) == hours
    late = cron("59 23 * * *")
    assert len(simulate(late, begin, end, tz)) == 1


# next_change -----------------------------------------------------------------------------

clock = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 59])
)
weekday = st.sampled_from(["Mon", "Wed", "Fri", "Sun", "Sat 18:00", "Mon 08:30"])
monthday = st.sampled_from(["1st", "2nd", "15th", "28th", "30th", "31st", "15th 12:00"])
durations = st.sampled_from(["10 seconds", "10 minutes", "1 hour", "1 day", "3 days"])
narrowings = st.one_of(
    st.builds(lambda a, b: ("between", a, b), clock, clock),
    st.builds(lambda a: ("after", a), clock),
    st.builds(lambda a: ("before", a), clock),
    st.builds(lambda a: ("at", a), clock),
    st.builds(lambda a: ("starting", a), clock),
)


def _narrow(condition, narrowing):
    method, *values = narrowing
    return getattr(condition, method)(*values)


periodic = st.one_of(
    st.sampled_from([daily, hourly, weekly, monthly, minutely]),
    st.builds(_narrow, st.just(daily), narrowings),
    st.builds(lambda a, b: weekly.between(a, b), weekday, weekday),
    st.builds(lambda a: monthly.starting(a), monthday),
    st.builds(lambda a, b: monthly.between(a, b), monthday, monthday),
)
time_windows = st.one_of(
    st.builds(_narrow, st.just(time_of_day), narrowings),
    st.builds(lambda a, b: time_of_week.between(a, b), weekday, weekday),
    st.builds(lambda a, b: time_of_month.between(a, b), monthday, monthday),
    st.builds(
        lambda a, b: time_of_hour.between(f"{a:02d}:00", f"{b:02d}:00"),
        st.integers(0, 59),
        st.integers(0, 59),
    ),
    st.builds(lambda a, b: time_of_minute.between(a, b), st.integers(0, 59), st.integers(0, 59)),
)
event_kinds = st.sampled_from([started, succeeded, failed, finished])
event_periods = st.sampled_from(
    [
        lambda e: e,
        lambda e: e.today,
        lambda e: e.this_hour,
        lambda e: e.this_week,
        lambda e: e.this_month,
        lambda e: e.past("2 hours"),
        lambda e: e.today.between("09:00", "17:00"),
        lambda e: e.this_week.on("Tue"),
    ]
)
comparisons = st.sampled_from(
    [lambda c: c, lambda c: c >= 2, lambda c: c < 2, lambda c: c > 0, lambda c: c <= 1]
)
events = st.builds(
    lambda kind, named, period, compare: compare(period(kind("a") if named else kind)),
    event_kinds,
    st.booleans(),
    event_periods,
    comparisons,
)
runnings = st.one_of(
    st.just(running),
    st.builds(lambda d: running.more_than(d), durations),
    st.builds(lambda d: running.less_than(d), durations),
    st.builds(lambda: running.between("10 minutes", "2 hours")),
    st.builds(lambda: running("a") >= 1),
)
atoms = st.one_of(
    periodic,
    time_windows,
    events,
    runnings,
    st.builds(every, durations, st.sampled_from(["run", "success", "fail", "finish"])),
    st.sampled_from(
        [
            retry,
            retry(0),
            retry(2),
            after_success("a"),
            after_fail("a"),
            after_all_finish("a", "b"),
            after_any_success("a", "b"),
        ]
    ),
    st.sampled_from(["*/15 * * * *", "30 2 * * *", "0 9 * * mon-fri", "0 0 1,15 * *"]).flatmap(
        lambda expr: st.sampled_from([cron(expr), crontime(expr)])
    ),
)
conditions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.builds(lambda a, b: a & b, inner, inner),
        st.builds(lambda a, b: a | b, inner, inner),
        inner.map(lambda a: ~a),
    ),
    max_leaves=6,
)

BASE = datetime(2026, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)

runs = st.lists(
    st.tuples(
        st.sampled_from(["t", "a", "b"]),
        st.integers(0, 3 * 24 * 3600),  # seconds before now that the run started
        st.one_of(st.none(), st.integers(0, 4 * 3600)),  # how long it ran (None: crashed)
        st.sampled_from(["success", "fail", "fail", "terminate", "inaction", "crash"]),
        st.sampled_from(["scheduled", "retry", "retry", "manual"]),
    ),
    max_size=12,
)


def _history(now, specs):
    history = MemoryHistory()
    for index, (task, ago, length, outcome, trigger) in enumerate(specs):
        start = now - timedelta(seconds=ago)
        finish = None if length is None else start + timedelta(seconds=length)
        if finish is not None and finish > now:
            finish = None  # still running at now
        if length is None:
            outcome, finish = "crash", start + timedelta(seconds=1)
            if finish > now:
                finish = None
        history.record_start(
            RunRecord(task, index, start, finish, None if finish is None else outcome, trigger)
        )
    return history


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    condition=conditions,
    zone=st.sampled_from(ZONES),
    offset=st.integers(0, int(YEAR.total_seconds())),
    micro=st.sampled_from([0, 0, 1, 999_999]),
    specs=runs,
    probes=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=6),
)
def test_the_value_holds_until_the_next_change(condition, zone, offset, micro, specs, probes):
    tz = ZoneInfo(zone)
    now = BASE + timedelta(seconds=offset, microseconds=micro)
    history = _history(now, specs)
    context = Context(task="t", now=now, history=history, tz=tz)
    value, change = condition.evaluate(context)
    assert value is condition.is_true(context)
    explanation = condition.explain(context)
    assert explanation.value is value
    json.dumps(explanation.to_dict())
    if change is not None:
        assert change > now
    horizon = (change if change is not None else now + timedelta(days=40)) - now
    instants = [now + horizon * probe for probe in probes]
    if change is not None:
        instants.append(change - timedelta(microseconds=1))
    for instant in instants:
        if change is not None and instant >= change:
            continue  # a probe rounded up onto the change itself
        later = Context(task="t", now=instant, history=history, tz=tz)
        assert condition.is_true(later) is value, (instant, change)


# Window values ------------------------------------------------------------------------------


@SETTINGS
@given(
    unit=st.sampled_from(["second", "minute", "hour", "day", "week", "month"]),
    fraction=st.floats(0, 1),
    coarse=st.booleans(),
    side=st.sampled_from(["start", "end"]),
)
def test_window_values_render_and_read_back(unit, fraction, coarse, side):
    from django_rocket.conditions.periods import CYCLE, STEP, parse_value, render_value

    offset = int(CYCLE[unit] * fraction)
    if coarse:
        offset -= offset % STEP[unit]
    if side == "end":
        offset = max(offset, 1)
    else:
        offset = min(offset, CYCLE[unit] - 1)
    text = render_value(unit, offset, side)
    assert parse_value(unit, text, side) == offset, text
