#!/usr/bin/env python
"""Soak test with faults: two schedulers on PostgreSQL, ~50 tasks, a seeded fault schedule.

    .venv/bin/python bench/soak.py --minutes 30 --seed 1234
    .venv/bin/python bench/soak.py --minutes 2 --seed 17 --json /tmp/soak.json   # CI size

Two ``runscheduler`` processes (restarted one second after they exit, as systemd's
``Restart=always`` would) reach a throwaway PostgreSQL database each through its own
TCP proxy; one ``db_worker`` of django-tasks-db runs the tasks of execution ``tasks``;
an aiosmtpd server receives the alerts. A fault schedule drawn from ``--seed`` kills
the active scheduler with SIGKILL, stops it with SIGTERM, cuts its database for
5-30 s, or stops the SMTP server for 5-30 s. Every task function appends to a ledger
file outside the database (tests/support/soak_tasks.py). At the end the faults stop,
the schedulers run a settle period, are stopped with SIGTERM, and a last scheduler
with every start condition ``false`` drains what is left (it starts nothing, records
crashed runs, follows the worker's runs); then the invariant checker compares the
ledger with the run log. The exit status is 1 when it found a violation.

The invariants and their exact definitions are in :func:`check` and in
docs/explanation/guarantees.rst ("The soak test").
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402

from tests.support import packetdrop  # noqa: E402
from tests.support.netproxy import CuttableProxy  # noqa: E402
from tests.support.smtp import Inbox, email_settings, free_port  # noqa: E402

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
FUNCS = "tests.support.soak_tasks."
LEASE_TIMEOUT = 5.0
SHUTDOWN_GRACE = 5.0
FAULT_KINDS = ("kill9", "sigterm", "db_cut", "smtp_stop")
# Drawn only when --faults names them: the default schedule of a seed stays as it was.
# db_pause: the proxy holds every byte, resets nothing (a network partition).
# db_drop: netfilter drops every packet to and from the proxy (root and nft): a partition
# the kernel does not hide; the schedulers then get docs/howto/deployment.rst's TCP
# options, scaled to DROP_GIVE_UP seconds, so that it becomes an outage.
MORE_FAULT_KINDS = ("db_pause", "db_drop")
DROP_GIVE_UP = 2
# The end of a run's function (its ledger "end" line) and the row's finished_at may
# differ by the time to report it; more than this is a run that hung after its function
# returned (or a finish recorded with the wrong time).
FINISH_TOLERANCE = 10.0
EXAMPLES = 5  # examples of each violation class in the report
# Messages of a `fail` row whose function may never have started (no ledger line).
PRESTART_FAIL = ("Could not import the task function", "could not be started", "child process")


# -- the tasks


@dataclass(frozen=True)
class SoakTask:
    name: str
    func: str
    execution: str
    period: int
    expect: frozenset[str]  # statuses the function's own behaviour should end in
    timeout: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def entry(self, start_cond: str | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "func": FUNCS + self.func,
            "start_cond": start_cond or f"every('{self.period} seconds')",
            "execution": self.execution,
            "parameters": {"task": self.name, "period": self.period, **self.params},
        }
        if self.timeout:
            entry["timeout"] = self.timeout
        return entry


OK, FAIL, INACTION, TERMINATE = "success", "fail", "inaction", "terminate"


def soak_tasks(with_worker: bool) -> list[SoakTask]:
    """About fifty tasks over every execution mode: well-behaved, failing and hostile."""
    s, f, i, t = frozenset({OK}), frozenset({FAIL}), frozenset({INACTION}), frozenset({TERMINATE})
    either = frozenset({OK, FAIL})
    rows: list[tuple[str, str, str, int, frozenset[str], str | None, dict[str, Any]]] = [
        # name, function, execution, period (s), expected statuses, timeout, parameters
        ("p_ok5", "ok", "process", 5, s, None, {}),
        ("p_ok10", "ok", "process", 10, s, None, {}),
        ("p_slow", "ok", "process", 10, s, None, {"sleep": 2.0}),
        ("p_fail", "fails", "process", 10, f, None, {}),
        ("p_inaction", "inaction", "process", 10, i, None, {}),
        ("p_timeout", "past_timeout", "process", 15, t, "3 seconds", {}),
        ("p_flood", "flood_stdout", "process", 20, s, None, {"megabytes": 2.0}),
        ("p_huge_result", "huge_result", "process", 20, s, "20 seconds", {}),
        ("p_near_limit", "huge_result", "process", 20, s, "20 seconds", {"size": 65_530}),
        ("p_huge_exc", "huge_exception", "process", 20, f, "20 seconds", {}),
        ("p_unprintable", "unprintable_exception", "process", 20, f, None, {}),
        ("p_deep", "deep_result", "process", 30, either, "20 seconds", {}),
        ("p_hostile", "hostile_value", "process", 10, s, None, {}),
        ("p_hostile_msg", "hostile_message", "process", 15, f, None, {}),
        ("p_unserialisable", "unserialisable", "process", 15, s, None, {}),
        ("p_exit", "exit_hard", "process", 20, f, None, {}),
        ("t_ok5", "ok", "thread", 5, s, None, {}),
        ("t_ok10", "ok", "thread", 10, s, None, {}),
        ("t_slow", "ok", "thread", 10, s, None, {"sleep": 2.0}),
        ("t_fail", "fails", "thread", 10, f, None, {}),
        ("t_inaction", "inaction", "thread", 10, i, None, {}),
        ("t_timeout", "past_timeout", "thread", 15, t, "3 seconds", {}),
        ("t_flood", "flood_stdout", "thread", 20, s, None, {"megabytes": 1.0}),
        ("t_huge_result", "huge_result", "thread", 20, s, None, {}),
        ("t_huge_exc", "huge_exception", "thread", 20, f, None, {}),
        ("t_unprintable", "unprintable_exception", "thread", 20, f, None, {}),
        ("t_deep", "deep_result", "thread", 30, either, None, {}),
        ("t_hostile", "hostile_value", "thread", 10, s, None, {}),
        ("t_hostile_msg", "hostile_message", "thread", 15, f, None, {}),
        ("t_unserialisable", "unserialisable", "thread", 15, s, None, {}),
        ("a_ok5", "ok_async", "async", 5, s, None, {}),
        ("a_slow", "ok_async", "async", 10, s, None, {"sleep": 2.0}),
        ("a_fail", "fails_async", "async", 10, f, None, {}),
        ("a_inaction", "inaction_async", "async", 10, i, None, {}),
        ("a_timeout", "past_timeout_async", "async", 15, t, "3 seconds", {}),
        ("a_huge_result", "huge_result_async", "async", 20, s, None, {}),
        ("a_unprintable", "unprintable_exception_async", "async", 20, f, None, {}),
        ("a_hostile", "hostile_value_async", "async", 10, s, None, {}),
        ("m_ok5", "ok", "main", 5, s, None, {}),
        ("m_ok10", "ok", "main", 10, s, None, {}),
        ("m_fail", "fails", "main", 10, f, None, {}),
        ("m_inaction", "inaction", "main", 10, i, None, {}),
        ("m_flood", "flood_stdout", "main", 20, s, None, {"megabytes": 0.2}),
        ("m_huge_result", "huge_result", "main", 20, s, None, {}),
        ("m_hostile", "hostile_value", "main", 15, s, None, {}),
        ("m_unprintable", "unprintable_exception", "main", 60, f, None, {}),
        ("m_deep", "deep_result", "main", 60, either, None, {}),
        # Holds the loop until its timeout stops it (executors/mainstop.py).
        ("m_timeout", "past_timeout", "main", 30, t, "1 second", {}),
    ]
    if with_worker:
        rows += [
            ("q_ok5", "ok", "tasks", 5, s, None, {}),
            ("q_ok10", "ok", "tasks", 10, s, None, {}),
            ("q_slow", "ok", "tasks", 10, s, None, {"sleep": 2.0}),
            ("q_fail", "fails", "tasks", 10, f, None, {}),
            ("q_inaction", "inaction", "tasks", 10, i, None, {}),
            ("q_hostile", "hostile_value", "tasks", 15, s, None, {}),
        ]
    return [SoakTask(n, fn, ex, p, e, to, pr) for n, fn, ex, p, e, to, pr in rows]


# -- the faults


@dataclass
class Fault:
    at: float  # seconds after the start of the fault phase
    kind: str
    duration: float = 0.0  # db_cut and smtp_stop
    target: str = ""  # filled in when it fires
    note: str = ""


def plan_faults(
    rng: random.Random, seconds: float, kinds: tuple[str, ...] = FAULT_KINDS
) -> list[Fault]:
    """The fault schedule: one fault at a time, 10-25 s apart, none in the last 10 s."""
    faults: list[Fault] = []
    at = rng.uniform(8.0, 15.0)
    while at < seconds - 10.0:
        kind = rng.choice(kinds)
        lasting = ("db_cut", "smtp_stop", "db_pause", "db_drop")
        duration = round(rng.uniform(5.0, 30.0), 1) if kind in lasting else 0.0
        duration = round(min(duration, max(seconds - 5.0 - at, 5.0)), 1)
        faults.append(Fault(round(at, 1), kind, duration))
        at += duration + rng.uniform(10.0, 25.0)
    return faults


# -- the processes


@dataclass
class Incarnation:
    slot: int
    number: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    injected: str = ""  # "kill9" or "sigterm" when the soak signalled it
    exit_code: int | None = None
    ended: float | None = None
    stop_deadline: float | None = None  # after a SIGTERM: killed (and reported) past it


class SMTP:
    """The alerts' aiosmtpd server, on one port, that the soak stops and starts."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        if self.controller is None:
            self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
            self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seed: int = args.seed
        self.rng = random.Random(self.seed)
        if args.work_dir is not None:
            args.work_dir.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix=f"rocket-soak-{self.seed}-", dir=args.work_dir))
        self.db = f"rocket_soak_{os.getpid()}_{self.seed}"
        self.ledger = self.work / "ledger.jsonl"
        self.with_worker = args.worker and _has_tasks_db()
        self.tasks = soak_tasks(self.with_worker)
        self.smtp = SMTP()
        self.proxies: list[CuttableProxy] = []
        self.slots: list[Incarnation | None] = [None, None]
        self.restart_at: list[float | None] = [None, None]
        self.incarnations: list[Incarnation] = []
        self.stopping = False
        self.worker: subprocess.Popen[bytes] | None = None
        self.fault_log: list[Fault] = []
        self.admin: psycopg.Connection[Any] | None = None
        self._restore: Any = lambda: None  # ends the fault in progress

    # -- environment

    def url(self, port: int = PG_PORT) -> str:
        url = f"postgres://{PG_USER}@{PG_HOST}:{port}/{self.db}"
        if "db_drop" in self.args.faults and port != PG_PORT:  # the schedulers' proxies
            url += (
                f"?tcp_user_timeout={DROP_GIVE_UP * 1000}&keepalives_idle=1"
                f"&keepalives_interval=1&connect_timeout={DROP_GIVE_UP}"
            )
        return url

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "ROCKET_HEARTBEAT": "1 second",
            "ROCKET_LEASE_TIMEOUT": f"{LEASE_TIMEOUT:g} seconds",
            "ROCKET_POLL_INTERVAL": 0.5,
            "ROCKET_SHUTDOWN_GRACE": f"{SHUTDOWN_GRACE:g} seconds",
            "ROCKET_MAX_PROCESSES": 6,
            "ROCKET_SPOOL_DIR": str(self.work / "spool"),
            # As docs/howto/silencing-errors.rst recommends for keeping going: with the
            # default (False) a database cut of ~8 s with finishes pending stops the
            # scheduler with exit 1 by design, which this soak would report as a death.
            "ROCKET_SILENCE_TASK_LOGGING": True,
            "ROCKET_ALERTS": {"email": {"receivers": ["ops@example.com"]}},
            **email_settings(self.smtp.port),
        }
        if self.with_worker:
            settings["TASKS"] = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
        return settings

    def env(self, port: int = PG_PORT, start_cond: str | None = None) -> dict[str, str]:
        env = os.environ.copy()
        env.update(
            DATABASE_URL=self.url(port),
            DJANGO_SETTINGS_MODULE="tests.settings",
            PYTHONPATH=str(ROOT),
            ROCKET_TEST_TASKS=json.dumps({t.name: t.entry(start_cond) for t in self.tasks}),
            ROCKET_TEST_SETTINGS=json.dumps(self.settings()),
            ROCKET_SOAK_LEDGER=str(self.ledger),
        )
        # tests/settings.py: the process gets SIGTERM if the soak dies (even by SIGKILL).
        env["ROCKET_TEST_PARENT"] = str(os.getpid())
        return env

    def django(self, *args: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "django", *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the soak is the soak's to handle
            )

    def create_database(self) -> None:
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{self.db}"')
        migrate = self.django("migrate", "--noinput", log=self.work / "migrate.log", env=self.env())
        if migrate.wait(timeout=300) != 0:
            raise SystemExit((self.work / "migrate.log").read_text()[-3000:])
        self.admin = psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=self.db, autocommit=True
        )

    def drop_database(self) -> None:
        if self.admin is not None:
            self.admin.close()
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')

    # -- schedulers

    def spawn(self, slot: int) -> None:
        number = sum(1 for i in self.incarnations if i.slot == slot) + 1
        log = self.work / f"scheduler-{slot}-{number}.log"
        proc = self.django("runscheduler", log=log, env=self.env(self.proxies[slot].port))
        inc = Incarnation(slot, number, proc, log, time.monotonic())
        self.slots[slot] = inc
        self.incarnations.append(inc)
        self.restart_at[slot] = None

    def supervise(self) -> None:
        """Note exits; restart a scheduler one second after it exited (Restart=always)."""
        now = time.monotonic()
        for slot, inc in enumerate(self.slots):
            if inc is not None and inc.exit_code is None:
                code = inc.proc.poll()
                if code is not None:
                    inc.exit_code, inc.ended = code, now
                    if not self.stopping:
                        self.restart_at[slot] = now + 1.0
            due = self.restart_at[slot]
            if due is not None and now >= due and not self.stopping:
                self.spawn(slot)

    def active_slot(self) -> int | None:
        """The slot of the scheduler holding an unexpired lease, if it is one of ours."""
        assert self.admin is not None
        row = self.admin.execute(
            "SELECT i.pid FROM django_rocket_schedulerlease l "
            "JOIN django_rocket_schedulerinstance i ON i.id = l.holder_id "
            "WHERE l.name = 'default' AND l.expires_at > now()"
        ).fetchone()
        for slot, inc in enumerate(self.slots):
            if row and inc is not None and inc.exit_code is None and inc.proc.pid == row[0]:
                return slot
        return None

    def target(self) -> int:
        active = self.active_slot()
        if active is not None:
            return active
        alive = [s for s, inc in enumerate(self.slots) if inc and inc.exit_code is None]
        return self.rng.choice(alive or [0, 1])

    # -- faults

    def fire(self, fault: Fault) -> float:
        """Inject ``fault``; return when (monotonic) it is over."""
        now = time.monotonic()
        slot = self.target()
        if fault.kind in ("kill9", "sigterm"):
            inc = self.slots[slot]
            if inc is None or inc.exit_code is not None or inc.proc.poll() is not None:
                fault.note = "no live scheduler in that slot"
                return now
            fault.target = f"slot {slot} pid {inc.proc.pid}"
            inc.injected = fault.kind
            if fault.kind == "sigterm":
                inc.stop_deadline = now + 60.0
            inc.proc.send_signal(signal.SIGKILL if fault.kind == "kill9" else signal.SIGTERM)
            return now
        if fault.kind == "db_cut":
            fault.target = f"slot {slot}"
            self.proxies[slot].cut()
            self._restore = lambda: self.proxies[slot].restore()
        elif fault.kind == "db_pause":
            fault.target = f"slot {slot}"
            self.proxies[slot].pause()
            self._restore = lambda: self.proxies[slot].resume()
        elif fault.kind == "db_drop":
            fault.target = f"slot {slot}"
            dropped = contextlib.ExitStack()
            dropped.enter_context(packetdrop.dropping(self.proxies[slot].port))
            self._restore = dropped.close
        else:
            fault.target = "smtp"
            self.smtp.stop()
            self._restore = self.smtp.start
        return now + fault.duration

    def run_faults(self, faults: list[Fault], seconds: float) -> None:
        start = time.monotonic()
        pending = list(faults)
        over_at: float | None = None
        while time.monotonic() < start + seconds:
            self.supervise()
            now = time.monotonic()
            if over_at is not None and now >= over_at:
                self._restore()
                over_at = None
            if over_at is None and pending and now >= start + pending[0].at:
                fault = pending.pop(0)
                self.fault_log.append(fault)
                print(f"  t={now - start:6.1f}s {fault.kind} {fault.duration or ''}", flush=True)
                end = self.fire(fault)
                if end > time.monotonic():
                    over_at = end
            self.hard_stop_stuck()
            time.sleep(0.2)
        if over_at is not None:
            self._restore()

    def hard_stop_stuck(self) -> None:
        """A scheduler that has not exited a minute after SIGTERM is killed (and reported)."""
        now = time.monotonic()
        for inc in self.incarnations:
            due = inc.stop_deadline
            if due is not None and inc.exit_code is None and now > due:
                inc.stop_deadline = None
                inc.injected = "sigterm (did not stop within 60 s: killed)"
                inc.proc.kill()

    # -- the end

    def stop_all(self) -> list[Incarnation]:
        self.stopping = True
        live = [inc for inc in self.slots if inc is not None and inc.exit_code is None]
        for inc in live:
            inc.proc.send_signal(signal.SIGTERM)
        for inc in live:
            try:
                inc.exit_code = inc.proc.wait(timeout=SHUTDOWN_GRACE + 60)
            except subprocess.TimeoutExpired:
                inc.proc.kill()
                inc.exit_code = inc.proc.wait()
                inc.injected = "final stop (did not stop within 65 s: killed)"
            inc.ended = time.monotonic()
        return live

    def drain(self, seconds: int) -> int:
        """A scheduler that starts nothing: records crashes, follows the worker's runs."""
        log = self.work / "drain.log"
        proc = self.django(
            "runscheduler", "--duration", str(seconds), log=log, env=self.env(start_cond="false")
        )
        try:
            return proc.wait(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -999

    def open_rows(self) -> list[tuple[str, str, str]]:
        assert self.admin is not None
        return [
            (str(r[0]), r[1], r[2])
            for r in self.admin.execute(
                "SELECT r.run_id, t.name, r.status FROM django_rocket_taskrun r "
                "JOIN django_rocket_task t ON t.id = r.task_id "
                "WHERE r.status IN ('running', 'queued')"
            )
        ]

    def rows(self) -> list[dict[str, Any]]:
        assert self.admin is not None
        cur = self.admin.execute(
            "SELECT r.run_id, t.name AS task, r.status, r.trigger, r.started_at, r.finished_at, "
            "r.message, r.host, r.pid FROM django_rocket_taskrun r "
            "JOIN django_rocket_task t ON t.id = r.task_id ORDER BY r.id"
        )
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur]

    # -- the whole run

    def run(self) -> dict[str, Any]:
        seconds = self.args.minutes * 60
        faults = plan_faults(self.rng, seconds, self.args.faults)
        print(
            f"soak: seed {self.seed}, {self.args.minutes:g} min, {len(self.tasks)} tasks, "
            f"{len(faults)} faults planned, worker {'on' if self.with_worker else 'off'}, "
            f"work dir {self.work}",
            flush=True,
        )
        began = datetime.now().astimezone()
        t0 = time.monotonic()
        self.create_database()
        try:
            self.smtp.start()
            self.proxies = [CuttableProxy(PG_HOST, PG_PORT) for _ in range(2)]
            if self.with_worker:
                self.worker = self.django(
                    "db_worker",
                    "--interval=0.2",
                    "--no-startup-delay",
                    "--no-reload",
                    "--worker-id=soak-worker",
                    log=self.work / "worker.log",
                    env=self.env(),
                )
            for slot in (0, 1):
                self.spawn(slot)
            self.run_faults(faults, seconds)
            print(f"soak: faults over; settling {self.args.settle} s", flush=True)
            settle_end = time.monotonic() + self.args.settle
            while time.monotonic() < settle_end:
                self.supervise()
                time.sleep(0.2)
            final = self.stop_all()
            open_after_stop = self.open_rows()
            drain_code = self.drain(self.args.drain)
            if self.worker is not None:
                self.worker.send_signal(signal.SIGTERM)
                try:
                    self.worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.worker.kill()
            report = check(
                self,
                faults_planned=faults,
                final=final,
                open_after_stop=open_after_stop,
                drain_code=drain_code,
            )
        finally:
            self.cleanup()
        report["began"] = began.isoformat(timespec="seconds")
        report["wall_seconds"] = round(time.monotonic() - t0, 1)
        return report

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):  # a fault still on (interrupted): end it
            self._restore()
        for inc in self.incarnations:
            if inc.proc.poll() is None:
                inc.proc.kill()
                inc.proc.wait()
        if self.worker is not None and self.worker.poll() is None:
            self.worker.kill()
            self.worker.wait()
        for proxy in self.proxies:
            proxy.close()
        self.smtp.stop()
        if not self.args.keep_db:
            self.drop_database()


def _has_tasks_db() -> bool:
    import importlib.util

    return importlib.util.find_spec("django_tasks_db") is not None


# -- the invariant checker


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(raw))
    return lines


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if not line.startswith("flood ")]
    return "\n".join(kept[-lines:])


def check(
    soak: Soak,
    *,
    faults_planned: list[Fault],
    final: list[Incarnation],
    open_after_stop: list[tuple[str, str, str]],
    drain_code: int,
) -> dict[str, Any]:
    """Compare the ledger with the run log and the schedulers' exits; return the report.

    Violation classes:

    * ``executed_twice``: one run id with two ledger start lines (its function ran twice).
    * ``slot_started_twice``: for a task on ``every(d)``, a run whose ``started_at`` is less
      than ``d`` after the previous run's (the rule: no run starts within ``d`` of another).
      The slot of a run is ``[started_at, started_at + d)``; the example says whether both
      runs executed (a double execution) or one never reached its function.
    * ``missing_from_log``: a ledger start line whose run id has no row (or no run id).
    * ``left_open_after_stop``: a row of a local execution still ``running``/``queued``
      after every scheduler stopped cleanly.
    * ``left_open_at_end``: any row still ``running``/``queued`` after the drain.
    * ``row_without_execution``: a ``success`` or ``inaction`` row, or a ``fail`` row whose
      message is not one of a function that could not start, with no ledger line.
      ``crash`` and ``terminate`` rows may lack one (killed or stopped before the call).
    * ``wrong_outcome``: an executed run whose status is not what its function does
      (a crash, and a terminate at shutdown, are always allowed).
    * ``finish_time_off``: a run whose function ended (ledger end line) but whose row's
      ``finished_at`` is more than FINISH_TOLERANCE s away from that end, or missing.
    * ``outcome_lost_at_stop``: a ``crash`` recorded by a clean stop ("Terminated at
      scheduler shutdown") for a run whose function had returned (ledger end line).
    * ``overlapping_runs``: two executions of one task (none is ``multilaunch``) whose
      functions ran at the same time (:func:`overlaps`).
    * ``unexpected_exit``: a scheduler that exited without being signalled, a SIGTERM
      that did not give exit code 0, a final stop or drain that did not exit 0.
    """
    ledger = read_ledger(soak.ledger)
    rows = soak.rows()
    by_id = {str(r["run_id"]): r for r in rows}
    specs = {t.name: t for t in soak.tasks}
    starts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ends: dict[str, dict[str, Any]] = {}
    for line in ledger:
        if line.get("phase") == "start":
            starts[line.get("run") or ""].append(line)
        elif line.get("phase") == "end":
            ends[line.get("run") or ""] = line
    violations: dict[str, list[Any]] = defaultdict(list)

    for run, lines in starts.items():
        if run and len(lines) > 1:
            violations["executed_twice"].append({"run_id": run, "lines": lines})
        if not run or run not in by_id:
            for line in lines:
                violations["missing_from_log"].append(line)

    for name, task in specs.items():
        mine = sorted(
            (r for r in rows if r["task"] == name and r["started_at"] is not None),
            key=lambda r: r["started_at"],
        )
        for before, after in itertools.pairwise(mine):
            gap = (after["started_at"] - before["started_at"]).total_seconds()
            if gap < task.period - 0.001:
                both = str(before["run_id"]) in starts and str(after["run_id"]) in starts
                violations["slot_started_twice"].append(
                    {
                        "task": name,
                        "period": task.period,
                        "gap": round(gap, 3),
                        "both_executed": both,
                        "runs": [_brief(before), _brief(after)],
                    }
                )

    violations["overlapping_runs"] = overlaps(rows, starts, ends)

    local = {t.name for t in soak.tasks if t.execution != "tasks"}
    for run_id, task_name, status in open_after_stop:
        if task_name in local:
            violations["left_open_after_stop"].append(
                {"run_id": run_id, "task": task_name, "status": status}
            )
    for r in rows:
        if r["status"] in ("running", "queued"):
            violations["left_open_at_end"].append(_brief(r))

    for r in rows:
        run_id, status = str(r["run_id"]), r["status"]
        spec = specs.get(r["task"])
        if run_id not in starts:
            if status in (OK, INACTION) or (
                status == FAIL and not any(m in r["message"] for m in PRESTART_FAIL)
            ):
                violations["row_without_execution"].append(_brief(r))
            continue
        if status == "crash" and run_id in ends and r["message"].startswith("Terminated at"):
            # A clean stop gave up on a run whose function had returned (a worker's run:
            # DESIGN.md says the next active scheduler adopts it and records its outcome).
            violations["outcome_lost_at_stop"].append(_brief(r))
        if spec is None or status in ("crash", "running", "queued"):
            continue
        shutdown = status == TERMINATE and not r["message"].startswith("Timed out")
        # The ledger proves the function was imported and called: a message saying it
        # could not be is wrong whatever the status.
        misleading = any(m in r["message"] for m in PRESTART_FAIL[:2])
        if (status not in spec.expect and not shutdown) or misleading:
            violations["wrong_outcome"].append(
                {**_brief(r), "execution": spec.execution, "expected": sorted(spec.expect)}
            )
        end = ends.get(run_id)
        if end is not None and status != "crash":
            finished = r["finished_at"]
            off = None if finished is None else finished.timestamp() - end["t"]
            if off is None or abs(off) > FINISH_TOLERANCE:
                violations["finish_time_off"].append(
                    {
                        **_brief(r),
                        "execution": spec.execution,
                        "function_ended": datetime.fromtimestamp(end["t"]).astimezone().isoformat(),
                        "seconds_off": None if off is None else round(off, 1),
                    }
                )

    violations = defaultdict(list, {k: v for k, v in violations.items() if v})
    (soak.work / "rows.json").write_text(json.dumps(rows, default=str))  # for a post-mortem
    exits = []
    for inc in soak.incarnations:
        expected = {"kill9": (-9,), "sigterm": (0,)}.get(inc.injected, ())
        where = "final stop" if inc in final else ""
        entry = {
            "slot": inc.slot,
            "incarnation": inc.number,
            "pid": inc.proc.pid,
            "injected": inc.injected or where or "none",
            "exit_code": inc.exit_code,
        }
        exits.append(entry)
        if inc.exit_code is None:
            continue
        ok = inc.exit_code in expected if inc.injected else (inc in final and inc.exit_code == 0)
        if not ok:
            violations["unexpected_exit"].append({**entry, "log_tail": tail(inc.log)})
    if drain_code != 0:
        violations["unexpected_exit"].append(
            {"drain": True, "exit_code": drain_code, "log_tail": tail(soak.work / "drain.log")}
        )

    fired = [f for f in soak.fault_log if f.target]
    statuses = Counter(r["status"] for r in rows)
    return {
        "seed": soak.seed,
        "minutes": soak.args.minutes,
        "tasks": len(soak.tasks),
        "executions": Counter(t.execution for t in soak.tasks),
        "worker": soak.with_worker,
        "faults_planned": len(faults_planned),
        "faults": dict(Counter(f.kind for f in fired)),
        "fault_log": [vars(f) for f in soak.fault_log],
        "runs": len(rows),
        "runs_by_status": dict(statuses),
        "ledger_executions": sum(len(v) for v in starts.values()),
        "emails": len(soak.smtp.inbox.messages),
        "scheduler_starts": len(soak.incarnations) + 1,  # + the drain
        "exits": exits,
        "violations": {k: len(v) for k, v in sorted(violations.items())},
        "violation_count": sum(len(v) for v in violations.values()),
        "examples": {k: v[:EXAMPLES] for k, v in sorted(violations.items())},
        "work_dir": str(soak.work),
    }


def overlaps(
    rows: list[dict[str, Any]],
    starts: dict[str, list[dict[str, Any]]],
    ends: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Executions of one task (none is ``multilaunch``) whose functions ran at the same time.

    An execution lasts from its ledger start line to its end line or, without one (the
    function was stopped), to its row's ``finished_at``; a ``crash`` without an end line
    is left out (it died when its scheduler did, before the crash was detected).
    """
    spans: dict[str, list[tuple[float, float, dict[str, Any]]]] = defaultdict(list)
    for r in rows:
        run_id = str(r["run_id"])
        if run_id not in starts:
            continue
        begin = min(line["t"] for line in starts[run_id])
        if run_id in ends:
            end = ends[run_id]["t"]
        elif r["status"] != "crash" and r["finished_at"] is not None:
            end = r["finished_at"].timestamp()
        else:
            continue
        spans[r["task"]].append((begin, end, r))
    found = []
    for runs in spans.values():
        runs.sort(key=lambda span: span[0])
        latest: tuple[float, float, dict[str, Any]] | None = None
        for span in runs:
            if latest is not None and span[0] < latest[1] - 0.05:
                found.append(
                    {
                        "task": span[2]["task"],
                        "overlap_seconds": round(latest[1] - span[0], 2),
                        "runs": [_brief(latest[2]), _brief(span[2])],
                    }
                )
            if latest is None or span[1] > latest[1]:
                latest = span
    return found


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": str(r["run_id"]),
        "task": r["task"],
        "status": r["status"],
        "started_at": r["started_at"].isoformat() if r["started_at"] else None,
        "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None,
        "message": (r["message"] or "")[:300],
    }


def summary(report: dict[str, Any]) -> str:
    faults = ", ".join(f"{k} {v}" for k, v in sorted(report["faults"].items())) or "none"
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(report["runs_by_status"].items()))
    lines = [
        f"soak seed {report['seed']}: {report['minutes']:g} min "
        f"({report['wall_seconds']} s wall), {report['tasks']} tasks",
        f"  faults: {faults}",
        f"  runs: {report['runs']} ({statuses}); "
        f"{report['ledger_executions']} executions in the ledger",
        f"  scheduler starts: {report['scheduler_starts']}; alert emails: {report['emails']}",
        f"  violations: {report['violation_count']}",
    ]
    for name, count in report["violations"].items():
        lines.append(f"    {name}: {count}")
        for example in report["examples"][name][:2]:
            text = json.dumps(example, default=str)
            lines.append(f"      e.g. {text[:600]}")
    return "\n".join(lines)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def fault_kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(kind.strip() for kind in value.split(",") if kind.strip())
    unknown = [k for k in kinds if k not in FAULT_KINDS + MORE_FAULT_KINDS]
    if not kinds or unknown:
        raise argparse.ArgumentTypeError(
            f"{value!r}: give faults of {', '.join(FAULT_KINDS + MORE_FAULT_KINDS)}"
        )
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="fault phase length")
    parser.add_argument("--seed", type=int, default=None, help="fault schedule seed")
    parser.add_argument("--settle", type=int, default=20, help="fault-free seconds at the end")
    parser.add_argument("--drain", type=int, default=15, help="the drain scheduler's seconds")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument(
        "--no-worker",
        dest="worker",
        action="store_false",
        help="leave out execution 'tasks' (no db_worker)",
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument(
        "--faults",
        type=fault_kinds,
        default=FAULT_KINDS,
        help=f"the faults drawn, comma-separated, of {', '.join(FAULT_KINDS + MORE_FAULT_KINDS)} "
        f"(default: {','.join(FAULT_KINDS)})",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the run's directory (logs, ledger, rows.json) goes; default: the temp dir",
    )
    parser.add_argument(
        "--keep-work", action="store_true", help="keep the run's directory even without violations"
    )
    args = parser.parse_args(argv)
    if "db_drop" in args.faults and (why := packetdrop.refusal()):
        parser.error(f"db_drop cannot run here: {why}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    if not 0 < args.minutes <= 24 * 60:
        parser.error("--minutes must be between 0 and 1440")
    # A soak started in the background ignores SIGINT; SIGTERM and Ctrl-C both clean up
    # (schedulers and worker stopped, database dropped) before exiting.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        report = Soak(args).run()
    except KeyboardInterrupt as exc:
        print(f"soak: interrupted ({exc or 'Ctrl-C'}); processes stopped, database dropped")
        return 130
    text = summary(report)
    print(text)
    work = Path(report["work_dir"])
    keep = bool(report["violation_count"]) or args.keep_work
    out = args.json or (work / "report.json" if keep else Path(f"{work}.json"))
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"report: {out}")
    if keep:
        print(f"logs, ledger and rows.json: {work}")
    else:  # its logs hold megabytes of flooded stdout
        shutil.rmtree(work, ignore_errors=True)
    return 1 if report["violation_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
