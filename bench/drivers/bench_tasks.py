"""Task functions the benchmark schedules (importable by every driver)."""


def noop() -> None:
    """Do nothing: the benchmark measures the scheduler, not the task."""


def fail() -> None:
    raise RuntimeError("benchmark failure")
