"""How soon a "Run now" starts on an idle scheduler: LISTEN/NOTIFY against the poll alone.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, a throwaway database)::

    .venv/bin/python bench/notify_latency.py                  # 50 requests each way
    .venv/bin/python bench/notify_latency.py --requests 200 --poll-interval 1.0

It starts a real ``runscheduler`` subprocess with one task that never starts by
itself, then makes requests through ``queue_run`` (as the admin's Run now and
``runtask`` do), one at a time, each at a random moment of the poll cycle. The
latency of one request is its row's ``started_at`` minus its ``queued_at``: from
the request to the run's start, both read from this machine's clock. "notify" is
the default; "poll only" makes the same requests without the notification, which
is what SQLite gets (and PostgreSQL while the listening connection is down).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = "postgres://postgres@127.0.0.1:5432"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(name: str, ms: list[float]) -> str:
    return (
        f"{name:<10} n={len(ms):<4} p50 {statistics.median(ms):7.1f} ms   "
        f"p99 {percentile(ms, 99):7.1f} ms   max {max(ms):7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--server", default=SERVER)
    args = parser.parse_args()

    import psycopg

    name = f"rocket_bench_notify_{os.getpid()}"
    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = f"{args.server}/{name}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "ROCKET_TEST_TASKS": json.dumps(
            {
                "manual": {
                    "func": "tests.support.tasks.noop",
                    "start_cond": "false",
                    "execution": "thread",
                }
            }
        ),
        "ROCKET_TEST_SETTINGS": json.dumps(
            {"ROCKET_POLL_INTERVAL": args.poll_interval, "LOGGING": {"version": 1}}
        ),
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django_rocket.models import SchedulerLease, Task, TaskRun
    from django_rocket.ops import queue

    scheduler = subprocess.Popen(
        [sys.executable, "-m", "django", "runscheduler"], cwd=ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while not SchedulerLease.objects.filter(holder__isnull=False).exists():
            if time.monotonic() > deadline:
                raise SystemExit("The scheduler did not become active within 30 s.")
            time.sleep(0.05)
        task = Task.objects.get(name="manual")
        rng = random.Random(19)
        notify = queue.notify_schedulers
        results: dict[str, list[float]] = {}
        for mode in ("notify", "poll only"):
            queue.notify_schedulers = notify if mode == "notify" else (lambda: None)  # type: ignore[assignment]
            ms: list[float] = []
            for _ in range(args.requests):
                time.sleep(rng.uniform(0.05, args.poll_interval + 0.05))  # anywhere in the cycle
                run, _ = queue.queue_run(task)
                done = time.monotonic() + args.poll_interval + 10
                while True:
                    run.refresh_from_db()
                    if run.started_at is not None and run.is_finished:
                        break
                    if time.monotonic() > done:
                        raise SystemExit(f"Run {run.run_id} did not start ({mode}).")
                    time.sleep(0.005)
                assert run.queued_at is not None
                ms.append((run.started_at - run.queued_at).total_seconds() * 1000)
            results[mode] = ms
        queue.notify_schedulers = notify  # type: ignore[assignment]
        print(
            f"request -> run start, {args.requests} requests each, idle scheduler, "
            f"ROCKET_POLL_INTERVAL={args.poll_interval} s, PostgreSQL"
        )
        for mode, ms in results.items():
            print(summary(mode, ms))
        print(f"runs recorded: {TaskRun.objects.count()}")
    finally:
        scheduler.terminate()
        scheduler.wait(30)
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
