"""Micro-benchmark of condition evaluation against an in-memory history.

Run from the repository root::

    .venv/bin/python bench/conditions_micro.py

It prints the microseconds one evaluation of
``(daily | retry(3)) & time_of_day.between("10:00", "12:00")`` costs for one
task whose history holds a year of daily runs, then the time to parse,
evaluate and compute the next change of a condition for each of 10,000 tasks
(drawn from a few templates with varied values, so most texts differ),
and the same for 10,000 cron tasks: the first tick (cold caches), a steady
tick (the scheduler evaluating every task again a second later) and the
next change of each. No Django is involved.
"""

from __future__ import annotations

import gc
import random
import time
import timeit
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django_rocket.conditions import (
    Context,
    MemoryHistory,
    RunRecord,
    daily,
    parse,
    retry,
    time_of_day,
)

TZ = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 2, 10, 30, tzinfo=TZ)
CONDITION = (daily | retry(3)) & time_of_day.between("10:00", "12:00")
TEXTS = [
    "(daily | retry(3)) & time_of_day.between('10:{m:02d}', '12:00')",
    "every('{m} minutes')",
    "hourly.after('{m:02d}:00') & ~running",
    "cron('{m} 9-17 * * mon-fri')",
    "after_success('task-{other}') | daily.at('03:{m:02d}')",
    "daily between 10:{m:02d} and 12:00",
    "(failed.today >= {k}) | weekly.on('Mon')",
]


def _daily_runs(task: str, days: int, outcome: str = "success") -> list[RunRecord]:
    first = NOW.astimezone(UTC) - timedelta(days=days)
    return [
        RunRecord(task, day, start, start + timedelta(minutes=1), outcome)
        for day in range(days)
        for start in [first + timedelta(days=day)]
    ]


def _per_call(function, number: int = 20_000) -> float:
    best = min(timeit.repeat(function, number=number, repeat=5))
    return best / number * 1e6


def single_task() -> None:
    history = MemoryHistory(_daily_runs("t", 365, "fail"))
    ctx = Context(task="t", now=NOW, history=history, tz=TZ)
    print(f"{CONDITION}, one task, 365 runs:")
    print(f"  is_true                 {_per_call(lambda: CONDITION.is_true(ctx)):6.2f} µs")
    print(f"  evaluate (+ next change) {_per_call(lambda: CONDITION.evaluate(ctx)):5.2f} µs")
    print(f"  explain                 {_per_call(lambda: CONDITION.explain(ctx), 2_000):6.2f} µs")

    def fresh() -> bool:
        return CONDITION.is_true(Context(task="t", now=NOW, history=history, tz=TZ))

    print(f"  new Context + is_true   {_per_call(fresh):6.2f} µs")


def many_tasks(count: int = 10_000) -> None:
    history = MemoryHistory()
    for index in range(count):
        for run in _daily_runs(f"task-{index}", 30):
            history.record_start(run)
    texts = []
    for index in range(count):
        pick = random.Random(index)
        template = pick.choice(TEXTS)
        texts.append(
            template.format(m=pick.randrange(1, 60), k=pick.randrange(1, 9), other=index // 2)
        )

    gc.collect()
    began = time.perf_counter()
    conditions = [parse(text) for text in texts]
    parse_time = time.perf_counter() - began
    gc.collect()  # so that a collection owed to the set-up is not timed as evaluation
    parsed = time.perf_counter()
    wake = None
    due = 0
    for index, condition in enumerate(conditions):
        ctx = Context(task=f"task-{index}", now=NOW, history=history, tz=TZ)
        value, change = condition.evaluate(ctx)
        due += value
        if change is not None and (wake is None or change < wake):
            wake = change
    evaluated = time.perf_counter()
    print(f"{count} tasks, 30 runs each, {len(set(texts))} distinct condition texts:")
    print(f"  parse                   {parse_time * 1e3:7.1f} ms")
    print(f"  evaluate + next change  {(evaluated - parsed) * 1e3:7.1f} ms ({due} due)")
    print(f"  total                   {(parse_time + evaluated - parsed) * 1e3:7.1f} ms")


CRON_TEXTS = [
    "cron('{m} {h} * * *')",
    "cron('*/{k} 9-17 * * mon-fri')",
    "cron('{m} */2 * * *')",
    "cron('{m} {h} 1,15 * *')",
    "cron('{m} {h} * * sat,sun')",
    "cron('0 {h} * jan-jun mon')",
]


def cron_tasks(count: int = 10_000) -> None:
    history = MemoryHistory()
    for index in range(count):
        for run in _daily_runs(f"cron-{index}", 5):
            history.record_start(run)
    texts = []
    for index in range(count):
        pick = random.Random(index)
        texts.append(
            pick.choice(CRON_TEXTS).format(
                m=pick.randrange(0, 60), h=pick.randrange(0, 24), k=pick.randrange(2, 30)
            )
        )
    gc.collect()
    began = time.perf_counter()
    conditions = [parse(text) for text in texts]
    parsed = time.perf_counter()
    gc.collect()

    def tick(now: datetime) -> float:
        first = time.perf_counter()
        for index, condition in enumerate(conditions):
            condition.evaluate(Context(task=f"cron-{index}", now=now, history=history, tz=TZ))
        return (time.perf_counter() - first) * 1e3

    cold = tick(NOW)
    steady = min(tick(NOW + timedelta(seconds=second)) for second in range(1, 6))
    later = min(tick(NOW + timedelta(minutes=minute, seconds=7)) for minute in range(1, 4))
    print(f"{count} cron tasks, {len(set(texts))} distinct expressions:")
    print(f"  parse                   {(parsed - began) * 1e3:7.1f} ms")
    print(f"  first tick (evaluate + next change) {cold:7.1f} ms")
    print(f"  steady tick, same minute            {steady:7.1f} ms")
    print(f"  steady tick, later minutes          {later:7.1f} ms")


if __name__ == "__main__":
    single_task()
    many_tasks()
    cron_tasks()
