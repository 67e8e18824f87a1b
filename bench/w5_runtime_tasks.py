"""W5: 100,000 runtime tasks (``schedule()``) — start-up, RSS, idle CPU, tick cost, pick-up.

Workload W5 of ``bench/run.py`` (``--workloads W5``), which runs this script; alone, from
the repository root::

    .venv/bin/python bench/w5_runtime_tasks.py                  # SQLite WAL, 100,000 tasks
    .venv/bin/python bench/w5_runtime_tasks.py --db pg --tasks 100000
    .venv/bin/python bench/w5_runtime_tasks.py --tasks 1000     # the "flat" comparison
    .venv/bin/python bench/w5_runtime_tasks.py --writers 4      # schedule() from 4 processes

The tasks are ``daily.at('HH:MM:SS')`` staggered over the day, none due in the measured
minutes, so the scheduler is idle between polls: what is measured is what 100,000 tasks
cost it, not their runs. Steps, each printed as one line of JSON:

* ``startup``: ``Scheduler()``, ``startup()`` and the first active tick (every task's
  condition evaluated once), wall seconds, and the RSS after it;
* ``quiet_tick``: the median wall and CPU time of a tick when nothing changed;
* ``idle``: CPU % of one core over ``--idle`` seconds of the real loop;
* ``pickup``: ``--writers`` other processes call ``schedule()`` at up to ``--rate`` calls a
  second in all (default 1,000) for ``--burst`` seconds while the loop runs; per task, the
  delay from ``schedule()`` returning to the planner taking it (max and p99), and the
  achieved call rate, with the CPU time of one call in the writers; ``--batch N`` makes
  N calls share one transaction (each counted from its commit);
* ``admin``: the task changelist's first and last page: queries and wall time (median
  and best of 5); ``--admin-only`` runs only this step after the prefill.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "drivers"))


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def configure(db: str, path: str) -> None:
    import django
    from django.conf import settings

    if db == "sqlite":
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    else:
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": path,
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": 5432,
        }
    settings.configure(
        SECRET_KEY="bench",
        DEBUG=False,
        USE_TZ=True,
        TIME_ZONE="UTC",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="tests.urls",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django_rocket",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        STATIC_URL="/static/",
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ROCKET_TASKS={},
        ROCKET_TASK_FUNCTIONS=["bench_tasks.*"],
        ROCKET_EXECUTION="thread",
        ROCKET_HEARTBEAT="5 seconds",
        ROCKET_POLL_INTERVAL=1.0,
        LOGGING={"version": 1, "disable_existing_loggers": False},
    )
    django.setup()


def condition(i: int, n: int) -> str:
    """A reminder a day at a minute staggered over the day, away from the next two hours
    (nothing is due while measured): 1,260 distinct texts, as per-customer times would be.

    ``daily.at('HH:MM')`` is an hour long (SEMANTICS.md), so the latest one starts an
    hour before now: none of the windows holds the measured minutes.
    """
    minute = 120 + (i * 21 * 60) // max(n, 1)
    now = time.gmtime()
    at = (now.tm_hour * 60 + now.tm_min + minute) % 1440
    return f"daily.at('{at // 60:02d}:{at % 60:02d}')"


def prefill(n: int) -> float:
    from django.utils import timezone

    from django_rocket.models import Task, TaskSource

    started = time.perf_counter()
    batch = []
    for i in range(n):
        batch.append(
            Task(
                name=f"w5-{i:06d}",
                func="bench_tasks.noop",
                start_cond=condition(i, n),
                source=TaskSource.RUNTIME,
                execution="thread",
            )
        )
        if len(batch) == 5000:
            Task.objects.bulk_create(batch)
            batch = []
    Task.objects.bulk_create(batch)
    # Created over the last day, as real tasks are (what the admin's list shows).
    for start in range(0, n, 5000):
        Task.objects.filter(name__gte=f"w5-{start:06d}", name__lt=f"w5-{start + 5000:06d}").update(
            updated_at=timezone.now() - timedelta(seconds=86400 * (n - start) / n)
        )
    return time.perf_counter() - started


def burst(seconds: float, rate: float, out: str, batch: int = 1) -> None:
    """In a child process: call schedule() at up to ``rate`` a second; log when each returned.

    With ``batch`` > 1, that many calls share one transaction (``transaction.atomic()``),
    and each is logged when it commits: before, no other process can see it.
    """
    from django.db import transaction

    from django_rocket import schedule

    log = []
    cpu = time.process_time()
    start = time.monotonic()
    end = start + seconds
    i = 0
    while time.monotonic() < end:
        names = []
        with transaction.atomic():
            for _ in range(batch):
                name = f"burst-{os.getpid()}-{i:06d}"
                schedule(name, "bench_tasks.noop", condition(i, 1000))
                names.append(name)
                i += 1
        committed = time.time()
        log.extend((name, committed) for name in names)
        pause = start + i / rate - time.monotonic()  # the pace, catching up after a stall
        if pause > 0:
            time.sleep(pause)
    cpu_ms = (time.process_time() - cpu) * 1000 / max(i, 1)
    Path(out).write_text(json.dumps({"log": log, "cpu_ms_call": cpu_ms}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "pg"], default="sqlite")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--burst", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=1000, help="schedule() calls/s, all writers")
    parser.add_argument("--writers", type=int, default=1, help="processes calling schedule()")
    parser.add_argument("--batch", type=int, default=1, help="schedule() calls per transaction")
    parser.add_argument(
        "--admin-only", action="store_true", help="prefill, then only the admin step"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # the schedule() process
        db, path, out, seconds = args.child
        configure(db, path)
        burst(float(seconds), args.rate / args.writers, out, args.batch)
        return

    tmp = tempfile.mkdtemp(prefix="rocket-w5-")
    if args.db == "sqlite":
        path = os.path.join(tmp, "w5.sqlite3")
    else:
        path = f"rocket_w5_{os.getpid()}"
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {path}"],
            check=True,
        )
    configure(args.db, path)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    report = {"db": args.db, "tasks": args.tasks}
    report["prefill_s"] = round(prefill(args.tasks), 2)
    print(json.dumps({"step": "prefill", **report}), flush=True)
    if args.admin_only:
        admin_pages(args.db, args.tasks)
        cleanup(args.db, path, tmp)
        return

    from django.db import connection

    from django_rocket.engine.scheduler import Scheduler

    rss_before = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    scheduler = Scheduler()
    scheduler.startup()
    scheduler.tick()  # becomes active; evaluates every task once
    startup = time.perf_counter() - started
    startup_cpu = time.process_time() - cpu
    assert len(scheduler.planner.specs) == args.tasks, len(scheduler.planner.specs)
    print(
        json.dumps(
            {
                "step": "startup",
                "seconds": round(startup, 2),
                "cpu_s": round(startup_cpu, 2),  # what a loaded machine does not inflate
                "rss_mb": round(rss_mb(), 1),
                "rss_before_mb": round(rss_before, 1),
                "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        ),
        flush=True,
    )

    walls, cpus = [], []
    for _ in range(30):
        scheduler.poller.next_poll = 0.0  # every tick polls: the worst quiet tick
        w, c = time.perf_counter(), time.process_time()
        scheduler.tick()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    print(
        json.dumps(
            {
                "step": "quiet_tick",
                "wall_ms": round(statistics.median(walls) * 1000, 3),
                "cpu_ms": round(statistics.median(cpus) * 1000, 3),
            }
        ),
        flush=True,
    )

    # The real loop, in a thread, for the idle and pick-up measurements.
    scheduler.duration = args.idle + args.burst + 30
    scheduler.started_mono = scheduler.clock.monotonic()
    connection.close()

    def loop() -> None:
        try:
            while not scheduler.stop_requested:
                sleep = scheduler.tick()
                scheduler.clock.wait(scheduler.wakeup, sleep)
                scheduler.wakeup.clear()
        finally:
            from django.db import connection as own

            own.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    time.sleep(2)  # settle
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(args.idle)
    idle = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
    print(json.dumps({"step": "idle", "cpu_percent": round(idle, 3)}), flush=True)

    # When the planner takes each burst task: a hook on put_task, called by the loop's
    # thread (scanning 100,000 names from here would compete with it for the GIL).
    seen: dict[str, float] = {}
    put_task = scheduler.planner.put_task

    def taken(spec: Any, enabled: bool) -> None:
        put_task(spec, enabled)
        if spec.name.startswith("burst-"):
            seen.setdefault(spec.name, time.time())

    scheduler.planner.put_task = taken  # type: ignore[method-assign]
    outs = [os.path.join(tmp, f"burst-{k}.json") for k in range(args.writers)]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--rate",
                str(args.rate),
                "--writers",
                str(args.writers),
                "--batch",
                str(args.batch),
                "--child",
                args.db,
                path,
                out,
                str(args.burst),
            ]
        )
        for out in outs
    ]
    for child in children:
        child.wait()
    results = [json.loads(Path(out).read_text()) for out in outs]
    log = [entry for result in results for entry in result["log"]]
    deadline = time.time() + 10  # the last ones: picked up within 10 s or counted missing
    while time.time() < deadline and any(name not in seen for name, _ in log):
        time.sleep(0.05)
    delays = sorted(seen.get(name, float("inf")) - at for name, at in log)
    missing = sum(1 for d in delays if d == float("inf"))
    finite = [d for d in delays if d != float("inf")]
    print(
        json.dumps(
            {
                "step": "pickup",
                "writers": args.writers,
                "batch": args.batch,
                "scheduled": len(log),
                "rate_per_s": round(len(log) / args.burst, 1),
                "cpu_ms_call": round(statistics.mean(r["cpu_ms_call"] for r in results), 3),
                "missing": missing,
                "max_s": round(max(finite), 3) if finite else None,
                "p99_s": round(finite[int(len(finite) * 0.99) - 1], 3) if finite else None,
                "median_s": round(statistics.median(finite), 3) if finite else None,
            }
        ),
        flush=True,
    )
    scheduler.request_stop("bench done")
    thread.join(timeout=60)

    admin_pages(args.db, args.tasks)
    cleanup(args.db, path, tmp)


def cleanup(db: str, path: str, tmp: str) -> None:
    from django.db import connection

    connection.close()
    if db == "pg":
        drop = f"DROP DATABASE {path}"
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", drop], check=True)
    shutil.rmtree(tmp, ignore_errors=True)


def admin_pages(db: str, tasks: int) -> None:
    """Print the task changelist's first and last page: queries, and median and best ms of 5.

    On PostgreSQL, once as the bulk insert left the table and once after ``VACUUM
    ANALYZE`` (what autovacuum does to a table of that age): a deep page's names are read
    by an index-only scan, which needs the visibility map a vacuum sets.
    """
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    User.objects.create_superuser("bench", "b@example.com", "pw")
    client = Client()
    client.force_login(User.objects.get(username="bench"))
    last = max(1, -(-tasks // 100))  # pages are numbered from 1
    for table in ("as inserted", "vacuumed") if db == "pg" else ("as inserted",):
        if table == "vacuumed":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE django_rocket_task")
        pages: dict[str, Any] = {}
        for label, url in (
            ("first", "/admin/django_rocket/task/"),
            ("last", f"/admin/django_rocket/task/?p={last}"),
        ):
            client.get(url)  # warm
            walls = []
            for _ in range(5):
                with CaptureQueriesContext(connection) as ctx:
                    w = time.perf_counter()
                    response = client.get(url)
                    walls.append(time.perf_counter() - w)
                assert response.status_code == 200, response.status_code
            pages[label] = {
                "queries": len(ctx.captured_queries),
                "ms": round(statistics.median(walls) * 1000, 1),
                "best_ms": round(min(walls) * 1000, 1),
            }
        print(json.dumps({"step": "admin", "table": table, **pages}), flush=True)


if __name__ == "__main__":
    main()
