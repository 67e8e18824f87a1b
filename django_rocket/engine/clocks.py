"""Clocks that disagree: this machine's against the database server's, and wall-clock steps.

The lease expires at a time one machine wrote and another compares with its own clock,
and conditions compare times that different schedulers stamped; both assume the
machines' clocks agree (docs/howto/deployment: NTP). Nothing here changes a decision:
it measures, so that the log and ``check --database`` can say when the assumption fails.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from django.db.backends.base.base import BaseDatabaseWrapper

# Beyond this, a skew or a step is worth a warning: NTP keeps machines within
# milliseconds, and the lease and every('1 second') live on seconds.
TOLERANCE = 1.0

QUERIES = {
    "postgresql": "SELECT clock_timestamp()",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
}


def server_clock_offset(connection: BaseDatabaseWrapper) -> float | None:
    """Seconds the database server's clock is ahead of this machine's (negative: behind).

    Measured by one query, taken to be read half-way through its round trip; the
    round trip's half is taken off the result, so that only a skew larger than the
    query's own delay shows. ``None`` for a database without a server of its own
    (SQLite reads this machine's clock). Raises ``DatabaseError`` if it cannot ask.
    """
    query = QUERIES.get(connection.vendor)
    if query is None:
        return None
    with connection.cursor() as cursor:
        before = time.time()
        cursor.execute(query)
        stamp: datetime = cursor.fetchone()[0]
        after = time.time()
    if stamp.tzinfo is None:  # MySQL's UTC_TIMESTAMP is naive
        stamp = stamp.replace(tzinfo=UTC)
    offset = stamp.timestamp() - (before + after) / 2
    margin = (after - before) / 2
    if abs(offset) <= margin:
        return 0.0
    return offset - margin if offset > 0 else offset + margin


def describe_offset(offset: float, alias: str) -> str:
    """Say which clock is ahead and by how much, for a log line or a check message."""
    side = "behind" if offset > 0 else "ahead of"
    return (
        f"This machine's clock is {abs(offset):.1f} s {side} the clock of the database "
        f"server {alias!r}"
    )


class WallClockWatch:
    """Notice the wall clock stepping, by comparing it with the monotonic clock."""

    def __init__(self) -> None:
        self.last: tuple[datetime, float] | None = None

    def step(self, now: datetime, monotonic: float) -> timedelta | None:
        """Return how far the wall clock stepped since the last call, if beyond tolerance."""
        last, self.last = self.last, (now, monotonic)
        if last is None:
            return None
        drift = (now - last[0]).total_seconds() - (monotonic - last[1])
        if abs(drift) <= TOLERANCE:
            return None
        return timedelta(seconds=round(drift, 3))
