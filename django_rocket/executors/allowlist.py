"""The ``ROCKET_TASK_FUNCTIONS`` allowlist: which functions runtime tasks may call.

Checked before anything is imported (:func:`function_refusal`), then, imported, for
what the path really names (:func:`loaded_refusal`): by ``schedule()`` and the admin
when a task is written, by the scheduler before each run, and by a Tasks framework
worker before it calls a queued job's function.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from django.utils.module_loading import import_string

from django_rocket.conf import conf
from django_rocket.executors.django_tasks.framework import plain_function

# Each segment a Python identifier: no "..", no spaces, nothing import_string could misread.
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
RUNTIME_OFF = (
    "Runtime tasks are off: ROCKET_TASK_FUNCTIONS is not set. List the functions runtime "
    "tasks may call in settings.py, e.g. ROCKET_TASK_FUNCTIONS = ['myapp.reminders.*']."
)


def _allowing_entry(path: str, allowlist: Sequence[str]) -> str | None:
    """Return the ``ROCKET_TASK_FUNCTIONS`` entry that allows ``path``, or None."""
    if not _DOTTED.fullmatch(path):
        return None
    for entry in allowlist:
        if entry == path:
            return entry
        if entry.endswith(".*"):
            prefix = entry[:-2]
            rest = path[len(prefix) + 1 :].split(".") if path.startswith(prefix + ".") else []
            # A private name is not meant to be called from outside its module.
            if rest and not any(part.startswith("_") for part in rest):
                return entry
    return None


def function_refusal(path: str) -> str:
    """Return why a runtime task may not call ``path``, or "" if it may; never imports."""
    allowlist = conf.task_functions
    if allowlist is None:
        return RUNTIME_OFF
    if _allowing_entry(path, allowlist) is None:
        return (
            f"The function {path!r} is not allowed by ROCKET_TASK_FUNCTIONS, so runtime tasks "
            "may not call it; it was not imported. Add its dotted path (or 'its.module.*') "
            "to ROCKET_TASK_FUNCTIONS."
        )
    return ""


def loaded_refusal(path: str) -> str:
    """Like :func:`function_refusal`, then import an allowed ``path`` and check what it is.

    A ``module.*`` entry allows the functions defined in that module, not a function it
    imported from elsewhere (``from subprocess import run`` in it does not allow ``run``).
    """
    why = function_refusal(path)
    if why:
        return why
    try:
        target = import_string(path)
    except Exception as exc:
        return f"The function {path!r} cannot be imported: {type(exc).__name__}: {exc}."
    func = plain_function(target)
    if not callable(func):
        return f"{path!r} is not callable."
    entry = _allowing_entry(path, conf.task_functions or [])
    assert entry is not None
    module = getattr(func, "__module__", None) or ""
    prefix = entry[:-2]
    if entry.endswith(".*") and module != prefix and not module.startswith(prefix + "."):
        return (
            f"{path!r} is defined in {module or 'an unknown module'!r}, outside {entry!r}; "
            "a 'module.*' entry allows only the functions defined in that module. "
            "List its own dotted path in ROCKET_TASK_FUNCTIONS to allow it."
        )
    return ""
