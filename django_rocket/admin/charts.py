"""The geometry of the runtime-and-outcome chart on the task page, rendered as SVG by a template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django_rocket.models import RunStatus, TaskRun

WIDTH = 600
HEIGHT = 120
MIN_BAR = 2.0  # a run too short to see still shows its outcome colour


@dataclass(frozen=True)
class Bar:
    """One run drawn as a bar: its height is the runtime, its colour the outcome."""

    run: TaskRun
    x: float
    y: float
    width: float
    height: float
    runtime: timedelta | None


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int
    height: int
    longest: timedelta
    first: datetime | None
    last: datetime | None


def runtime_chart(runs: Sequence[TaskRun], now: datetime) -> Chart:
    """Lay out ``runs`` (oldest first) as bars scaled to the longest runtime among them.

    A run still in progress is drawn up to ``now``.
    """
    runtimes = [_runtime(run, now) for run in runs]
    longest = max((r for r in runtimes if r is not None), default=timedelta(0))
    scale = (HEIGHT - MIN_BAR) / longest.total_seconds() if longest > timedelta(0) else 0.0
    slot = WIDTH / max(len(runs), 1)
    gap = min(2.0, slot / 4)
    bars = []
    for index, (run, runtime) in enumerate(zip(runs, runtimes, strict=True)):
        height = MIN_BAR + (runtime.total_seconds() * scale if runtime is not None else 0.0)
        bars.append(
            Bar(
                run=run,
                x=round(index * slot + gap / 2, 2),
                y=round(HEIGHT - height, 2),
                width=round(slot - gap, 2),
                height=round(height, 2),
                runtime=runtime,
            )
        )
    return Chart(
        bars=bars,
        width=WIDTH,
        height=HEIGHT,
        longest=longest,
        first=runs[0].started_at if runs else None,
        last=runs[-1].started_at if runs else None,
    )


def _runtime(run: TaskRun, now: datetime) -> timedelta | None:
    if run.runtime is not None:
        return max(run.runtime, timedelta(0))
    if run.status == RunStatus.RUNNING and run.started_at is not None:
        return max(now - run.started_at, timedelta(0))
    return None
