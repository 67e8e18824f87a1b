"""A stopping scheduler's runs: wait for them within the grace, then terminate the rest.

Every run that ends on the way is drained into the run log by the scheduler's own
``drain`` (its outcome queue), so nothing that ended is lost at shutdown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django_rocket.clock import Clock
from django_rocket.engine.planner import Planner
from django_rocket.executors.runner import Runner

logger = logging.getLogger("django_rocket.scheduler")

STOPPED = "Terminated at scheduler shutdown."
# How long terminated runs get to report before they are abandoned (and recorded so).
TERMINATE_WAIT = 5.0


def settle_runs(
    clock: Clock,
    wakeup: threading.Event,
    runner: Runner,
    planner: Planner,
    drain: Callable[[], None],
    *,
    grace: float,
    stop_remote: bool,
    forced: Callable[[], bool],
) -> None:
    """Wait up to ``grace`` seconds for the runs to end by themselves.

    Runs on worker backends are waited for only with ``stop_remote`` (otherwise they go
    on and the next active scheduler adopts them); ``forced`` cuts the wait short.
    """
    deadline = clock.monotonic() + grace

    def waited_for() -> int:
        return len(planner.running if stop_remote else runner.local_runs())

    if waited_for():
        logger.info("Stopping: waiting up to %.0fs for %d run(s).", grace, waited_for())
    while waited_for() and clock.monotonic() < deadline and not forced():
        clock.wait(wakeup, min(deadline - clock.monotonic(), 0.5))
        wakeup.clear()
        runner.poll(clock.now())  # runs on remote workers report through polls
        drain()
    drain()


def stop_local_runs(
    clock: Clock,
    wakeup: threading.Event,
    runner: Runner,
    planner: Planner,
    drain: Callable[[], None],
) -> None:
    """Terminate the runs still followed, give them a moment to report, abandon the rest."""
    running = planner.running
    if not running:
        return
    for run_id in list(running):
        runner.terminate(run_id, STOPPED)
    end = clock.monotonic() + TERMINATE_WAIT
    while running and clock.monotonic() < end:
        clock.wait(wakeup, 0.2)
        wakeup.clear()
        drain()
    runner.abandon(STOPPED)
    drain()
