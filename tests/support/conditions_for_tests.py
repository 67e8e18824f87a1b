"""Custom conditions for the scheduler tests (listed in ROCKET_CONDITION_MODULES)."""

from django_rocket.conditions import condition


@condition("explodes")
def explodes() -> bool:
    raise RuntimeError("this condition always raises")


@condition("release_file_exists")
def release_file_exists(task: str) -> bool:
    import os
    import tempfile

    return os.path.exists(os.path.join(tempfile.gettempdir(), f"rocket-release-{task}"))
