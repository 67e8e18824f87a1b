"""Every name a condition string may use, mapped to its value: the parser's vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .base import false, true
from .cron import cron, crontime
from .custom import RESERVED
from .scheduler_state import scheduler_cycles, scheduler_running
from .tasks import (
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

#: Rocketry's names for the constants.
always = true
never = false

#: Every name a condition string may use, mapped to its value in this package.
NAMESPACE: Mapping[str, object] = MappingProxyType(
    {
        "true": true,
        "false": false,
        "always": always,
        "never": never,
        "secondly": secondly,
        "minutely": minutely,
        "hourly": hourly,
        "daily": daily,
        "weekly": weekly,
        "monthly": monthly,
        "yearly": yearly,
        "every": every,
        "during": during,
        "cron": cron,
        "crontime": crontime,
        "time_of_second": time_of_second,
        "time_of_minute": time_of_minute,
        "time_of_hour": time_of_hour,
        "time_of_day": time_of_day,
        "time_of_week": time_of_week,
        "time_of_month": time_of_month,
        "time_of_year": time_of_year,
        "started": started,
        "succeeded": succeeded,
        "failed": failed,
        "finished": finished,
        "terminated": terminated,
        "inacted": inacted,
        "running": running,
        "retry": retry,
        "after_success": after_success,
        "after_fail": after_fail,
        "after_finish": after_finish,
        "after_all_success": after_all_success,
        "after_all_fail": after_all_fail,
        "after_all_finish": after_all_finish,
        "after_any_success": after_any_success,
        "after_any_fail": after_any_fail,
        "after_any_finish": after_any_finish,
        "scheduler_running": scheduler_running,
        "scheduler_cycles": scheduler_cycles,
    }
)
RESERVED.update(NAMESPACE)
