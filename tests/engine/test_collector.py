"""While the loop runs, full collections are rarer and start-up's objects are frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from django_rocket.engine.collector import FULL_AFTER, collecting_less, freeze_built


@pytest.fixture(autouse=True)
def _nothing_frozen() -> Iterator[None]:
    """Start from nothing frozen: the collector's state is the whole process's.

    An earlier test in the same process may have left objects frozen: a scheduler's
    start-up that loads 10,000 task rows freezes them (``TaskTable.load``), and a test
    that drives ``startup()`` without ``run()`` never reaches the loop's unfreeze.
    """
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_loop_collects_less_and_gives_the_collector_back_as_it_was() -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with collecting_less():
        assert gc.get_threshold()[:2] == before[:2]
        assert gc.get_threshold()[2] == max(before[2], FULL_AFTER)
        assert gc.get_freeze_count() > 0
        built = [[] for _ in range(3)]  # lists are tracked by the collector
        frozen = gc.get_freeze_count()
        freeze_built()
        assert gc.get_freeze_count() > frozen
        del built
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_nothing_is_frozen_outside_the_loop() -> None:
    freeze_built()
    assert gc.get_freeze_count() == 0
