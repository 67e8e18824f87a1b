"""What history a condition can read: per task, the least a snapshot must keep.

Every task's latest start, latest finish of each outcome and runs in progress
are always kept; that is all ``every``, ``daily``, ``after_*``, ``cron``, bare
``succeeded`` and ``running`` read. A :class:`Needs` adds what the rest read:
the runs deciding the retry chain, the events of a sliding window, a count per
occurrence of a period (the current one, or the latest past one of a narrowed
window), or a count over all time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from .periods import Span

__all__ = ["WHOLE_CHAIN", "Needs", "merge_needs"]

# A chain depth meaning "the whole current retry chain" (an unlimited ``retry``).
WHOLE_CHAIN = 2**62


@dataclass(frozen=True)
class Needs:
    """What one task's history must hold besides its latest events.

    ``chain``: how many of its latest finished runs decide the retry chain
    (``retry(n)`` needs ``n + 1``; :data:`WHOLE_CHAIN` for an unlimited one).
    ``windows``: (event kind, length) of each sliding window counted.
    ``periods``: (event kind, span) of each period counted, one count per occurrence.
    ``totals``: event kinds counted over all time.
    """

    chain: int = 0
    windows: frozenset[tuple[str, timedelta]] = frozenset()
    periods: frozenset[tuple[str, Span]] = frozenset()
    totals: frozenset[str] = frozenset()

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            max(self.chain, other.chain),
            self.windows | other.windows,
            self.periods | other.periods,
            self.totals | other.totals,
        )

    def window(self, kind: str) -> timedelta | None:
        """Return the longest sliding window over ``kind``, or None."""
        lengths = [length for k, length in self.windows if k == kind]
        return max(lengths) if lengths else None


def merge_needs(parts: Iterable[Mapping[str, Needs]]) -> dict[str, Needs]:
    """Return the union, task by task, of several per-task needs."""
    merged: dict[str, Needs] = {}
    for part in parts:
        for task, needs in part.items():
            merged[task] = merged[task] | needs if task in merged else needs
    return merged
