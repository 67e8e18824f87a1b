"""The scheduler service: startup recovery, the loop, and shutdown.

One tick: heartbeat and lease (when due), poll for admin requests (when due),
record finished runs in one batch, enforce timeouts and end conditions, then
evaluate only the tasks whose conditions may have changed and start the due
ones, writing all their rows in one transaction before any of them begins.
Between ticks the loop sleeps until the earliest instant anything can change.

The parts: :mod:`.leadership` (heartbeat, lease, fencing), :mod:`.recovery`
(crash recovery), :mod:`.poller` (other processes' changes), :mod:`.planner`
(what is due and when), :mod:`.recorder` (run-log writes) and :mod:`.spool`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
from datetime import datetime

from django.db import DatabaseError, DataError

from django_rocket import registry
from django_rocket.alerts import install_alerts, shutdown_alerts
from django_rocket.clock import Clock, SystemClock
from django_rocket.conditions import parse_duration
from django_rocket.conf import conf
from django_rocket.engine import retention, runlog, snapshot
from django_rocket.engine.collector import collecting_less, freeze_built
from django_rocket.engine.connection import (
    close_broken_connections,
    database_failures,
    log_database_error,
    one_snapshot,
    reconnect,
    sqlite_checkpoints_less,
    when_the_database_answers,
)
from django_rocket.engine.declarations import sync_tasks
from django_rocket.engine.events import LoggingGuard, level_of, log_run_event
from django_rocket.engine.launching import launch
from django_rocket.engine.leadership import Leadership
from django_rocket.engine.listener import Listener
from django_rocket.engine.planner import ConditionFailed, Planner, Start
from django_rocket.engine.poller import Poller
from django_rocket.engine.processstate import WorkingDirectoryWatch, pin_sqlite_paths
from django_rocket.engine.recorder import (
    LeaseLost,
    Recorder,
    Started,
    StartsNotRecorded,
    Where,
    with_run_ids,
    write_starts,
    write_tick,
)
from django_rocket.engine.recovery import Recovered, recover_crashed
from django_rocket.engine.stalls import StallWatch
from django_rocket.engine.stopping import settle_runs, stop_local_runs
from django_rocket.engine.tasktable import TaskTable, latest_task_revision
from django_rocket.executors.local import IdleWatch, revive_idle_connection
from django_rocket.executors.mainstop import shutdown_grace
from django_rocket.executors.outcome import Launch, Outcome
from django_rocket.executors.runner import Runner
from django_rocket.models import TaskRun
from django_rocket.registry import TaskSpec

logger = logging.getLogger("django_rocket.scheduler")


class Scheduler:
    """Decide what is due, start it, and keep the run log true."""

    def __init__(
        self,
        tasks: dict[str, TaskSpec] | None = None,
        *,
        clock: Clock | None = None,
        once: bool = False,
        duration: float | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.specs = tasks if tasks is not None else registry.tasks()
        self.tz = registry.scheduler_zone()
        self.once = once
        self.duration = duration
        self.wakeup = threading.Event()
        # Drained every tick: holds the runs that ended since the last one.
        self.outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.logging_guard = LoggingGuard()  # a run that configures logging again
        pin_sqlite_paths()  # and one that changes the working directory
        self.working_directory = WorkingDirectoryWatch()
        self.runner = Runner(
            self._report,
            self.clock.now,
            max_processes=conf.max_processes,
            max_threads=conf.max_threads,
            on_thread_free=self._thread_freed,
            result_max_bytes=conf.result_max_bytes,
            preload=sorted(
                {s.func.rpartition(".")[0] for s in self.specs.values() if s.execution == "process"}
            ),
        )
        poll_every = conf.poll_interval
        self.leadership = Leadership(
            self.clock,
            heartbeat_every=parse_duration(conf.heartbeat).total_seconds(),
            lease_timeout=parse_duration(conf.lease_timeout),
            on_active=self._become_active,
        )
        self.planner = Planner(self.specs, self.tz, poll_every)
        self.task_table = TaskTable(self.planner, self.specs)
        self.poller = Poller(self.clock, self.planner, poll_every, self.task_table)
        self.recorder = Recorder(self.clock, on_fatal=self.fail_stop)
        self.listener: Listener | None = None  # PostgreSQL: run requests wake the loop
        # Says where the loop is stuck when a tick outlasts the lease (a partition, a main run).
        self.stalls = StallWatch(self.leadership.lease_timeout.total_seconds())
        self.task_pks = self.task_table.task_pks  # runtime tasks add theirs as they come
        self.stop_requested = False
        self.stop_asked = False  # by request_stop (a signal, --duration), not by an error
        self.starting = True
        self.force_stop = False
        self.stop_reason = ""
        self.exit_code = 0
        self.next_maintenance: float = 0.0
        # Crash recovery judges other processes' heartbeats only once the database has
        # answered this scheduler for a lease since its last failure (theirs failed too).
        self.failures_seen = database_failures()
        self.answering_since: datetime | None = None  # None: no failure seen
        self.next_prune: float = 0.0
        self.remote_poll: float | None = None
        self.started_mono: float = 0.0
        self.ticks = 0
        self.waiting_for_threads = False  # logged once each time ROCKET_MAX_THREADS binds

    @property
    def active(self) -> bool:
        return self.leadership.active

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Run until stopped; return the process exit code."""
        # IdleWatch: the server may close a connection idle past its limit (a long main run).
        with sqlite_checkpoints_less(), IdleWatch(), self.stalls:
            try:
                ready = when_the_database_answers(
                    self._watched_startup, self.clock, self.wakeup, lambda: self.stop_requested
                )
            except DataError:  # a value the database refuses: logged, and fatal
                reconnect()
                try:
                    self.leadership.release(self.clock.now())  # registered already, perhaps
                except DatabaseError:
                    logger.warning("Could not mark this scheduler stopped.", exc_info=True)
                shutdown_alerts(timeout=5.0)
                return 1
            if ready:
                # Start-up's objects (specs, conditions) live as long as the process:
                # frozen, and again once active, with the snapshot; full collections
                # rarer (.collector).
                with collecting_less():
                    self._loop()
        return self.exit_code

    def _loop(self) -> None:
        try:
            self.listener = Listener.start_for_database(self.wakeup)
            while not self.stop_requested:
                self.stalls.enter("tick")
                try:
                    sleep = self.tick()
                except DatabaseError:
                    # Steps that talk to the database catch their own errors; this is the
                    # net under them. The loop reconnects and goes on.
                    logger.warning("A database error interrupted a tick.", exc_info=True)
                    reconnect()
                    sleep = 1.0
                except Exception as exc:
                    self.fail_stop("an unexpected error in the scheduler loop", exc)
                    break
                finally:
                    self.stalls.leave()
                if self.once and not self.stop_requested:
                    # One cycle: what the first active tick started, then wait for it.
                    self.starting = not self.active
                    if self.active and not self.planner.running and not self.recorder.pending:
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

    def request_stop(self, reason: str = "stop requested", *, force: bool = False) -> None:
        """Stop starting runs; called from signal handlers, so it only sets flags.

        A second request (a second Ctrl-C) skips the grace. Only requests count: a
        :meth:`fail_stop` before it does not, or two tasks that could not start in one
        tick gave the runs in progress no grace at all (found by bench/soak.py).
        """
        if self.stop_asked:
            self.force_stop = True
        self.stop_asked = True
        self.stop_requested = True
        self.force_stop = self.force_stop or force
        self.stop_reason = self.stop_reason or reason
        self.wakeup.set()

    def signalled(self, signum: int) -> None:
        """Handle SIGINT, SIGTERM or SIGHUP (``runscheduler``'s handler, in the main thread).

        Asks the loop to stop, as :meth:`request_stop`. A ``main`` run in progress holds
        the loop, so it is given ``ROCKET_SHUTDOWN_GRACE`` here and then stopped, or
        stopped at once by a second signal (``executors/mainstop.py``). Two signals that
        came while a MySQL statement held this handler run it once; the main run's
        watchdog counted them, and they count as two here too.
        """
        name = signal.Signals(signum).name
        self.request_stop(f"received {name}", force=self.runner.main_stop.heard >= 2)
        grace, text = shutdown_grace()
        self.runner.main_stop.signalled(name, again=self.force_stop, grace=grace, grace_text=text)

    def fail_stop(self, what: str, exc: BaseException | None = None) -> None:
        """Shut down because of an error the settings do not silence."""
        logger.error("Shutting down: %s", what, exc_info=exc)
        self.exit_code = 1
        self.stop_requested = True
        self.stop_reason = self.stop_reason or what
        self.wakeup.set()

    def _watched_startup(self) -> None:
        self.stalls.enter("start-up")
        try:
            self.startup()
        finally:
            self.stalls.leave()

    def startup(self) -> None:
        """Write spooled finishes, register this instance, sync tasks, and try to lead."""
        install_alerts()  # ROCKET_ALERTS: a queued email handler on django_rocket.task
        self.started_mono = self.clock.monotonic()
        now = self.clock.now()
        self.planner.prepare_conditions()
        self.recorder.apply_spools()
        instance = self.leadership.register(now)
        self.recorder.spool.open_for(self.leadership.host, self.leadership.pid, instance.pk)
        rows = sync_tasks(self.task_table.declared, self.clock.now())
        self.task_pks.update({name: row.pk for name, row in rows.items()})
        self.planner.enabled.update({name: row.enabled for name, row in rows.items()})
        self.poller.task_cursor = latest_task_revision()
        self.task_table.load(self.poller.task_cursor)  # a change meanwhile is read again
        logger.info(
            "Scheduler %s:%s started with %d task(s) (%d declared) in %s.",
            self.leadership.host,
            self.leadership.pid,
            len(self.specs),
            len(self.task_table.declared),
            self.tz,
        )
        self.leadership.heartbeat(now)

    def _become_active(self, now: datetime) -> None:
        recovered = self.recover_crashed(now)
        # The snapshot, the poll's cursor and what it counts as seen must describe the same
        # instant: a run another process commits between two of these reads would
        # otherwise be counted as seen without being in the snapshot, and lost to it.
        with one_snapshot():
            history, last_failed = snapshot.load(
                now, needs=self.planner.needs, tz=self.tz, recent=self.planner.recent_runs
            )
            self.poller.follow_from_now(self.leadership.instance_pk)
            queued = list(TaskRun.objects.queued().select_related("task"))
        self.planner.activate(history, last_failed, queued, now)
        freeze_built()  # run() froze start-up's objects: the snapshot's too
        self._adopt(recovered.adopt)
        self.next_maintenance = (
            self.clock.monotonic() + self.leadership.lease_timeout.total_seconds()
        )

    def _reload_history(self, now: datetime) -> None:
        """Read the snapshot again: a run's outcome changed under it (Poller.crashed).

        Finishes drained but not yet written are still ``running`` in the run log: they
        are applied to the new snapshot, as they were to the old one.
        """
        try:
            with one_snapshot():
                history, last_failed = snapshot.load(
                    now, needs=self.planner.needs, tz=self.tz, recent=self.planner.recent_runs
                )
                self.poller.follow_from_now(self.leadership.instance_pk)
        except DatabaseError:
            logger.warning("Reading the run history again failed; will retry.", exc_info=True)
            reconnect()
            return
        self.poller.reload_wanted = False
        self.planner.replace_history(history, last_failed)
        for outcome in self.recorder.pending:
            if outcome.finished_at is None:  # set when drained; a pending one has it
                continue
            with contextlib.suppress(KeyError):  # not in progress there: written already
                history.record_finish(
                    outcome.task,
                    outcome.run_id,
                    outcome.finished_at,
                    outcome.status,
                    outcome.exception_types,
                )

    def recover_crashed(self, now: datetime) -> Recovered:
        """Record local runs of schedulers that are gone as ``crash``; claim remote ones.

        A database failure since the last pass (an outage, which stopped every other
        process's heartbeat too; start-up waiting for the database) restarts the wait
        before heartbeats are judged: a ``runtask`` that waited out the outage records
        its finish, and a scheduler its heartbeat, before they are taken as gone.
        """
        failures = database_failures()
        if failures != self.failures_seen:
            self.failures_seen = failures
            self.answering_since = now
        return recover_crashed(
            now,
            specs=self.specs,
            own_runs=self.planner.running,
            instance_pk=self.leadership.instance_pk,
            here=self.leadership.here,
            lease_timeout=self.leadership.lease_timeout,
            answering_since=self.answering_since,
        )

    def _adopt(self, runs: list[TaskRun]) -> None:
        """Follow runs on worker backends that a scheduler left (or this one, on standby)."""
        for run in runs:
            self.planner.adopted(run)
            handed = Launch(str(run.run_id), run.task.name, run.task.func, {}, "tasks")
            self.runner.adopt(handed, run.remote_backend, run.remote_queue, run.remote_id)
        self.poller.adopted([run.pk for run in runs])

    def _leave_remote_runs(self, why: str) -> None:
        """Stop following runs on worker backends; they go on, and the active one adopts them."""
        left = self.runner.leave_remote()
        for run_id in left:
            self.planner.released(run_id)
        if left:
            logger.info(
                "Left %d run(s) running on task backends (%s); the active scheduler adopts them.",
                len(left),
                why,
            )

    # ------------------------------------------------------------------ the tick

    def tick(self) -> float:
        """Do one cycle; return how many seconds the loop may sleep."""
        self.ticks += 1
        close_broken_connections()
        revive_idle_connection()
        now = self.clock.now()
        mono = self.clock.monotonic()
        # Once a statement of this tick has failed, the tick asks the database nothing
        # more: behind a partition each statement waits out the connection's TCP options
        # (docs/howto/deployment.rst), and a tick that tried its heartbeat, poll, starts
        # and finishes in turn lasted four times that, past the lease (bench/soak.py
        # --faults db_drop). Skipped work is due again at the next tick.
        failures = database_failures()

        def answering() -> bool:
            return database_failures() == failures

        if mono >= self.leadership.next_heartbeat:
            self.leadership.heartbeat(now)
        if not self.active:
            self._leave_remote_runs("this scheduler is not active")  # only the active follows
        self.remote_poll = self.runner.poll(now)
        self._drain_outcomes()
        if not self.active:
            # Its own local runs go on while it stands by, and still end at their timeout.
            self.planner.enforce_deadlines(now, self.runner.terminate)
            if answering():
                self.recorder.flush()
            beat = self.leadership.next_heartbeat - self.clock.monotonic()
            return max(min([beat, *self.planner.seconds_to_deadlines(now)]), 0.0)
        requested = self.listener is not None and self.listener.heard()
        if (requested or mono >= self.poller.next_poll) and answering():
            self.poller.poll()
        if self.poller.reload_wanted and answering():
            self._reload_history(now)
        if mono >= self.next_maintenance and answering():
            self._maintain(now)
        if mono >= self.next_prune and answering():
            self._prune(now)
        self.planner.enforce_deadlines(now, self.runner.terminate)
        try:
            self.planner.check_end_conditions(now, self.runner.terminate)
        except ConditionFailed as exc:
            self.fail_stop(exc.what, exc.__cause__)
        if self.starting and not self.stop_requested and answering():
            # Not the instant the tick began: a run that ended since, drained or polled
            # above, would end after the starts its finish makes due, and after_success
            # (its finish strictly later than their latest start) would start them again.
            self._start_due(self.clock.now())  # writes the finishes too when it starts runs
        if answering():
            self.recorder.flush()
        return self._sleep_seconds()

    def _sleep_seconds(self) -> float:
        if self.planner.busy() or not self.outcomes.empty():
            return 0.0
        mono = self.clock.monotonic()
        candidates = [self.leadership.next_heartbeat - mono, self.poller.next_poll - mono]
        retry = self.recorder.seconds_to_retry()
        if retry is not None:
            candidates.append(retry)
        if self.remote_poll is not None:
            candidates.append(self.remote_poll)
        candidates += self.planner.seconds_to_next_change(self.clock.now())
        return max(min(candidates), 0.0)

    def _maintain(self, now: datetime) -> None:
        """Now and then: record crashes of other schedulers, keep the snapshot bounded."""
        self.next_maintenance = (
            self.clock.monotonic() + self.leadership.lease_timeout.total_seconds()
        )
        try:
            recovered = self.recover_crashed(now)
        except DatabaseError:
            log_database_error(
                logger,
                logging.WARNING,
                "Crash recovery failed; will retry.",
                now=self.clock.monotonic(),
            )
            reconnect()
        else:
            self._adopt(recovered.adopt)
        self.planner.forget_before(now)

    def _prune(self, now: datetime) -> None:
        """Apply ROCKET_RUN_RETENTION a few batches at a time, so no tick waits long on it."""
        try:
            result = retention.apply_retention(now=now, max_batches=2)
        except DatabaseError:
            log_database_error(
                logger,
                logging.WARNING,
                "Pruning the run log failed; will retry.",
                now=self.clock.monotonic(),
            )
            reconnect()
            result = None
        more = result is not None and not result.complete
        self.next_prune = self.clock.monotonic() + (60.0 if more else 3600.0)

    # -- starting

    def _start_due(self, now: datetime) -> None:
        try:
            batch = self.planner.due(now, self.runner.process_slots(), self.runner.thread_slots())
        except ConditionFailed as exc:
            self.fail_stop(exc.what, exc.__cause__)
            return
        waiting = self.planner.waiting["thread"]
        if waiting and not self.waiting_for_threads:
            names = sorted(waiting)
            logger.info(
                "All %d threads of ROCKET_MAX_THREADS are in use; %d due task(s) wait for one "
                "(%s%s). They start as threads free, if their conditions still hold.",
                self.runner.max_threads,
                len(names),
                ", ".join(repr(n) for n in names[:5]),
                ", ..." if len(names) > 5 else "",
            )
        self.waiting_for_threads = bool(waiting)
        if batch:
            self._start(now, batch)

    def _thread_freed(self) -> None:
        """Called from a worker thread whose run ended: a task waiting for a thread may start."""
        if not self.wakeup.is_set():
            self.wakeup.set()

    def _start(self, now: datetime, batch: list[Start]) -> None:
        """Write every run's row in one fenced transaction, then launch them."""
        starts = with_run_ids(batch)
        where = Where(
            self.task_pks,
            self.planner.last_failed,
            self.leadership.host,
            self.leadership.pid,
            self.leadership.instance_pk,
        )
        at_once = None
        if runlog.writes_tick_at_once() and all(queued is None for *_, queued in starts):
            fence = self.leadership.fence(now)

            def at_once(finishes: list[Outcome]) -> list[Started]:
                return write_tick(finishes, starts, now, where, fence)

        try:
            taken = self.recorder.commit_starts(
                now,
                len(batch),
                renew=self.leadership.renew,
                write=lambda: write_starts(starts, now, where),
                at_once=at_once,
            )
        except LeaseLost:
            logger.warning("Lost the scheduler lease before starting runs; standing by.")
            self.leadership.stand_by()
            return
        except StartsNotRecorded:
            for start in batch:
                self.planner.not_started(start, now)
            return
        for spec, trigger, run_id in taken:
            self._launch(spec, trigger, run_id, now)
        self.runner.flush()  # where the runs handed to backends went, on their rows

    def _launch(self, spec: TaskSpec, trigger: str, run_id: str, now: datetime) -> None:
        """Start a run whose row is committed; a launch that fails is recorded as ``fail``."""
        self.planner.started(spec, run_id, trigger, now)
        log_run_event(spec.name, run_id, "run", now, None)
        exc = launch(self.runner, spec, run_id, self._report, self.clock.now)
        if exc is None:
            return
        if conf.silence_task_prerun:
            logger.error("Task %r could not be started; recorded as fail.", spec.name, exc_info=exc)
        else:
            self.fail_stop(f"task {spec.name!r} could not be started", exc)

    # -- finishing

    def _report(self, outcome: Outcome) -> None:
        """Called from any thread when a run ends."""
        self.outcomes.put(outcome)
        # Set already: the loop clears it only after waking, then drains the queue. Not
        # setting it again spares a lock per run while thousands end in a tick.
        if not self.wakeup.is_set():
            self.wakeup.set()

    def _drain_outcomes(self) -> None:
        self.logging_guard.check()  # before the events of the runs that ended
        self.working_directory.check()
        while True:
            try:
                outcome = self.outcomes.get_nowait()
            except queue.Empty:
                break
            started = self.planner.running.get(outcome.run_id)
            if started is None:
                continue
            # Never before its start: a worker's clock may run behind this one.
            finished = max(outcome.finished_at or self.clock.now(), started.started_at)
            outcome.finished_at = finished
            state = self.planner.finished(
                outcome.run_id, finished, outcome.status, outcome.exception_types
            )
            assert state is not None
            outcome.started_at = state.started_at
            self.recorder.add(outcome)
            log_run_event(
                state.task,
                outcome.run_id,
                outcome.status,
                state.started_at,
                finished,
                level=level_of(outcome.status),
                message=outcome.message,
                exc_text=outcome.exc_text,
            )

    # -- shutdown

    def shutdown(self) -> None:
        """Stop starting runs, let local ones finish within the grace, record everything.

        Runs on worker backends go on: the next active scheduler adopts them (unless
        ``ROCKET_STOP_REMOTE_RUNS_AT_SHUTDOWN`` asks for the old way: wait, then stop them).
        """
        stop_remote = conf.stop_remote_runs_at_shutdown
        settle_runs(
            self.clock,
            self.wakeup,
            self.runner,
            self.planner,
            self._drain_outcomes,
            grace=0.0 if self.force_stop else shutdown_grace()[0],
            stop_remote=stop_remote,
            forced=lambda: self.force_stop,
        )
        if not stop_remote:
            self._leave_remote_runs("this scheduler is stopping")
        stop_local_runs(self.clock, self.wakeup, self.runner, self.planner, self._drain_outcomes)
        self.runner.close()
        if self.listener is not None:
            self.listener.close()
        self.recorder.flush_before_exit()
        try:
            self.leadership.release(self.clock.now())
        except DatabaseError:
            logger.warning("Could not mark this scheduler stopped.", exc_info=True)
        logger.info("Scheduler stopped (%s).", self.stop_reason or "done")
        shutdown_alerts(timeout=5.0)  # send queued alerts, but never wait longer than this
