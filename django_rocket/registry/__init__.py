"""Tasks as the scheduler follows them: declared in settings, or created at runtime.

:mod:`.declared` validates ``ROCKET_TASKS`` into :class:`TaskSpec` (what ``manage.py
check`` reports); :mod:`.runtime` holds the admin's condition overrides and the rows
``schedule()`` writes, with the ``ROCKET_TASK_FUNCTIONS`` allowlist.
"""

from django_rocket.executors.allowlist import RUNTIME_OFF, function_refusal, loaded_refusal
from django_rocket.registry.declared import (
    MAX_COUNT,
    MAX_DURATION,
    MAX_RETRY,
    OVERRIDE,
    RUNTIME,
    SETTINGS,
    Problems,
    TaskSpec,
    collect,
    import_condition_modules,
    tasks,
)
from django_rocket.registry.runtime import (
    custom_key,
    parse_runtime,
    runtime_problems,
    runtime_spec,
    scheduler_zone,
    with_overrides,
)

__all__ = [
    "MAX_COUNT",
    "MAX_DURATION",
    "MAX_RETRY",
    "OVERRIDE",
    "RUNTIME",
    "RUNTIME_OFF",
    "SETTINGS",
    "Problems",
    "TaskSpec",
    "collect",
    "custom_key",
    "function_refusal",
    "import_condition_modules",
    "loaded_refusal",
    "parse_runtime",
    "runtime_problems",
    "runtime_spec",
    "scheduler_zone",
    "tasks",
    "with_overrides",
]
