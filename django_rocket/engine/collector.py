"""How the scheduler process asks less of Python's garbage collector while its loop runs.

At ten thousand runs a second, each run in progress holds a few objects (its state, its
snapshot entry, its pending finish) for about a tick, long enough to reach the oldest
generation. With the defaults a full collection ran two or three times a second, each
walking every object of the runs in progress (50 to 70 ms at 10,000 tasks): a fifth of
the loop's CPU (bench/RESULTS.md, issue 21). Two measures, undone when the loop ends:

* what start-up and activation built (specs, conditions, the snapshot) is frozen, so no
  collection walks it (:func:`freeze_built`, again once the snapshot is loaded);
* a full collection waits for ``FULL_AFTER`` collections of the middle generation instead
  of 10: some 15 seconds at ten thousand runs a second. Python still starts one only
  once the objects promoted since the last one reach a quarter of those it kept, so the
  cost per object stays bounded, and reference cycles are still collected, later.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

FULL_AFTER = 1000


@contextmanager
def collecting_less() -> Iterator[None]:
    """Freeze what is built so far and make full collections rarer, until the block ends."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(thresholds[0], thresholds[1], max(thresholds[2], FULL_AFTER))
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def freeze_built() -> None:
    """Freeze what was built since, if the loop froze start-up's objects."""
    if gc.get_freeze_count():
        gc.freeze()
