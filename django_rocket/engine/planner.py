"""What is due and when to look again: dirty sets, the wake-up heap, end conditions, deadlines.

The planner holds no database connection: it reads the run history snapshot it is
given and the times it is told, so it can be driven by a test clock alone.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import partial
from typing import NamedTuple

from django_rocket.conditions import Context, MemoryHistory, RunRecord
from django_rocket.conditions.bounded import BoundedHistory
from django_rocket.conditions.needs import Needs
from django_rocket.conf import conf
from django_rocket.engine import snapshot
from django_rocket.engine.shared import Answers, Shapes
from django_rocket.models import RunStatus, RunTrigger, TaskRun
from django_rocket.registry import TaskSpec

logger = logging.getLogger("django_rocket.scheduler")

FAR = timedelta(days=3650)

# A run to start: its task, its trigger, and its queued row if an operator asked for it.
Start = tuple[TaskSpec, str, TaskRun | None]
Terminate = Callable[[str, str], None]


class ConditionFailed(Exception):
    """A start or end condition raised and the settings do not silence it."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(slots=True)
class RunState:
    """A run this scheduler started and has not seen finish."""

    run_id: str
    task: str
    started_at: datetime
    deadline: datetime | None
    trigger: str


class _Wake(NamedTuple):
    """A task to look at again at ``at``, unless a later ``schedule()`` replaced it.

    A tuple, so that the heap compares them in C: a dataclass's ``__lt__`` cost more than
    the rest of a wake-up at ten thousand tasks. Ties go by name, then version.
    """

    at: datetime
    task: str
    version: int


class Wakes:
    """When to look at each task again: a heap of wake-ups, each task's latest one valid.

    A replaced wake-up stays in the heap until its time (a task looked at every second
    may push one for midnight each time), unless the heap outgrows the tasks: then the
    replaced ones are all dropped, so it holds at most about two per task.
    """

    def __init__(self) -> None:
        self.heap: list[_Wake] = []
        self.versions: dict[str, int] = {}
        self.at: dict[str, datetime] = {}  # each task's valid wake-up still in the heap

    def set(self, name: str, at: datetime | None) -> None:
        """Wake ``name`` at ``at`` (never, if None), replacing its earlier wake-up."""
        if at is not None and self.at.get(name) == at:
            return  # already in the heap for that instant (a task looked at again)
        version = self.versions.get(name, 0) + 1
        self.versions[name] = version
        if at is None:
            self.at.pop(name, None)
            return
        self.at[name] = at
        heapq.heappush(self.heap, _Wake(at, name, version))
        if len(self.heap) > 2 * len(self.versions) + 64:
            self.heap[:] = [w for w in self.heap if self.versions.get(w.task) == w.version]
            heapq.heapify(self.heap)

    def pop_due(self, now: datetime) -> Iterator[str]:
        """Take off the heap the tasks whose wake-up is at or before ``now``."""
        heap = self.heap
        while heap and heap[0].at <= now:
            wake = heapq.heappop(heap)
            if self.versions.get(wake.task) == wake.version:
                del self.at[wake.task]
                yield wake.task


class Deadlines:
    """The deadlines of the runs in progress, earliest first, so no tick walks every run.

    A run that ended keeps its entry until it comes up, or until the heap outgrows the
    runs in progress: then the entries of ended runs are all dropped.
    """

    def __init__(self, running: dict[str, RunState]) -> None:
        self.running = running
        self.heap: list[tuple[datetime, str]] = []

    def push(self, state: RunState) -> None:
        if state.deadline is None:
            return
        heapq.heappush(self.heap, (state.deadline, state.run_id))
        if len(self.heap) > 2 * len(self.running) + 64:
            self.heap = [(r.deadline, r.run_id) for r in self.running.values() if r.deadline]
            heapq.heapify(self.heap)

    def earliest(self) -> RunState | None:
        """The run in progress with the earliest deadline (dropping ended runs' entries)."""
        while self.heap:
            deadline, run_id = self.heap[0]
            state = self.running.get(run_id)
            if state is not None and state.deadline == deadline:
                return state
            heapq.heappop(self.heap)
        return None


class Planner:
    """Decide which tasks are due and which runs must end, looking only where things changed."""

    def __init__(self, specs: dict[str, TaskSpec], tz: tzinfo, poll_every: float) -> None:
        self.specs = specs
        self.tz = tz
        self.poll_every = poll_every
        # Normally a BoundedHistory; a MemoryHistory (tests) keeps everything it is given.
        self.history: BoundedHistory | MemoryHistory | None = None
        self._base_context: Context | None = None  # the last tick's, reused for every task
        # For scheduler_running / scheduler_cycles: when this scheduler became active and
        # how many passes over the due tasks it has made since.
        self.active_since: datetime | None = None
        self.cycles = 0
        # Bounded: keyed by task (enabled, last_failed, dependents, versions, end_wakes),
        # by run in progress (running, running_by_task: removed as runs finish) or by run
        # queued and not yet started (queued: popped as they start).
        self.enabled: dict[str, bool] = {}
        self.queued: dict[str, list[TaskRun]] = {}
        self.running: dict[str, RunState] = {}
        self.running_by_task: dict[str, set[str]] = {}
        self.last_failed: dict[str, int | str] = {}
        self.dependents: dict[str, set[str]] = {}
        # What history each task's conditions read: all the snapshot keeps of it.
        self.needs: dict[str, Needs] = {}
        self.recent_runs = 0  # how many of each task's latest runs retry chains read
        self.dirty: set[str] = set()
        self.wake_ups = Wakes()
        self.wakes, self.versions = self.wake_ups.heap, self.wake_ups.versions  # (tests)
        self.end_dirty: set[str] = set()
        self.end_wakes: dict[str, datetime] = {}
        # The tasks whose spec has an end condition: what check_end_conditions looks through.
        self.ending = {name for name, spec in specs.items() if spec.end_cond is not None}
        self.deadlines = Deadlines(self.running)
        self.now: datetime | None = None  # of the latest due(): queued runs due later wait
        self.shapes = Shapes()  # what each pair of condition objects reads, worked out once
        # Tasks found due while no process or thread slot was free (ROCKET_MAX_PROCESSES,
        # ROCKET_MAX_THREADS): looked at again when one is. Bounded by the tasks.
        self.waiting: dict[str, set[str]] = {"process": set(), "thread": set()}

    def prepare_conditions(self) -> None:
        """Index which tasks' conditions read which others, and what the snapshot must hold."""
        self.needs = snapshot.needs_of(
            {name: (spec.start_cond, spec.end_cond) for name, spec in self.specs.items()}
        )
        for spec in self.specs.values():
            self._index(spec)

    def _index(self, spec: TaskSpec) -> None:
        name = spec.name
        if spec.end_cond is not None:
            self.ending.add(name)
        else:
            self.ending.discard(name)
        for cond in (spec.start_cond, spec.end_cond):
            if cond is None:
                continue
            for dep in cond.depends_on(name):
                self.dependents.setdefault(dep, set()).add(name)
        self.recent_runs = max(
            self.recent_runs,
            snapshot.retry_depth(spec.start_cond),
            snapshot.retry_depth(spec.end_cond),
        )

    def put_task(self, spec: TaskSpec, enabled: bool) -> None:
        """Add a task, or replace its spec (a new condition), while the scheduler runs.

        A stale entry in ``dependents`` only makes a task looked at once more. What the
        new conditions need the snapshot to keep (a retry chain, a window, a count) is
        kept from now on; what it did not keep before is read at the next leadership
        change, when the snapshot is loaded again.
        """
        self.specs[spec.name] = spec
        self.enabled[spec.name] = enabled
        shape = self.shapes.of(spec)
        for dep in shape.depends_of(spec.name):
            self.dependents.setdefault(dep, set()).add(spec.name)
        self.recent_runs = max(self.recent_runs, shape.retry_depth)
        added = shape.needs_of(spec.name)
        for name, needs in added.items():
            self.needs[name] = needs | self.needs[name] if name in self.needs else needs
            if isinstance(self.history, BoundedHistory):
                self.history.set_needs(name, self.needs[name])
        if spec.end_cond is not None:
            self.ending.add(spec.name)
        else:
            self.ending.discard(spec.name)
        self.dirty.add(spec.name)
        if spec.name in self.running_by_task:
            self.end_dirty.add(spec.name)

    def remove_task(self, name: str) -> bool:
        """Stop scheduling ``name``; runs in progress finish. False if it was not scheduled."""
        if self.specs.pop(name, None) is None:
            return False
        self.enabled.pop(name, None)
        self.schedule(name, None)
        self.end_wakes.pop(name, None)
        self.ending.discard(name)
        return True

    def activate(
        self,
        history: BoundedHistory | MemoryHistory,
        last_failed: dict[str, int],
        queued: Iterable[TaskRun],
        now: datetime,
    ) -> None:
        """Take a fresh snapshot and the queued runs; every task is looked at again.

        Runs this process started while it was active before (it lost the lease and won
        it back) may still be going. The snapshot need not hold them: another scheduler
        may have recorded them as ``crash`` meanwhile and started later runs, so that
        their rows are no longer among the ones it reads. They are added back as in
        progress, which they are; without it their finish raised ``KeyError`` and
        stopped the scheduler (found by bench/soak.py, seed 20261204).
        """
        self.replace_history(history, last_failed)
        self.active_since = now
        self.cycles = 0
        for run in queued:
            self.queued.setdefault(run.task.name, []).append(run)

    def replace_history(
        self, history: BoundedHistory | MemoryHistory, last_failed: dict[str, int]
    ) -> None:
        """Read conditions from ``history`` now, a snapshot just loaded; look at every task.

        The runs this process has going are added as in progress (see :meth:`activate`).
        """
        for state in self.running.values():
            going = RunRecord(
                task=state.task,
                run_id=state.run_id,
                started_at=state.started_at,
                trigger=state.trigger,
            )
            with contextlib.suppress(ValueError):  # "already recorded": the snapshot has it
                history.record_start(going)
        self.history = history
        self.last_failed = dict(last_failed)
        self.dirty = set(self.specs)

    def forget_before(self, now: datetime) -> None:
        """Drop from the snapshot what no condition evaluated from ``now`` on can read.

        A bounded snapshot already drops most of it as runs are recorded; this
        catches the sliding windows and periods of tasks that stopped running.
        """
        if isinstance(self.history, BoundedHistory):
            self.history.trim(now)

    # -- what changed

    def history_changed(self, name: str) -> None:
        """Look again at ``name`` and the tasks whose conditions read its runs.

        End conditions too: those of ``name`` and of the tasks whose end condition reads
        its runs (``end_cond="running('backup')"``), while a run of theirs is in
        progress. Before, only ``name``'s own was looked at again, so an end condition
        that read another task waited for its next wake-up, which for a condition with
        no time in it was ten years away: the run was never stopped.
        """
        self.dirty.add(name)
        dependents = self.dependents.get(name, ())
        self.dirty.update(dependents)
        ending = self.ending
        if not ending:
            return
        running = self.running_by_task
        if name in ending and name in running:
            self.end_dirty.add(name)
        for task in dependents:
            if task in ending and task in running:
                self.end_dirty.add(task)

    def add_queued(self, run: TaskRun) -> bool:
        """Follow a run an operator queued; False if it is already followed."""
        name = run.task.name
        if any(q.pk == run.pk for q in self.queued.get(name, [])):
            return False
        self.queued.setdefault(name, []).append(run)
        self.dirty.add(name)
        return True

    def set_enabled(self, name: str, enabled: bool) -> bool:
        """Record a pause or resume of a declared task; True if it changed."""
        if name not in self.enabled or self.enabled[name] == enabled:
            return False
        self.enabled[name] = enabled
        self.dirty.add(name)
        return True

    def schedule(self, name: str, at: datetime | None) -> None:
        """Look at ``name`` again at ``at`` (never, if None), replacing any earlier wake-up.

        A run queued for a later instant (``due_at``) brings the wake-up forward to it.
        """
        if name in self.queued:
            later = [
                run.due_at
                for run in self.queued[name]
                if run.due_at is not None and (self.now is None or run.due_at > self.now)
            ]
            if later:
                at = min([at, *later]) if at is not None else min(later)
        self.wake_ups.set(name, at)

    def context(self, name: str, now: datetime) -> Context:
        """Return the context ``name``'s conditions are evaluated in at ``now``."""
        base = self._base_context
        if (
            base is None
            or base.now != now
            or base.history is not self.history
            or base.scheduler_cycles != self.cycles
        ):
            assert self.history is not None
            base = Context(
                task=name,
                now=now.astimezone(self.tz),
                history=self.history,
                tz=self.tz,
                scheduler_started_at=self.active_since,
                scheduler_cycles=self.cycles,
            )
            self._base_context = base
        return base.for_task(name)

    # -- starting

    def _due_candidates(self, now: datetime) -> set[str]:
        names = set(self.dirty)
        self.dirty.clear()
        names.update(self.wake_ups.pop_due(now))
        return names

    def due(self, now: datetime, slots: int, thread_slots: int | None = None) -> list[Start]:
        """Return the runs to start now: at most ``slots`` new processes and ``thread_slots``
        new threads (None: any number).

        A task due without a free slot waits: it is looked at again as soon as a slot of its
        kind is free (or after the poll interval), its condition evaluated anew then.
        :attr:`waiting` says which tasks wait. Raises :class:`ConditionFailed` when a start
        condition raises unsilenced.
        """
        to_start: list[Start] = []
        self.now = now
        answers = Answers(self.history)
        free = {"process": slots, "thread": thread_slots}
        candidates = self._due_candidates(now)
        for kind, waiting in self.waiting.items():
            left = free[kind]
            if waiting and (left is None or left > 0):
                candidates |= waiting
                waiting.clear()

        capped = {kind for kind, left in free.items() if left is not None}

        def waits_for_a_slot(spec: TaskSpec) -> bool:
            """Take a slot of the run's kind; if none is free, make the task wait for one."""
            kind = spec.execution
            left = free[kind]
            assert left is not None
            if left > 0:
                free[kind] = left - 1
                return False
            self.waiting[kind].add(spec.name)
            self.schedule(spec.name, now + timedelta(seconds=self.poll_every))
            return True

        for name in sorted(candidates):
            spec = self.specs.get(name)
            if spec is None:
                continue
            busy = name in self.running_by_task  # (it holds no empty sets)
            queued = self.queued.get(name)
            ready = [q for q in queued if q.due_at is None or q.due_at <= now] if queued else ()
            if ready and (spec.multilaunch or not busy):
                if spec.execution in capped and waits_for_a_slot(spec):
                    continue
                run = ready[0]
                self.queued[name].remove(run)
                to_start.append((spec, RunTrigger.MANUAL, run))
                self.dirty.add(name)
                continue
            if not self.enabled.get(name, False):
                self.schedule(name, None)
                continue
            try:
                due, next_change, is_retry = answers.start(spec, partial(self.context, name, now))
            except Exception as exc:
                if conf.silence_cond_check:
                    logger.error(
                        "Condition of task %r raised; treated as false.", name, exc_info=True
                    )
                    self.schedule(name, now + timedelta(seconds=max(self.poll_every, 1.0)))
                    continue
                raise ConditionFailed(f"the condition of task {name!r} raised {exc!r}") from exc
            self.schedule(name, next_change)
            if not due or (busy and not spec.multilaunch):
                continue
            if spec.execution in capped and waits_for_a_slot(spec):
                continue
            to_start.append((spec, RunTrigger.RETRY if is_retry else RunTrigger.SCHEDULED, None))
        self.cycles += 1
        return to_start

    def not_started(self, start: Start, now: datetime) -> None:
        """Put back a run whose start could not be recorded; try again in a second."""
        spec, _, queued = start
        if queued is not None:
            self.queued.setdefault(spec.name, []).insert(0, queued)
        self.schedule(spec.name, now + timedelta(seconds=1))

    def started(self, spec: TaskSpec, run_id: str, trigger: str, now: datetime) -> None:
        """Follow a run whose row is committed."""
        name = spec.name
        deadline = now + spec.timeout if spec.timeout is not None else None
        self.running[run_id] = state = RunState(run_id, name, now, deadline, trigger)
        self.deadlines.push(state)
        self.running_by_task.setdefault(name, set()).add(run_id)
        assert self.history is not None
        self.history.start_run(name, run_id, now, trigger)
        self.history_changed(name)

    def adopted(self, run: TaskRun) -> None:
        """Follow a run another scheduler started (on a worker backend), from its row."""
        assert run.started_at is not None and self.history is not None
        name = run.task.name
        spec = self.specs.get(name)
        timeout = spec.timeout if spec is not None else None
        deadline = run.started_at + timeout if timeout is not None else None
        run_id = str(run.run_id)
        self.running[run_id] = state = RunState(run_id, name, run.started_at, deadline, run.trigger)
        self.deadlines.push(state)
        if spec is not None:  # a task no longer declared is followed, not judged
            self.running_by_task.setdefault(name, set()).add(run_id)
        try:
            self.history.record_start(snapshot.record_of(run, name))
        except ValueError:
            pass  # the snapshot has it already, as it has every run in progress
        self.history_changed(name)

    def released(self, run_id: str) -> RunState | None:
        """Stop following a run: it ended, or goes on without this scheduler."""
        state = self.running.pop(run_id, None)
        if state is None:
            return None
        if runs := self.running_by_task.get(state.task):
            runs.discard(run_id)
        if not runs:
            self.running_by_task.pop(state.task, None)
            self.end_wakes.pop(state.task, None)
        return state

    def finished(
        self,
        run_id: str,
        finished_at: datetime,
        status: str,
        exception_types: Sequence[str] = (),
    ) -> RunState | None:
        """Stop following a run that ended; None if it is not one of ours."""
        state = self.released(run_id)
        if state is None:
            return None
        assert self.history is not None
        try:
            self.history.record_finish(state.task, run_id, finished_at, status, exception_types)
        except KeyError:
            # Not in progress in this snapshot: another scheduler recorded it meanwhile (a
            # crash while this one was cut off) and the snapshot was re-read since. The run
            # log is the truth; the snapshot takes the run as it ended (found by
            # bench/soak.py: a KeyError here stopped the scheduler).
            finished = RunRecord(
                task=state.task,
                run_id=run_id,
                started_at=state.started_at,
                finished_at=finished_at,
                outcome=status,
                trigger=state.trigger,
                exception_types=tuple(exception_types),
            )
            with contextlib.suppress(ValueError):  # it holds this run already, ended
                self.history.record_start(finished)
        if status == RunStatus.FAIL:
            self.last_failed[state.task] = run_id
        self.history_changed(state.task)
        return state

    # -- ending

    def enforce_deadlines(self, now: datetime, terminate: Terminate) -> None:
        """Terminate the runs past their timeout (looking only at the earliest deadlines)."""
        while (state := self.deadlines.earliest()) and state.deadline and now >= state.deadline:
            # From the run itself: its task may have been unscheduled meanwhile.
            terminate(state.run_id, f"Timed out after {state.deadline - state.started_at}.")
            state.deadline = None  # its entry is dropped as ended

    def check_end_conditions(self, now: datetime, terminate: Terminate) -> None:
        """Terminate the runs whose task's end condition is true.

        Raises :class:`ConditionFailed` when an end condition raises unsilenced.
        """
        due = set(self.end_dirty)
        self.end_dirty.clear()
        for name, wake in list(self.end_wakes.items()):
            if wake <= now:
                due.add(name)
        for name in self.ending:  # not every running task: most have no end condition
            if name in self.running_by_task and name not in self.end_wakes:
                due.add(name)
        for name in due:
            spec = self.specs.get(name)
            if spec is None or spec.end_cond is None or not self.running_by_task.get(name):
                self.end_wakes.pop(name, None)
                continue
            ctx = self.context(name, now)
            try:
                end, at = spec.end_cond.evaluate(ctx)
            except Exception as exc:
                if conf.silence_cond_check:
                    logger.error(
                        "End condition of task %r raised; treated as false.", name, exc_info=True
                    )
                    self.end_wakes[name] = now + timedelta(seconds=1)
                    continue
                raise ConditionFailed(f"the end condition of task {name!r} raised {exc!r}") from exc
            self.end_wakes[name] = at or now + FAR
            if end:
                for run_id in list(self.running_by_task.get(name, ())):
                    terminate(run_id, f"End condition {spec.end_cond} became true.")

    # -- sleeping

    def busy(self) -> bool:
        """Whether something is to be looked at without waiting."""
        return bool(self.dirty or self.end_dirty)

    def seconds_to_next_change(self, now: datetime) -> list[float]:
        """Return in how many seconds each wake-up, deadline and end condition is due."""
        wakes = [self.wakes[0].at] if self.wakes else []
        ends = [(at - now).total_seconds() for at in [*wakes, *self.end_wakes.values()]]
        return self.seconds_to_deadlines(now) + ends

    def seconds_to_deadlines(self, now: datetime) -> list[float]:
        """Return in how many seconds the earliest run in progress reaches its timeout."""
        if (state := self.deadlines.earliest()) and state.deadline:
            return [(state.deadline - now).total_seconds()]
        return []
