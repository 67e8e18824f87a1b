"""A History that keeps, per task, only what the conditions can read.

:class:`BoundedHistory` answers every question a condition asks exactly as a
:class:`~django_rocket.conditions.MemoryHistory` holding every run would, as
long as no event it is told about lies after the instant a condition is
evaluated at (the scheduler records a run when it starts or ends). Its size per
task does not grow with the number of runs:

* always: the latest start, the latest finish of each outcome, the runs in progress;
* a retry chain: the latest runs back to the one that begins the chain, at most
  as many as the deepest ``retry(n)`` can count;
* a sliding window (``failed.past('10 minutes')``): the events inside the
  longest such window only;
* a period (``failed.today``, ``failed.today.between('10:00', '12:00')``): one
  count per occurrence, kept until the next occurrence begins;
* a count over all time (``failed >= 3``): one number.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from .history import OUTCOMES, RunRecord, _utc, chain_length, check_finish, window
from .needs import Needs
from .periods import Span

__all__ = ["BoundedHistory"]

_NO_NEEDS = Needs()
_Window = tuple[datetime, datetime]


@dataclass(slots=True)
class _Run:
    started_at: datetime
    order: int
    trigger: str
    outcome: str | None = None
    finished_at: datetime | None = None
    exception_types: tuple[str, ...] = ()


@dataclass(slots=True)
class _Log:
    needs: Needs
    last_start: datetime | None = None
    last_finish: dict[str, datetime] = field(default_factory=dict)
    runs: dict[object, _Run] = field(default_factory=dict)  # in progress, and the chain's
    recent: list[tuple[datetime, int, object]] = field(default_factory=list)  # sorted
    in_progress: dict[object, datetime] = field(default_factory=dict)
    latest: datetime | None = None  # the latest event instant told
    windows: dict[str, list[datetime]] = field(default_factory=dict)  # sliding, sorted
    periods: dict[tuple[str, Span], dict[_Window, int]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    chain: int | None = None
    chain_stale: bool = True
    # The latest run (latest start, ties by insertion order), whatever else is trimmed:
    # what a waiting retry reads (its end, its id for jitter, its exception types). Its
    # id and its item, which its finish updates, and its record once last_run made it.
    last: tuple[datetime, int, object, _Run, RunRecord | None] | None = None


class BoundedHistory:
    """A History holding, per task, what ``needs`` says its conditions read (see module doc).

    ``needs`` maps task names to :class:`Needs` (a task not in it keeps its
    latest events only); ``tz`` is the zone periods are counted in, the
    scheduler's. Call :meth:`trim` now and then with the current instant.
    """

    def __init__(
        self, needs: Mapping[str, Needs], tz: tzinfo, runs: Iterable[RunRecord] = ()
    ) -> None:
        self.needs = dict(needs)
        self.tz = tz
        self._tasks: dict[str, _Log] = {}
        self._counter = itertools.count()
        for run in runs:
            self.record_start(run)

    def __repr__(self) -> str:
        return f"<BoundedHistory: {len(self._tasks)} tasks, {self.size()} items>"

    def _log(self, task: str) -> _Log:
        log = self._tasks.get(task)
        if log is None:
            log = self._tasks[task] = _Log(_NO_NEEDS)
            self._apply_needs(log, self.needs.get(task, _NO_NEEDS))
        return log

    def _apply_needs(self, log: _Log, needs: Needs) -> None:
        log.needs = needs
        for kind, _ in needs.windows:
            log.windows.setdefault(kind, [])
        for key in needs.periods:
            log.periods.setdefault(key, {})
        for kind in needs.totals:
            log.totals.setdefault(kind, 0)
        log.chain_stale = True

    def set_needs(self, task: str, needs: Needs) -> None:
        """Keep what ``needs`` says for ``task`` from now on (a task added or changed).

        What was not kept before is not brought back: a window or a count starts
        from the events recorded after this call.
        """
        self.needs[task] = needs
        self._apply_needs(self._log(task), needs)

    def size(self, task: str | None = None) -> int:
        """Return how many items are held for ``task`` (for every task if None)."""
        if task is None:
            return sum(self.size(name) for name in self._tasks)
        log = self._tasks.get(task)
        if log is None:
            return 0
        return (
            (log.last_start is not None)
            + len(log.last_finish)
            + len(log.runs)
            + len(log.recent)
            + sum(map(len, log.windows.values()))
            + sum(map(len, log.periods.values()))
            + len(log.totals)
        )

    # Updates

    def record_start(self, run: RunRecord) -> None:
        """Add a run; if it has already finished, its finish is recorded too."""
        log = self._add(run.task, run.run_id, _utc(run.started_at), run.trigger)
        if run.finished_at is not None and run.outcome is not None:
            self.record_finish(
                run.task, run.run_id, run.finished_at, run.outcome, run.exception_types
            )
        else:
            _trim_chain(log)

    def start_run(self, task: str, run_id: object, started_at: datetime, trigger: str) -> None:
        """Add a run starting now: :meth:`record_start` without a ``RunRecord`` to check.

        The scheduler's own starts, ten thousand a second: ``started_at`` is aware and
        ``trigger`` one of ``TRIGGERS``, as the scheduler makes them. Nothing is trimmed:
        the chain's walk passes over runs in progress, so adding one lets it drop nothing
        it did not drop before.
        """
        self._add(task, run_id, _utc(started_at), trigger)

    def _add(self, task: str, run_id: object, started_at: datetime, trigger: str) -> _Log:
        log = self._log(task)
        if run_id in log.runs:
            raise ValueError(f"Run {run_id!r} of task {task!r} is already recorded.")
        item = _Run(started_at, next(self._counter), trigger)
        log.runs[run_id] = item
        if log.last is None or (started_at, item.order) > log.last[:2]:
            log.last = (started_at, item.order, run_id, item, None)
        bisect.insort(log.recent, (started_at, item.order, run_id))
        log.in_progress[run_id] = started_at
        if log.last_start is None or started_at > log.last_start:
            log.last_start = started_at
        self._event(log, "start", started_at)
        log.chain_stale = True
        return log

    def record_finish(
        self,
        task: str,
        run_id: object,
        finished_at: datetime,
        outcome: str,
        exception_types: Sequence[str] = (),
    ) -> None:
        """Record that a run in progress ended."""
        check_finish(finished_at, outcome)
        log = self._tasks.get(task)
        item = log.runs.get(run_id) if log is not None else None
        if log is None or item is None or run_id not in log.in_progress:
            raise KeyError(f"Run {run_id!r} of task {task!r} is not in progress in this history.")
        finished_at = _utc(finished_at)
        item.outcome, item.finished_at = outcome, finished_at
        item.exception_types = tuple(exception_types)
        del log.in_progress[run_id]
        latest = log.last_finish.get(outcome)
        if latest is None or finished_at > latest:
            log.last_finish[outcome] = finished_at
        self._event(log, outcome, finished_at)
        log.chain_stale = True
        _trim_chain(log)

    def set_total(self, task: str, kind: str, count: int) -> None:
        """Set the all-time count of ``kind`` events (read from the run log at start-up)."""
        log = self._log(task)
        if kind in log.totals:
            log.totals[kind] = count

    def trim(self, now: datetime) -> None:
        """Drop what no condition evaluated at ``now`` or later can read."""
        now = _utc(now)
        for log in self._tasks.values():
            if log.latest is None or now > log.latest:
                log.latest = now
            self._trim_events(log)

    def _event(self, log: _Log, kind: str, at: datetime) -> None:
        if not (log.totals or log.windows or log.periods):
            # Nothing counted for this task (``every``, ``daily``...): only the latest.
            if log.latest is None or at > log.latest:
                log.latest = at
            return
        if kind in log.totals:
            log.totals[kind] += 1
        if kind in log.windows:
            bisect.insort(log.windows[kind], at)
        for (counted, span), counts in log.periods.items():
            if counted == kind and (window := span.current(at, at.astimezone(self.tz), self.tz)):
                key = (window.start, window.end)
                counts[key] = counts.get(key, 0) + 1
        if log.latest is None or at > log.latest:
            log.latest = at
        self._trim_events(log)

    def _trim_events(self, log: _Log) -> None:
        latest = log.latest
        if latest is None:
            return
        for kind, events in log.windows.items():
            length = log.needs.window(kind)
            if length is not None and events and events[0] < latest - length:
                del events[: bisect.bisect_left(events, latest - length)]
        for (_, span), counts in log.periods.items():
            if counts:
                # A count is read until the next occurrence of its period begins.
                begun = self._begun(span, latest)
                for key in [key for key in counts if key[0] < begun]:
                    del counts[key]

    # History

    def holds(self, task: str) -> bool:
        """Return whether anything of ``task`` is held.

        False: every question about it has the answer of a task that never ran.
        """
        return task in self._tasks

    def last_start(self, task: str) -> datetime | None:
        log = self._tasks.get(task)
        return log.last_start if log is not None else None

    def last_finish(self, task: str, outcomes: frozenset[str]) -> datetime | None:
        log = self._tasks.get(task)
        if log is None:
            return None
        found = [log.last_finish[o] for o in outcomes if o in log.last_finish]
        return max(found) if found else None

    def events(
        self, task: str, kind: str, since: datetime | None, until: datetime | None
    ) -> Sequence[datetime]:
        if kind != "start" and kind not in OUTCOMES:
            raise ValueError(f"Unknown event kind {kind!r}; use 'start' or an outcome.")
        log = self._tasks.get(task)
        if log is None:
            return ()
        items = log.windows.get(kind)
        if items is None:
            # Only the latest event of the kind is held.
            last = log.last_start if kind == "start" else log.last_finish.get(kind)
            items = [] if last is None else [last]
        return window(items, since, until)

    def count(self, task: str, kind: str, since: datetime | None, until: datetime | None) -> int:
        log = self._tasks.get(task)
        if log is None:
            return 0
        if since is None and until is None and kind in log.totals:
            return log.totals[kind]
        if since is not None and until is not None:
            since, until = _utc(since), _utc(until)
            for (counted, _), counts in log.periods.items():
                if counted == kind and (since, until) in counts:
                    return counts[(since, until)]
            for counted, span in log.periods:
                if counted == kind and self._counted(log, span, since, until):
                    return 0  # an occurrence of a counted period with no such event
        return len(self.events(task, kind, since, until))

    def _counted(self, log: _Log, span: Span, since: datetime, until: datetime) -> bool:
        """Whether [since, until) is an occurrence of ``span`` whose count is still kept."""
        window = span.current(since, since.astimezone(self.tz), self.tz)
        if window is None or (window.start, window.end) != (since, until):
            return False
        latest = log.latest
        return latest is None or since >= self._begun(span, latest)

    def _begun(self, span: Span, at: datetime) -> datetime:
        """The start of the latest occurrence of ``span`` begun by ``at``."""
        return span.around(at, at.astimezone(self.tz), self.tz)[1].start

    def last_run(self, task: str) -> RunRecord | None:
        """Return the task's latest run (latest start, ties by insertion order)."""
        log = self._tasks.get(task)
        if log is None or log.last is None:
            return None
        started_at, order, run_id, item, record = log.last
        if record is None or (item.outcome is not None and record.outcome is None):
            # Made here, once it is asked for (and once more if it finished since),
            # rather than at every start and finish.
            record = _record(task, run_id, started_at, item)
            log.last = (started_at, order, run_id, item, record)
        return record

    def running(self, task: str) -> Sequence[datetime]:
        log = self._tasks.get(task)
        return sorted(log.in_progress.values()) if log is not None and log.in_progress else ()

    def retry_chain(self, task: str) -> int | None:
        log = self._tasks.get(task)
        if log is None:
            return None
        if log.chain_stale:
            log.chain = _chain(log)
            log.chain_stale = False
        return log.chain

    def runs(self, task: str) -> list[RunRecord]:
        """Return the runs held whole (in progress, and the chain's), oldest start first."""
        log = self._tasks.get(task)
        if log is None:
            return []
        return [
            _record(task, run_id, started_at, log.runs[run_id])
            for started_at, _, run_id in log.recent
        ]


def _record(task: str, run_id: object, started_at: datetime, item: _Run) -> RunRecord:
    return RunRecord(
        task,
        run_id,
        started_at,
        item.finished_at,
        item.outcome,
        item.trigger,
        item.exception_types,
    )


def _chain(log: _Log) -> int | None:
    """The same walk as MemoryHistory's, over the runs kept for it."""
    runs = log.runs
    return chain_length(bool(log.in_progress), (runs[r] for _, _, r in reversed(log.recent)))


def _trim_chain(log: _Log) -> None:
    """Keep the runs in progress and the finished ones the chain's walk can reach.

    The walk back from the latest run stops at the first finished run that is
    not a failed retry, so nothing before it is read; and it need not go
    further back than ``needs.chain`` finished runs (at least one is kept).
    """
    recent, runs = log.recent, log.runs
    depth = max(log.needs.chain, 1)
    finished = 0
    cut = 0
    for index in range(len(recent) - 1, -1, -1):
        item = runs[recent[index][2]]
        if item.outcome is None:
            continue
        finished += 1
        if finished >= depth or item.outcome != "fail" or item.trigger != "retry":
            cut = index
            break
    if cut == 0:
        return
    kept = [entry for entry in recent[:cut] if entry[2] in log.in_progress]
    for _, _, run_id in recent[:cut]:
        if run_id not in log.in_progress:
            del runs[run_id]
    log.recent = kept + recent[cut:]
