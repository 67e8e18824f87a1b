"""A first pass over the core vocabulary; the truth tables live beside this file."""

from datetime import timedelta

from django_rocket.conditions import daily, every, retry, time_of_day

from .helpers import at, ctx, run


def test_daily_retry_window_canonical_text():
    # reasoned from SEMANTICS.md
    condition = (daily | retry(3)) & time_of_day.between("10:00", "12:00")
    assert str(condition) == "(daily | retry(3)) & time_of_day.between('10:00', '12:00')"


def test_daily_retry_window_runs_then_retries():
    # reasoned from SEMANTICS.md
    condition = (daily | retry(3)) & time_of_day.between("10:00", "12:00")
    assert condition.is_true(ctx(at("2026-03-02 10:30")))
    failed = run(at("2026-03-02 10:30"), at("2026-03-02 10:31"), "fail")
    assert condition.is_true(ctx(at("2026-03-02 10:32"), failed))
    succeeded = run(at("2026-03-02 10:30"), at("2026-03-02 10:31"), "success")
    assert not condition.is_true(ctx(at("2026-03-02 10:32"), succeeded))


def test_every_counts_the_last_start_inclusively():
    # reasoned from SEMANTICS.md
    start = at("2026-03-02 10:00")
    condition = every("10 minutes")
    assert not condition.is_true(ctx(start + timedelta(minutes=10), run(start)))
    assert condition.is_true(ctx(start + timedelta(minutes=10, microseconds=1), run(start)))
    assert condition.next_change(ctx(start, run(start))) == start + timedelta(
        minutes=10, microseconds=1
    )
