"""The run history that conditions read, and an in-memory implementation of it."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, overload, runtime_checkable

__all__ = ["OUTCOMES", "History", "MemoryHistory", "RunRecord"]

OUTCOMES = frozenset({"success", "fail", "terminate", "inaction", "crash"})
TRIGGERS = frozenset({"scheduled", "retry", "manual"})


@runtime_checkable
class History(Protocol):
    """What conditions may ask about past runs; every datetime is aware."""

    def last_start(self, task: str) -> datetime | None:
        """Return when the task's latest run started."""

    def last_finish(self, task: str, outcomes: frozenset[str]) -> datetime | None:
        """Return the latest finish among runs that ended with one of the outcomes."""

    def events(
        self, task: str, kind: str, since: datetime | None, until: datetime | None
    ) -> Sequence[datetime]:
        """Return starts (kind "start") or finishes of one outcome in [since, until), ascending."""

    def count(self, task: str, kind: str, since: datetime | None, until: datetime | None) -> int:
        """Return how many events :meth:`events` would return."""

    def running(self, task: str) -> Sequence[datetime]:
        """Return the start instants of the task's runs in progress."""

    def retry_chain(self, task: str) -> int | None:
        """Return the length of the latest chain of failed runs, or None."""

    def last_run(self, task: str) -> RunRecord | None:
        """Return the task's latest run (latest start, ties by insertion order)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of a task as the history sees it."""

    task: str
    run_id: object
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str | None = None
    trigger: str = "scheduled"
    # The qualified names of a failed run's exception class and its bases, most
    # derived first ("builtins.ConnectionError", ...); empty when unknown.
    exception_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_aware(self.started_at, "started_at")
        if self.finished_at is not None:
            _check_aware(self.finished_at, "finished_at")
        if (self.finished_at is None) != (self.outcome is None):
            raise ValueError("A run needs both finished_at and outcome, or neither.")
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ValueError(f"Unknown outcome {self.outcome!r}; use one of {sorted(OUTCOMES)}.")
        if self.trigger not in TRIGGERS:
            raise ValueError(f"Unknown trigger {self.trigger!r}; use one of {sorted(TRIGGERS)}.")
        if not isinstance(self.exception_types, tuple):
            object.__setattr__(self, "exception_types", tuple(self.exception_types))


def _check_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}.")
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (it has no time zone): {value!r}.")


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


class _Slice(Sequence[datetime]):
    """A read-only view of part of a sorted list, so that counting costs O(1)."""

    __slots__ = ("_items", "_start", "_stop")

    def __init__(self, items: list[datetime], start: int, stop: int) -> None:
        self._items, self._start, self._stop = items, start, max(start, stop)

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, index: int) -> datetime: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[datetime]: ...
    def __getitem__(self, index: int | slice) -> datetime | Sequence[datetime]:
        if isinstance(index, slice):
            return self._items[self._start : self._stop][index]
        length = self._stop - self._start
        if index < 0:
            index += length
        if not 0 <= index < length:
            raise IndexError("index out of range")
        return self._items[self._start + index]

    def __iter__(self) -> Iterator[datetime]:
        return itertools.islice(self._items, self._start, self._stop)

    def __repr__(self) -> str:
        return f"[{', '.join(repr(item) for item in self)}]"


@dataclass(slots=True)
class _Run:
    started_at: datetime
    order: int
    run_id: object
    trigger: str
    finished_at: datetime | None = None
    outcome: str | None = None
    exception_types: tuple[str, ...] = ()


@dataclass(slots=True)
class _TaskLog:
    runs: dict[object, _Run] = field(default_factory=dict)
    # Runs sorted by (started_at, insertion order); the last one is "the latest run".
    ordered: list[tuple[datetime, int, object]] = field(default_factory=list)
    starts: list[datetime] = field(default_factory=list)
    finishes: dict[str, list[datetime]] = field(default_factory=dict)
    in_progress: dict[object, datetime] = field(default_factory=dict)
    chain: int | None = None
    chain_stale: bool = True


_EMPTY: list[datetime] = []


class MemoryHistory:
    """A History held in memory: per-task sorted lists, O(log n) queries.

    The scheduler keeps one as its snapshot of the run log and updates it with
    :meth:`record_start` and :meth:`record_finish` as runs start and end.
    """

    def __init__(self, runs: Iterable[RunRecord] = ()) -> None:
        self._tasks: dict[str, _TaskLog] = {}
        self._counter = itertools.count()
        for run in runs:
            self.record_start(run)

    def __repr__(self) -> str:
        count = sum(len(log.runs) for log in self._tasks.values())
        return f"<MemoryHistory: {len(self._tasks)} tasks, {count} runs>"

    # Updates

    def record_start(self, run: RunRecord) -> None:
        """Add a run; if it has already finished, its finish is recorded too."""
        log = self._tasks.setdefault(run.task, _TaskLog())
        if run.run_id in log.runs:
            raise ValueError(f"Run {run.run_id!r} of task {run.task!r} is already recorded.")
        started_at = _utc(run.started_at)
        item = _Run(started_at, next(self._counter), run.run_id, run.trigger)
        log.runs[run.run_id] = item
        bisect.insort(log.ordered, (started_at, item.order, run.run_id))
        bisect.insort(log.starts, started_at)
        log.in_progress[run.run_id] = started_at
        log.chain_stale = True
        if run.finished_at is not None and run.outcome is not None:
            self.record_finish(
                run.task, run.run_id, run.finished_at, run.outcome, run.exception_types
            )

    def start_run(self, task: str, run_id: object, started_at: datetime, trigger: str) -> None:
        """Add a run starting now (the scheduler's own starts)."""
        self.record_start(RunRecord(task, run_id, started_at, trigger=trigger))

    def record_finish(
        self,
        task: str,
        run_id: object,
        finished_at: datetime,
        outcome: str,
        exception_types: Sequence[str] = (),
    ) -> None:
        """Record that a run ended; recording a finish again replaces the earlier one."""
        check_finish(finished_at, outcome)
        log = self._tasks.get(task)
        item = log.runs.get(run_id) if log is not None else None
        if log is None or item is None:
            raise KeyError(f"Run {run_id!r} of task {task!r} was never started in this history.")
        if item.outcome is not None and item.finished_at is not None:
            _remove(log.finishes[item.outcome], item.finished_at)
        item.finished_at, item.outcome = _utc(finished_at), outcome
        item.exception_types = tuple(exception_types)
        bisect.insort(log.finishes.setdefault(outcome, []), item.finished_at)
        log.in_progress.pop(run_id, None)
        log.chain_stale = True

    def forget(self, task: str, run_id: object) -> None:
        """Remove one run and its events."""
        log = self._tasks.get(task)
        item = log.runs.pop(run_id, None) if log is not None else None
        if log is None or item is None:
            raise KeyError(f"Run {run_id!r} of task {task!r} is not in this history.")
        _remove(log.ordered, (item.started_at, item.order, run_id))
        _remove(log.starts, item.started_at)
        if item.outcome is not None and item.finished_at is not None:
            _remove(log.finishes[item.outcome], item.finished_at)
        log.in_progress.pop(run_id, None)
        log.chain_stale = True

    def forget_before(self, cutoff: datetime) -> int:
        """Drop finished runs that ended before ``cutoff``; return how many were dropped.

        Each task keeps its latest run, its latest finish of every outcome, its
        runs in progress and its current retry chain, so the latest-event
        conditions (``after_*``, ``every``, bare ``succeeded``, ``retry``) keep
        their values; only counts over periods older than ``cutoff`` change.
        Costs O(n log n) in the number of runs, however many are dropped.
        """
        cutoff = _utc(cutoff)
        dropped = 0
        for task, log in self._tasks.items():
            keep: set[object] = set(log.in_progress)
            chain = self.retry_chain(task) or 0
            keep.update(run_id for _, _, run_id in log.ordered[len(log.ordered) - max(chain, 1) :])
            latest_of: dict[str, tuple[datetime, int, object]] = {}
            for item in log.runs.values():
                if item.outcome is not None and item.finished_at is not None:
                    candidate = (item.finished_at, item.order, item.run_id)
                    best = latest_of.get(item.outcome)
                    if best is None or candidate[:2] > best[:2]:
                        latest_of[item.outcome] = candidate
            keep.update(run_id for _, _, run_id in latest_of.values())
            doomed = [
                run_id
                for run_id, item in log.runs.items()
                if run_id not in keep and item.finished_at is not None and item.finished_at < cutoff
            ]
            if not doomed:
                continue
            for run_id in doomed:
                del log.runs[run_id]
            _rebuild(log)
            dropped += len(doomed)
        return dropped

    # History

    def holds(self, task: str) -> bool:
        """Return whether anything of ``task`` is held.

        False: every question about it has the answer of a task that never ran.
        """
        return task in self._tasks

    def last_start(self, task: str) -> datetime | None:
        log = self._tasks.get(task)
        return log.starts[-1] if log is not None and log.starts else None

    def last_finish(self, task: str, outcomes: frozenset[str]) -> datetime | None:
        log = self._tasks.get(task)
        if log is None:
            return None
        latest = None
        for outcome in outcomes:
            finishes = log.finishes.get(outcome)
            if finishes and (latest is None or finishes[-1] > latest):
                latest = finishes[-1]
        return latest

    def events(
        self, task: str, kind: str, since: datetime | None, until: datetime | None
    ) -> Sequence[datetime]:
        log = self._tasks.get(task)
        if log is None:
            items = _EMPTY
        elif kind == "start":
            items = log.starts
        elif kind in OUTCOMES:
            items = log.finishes.get(kind, _EMPTY)
        else:
            raise ValueError(f"Unknown event kind {kind!r}; use 'start' or an outcome.")
        return window(items, since, until)

    def count(self, task: str, kind: str, since: datetime | None, until: datetime | None) -> int:
        return len(self.events(task, kind, since, until))

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

    def last_run(self, task: str) -> RunRecord | None:
        log = self._tasks.get(task)
        if log is None or not log.ordered:
            return None
        return _record(task, log.runs[log.ordered[-1][2]])

    def runs(self, task: str) -> list[RunRecord]:
        """Return the task's runs, oldest start first."""
        log = self._tasks.get(task)
        if log is None:
            return []
        return [_record(task, log.runs[run_id]) for _, _, run_id in log.ordered]


def _rebuild(log: _TaskLog) -> None:
    """Recompute a task's sorted lists from its runs."""
    items = log.runs.values()
    log.ordered = sorted((item.started_at, item.order, item.run_id) for item in items)
    log.starts = sorted(item.started_at for item in items)
    log.finishes = {}
    for item in items:
        if item.outcome is not None and item.finished_at is not None:
            log.finishes.setdefault(item.outcome, []).append(item.finished_at)
    for finishes in log.finishes.values():
        finishes.sort()
    log.chain_stale = True


def _chain(log: _TaskLog) -> int | None:
    return chain_length(bool(log.in_progress), (log.runs[r] for _, _, r in reversed(log.ordered)))


class _Outcome(Protocol):
    @property
    def outcome(self) -> str | None: ...
    @property
    def trigger(self) -> str: ...


def chain_length(in_progress: bool, latest_first: Iterable[_Outcome]) -> int | None:
    """The retry chain: failed runs back to and including the latest not started as a retry.

    None while a run is in progress, or when the latest run did not fail.
    """
    if in_progress:
        return None
    count = 0
    for item in latest_first:
        if item.outcome != "fail":
            break
        count += 1
        if item.trigger != "retry":
            break
    return count or None


def window(items: list[datetime], since: datetime | None, until: datetime | None) -> _Slice:
    """The part of a sorted list in [since, until), without copying it."""
    start = 0 if since is None else bisect.bisect_left(items, _utc(since))
    stop = len(items) if until is None else bisect.bisect_left(items, _utc(until))
    return _Slice(items, start, stop)


def _record(task: str, item: _Run) -> RunRecord:
    return RunRecord(
        task,
        item.run_id,
        item.started_at,
        item.finished_at,
        item.outcome,
        item.trigger,
        item.exception_types,
    )


def check_finish(finished_at: datetime, outcome: str) -> None:
    """Refuse a naive finish time or an outcome that is not one of :data:`OUTCOMES`."""
    _check_aware(finished_at, "finished_at")
    if outcome not in OUTCOMES:
        raise ValueError(f"Unknown outcome {outcome!r}; use one of {sorted(OUTCOMES)}.")


def _remove(items: list[Any], value: Any) -> None:
    index = bisect.bisect_left(items, value)
    if index < len(items) and items[index] == value:
        del items[index]
