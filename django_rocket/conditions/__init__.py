"""The condition language: when a task should run, as composable values.

This package imports nothing from Django, so settings.py can use it::

    from django_rocket.conditions import daily, retry, time_of_day

    condition = (daily | retry(3)) & time_of_day.between("10:00", "12:00")
"""

from __future__ import annotations

from .base import All, Any, Condition, Context, Explanation, Not, false, true
from .cron import Cron, CronTime, cron, crontime
from .custom import Custom, condition, custom_conditions
from .durations import format_duration, parse_duration
from .errors import ConditionSyntaxError
from .history import History, MemoryHistory, RunRecord
from .parser import parse
from .periods import Span
from .scheduler_state import (
    SchedulerCycles,
    SchedulerRunning,
    scheduler_cycles,
    scheduler_running,
)
from .tasks import (
    After,
    Retry,
    Running,
    TaskEvent,
    after_all_fail,
    after_all_finish,
    after_all_success,
    after_any_fail,
    after_any_finish,
    after_any_success,
    after_fail,
    after_finish,
    after_success,
    failed,
    finished,
    inacted,
    retry,
    running,
    started,
    succeeded,
    terminated,
)
from .timing import (
    During,
    Every,
    PeriodRun,
    TimeOf,
    daily,
    during,
    every,
    hourly,
    minutely,
    monthly,
    secondly,
    time_of_day,
    time_of_hour,
    time_of_minute,
    time_of_month,
    time_of_second,
    time_of_week,
    time_of_year,
    weekly,
    yearly,
)
from .vocabulary import NAMESPACE, always, never

__all__ = [
    "NAMESPACE",
    "After",
    "All",
    "Any",
    "Condition",
    "ConditionSyntaxError",
    "Context",
    "Cron",
    "CronTime",
    "Custom",
    "During",
    "Every",
    "Explanation",
    "History",
    "MemoryHistory",
    "Not",
    "PeriodRun",
    "Retry",
    "RunRecord",
    "Running",
    "SchedulerCycles",
    "SchedulerRunning",
    "Span",
    "TaskEvent",
    "TimeOf",
    "after_all_fail",
    "after_all_finish",
    "after_all_success",
    "after_any_fail",
    "after_any_finish",
    "after_any_success",
    "after_fail",
    "after_finish",
    "after_success",
    "always",
    "condition",
    "cron",
    "crontime",
    "custom_conditions",
    "daily",
    "during",
    "every",
    "failed",
    "false",
    "finished",
    "format_duration",
    "hourly",
    "inacted",
    "minutely",
    "monthly",
    "never",
    "parse",
    "parse_duration",
    "retry",
    "running",
    "scheduler_cycles",
    "scheduler_running",
    "secondly",
    "started",
    "succeeded",
    "terminated",
    "time_of_day",
    "time_of_hour",
    "time_of_minute",
    "time_of_month",
    "time_of_second",
    "time_of_week",
    "time_of_year",
    "true",
    "weekly",
    "yearly",
]
