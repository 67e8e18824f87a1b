"""The scheduler service: startup recovery, the loop, and shutdown.

One tick: heartbeat and lease (when due), poll for admin requests (when due),
record finished runs in one batch, enforce timeouts and end conditions, then
evaluate only the tasks whose conditions may have changed and start the due
ones, writing all their rows in one transaction before any of them begins.
Between ticks the loop sleeps until the earliest instant anything can change.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import queue
import socket
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connection, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

import django_rocket
from django_rocket import conf, registry
from django_rocket.alerts import install_alerts, shutdown_alerts
from django_rocket.clock import SystemClock
from django_rocket.conditions import Context, RunRecord, parse_duration
from django_rocket.engine import runlog, snapshot
from django_rocket.executors.outcome import Launch, Outcome, refused_note
from django_rocket.executors.runner import Runner
from django_rocket.models import (
    RunStatus,
    RunTrigger,
    SchedulerInstance,
    SchedulerLease,
    SchedulerRole,
    Task,
    TaskRun,
)
from django_rocket.ops import pruning
from django_rocket.registry import TaskSpec

logger = logging.getLogger("django_rocket.scheduler")
task_logger = logging.getLogger("django_rocket.task")

FAR = timedelta(days=3650)
# Without counting conditions the snapshot needs only recent runs (latest ones are kept).
SNAPSHOT_HORIZON = timedelta(hours=1)
# How many ids behind its cursor the poll looks again for rows that committed late.
POLL_LOOKBACK = 200
LEASE = "default"


@dataclass
class RunState:
    """A run this scheduler started and has not seen finish."""

    run_id: str
    task: str
    started_at: datetime
    deadline: datetime | None
    trigger: str


@dataclass(order=True)
class _Wake:
    at: datetime
    task: str = field(compare=False)
    version: int = field(compare=False)


@contextmanager
def _one_snapshot() -> Iterator[None]:
    """Make the reads inside see the database as of one instant.

    PostgreSQL: a REPEATABLE READ transaction. SQLite: a transaction, which in WAL mode
    reads one snapshot (and with ``transaction_mode`` IMMEDIATE holds writers back for
    the few hundred milliseconds the reads take). Inside an outer transaction the reads
    already share it.
    """
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def _new_run_ids(count: int) -> Iterator[str]:
    """``count`` random (version 4) run ids from one read of the system's random source.

    ``uuid.uuid4()`` reads 16 bytes per call; at a thousand runs a tick those reads cost
    more than the rest of the id's making.
    """
    raw = os.urandom(16 * count)
    for i in range(count):
        yield str(uuid.UUID(bytes=raw[16 * i : 16 * i + 16], version=4))


class Scheduler:
    """Decide what is due, start it, and keep the run log true."""

    def __init__(
        self,
        tasks: dict[str, TaskSpec] | None = None,
        *,
        clock: Any = None,
        once: bool = False,
        duration: float | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        self.specs = tasks if tasks is not None else registry.tasks()
        self.tz = registry.scheduler_zone()
        self.once = once
        self.duration = duration
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.wakeup = threading.Event()
        self.outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.runner = Runner(
            self._report,
            self.clock.now,
            max_processes=conf.max_processes(),
            result_max_bytes=conf.result_max_bytes(),
            preload=sorted(
                {s.func.rpartition(".")[0] for s in self.specs.values() if s.execution == "process"}
            ),
        )
        self.instance: SchedulerInstance | None = None
        self.token: int | None = None
        self.history: Any = None
        self._base_context: Context | None = None  # the last tick's, reused for every task
        self.task_pks: dict[str, int] = {}
        self.enabled: dict[str, bool] = {}
        self.running: dict[str, RunState] = {}
        self.running_by_task: dict[str, set[str]] = {}
        self.last_failed: dict[str, int | str] = {}
        self.dependents: dict[str, set[str]] = {}
        self.counting: set[str] = set()
        # How many of each task's latest runs the snapshot reads for retry chains.
        self.recent_runs = 0
        self.dirty: set[str] = set()
        self.wakes: list[_Wake] = []
        self.versions: dict[str, int] = {}
        self.end_dirty: set[str] = set()
        self.end_wakes: dict[str, datetime] = {}
        self.queued: dict[str, list[TaskRun]] = {}
        self.pending: list[Outcome] = []
        self.write_attempts = 0
        self.next_write_attempt: float = 0.0
        self.spool_path: Path | None = None
        self.stop_requested = False
        self.starting = True
        self.force_stop = False
        self.stop_reason = ""
        self.exit_code = 0
        self.next_heartbeat: float = 0.0
        self.next_poll: float = 0.0
        self.next_maintenance: float = 0.0
        self.next_prune: float = 0.0
        self.remote_poll: float | None = None
        self.external_open: set[int] = set()
        self.external_seen: set[int] = set()
        self.last_probe: tuple[Any, ...] | None = None
        self.poll_cursor = 0
        self.task_cursor: datetime | None = None
        self.heartbeat_every = parse_duration(conf.heartbeat()).total_seconds()
        self.lease_timeout = parse_duration(conf.lease_timeout())
        self.poll_every = conf.poll_interval()
        self.started_mono: float = 0.0
        self.ticks = 0

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Run until stopped; return the process exit code."""
        if not self._start_up_when_the_database_answers():
            return self.exit_code
        try:
            while not self.stop_requested:
                try:
                    sleep = self.tick()
                except DatabaseError:
                    # Steps that talk to the database catch their own errors; this is the
                    # net under them. The loop reconnects and goes on.
                    logger.warning("A database error interrupted a tick.", exc_info=True)
                    self._reconnect()
                    sleep = 1.0
                except Exception as exc:
                    self.fail_stop("an unexpected error in the scheduler loop", exc)
                    break
                if self.once and not self.stop_requested:
                    # One cycle: what the first active tick started, then wait for it.
                    self.starting = not self.active
                    if self.active and not self.running and not self.pending:
                        self.stop_requested = True
                        break
                    sleep = min(sleep, 0.05)
                if self.duration is not None:
                    left = self.started_mono + self.duration - self.clock.monotonic()
                    if left <= 0:
                        self.request_stop("duration reached")
                        break
                    sleep = min(sleep, left)
                if not self.stop_requested and sleep > 0:
                    self.clock.wait(self.wakeup, sleep)
                self.wakeup.clear()
        finally:
            self.shutdown()
        return self.exit_code

    def _start_up_when_the_database_answers(self) -> bool:
        """Run startup, waiting out a database that is not reachable yet; False if stopped."""
        delay = 0.5
        while True:
            try:
                self.startup()
                return True
            except DatabaseError:
                logger.error(
                    "The database is not reachable; retrying start-up in %.0fs.",
                    delay,
                    exc_info=True,
                )
                self._reconnect()
            if self.stop_requested:
                return False
            self.clock.wait(self.wakeup, delay)
            delay = min(delay * 2, 30.0)

    def request_stop(self, reason: str = "stop requested", *, force: bool = False) -> None:
        """Stop starting runs; called from signal handlers, so it only sets flags."""
        if self.stop_requested:
            self.force_stop = True
        self.stop_requested = True
        self.force_stop = self.force_stop or force
        self.stop_reason = self.stop_reason or reason
        self.wakeup.set()

    def fail_stop(self, what: str, exc: BaseException | None = None) -> None:
        """Shut down because of an error the settings do not silence."""
        logger.error("Shutting down: %s", what, exc_info=exc)
        self.exit_code = 1
        self.request_stop(what)

    def startup(self) -> None:
        install_alerts()  # ROCKET_ALERTS: a queued email handler on django_rocket.task
        self.started_mono = self.clock.monotonic()
        now = self.clock.now()
        self._prepare_conditions()
        self._apply_spool()
        self.instance = self.instance or SchedulerInstance.objects.create(
            host=self.host,
            pid=self.pid,
            started_at=now,
            last_seen=now,
            version=django_rocket.__version__,
        )
        self.spool_path = (
            self._spool_dir() / f"spool-{self.host}-{self.pid}-{self.instance.pk}.jsonl"
        )
        SchedulerLease.objects.get_or_create(name=LEASE)
        self._sync_tasks()
        logger.info(
            "Scheduler %s:%s started with %d task(s) in %s.",
            self.host,
            self.pid,
            len(self.specs),
            self.tz,
        )
        self._heartbeat(now)

    def _prepare_conditions(self) -> None:
        for name, spec in self.specs.items():
            for cond in (spec.start_cond, spec.end_cond):
                if cond is None:
                    continue
                for dep in cond.depends_on(name):
                    self.dependents.setdefault(dep, set()).add(name)
            self.counting.update(snapshot.counted_tasks(name, spec.start_cond))
            self.counting.update(snapshot.counted_tasks(name, spec.end_cond))
            self.recent_runs = max(
                self.recent_runs,
                snapshot.retry_depth(spec.start_cond),
                snapshot.retry_depth(spec.end_cond),
            )

    def _sync_tasks(self) -> None:
        """Make the Task table match ROCKET_TASKS; tasks no longer declared keep their history."""
        now = self.clock.now()
        declared = {
            name: {
                "func": spec.func,
                "start_cond": str(spec.start_cond),
                "end_cond": str(spec.end_cond) if spec.end_cond is not None else "",
                "execution": spec.execution,
                "description": spec.description,
                "declared": True,
            }
            for name, spec in self.specs.items()
        }
        existing = {t.name: t for t in Task.objects.all()}
        # Several schedulers may start at once: whoever inserts first wins, others skip.
        Task.objects.bulk_create(
            [
                Task(name=name, enabled=self.specs[name].enabled, **values)
                for name, values in declared.items()
                if name not in existing
            ],
            ignore_conflicts=True,
        )
        # Changed declarations are written in one statement per batch, not one per task:
        # after a deploy that touches many tasks, start-up would otherwise commit once each.
        changed = []
        for name, values in declared.items():
            row = existing.get(name)
            if row is not None and any(getattr(row, k) != v for k, v in values.items()):
                for key, value in values.items():
                    setattr(row, key, value)
                row.updated_at = now
                changed.append(row)
        if changed:
            synced = [*declared[changed[0].name], "updated_at"]  # the same keys for every task
            Task.objects.bulk_update(changed, synced, batch_size=100)
        gone = [n for n, t in existing.items() if n not in declared and t.declared]
        if gone:
            Task.objects.filter(name__in=gone).update(declared=False, updated_at=now)
        for pk, name, enabled in Task.objects.filter(name__in=list(declared)).values_list(
            "pk", "name", "enabled"
        ):
            self.task_pks[name] = pk
            self.enabled[name] = enabled
        latest = Task.objects.order_by("-updated_at").values_list("updated_at", flat=True).first()
        self.task_cursor = latest

    # ------------------------------------------------------------------ leadership

    def _heartbeat(self, now: datetime) -> None:
        """Record that this instance is alive; renew or try to take the lease."""
        self.next_heartbeat = self.clock.monotonic() + self.heartbeat_every
        assert self.instance is not None
        try:
            SchedulerInstance.objects.filter(pk=self.instance.pk).update(last_seen=now)
            if self.token is not None:
                if not self._renew(now):
                    logger.warning("Lost the scheduler lease; standing by.")
                    self.token = None
                    self._set_role(SchedulerRole.STANDBY)
            else:
                self._try_acquire(now)
        except DatabaseError:
            logger.warning("Heartbeat failed; will retry.", exc_info=True)
            self._reconnect()

    def _renew(self, now: datetime) -> bool:
        assert self.token is not None  # called with the lease held (heartbeat, _start)
        return bool(
            SchedulerLease.objects.filter(name=LEASE, token=self.token).update(
                expires_at=now + self.lease_timeout
            )
        )

    def _try_acquire(self, now: datetime) -> None:
        assert self.instance is not None
        with transaction.atomic():
            free = _lease_free(now)
            holder = (
                SchedulerLease.objects.filter(name=LEASE)
                .select_related("holder")
                .values_list("token", "holder__host", "holder__pid")
                .first()
            )
            if holder and holder[1] == self.host and holder[2] and not _pid_alive(holder[2]):
                # The holder was on this machine and its process is gone: no need to wait
                # for its lease to expire. Conditional on the token we saw, as always.
                free = free | Q(token=holder[0])
            taken = (
                SchedulerLease.objects.filter(name=LEASE)
                .filter(free)
                .update(
                    holder=self.instance,
                    token=F("token") + 1,
                    expires_at=now + self.lease_timeout,
                )
            )
            if not taken:
                return
            self.token = SchedulerLease.objects.values_list("token", flat=True).get(name=LEASE)
        self._set_role(SchedulerRole.ACTIVE)
        logger.info("This scheduler is now active (fencing token %s).", self.token)
        self._become_active(now)

    def _set_role(self, role: str) -> None:
        assert self.instance is not None
        self.instance.role = role
        SchedulerInstance.objects.filter(pk=self.instance.pk).update(role=role, token=self.token)

    def _become_active(self, now: datetime) -> None:
        self.recover_crashed(now)
        # The snapshot, the poll's cursor and what it counts as seen must describe the same
        # instant: a run another process commits between two of these reads would
        # otherwise be counted as seen without being in the snapshot, and lost to it.
        with _one_snapshot():
            self.history, last_failed = snapshot.load(
                now, counting_tasks=self.counting, recent=self.recent_runs
            )
            self.last_failed = dict(last_failed)
            newest = TaskRun.objects.order_by("-pk").values_list("pk", flat=True).first()
            self.poll_cursor = newest or 0
            # What the snapshot holds is not news to the poll; runs other processes still
            # have going are followed until they finish.
            # Unordered: with the model's default order SQLite walks the whole
            # (started_at, id) index for these few ids (0.45 s at 1,000,000 rows, cold).
            self.external_seen = set(
                TaskRun.objects.filter(pk__gt=self.poll_cursor - POLL_LOOKBACK)
                .order_by()
                .values_list("pk", flat=True)
            )
            self.external_open = set(
                TaskRun.objects.running()
                .exclude(scheduler=self.instance)
                .values_list("pk", flat=True)
            )
            for run in TaskRun.objects.queued().select_related("task"):
                self.queued.setdefault(run.task.name, []).append(run)
        self.dirty = set(self.specs)
        self.next_poll = 0.0
        self.next_maintenance = self.clock.monotonic() + self.lease_timeout.total_seconds()

    def recover_crashed(self, now: datetime) -> int:
        """Mark runs left ``running`` by a scheduler that is gone as ``crash``."""
        stale_before = now - self.lease_timeout
        crashed = []
        for run in TaskRun.objects.running().select_related("scheduler", "task"):
            if run.run_id and str(run.run_id) in self.running:
                continue
            inst = run.scheduler
            if inst is not None and inst.pk == getattr(self.instance, "pk", None):
                continue
            gone = False
            if run.host == self.host and run.pid and not _pid_alive(run.pid):
                gone = True
            elif inst is not None and (
                inst.stopped_at is not None or inst.last_seen < stale_before
            ):
                gone = True
            elif inst is None and run.host != self.host:
                spec = self.specs.get(run.task.name)
                limit = spec.timeout if spec and spec.timeout else timedelta(days=1)
                gone = (
                    run.started_at is not None and run.started_at < now - limit - self.lease_timeout
                )
            if gone:
                crashed.append(run)
        for run in crashed:
            who = f"{run.host}:{run.pid}" if run.host else "an unknown scheduler"
            run.status = RunStatus.CRASH
            run.finished_at = now
            run.runtime = now - run.started_at if run.started_at else None
            run.message = (
                f"The scheduler {who} stopped while this run was in progress; "
                f"detected at {now.isoformat()} by {self.host}:{self.pid}."
            )
            run.save(update_fields=["status", "finished_at", "runtime", "message"])
            self._log_event(
                run.task.name,
                str(run.run_id),
                "crash",
                run.started_at,
                now,
                level=logging.ERROR,
                message=run.message,
            )
        if crashed:
            logger.warning("Recorded %d run(s) as crash.", len(crashed))
        return len(crashed)

    @property
    def active(self) -> bool:
        return self.token is not None

    # ------------------------------------------------------------------ the tick

    def tick(self) -> float:
        """Do one cycle; return how many seconds the loop may sleep."""
        self.ticks += 1
        _close_broken_connections()
        now = self.clock.now()
        mono = self.clock.monotonic()
        if mono >= self.next_heartbeat:
            self._heartbeat(now)
        self.remote_poll = self.runner.poll(now)
        self._drain_outcomes()
        if not self.active:
            self._flush(now)
            return max(self.next_heartbeat - self.clock.monotonic(), 0.0)
        if mono >= self.next_poll:
            self._poll(now)
        if mono >= self.next_maintenance:
            self._maintain(now)
        if mono >= self.next_prune:
            self._prune(now)
        self._enforce_deadlines(now)
        self._check_end_conditions(now)
        if self.starting and not self.stop_requested:
            self._start_due(now)  # writes the finishes too when it starts runs
        self._flush(now)
        return self._sleep_seconds()

    def _sleep_seconds(self) -> float:
        if self.dirty or self.end_dirty or not self.outcomes.empty():
            return 0.0
        now = self.clock.now()
        mono = self.clock.monotonic()
        candidates = [self.next_heartbeat - mono, self.next_poll - mono]
        if self.pending:
            candidates.append(self.next_write_attempt - mono)
        if self.wakes:
            candidates.append((self.wakes[0].at - now).total_seconds())
        if self.remote_poll is not None:
            candidates.append(self.remote_poll)
        for run in self.running.values():
            if run.deadline is not None:
                candidates.append((run.deadline - now).total_seconds())
        for at in self.end_wakes.values():
            candidates.append((at - now).total_seconds())
        return max(min(candidates), 0.0)

    # -- reading the outside world

    def _poll(self, now: datetime) -> None:
        """Pick up admin requests: queued runs, paused tasks, runs other processes wrote."""
        self.next_poll = self.clock.monotonic() + self.poll_every
        try:
            probe = self._probe()
            if probe == self.last_probe and not self.external_open:
                return  # nothing was inserted, paused, resumed or committed late
            self.last_probe = probe
            new_queued = [
                r
                for r in TaskRun.objects.queued().select_related("task")
                if not any(q.pk == r.pk for q in self.queued.get(r.task.name, []))
            ]
            for run in new_queued:
                self.queued.setdefault(run.task.name, []).append(run)
                self.dirty.add(run.task.name)
            changed = Task.objects.all()
            if self.task_cursor is not None:
                changed = changed.filter(updated_at__gt=self.task_cursor)
            for task in changed.only("name", "enabled", "updated_at"):
                self.task_cursor = max(self.task_cursor or task.updated_at, task.updated_at)
                if task.name in self.enabled and self.enabled[task.name] != task.enabled:
                    self.enabled[task.name] = task.enabled
                    logger.info("Task %r %s.", task.name, "resumed" if task.enabled else "paused")
                    self.dirty.add(task.name)
            # Read the upper bound first, so a row committed meanwhile is left for the next
            # poll instead of being skipped; look back a little because on PostgreSQL a row
            # with a lower id can commit after one with a higher id.
            newest = TaskRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            external = (
                TaskRun.objects.filter(
                    pk__gt=max(self.poll_cursor - POLL_LOOKBACK, 0), pk__lte=newest
                )
                .exclude(status=RunStatus.QUEUED)
                .select_related("task")
                .order_by("pk")
            )
            if self.instance is not None:
                external = external.exclude(scheduler=self.instance)
            if self.external_open:
                # Runs another process (runtask --wait) was still running at an earlier poll.
                external = external | TaskRun.objects.filter(
                    pk__in=list(self.external_open)
                ).exclude(status=RunStatus.RUNNING)
            for run in external:
                if not run.started_at or self.history is None:
                    continue
                try:
                    if run.pk in self.external_open:
                        if not run.is_finished:
                            continue  # still going; seen again through the look-back
                        self.history.record_finish(
                            run.task.name, str(run.run_id), run.finished_at, run.status
                        )
                        self.external_open.discard(run.pk)
                    elif run.pk in self.external_seen:
                        continue
                    else:
                        self.history.record_start(snapshot.record_of(run, run.task.name))
                        if not run.is_finished:
                            self.external_open.add(run.pk)
                except (ValueError, TypeError, KeyError):
                    # A row the snapshot cannot take (already known, or inconsistent) must
                    # not stop the loop; the snapshot is reloaded when leadership changes.
                    logger.warning(
                        "Skipped run %s from another process.", run.run_id, exc_info=True
                    )
                    self.external_open.discard(run.pk)
                self.external_seen.add(run.pk)
                self._history_changed(run.task.name)
            self.poll_cursor = max(self.poll_cursor, newest)
            floor = self.poll_cursor - POLL_LOOKBACK
            self.external_seen = {pk for pk in self.external_seen if pk > floor}
        except DatabaseError:
            logger.warning("Polling the database failed; will retry.", exc_info=True)
            self._reconnect()

    def _probe(self) -> tuple[Any, ...]:
        """One index-backed statement that changes whenever the full poll could find news.

        A queued run (run now, retry) or a run another process records inserts a row, so
        the newest id moves; pausing or resuming moves a task's ``updated_at``; a row that
        commits late inside the look-back window changes its count.

        The count reads at most ``POLL_LOOKBACK`` ids, and says so with a LIMIT: without
        it PostgreSQL estimated a third of the log for the open-ended range and, at
        1,000,000 runs, counted with two parallel workers, 11 ms a poll instead of 0.4.
        """
        qn = connection.ops.quote_name
        runs, tasks = qn(TaskRun._meta.db_table), qn(Task._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT (SELECT MAX(id) FROM {runs}), "
                f"(SELECT COUNT(*) FROM (SELECT id FROM {runs} "
                f"WHERE id > (SELECT MAX(id) FROM {runs}) - %s ORDER BY id DESC LIMIT %s) w), "
                f"(SELECT MAX(updated_at) FROM {tasks})",
                [POLL_LOOKBACK, POLL_LOOKBACK],
            )
            return tuple(cursor.fetchone())

    def _maintain(self, now: datetime) -> None:
        """Now and then: record crashes of other schedulers, keep the snapshot bounded."""
        self.next_maintenance = self.clock.monotonic() + self.lease_timeout.total_seconds()
        try:
            self.recover_crashed(now)
        except DatabaseError:
            logger.warning("Crash recovery failed; will retry.", exc_info=True)
            self._reconnect()
        horizon = snapshot.COUNT_HORIZON if self.counting else SNAPSHOT_HORIZON
        self.history.forget_before(now - horizon)

    def _prune(self, now: datetime) -> None:
        """Apply ROCKET_RUN_RETENTION a few batches at a time, so no tick waits long on it."""
        try:
            result = pruning.apply_retention(now=now, max_batches=2)
        except DatabaseError:
            logger.warning("Pruning the run log failed; will retry.", exc_info=True)
            self._reconnect()
            result = None
        more = result is not None and not result.complete
        self.next_prune = self.clock.monotonic() + (60.0 if more else 3600.0)

    def _reconnect(self) -> None:
        try:
            connection.close()
        except DatabaseError:
            pass

    # -- deciding what is due

    def _context(self, name: str, now: datetime) -> Context:
        base = self._base_context
        if base is None or base.now != now or base.history is not self.history:
            base = Context(task=name, now=now.astimezone(self.tz), history=self.history, tz=self.tz)
            self._base_context = base
        return base.for_task(name)

    def _schedule(self, name: str, at: datetime | None) -> None:
        version = self.versions.get(name, 0) + 1
        self.versions[name] = version
        if at is not None:
            heapq.heappush(self.wakes, _Wake(at, name, version))

    def _history_changed(self, name: str) -> None:
        self.dirty.add(name)
        self.dirty.update(self.dependents.get(name, ()))
        if name in self.running_by_task:
            self.end_dirty.add(name)

    def _due_candidates(self, now: datetime) -> set[str]:
        names = set(self.dirty)
        self.dirty.clear()
        while self.wakes and self.wakes[0].at <= now:
            wake = heapq.heappop(self.wakes)
            if self.versions.get(wake.task) == wake.version:
                names.add(wake.task)
        return names

    def _start_due(self, now: datetime) -> None:
        to_start: list[tuple[TaskSpec, str, TaskRun | None]] = []
        slots = self.runner.process_slots()
        for name in sorted(self._due_candidates(now)):
            spec = self.specs.get(name)
            if spec is None:
                continue
            busy = bool(self.running_by_task.get(name))
            queued = self.queued.get(name) or []
            if queued and (spec.multilaunch or not busy):
                if spec.execution == "process" and slots <= 0:
                    self._schedule(name, now + timedelta(seconds=self.poll_every))
                    continue
                run = queued.pop(0)
                to_start.append((spec, RunTrigger.MANUAL, run))
                slots -= spec.execution == "process"
                self.dirty.add(name)
                continue
            if not self.enabled.get(name, False):
                self._schedule(name, None)
                continue
            ctx = self._context(name, now)
            try:
                due, next_change = spec.start_cond.evaluate(ctx)
                is_retry = (
                    due
                    and spec.start_cond.has_retry()
                    and not spec.start_cond.is_true(replace(ctx, retry_disabled=True))
                )
            except Exception as exc:
                if conf.silence_cond_check():
                    logger.error(
                        "Condition of task %r raised; treated as false.", name, exc_info=True
                    )
                    self._schedule(name, now + timedelta(seconds=max(self.poll_every, 1.0)))
                    continue
                self.fail_stop(f"the condition of task {name!r} raised {exc!r}", exc)
                return
            self._schedule(name, next_change)
            if not due or (busy and not spec.multilaunch):
                continue
            if spec.execution == "process" and slots <= 0:
                self._schedule(name, now + timedelta(seconds=self.poll_every))
                continue
            slots -= spec.execution == "process"
            to_start.append((spec, RunTrigger.RETRY if is_retry else RunTrigger.SCHEDULED, None))
        if to_start:
            self._start(now, to_start)

    # -- starting

    def _start(self, now: datetime, batch: list[tuple[TaskSpec, str, TaskRun | None]]) -> None:
        """Write every run's row in one fenced transaction, then launch them."""
        fresh = _new_run_ids(len(batch))
        starts: list[tuple[TaskSpec, str, str, TaskRun | None]] = [
            (spec, trigger, str(queued.run_id) if queued else next(fresh), queued)
            for spec, trigger, queued in batch
        ]
        instance_pk = self.instance.pk if self.instance else None
        # The finishes recorded since the last write share the starts' transaction: one
        # commit a tick instead of two. While a failed write waits for its backoff they
        # stay out, and _flush writes them once it is over.
        finishes = self._flushable()
        try:
            with transaction.atomic():
                if finishes:
                    self._write_finishes(finishes)
                if not self._renew(now):
                    raise _LeaseLost
                retry_of = self._retry_parents(
                    [spec.name for spec, trigger, _, _ in starts if trigger == RunTrigger.RETRY]
                )
                runlog.insert_runs(
                    (
                        self.task_pks[spec.name],
                        run_id,
                        RunStatus.RUNNING,
                        trigger,
                        retry_of.get(spec.name) if trigger == RunTrigger.RETRY else None,
                        now,
                        self.host,
                        self.pid,
                        instance_pk,
                        "",
                        "",
                    )
                    for spec, trigger, run_id, queued in starts
                    if queued is None
                )
                taken = []
                for spec, trigger, run_id, queued in starts:
                    if queued is None:
                        taken.append((spec, trigger, run_id))
                    elif TaskRun.objects.filter(pk=queued.pk, status=RunStatus.QUEUED).update(
                        status=RunStatus.RUNNING,
                        started_at=now,
                        host=self.host,
                        pid=self.pid,
                        scheduler_id=instance_pk,
                    ):
                        taken.append((spec, RunTrigger.MANUAL, run_id))
        except _LeaseLost:
            # Rolled back, the finishes included: they stay pending for the tick's _flush.
            logger.warning("Lost the scheduler lease before starting runs; standing by.")
            self.token = None
            self._set_role(SchedulerRole.STANDBY)
            return
        except (DatabaseError, *runlog.REFUSED) as exc:
            if finishes and isinstance(exc, runlog.REFUSED):
                # Perhaps a finish the database refuses, rolled back with the starts: write
                # the finishes on their own (_flush falls back to run by run), then start
                # the runs without them. No finishes are pending for this second try.
                self._flush(now)
                self._start(now, batch)
                return
            # Write-ahead: a run whose row is not committed never starts.
            logger.error(
                "Could not record the start of %d run(s)%s; will retry.",
                len(batch),
                f" nor {len(finishes)} finish(es)" if finishes else "",
                exc_info=True,
            )
            self._reconnect()
            for spec, _, _, queued in starts:
                if queued is not None:
                    self.queued.setdefault(spec.name, []).insert(0, queued)
                self._schedule(spec.name, now + timedelta(seconds=1))
            if finishes:
                self._write_failed(finishes, exc)
            return
        if finishes:
            self._written(finishes)
        for spec, trigger, run_id in taken:
            deadline = now + spec.timeout if spec.timeout is not None else None
            self.running[run_id] = RunState(run_id, spec.name, now, deadline, trigger)
            self.running_by_task.setdefault(spec.name, set()).add(run_id)
            self.history.record_start(
                RunRecord(task=spec.name, run_id=run_id, started_at=now, trigger=trigger)
            )
            self._history_changed(spec.name)
            self._log_event(spec.name, run_id, "run", now, None)
            try:
                self.runner.launch(
                    Launch(run_id, spec.name, spec.func, spec.parameters, spec.execution)
                )
            except Exception as exc:
                self._report(
                    Outcome(
                        run_id,
                        spec.name,
                        RunStatus.FAIL,
                        self.clock.now(),
                        message=f"The run could not be started: {type(exc).__name__}: {exc}",
                        exc_text=traceback.format_exc(),
                    )
                )
                if conf.silence_task_prerun():
                    logger.error(
                        "Task %r could not be started; recorded as fail.", spec.name, exc_info=True
                    )
                else:
                    self.fail_stop(f"task {spec.name!r} could not be started", exc)

    def _retry_parents(self, names: list[str]) -> dict[str, int]:
        """Primary keys of the failed runs that the retries starting now follow."""
        wanted = {n: self.last_failed[n] for n in names if n in self.last_failed}
        by_run_id = {v: n for n, v in wanted.items() if isinstance(v, str)}
        parents = {n: v for n, v in wanted.items() if isinstance(v, int)}
        if by_run_id:
            for run_id, pk in TaskRun.objects.filter(run_id__in=list(by_run_id)).values_list(
                "run_id", "pk"
            ):
                parents[by_run_id[str(run_id)]] = pk
        return parents

    # -- finishing

    def _report(self, outcome: Outcome) -> None:
        """Called from any thread when a run ends."""
        self.outcomes.put(outcome)
        self.wakeup.set()

    def _drain_outcomes(self) -> None:
        while True:
            try:
                outcome = self.outcomes.get_nowait()
            except queue.Empty:
                break
            state = self.running.pop(outcome.run_id, None)
            if state is None:
                continue
            self.running_by_task.get(state.task, set()).discard(outcome.run_id)
            if not self.running_by_task.get(state.task):
                self.running_by_task.pop(state.task, None)
                self.end_wakes.pop(state.task, None)
            finished = outcome.finished_at or self.clock.now()
            outcome.finished_at = finished
            self.history.record_finish(state.task, outcome.run_id, finished, outcome.status)
            outcome.started_at = state.started_at
            if outcome.status == RunStatus.FAIL:
                self.last_failed[state.task] = outcome.run_id
            self._history_changed(state.task)
            self.pending.append(outcome)
            levels: dict[str, int] = {
                RunStatus.FAIL: logging.ERROR,
                RunStatus.CRASH: logging.ERROR,
                RunStatus.TERMINATE: logging.WARNING,
            }
            level = levels.get(outcome.status, logging.INFO)
            self._log_event(
                state.task,
                outcome.run_id,
                outcome.status,
                state.started_at,
                finished,
                level=level,
                message=outcome.message,
                exc_text=outcome.exc_text,
            )

    def _flushable(self) -> list[Outcome]:
        """The finishes to write now: none while a failed write waits for its backoff."""
        if not self.pending or self.clock.monotonic() < self.next_write_attempt:
            return []
        return list(self.pending)

    def _flush(self, now: datetime) -> None:
        """Write finished runs in one batch, retrying with backoff; spool while the DB is down."""
        batch = self._flushable()
        if not batch:
            return
        try:
            try:
                self._write_finishes(batch)
            except runlog.REFUSED as exc:
                # The database refused a value; it is not down, and the same batch would
                # fail the same way on every retry. One run must not hold back the others.
                self._write_each(batch, exc)
        except DatabaseError as exc:
            self._reconnect()
            self._write_failed(batch, exc)
            return
        self._written(batch)

    def _write_each(self, batch: list[Outcome], refused: Exception) -> None:
        """Write a refused batch run by run; a run refused alone loses what was refused."""
        logger.warning(
            "The database refused a batch of finished runs (%s); writing them one by one.", refused
        )
        for outcome in batch:
            try:
                self._write_finishes([outcome])
            except runlog.REFUSED as exc:
                logger.error(
                    "Run %s of task %r was refused as it ended (%s: %s); recorded without its "
                    "message, traceback and result.",
                    outcome.run_id,
                    outcome.task,
                    type(exc).__name__,
                    exc,
                )
                outcome.message = refused_note(exc)
                outcome.exc_text = ""
                outcome.result = None
                self._write_finishes([outcome])

    def _write_failed(self, batch: list[Outcome], exc: Exception) -> None:
        """Back off; after ``attempts`` failures spool the batch (and stop, unless silenced)."""
        self.write_attempts += 1
        policy = conf.log_retry()
        delay = min(policy["backoff"] * 2 ** (self.write_attempts - 1), policy["max_backoff"])
        self.next_write_attempt = self.clock.monotonic() + delay
        if self.write_attempts >= policy["attempts"]:
            self._spool(batch)
            if self.write_attempts == policy["attempts"]:
                logger.error(
                    "Recording %d finished run(s) failed %d times; kept in memory and "
                    "spooled to %s until the database is back.",
                    len(batch),
                    self.write_attempts,
                    self.spool_path,
                    exc_info=exc,
                )
                if not conf.silence_task_logging():
                    self.fail_stop("the run log could not be written", exc)
        else:
            logger.warning(
                "Recording finished runs failed (attempt %d); retrying in %.1fs.",
                self.write_attempts,
                delay,
                exc_info=exc,
            )

    def _written(self, batch: list[Outcome]) -> None:
        """The batch is committed: drop it from what is pending, and end a write outage."""
        written = {o.run_id for o in batch}
        self.pending = [o for o in self.pending if o.run_id not in written]
        if self.write_attempts:
            logger.info("The run log is writable again; %d run(s) recorded.", len(batch))
            self._clear_spool()
        self.write_attempts = 0
        self.next_write_attempt = 0.0

    def _write_finishes(self, batch: list[Outcome]) -> None:
        missing = [o.run_id for o in batch if o.started_at is None]
        if missing:
            started = dict(
                TaskRun.objects.filter(run_id__in=missing).values_list("run_id", "started_at")
            )
            for outcome in batch:
                if outcome.started_at is None:
                    outcome.started_at = started.get(uuid.UUID(outcome.run_id))
        # Inside _start's transaction no savepoint: a failure there rolls back all of it.
        with transaction.atomic(savepoint=False):
            runlog.finish_runs(
                (
                    o.run_id,
                    (
                        o.status,
                        o.finished_at,
                        o.finished_at - o.started_at if o.started_at and o.finished_at else None,
                        o.message or "",
                        o.exc_text or "",
                        o.result,
                    ),
                )
                for o in batch
            )

    # -- spool

    def _spool_dir(self) -> Path:
        configured = conf.spool_dir()
        if configured:
            path = Path(configured)
        else:
            db = str(connection.settings_dict.get("NAME", "default"))
            path = (
                Path(tempfile.gettempdir()) / f"django-rocket-{uuid.uuid5(uuid.NAMESPACE_URL, db)}"
            )
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _spool(self, batch: list[Outcome]) -> None:
        if self.spool_path is None:
            return
        with open(self.spool_path, "w", encoding="utf-8") as fh:
            for o in batch:
                fh.write(
                    json.dumps(
                        {
                            "run_id": o.run_id,
                            "task": o.task,
                            "status": o.status,
                            "finished_at": o.finished_at.isoformat() if o.finished_at else None,
                            "message": o.message,
                            "exc_text": o.exc_text,
                            "result": o.result,
                        }
                    )
                    + "\n"
                )
            fh.flush()
            os.fsync(fh.fileno())

    def _clear_spool(self) -> None:
        if self.spool_path is not None and self.spool_path.exists():
            self.spool_path.unlink()

    def _apply_spool(self) -> None:
        """Write finishes that an earlier process spooled while the database was down."""
        directory = self._spool_dir()
        for path in sorted(directory.glob("spool-*.jsonl")):
            outcomes = []
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                data = json.loads(line)
                finished = data["finished_at"]
                outcomes.append(
                    Outcome(
                        data["run_id"],
                        data["task"],
                        data["status"],
                        datetime.fromisoformat(finished) if finished else timezone.now(),
                        data.get("message", ""),
                        data.get("exc_text", ""),
                        data.get("result"),
                    )
                )
            self._write_finishes(outcomes)
            path.unlink()
            logger.info("Recorded %d spooled run(s) from %s.", len(outcomes), path.name)

    # -- timeouts and end conditions

    def _enforce_deadlines(self, now: datetime) -> None:
        for state in list(self.running.values()):
            if state.deadline is not None and now >= state.deadline:
                spec = self.specs[state.task]
                self.runner.terminate(state.run_id, f"Timed out after {spec.timeout}.")
                state.deadline = None

    def _check_end_conditions(self, now: datetime) -> None:
        due = set(self.end_dirty)
        self.end_dirty.clear()
        for name, wake in list(self.end_wakes.items()):
            if wake <= now:
                due.add(name)
        for name in self.running_by_task:
            if name not in self.end_wakes and self.specs[name].end_cond is not None:
                due.add(name)
        for name in due:
            spec = self.specs.get(name)
            if spec is None or spec.end_cond is None or not self.running_by_task.get(name):
                self.end_wakes.pop(name, None)
                continue
            ctx = self._context(name, now)
            try:
                end, at = spec.end_cond.evaluate(ctx)
            except Exception as exc:
                if conf.silence_cond_check():
                    logger.error(
                        "End condition of task %r raised; treated as false.", name, exc_info=True
                    )
                    self.end_wakes[name] = now + timedelta(seconds=1)
                    continue
                self.fail_stop(f"the end condition of task {name!r} raised {exc!r}", exc)
                return
            self.end_wakes[name] = at or now + FAR
            if end:
                for run_id in list(self.running_by_task.get(name, ())):
                    self.runner.terminate(run_id, f"End condition {spec.end_cond} became true.")

    # -- logging

    def _log_event(
        self,
        task: str,
        run_id: str,
        action: str,
        start: datetime | None,
        end: datetime | None,
        *,
        level: int = logging.INFO,
        message: str = "",
        exc_text: str = "",
    ) -> None:
        if not task_logger.isEnabledFor(level):
            return
        runtime = (end - start).total_seconds() if start and end else None
        text = f"Task {task!r} {action}" + (f": {message}" if message else "")
        try:
            record = task_logger.makeRecord(
                task_logger.name,
                level,
                __file__,
                0,
                text,
                (),
                None,
                extra={
                    "task_name": task,
                    "run_id": run_id,
                    "action": action,
                    "start": start,
                    "end": end,
                    "runtime": runtime,
                },
            )
            # exc_text is the standard attribute formatters append, as Rocketry's records had.
            record.exc_text = exc_text or None
            task_logger.handle(record)
        except Exception:
            logger.error("A handler on django_rocket.task raised.", exc_info=True)

    # -- shutdown

    def shutdown(self) -> None:
        """Stop starting runs, let running ones finish within the grace, record everything."""
        grace = parse_duration(conf.shutdown_grace()).total_seconds()
        deadline = self.clock.monotonic() + (0.0 if self.force_stop else grace)
        if self.running:
            logger.info("Stopping: waiting up to %.0fs for %d run(s).", grace, len(self.running))
        while self.running and self.clock.monotonic() < deadline and not self.force_stop:
            self.clock.wait(self.wakeup, min(deadline - self.clock.monotonic(), 0.5))
            self.wakeup.clear()
            self.runner.poll(self.clock.now())  # runs on remote workers report through polls
            self._drain_outcomes()
        if self.running:
            for run_id in list(self.running):
                self.runner.terminate(run_id, "Terminated at scheduler shutdown.")
            end = self.clock.monotonic() + 5.0
            while self.running and self.clock.monotonic() < end:
                self.clock.wait(self.wakeup, 0.2)
                self.wakeup.clear()
                self._drain_outcomes()
            self.runner.abandon("Terminated at scheduler shutdown.")
            self._drain_outcomes()
        self.runner.close()
        for _ in range(3):
            if not self.pending:
                break
            self.next_write_attempt = 0.0
            self._flush(self.clock.now())
        if self.pending:
            self._spool(self.pending)
            logger.error(
                "%d finished run(s) could not be recorded; spooled to %s.",
                len(self.pending),
                self.spool_path,
            )
        try:
            if self.instance is not None:
                now = self.clock.now()
                SchedulerInstance.objects.filter(pk=self.instance.pk).update(
                    role=SchedulerRole.STOPPED, stopped_at=now, last_seen=now, token=None
                )
                if self.token is not None:
                    SchedulerLease.objects.filter(name=LEASE, token=self.token).update(
                        holder=None, expires_at=now
                    )
        except DatabaseError:
            logger.warning("Could not mark this scheduler stopped.", exc_info=True)
        logger.info("Scheduler stopped (%s).", self.stop_reason or "done")
        shutdown_alerts(timeout=5.0)  # send queued alerts, but never wait longer than this


class _LeaseLost(Exception):
    pass


def _lease_free(now: datetime) -> Q:
    return Q(holder__isnull=True) | Q(expires_at__isnull=True) | Q(expires_at__lt=now)


def _close_broken_connections() -> None:
    """Close a connection that is broken, or older than a positive ``CONN_MAX_AGE``.

    Django's ``close_old_connections()`` is made for request boundaries: with the default
    ``CONN_MAX_AGE = 0`` it closes the connection every time, so every tick reconnected
    (a new SQLite handle and its PRAGMAs, or a PostgreSQL login): a quarter of an idle
    tick's CPU and a third of W4's throughput (bench/RESULTS.md).
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if conn.errors_occurred:
            if conn.is_usable():
                conn.errors_occurred = False
            else:
                conn.close()
        elif (
            conn.settings_dict.get("CONN_MAX_AGE")
            and conn.close_at is not None
            and time.monotonic() >= conn.close_at
        ):
            conn.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
