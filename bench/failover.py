"""The failover bound, measured: kill -9 the active scheduler of three, again and again.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, a throwaway database)::

    .venv/bin/python bench/failover.py                     # 10 kills, 5 s lease
    .venv/bin/python bench/failover.py --kills 20 --same-host
    .venv/bin/python bench/failover.py --remote     # the tasks run on two db_worker processes

Three ``runscheduler`` subprocesses share one database; 20 thread tasks run
``every('2 seconds')`` and append to a ledger file per task on every execution. The
active scheduler is killed with SIGKILL, then restarted (so three are always
there). The takeover time is from the kill to the lease's token changing hands
(read every 10 ms). By default each scheduler believes it is on a host of its own,
so the standbys cannot see that the holder's process is dead and must wait for its
lease to expire: the cross-machine case, bounded by ROCKET_LEASE_TIMEOUT plus one
heartbeat. ``--same-host`` measures the one-machine case, where a standby sees the
dead pid and takes over at its next heartbeat.

At the end it checks the run log against the ledgers: no run left ``running``, no
slot run twice (consecutive starts of a task at least 2 s apart), and every
execution in a ledger has its row. With ``--remote`` the tasks are handed to two
django-tasks-db ``db_worker`` processes (execution "tasks", one second of work
each), so kills land while runs are in flight on workers: the next active
scheduler adopts them, and each execution should have exactly one ``success`` row.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = "postgres://postgres@127.0.0.1:5432"
EVERY = 2.0
TASK_COUNT = 20

# A scheduler on a host of its own: the hostname is what it records and compares.
LAUNCH = (
    "import os, socket, sys\n"
    "host = os.environ.get('BENCH_HOST')\n"
    "if host: socket.gethostname = lambda: host\n"
    "from django.core.management import execute_from_command_line\n"
    "execute_from_command_line(['manage.py', 'runscheduler'])\n"
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease", type=float, default=5.0, help="ROCKET_LEASE_TIMEOUT, seconds")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="ROCKET_HEARTBEAT, seconds")
    parser.add_argument("--same-host", action="store_true")
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--ledger-dir", default=None)
    parser.add_argument("--remote", action="store_true", help="run the tasks on db_workers")
    args = parser.parse_args()

    import tempfile

    import psycopg

    ledgers = Path(args.ledger_dir or tempfile.mkdtemp(prefix="rocket-failover-"))
    name = f"rocket_bench_failover_{os.getpid()}"
    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    tasks = {
        f"t{i:02d}": {
            "func": "tests.support.remote_tasks.ledger_entry",
            "start_cond": f"every('{EVERY:g} seconds')",
            "execution": "tasks" if args.remote else "thread",
            "parameters": {
                "ledger": str(ledgers / f"t{i:02d}"),
                "seconds": 1 if args.remote else 0,
            },
        }
        for i in range(TASK_COUNT)
    }
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.server}/{name}",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "ROCKET_TEST_TASKS": json.dumps(tasks),
        "ROCKET_TEST_SETTINGS": json.dumps(
            {
                "ROCKET_LEASE_TIMEOUT": f"{args.lease:g} seconds",
                "ROCKET_HEARTBEAT": f"{args.heartbeat:g} seconds",
                "ROCKET_POLL_INTERVAL": 0.5,
                "LOGGING": {"version": 1},
                "TASKS": {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
            }
        ),
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connections

    from django_rocket.models import RunStatus, SchedulerLease, TaskRun

    started = itertools.count()
    procs: dict[int, subprocess.Popen[bytes]] = {}

    def start() -> None:
        host = "" if args.same_host else f"bench-host-{next(started)}"
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH], cwd=ROOT, env={**env, "BENCH_HOST": host}
        )
        procs[proc.pid] = proc

    def lease() -> tuple[int, int | None]:
        row = SchedulerLease.objects.select_related("holder").filter(name="default").first()
        if row is None or row.holder is None:
            return (row.token if row else 0, None)
        return (row.token, row.holder.pid)

    def wait_for(predicate, limit: float, what: str):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.01)
        raise SystemExit(f"Timed out waiting for {what}.")

    takeovers: list[float] = []
    kills: list[datetime] = []
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "db_worker",
                "--interval=0.1",
                "--no-startup-delay",
                "--no-reload",
                f"--worker-id=w{n}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(2 if args.remote else 0)
    ]
    try:
        for _ in range(3):
            start()
        wait_for(lambda: lease()[1] in procs, 60, "an active scheduler")
        for _ in range(args.kills):
            # Let it run a few slots, then kill the active one mid-flight.
            time.sleep(EVERY * 1.5)
            token, victim = lease()
            assert victim is not None
            procs[victim].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            kills.append(datetime.now(UTC))
            procs.pop(victim).wait()
            new = wait_for(
                lambda t=token: lease()[0] != t and lease()[1] is not None,
                args.lease * 4 + 10,
                "a standby to take over",
            )
            takeovers.append(time.monotonic() - killed_at)
            assert new
            start()  # back to three
        time.sleep(EVERY * 2)
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(60)
        if workers:  # the runs left in flight finish; a last scheduler records them
            last = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    LAUNCH.replace("'runscheduler'", "'runscheduler', '--once'"),
                ],
                cwd=ROOT,
                env={**env, "BENCH_HOST": "bench-host-last"},
            )
            last.wait(120)
        for worker in workers:
            worker.terminate()
            worker.wait(30)

    running = TaskRun.objects.filter(status=RunStatus.RUNNING).count()
    # Runs in flight at a kill: started before it, finished after (adopted, or crash).
    cut = len(
        {
            pk
            for at in kills
            for pk in TaskRun.objects.filter(started_at__lt=at, finished_at__gt=at).values_list(
                "pk", flat=True
            )
        }
    )
    doubled = 0
    unlogged = 0
    executed = 0
    statuses: dict[str, int] = {}
    for task in tasks:
        rows = list(
            TaskRun.objects.filter(task__name=task)
            .order_by("started_at")
            .values_list("started_at", "status")
        )
        for status in (s for _, s in rows):
            statuses[status] = statuses.get(status, 0) + 1
        gaps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(rows)]
        doubled += sum(gap < EVERY - 0.001 for gap in gaps)
        executions = len((ledgers / task).read_text().splitlines())
        executed += executions
        successes = sum(s == RunStatus.SUCCESS for _, s in rows)
        crashes = sum(s == RunStatus.CRASH for _, s in rows)
        # An execution without its success row is one cut short by the kill (crash).
        unlogged += max(executions - successes - crashes, 0)
    connections.close_all()
    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    where = "one host (dead pid seen)" if args.same_host else "separate hosts (lease expiry)"
    where += ", runs on 2 db_workers" if args.remote else ", thread runs"
    print(
        f"failover: 3 schedulers on PostgreSQL, {where}, ROCKET_LEASE_TIMEOUT={args.lease:g} s, "
        f"ROCKET_HEARTBEAT={args.heartbeat:g} s, {TASK_COUNT} tasks every {EVERY:g} s"
    )
    print(
        f"takeover after kill -9 ({len(takeovers)} kills): "
        f"min {min(takeovers):.2f} s, p50 {statistics.median(takeovers):.2f} s, "
        f"p99 {percentile(takeovers, 99):.2f} s, max {max(takeovers):.2f} s "
        f"(target p99 <= {args.lease + 1:g} s)"
    )
    print("takeovers:", " ".join(f"{t:.2f}" for t in takeovers))
    print(
        f"runs: {sum(statuses.values())} {statuses}, {cut} of them in flight at a kill; "
        f"left running: {running}; "
        f"slots run twice: {doubled}; executions (ledgers): {executed}, "
        f"of which without a success or crash row: {unlogged}"
    )


if __name__ == "__main__":
    main()
