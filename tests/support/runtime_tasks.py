"""Functions runtime tasks call in the tests: ``ROCKET_TASK_FUNCTIONS = ['...runtime_tasks.*']``."""

from os import getcwd  # noqa: F401  # imported, not defined here: a 'module.*' entry must not allow it

CALLS: list[dict] = []


def remind(customer: int = 0) -> dict:
    CALLS.append({"customer": customer})
    return {"customer": customer}


def _private() -> None:
    """Not callable by a runtime task: a private name."""
