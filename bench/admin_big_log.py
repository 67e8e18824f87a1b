"""Time the admin's run changelist (and the other admin pages) over a big run log.

Run from the repository root::

    .venv/bin/python bench/admin_big_log.py                       # SQLite, 1,000,000 runs
    .venv/bin/python bench/admin_big_log.py --database postgres   # a throwaway PostgreSQL DB
    .venv/bin/python bench/admin_big_log.py --rows 100000 --keep  # keep the database for reruns

It creates a throwaway database (a file under the system temp directory, or
``rocket_bench_admin`` on ``postgres://postgres@127.0.0.1:5432``), migrates it,
fills ``TaskRun`` with bulk inserts spread over the last year, then requests each
admin page through Django's test client and prints the median time, the number
of queries and the slowest query. For comparison it also times the two queries
the stock admin would add: the full ``COUNT(*)`` and the date hierarchy's
``SELECT DISTINCT`` over every row.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
PG_NAME = "rocket_bench_admin"
TASKS = 20
BATCH = 10_000


def configure(database: str, rows: int) -> str:
    """Configure Django for the benchmark database; return a description of it."""
    import django
    from django.conf import settings

    if database == "sqlite":
        path = Path(tempfile.gettempdir()) / f"rocket-bench-admin-{rows}.sqlite3"
        db = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 30},
        }
        where = str(path)
    else:
        _create_pg_database()
        db = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": PG_NAME,
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": 5432,
        }
        where = f"{PG_SERVER}/{PG_NAME}"
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
        ALLOWED_HOSTS=["*"],
        DATABASES={"default": db},
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "django_rocket",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        ROOT_URLCONF="tests.urls",
        STATIC_URL="/static/",
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
        ROCKET_TASKS={
            f"task-{i:02d}": {
                "func": "tests.support.tasks.noop",
                "start_cond": "every('10 minutes')" if i % 2 else "daily",
                "execution": "main",
            }
            for i in range(TASKS)
        },
    )
    django.setup()
    return where


def _create_pg_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{PG_NAME}"')


def drop(database: str, where: str) -> None:
    from django.db import connections

    connections.close_all()
    if database == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(where + suffix).unlink(missing_ok=True)
        return
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_NAME}"')


def fill(rows: int) -> None:
    """Create the tasks and ``rows`` runs over the last year, in batches of bulk inserts."""
    from django.core.management import call_command
    from django.db import connection, transaction

    from django_rocket.models import RunStatus, RunTrigger, SchedulerInstance, Task, TaskRun

    call_command("migrate", verbosity=0)
    if TaskRun.objects.count() >= rows:
        print(f"Reusing the {rows:,} runs already there.")
        return
    TaskRun.objects.all().delete()
    Task.objects.all().delete()
    tasks = [
        Task.objects.create(
            name=f"task-{i:02d}", func="tests.support.tasks.noop", start_cond="daily"
        )
        for i in range(TASKS)
    ]
    scheduler = SchedulerInstance.objects.create(host="bench", pid=1, role="active")
    rng = random.Random(6)
    end = datetime.now(UTC).replace(microsecond=0)
    span = timedelta(days=365).total_seconds()
    outcomes = [RunStatus.SUCCESS] * 90 + [RunStatus.FAIL] * 6 + [RunStatus.INACTION] * 2
    outcomes += [RunStatus.CRASH, RunStatus.TERMINATE]
    triggers = [RunTrigger.SCHEDULED] * 97 + [RunTrigger.RETRY] * 2 + [RunTrigger.MANUAL]
    # The last task is rare: one run in a thousand, to time a filter with few matches.
    weights = [1.0] * (TASKS - 1) + [0.02]
    began = time.perf_counter()
    for offset in range(0, rows, BATCH):
        batch = []
        for i in range(offset, min(offset + BATCH, rows)):
            started = end - timedelta(seconds=span * (1 - i / rows))
            runtime = timedelta(seconds=rng.uniform(0.05, 120))
            status = rng.choice(outcomes)
            batch.append(
                TaskRun(
                    task=rng.choices(tasks, weights)[0],
                    run_id=uuid.UUID(int=rng.getrandbits(128)),
                    status=status,
                    trigger=rng.choice(triggers),
                    started_at=started,
                    finished_at=started + runtime,
                    runtime=runtime,
                    message="" if status == RunStatus.SUCCESS else "ValueError: boom",
                    exc_text="" if status != RunStatus.FAIL else "Traceback ...\nValueError: boom",
                    host="bench-host",
                    pid=4242,
                    scheduler=scheduler,
                )
            )
        with transaction.atomic():
            TaskRun.objects.bulk_create(batch)
        done = offset + len(batch)
        if done % 100_000 == 0:
            rate = done / (time.perf_counter() - began)
            print(f"  {done:>9,} runs ({rate:,.0f}/s)", flush=True)
    with connection.cursor() as cursor:
        # What autovacuum does to a table in steady state: statistics for the planner and,
        # on PostgreSQL, the visibility map that lets counts read the index alone.
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    print(f"Filled {rows:,} runs in {time.perf_counter() - began:.0f} s.")


def measure(repeat: int) -> list[tuple[str, float, int, float, float]]:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from django_rocket.models import Task, TaskRun

    setup_test_environment()
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "bench@example.com"
    )
    client = Client()
    client.force_login(user)
    busy = Task.objects.get(name="task-00")
    rare = Task.objects.get(name=f"task-{TASKS - 1:02d}")
    some_run = TaskRun.objects.order_by("-pk").values_list("pk", "run_id").first()
    assert some_run is not None
    recent = datetime.now(UTC) - timedelta(days=3)
    runs = reverse("admin:django_rocket_taskrun_changelist")
    month = f"started_at__year={recent.year}&started_at__month={recent.month}"
    pages = [
        ("runs: first page", runs),
        ("runs: page 50", f"{runs}?p=50"),
        ("runs: oldest first", f"{runs}?o=5"),
        ("runs: status = fail (6 %)", f"{runs}?status__exact=fail"),
        ("runs: status = crash (1 %)", f"{runs}?status__exact=crash"),
        ("runs: trigger = manual (1 %)", f"{runs}?trigger__exact=manual"),
        ("runs: one busy task (5 %)", f"{runs}?task__id__exact={busy.pk}"),
        ("runs: one rare task (0.1 %)", f"{runs}?task__id__exact={rare.pk}"),
        ("runs: busy task + fail", f"{runs}?task__id__exact={busy.pk}&status__exact=fail"),
        ("runs: one month", f"{runs}?{month}"),
        ("runs: one day", f"{runs}?{month}&started_at__day={recent.day}"),
        ("runs: search run id", f"{runs}?q={some_run[1]}"),
        ("runs: search task name", f"{runs}?q=task-03"),
        ("run page", reverse("admin:django_rocket_taskrun_change", args=[some_run[0]])),
        ("tasks: changelist (20 tasks)", reverse("admin:django_rocket_task_changelist")),
        ("task page", reverse("admin:django_rocket_task_change", args=[busy.pk])),
    ]
    results = []
    for label, url in pages:
        response = client.get(url)
        assert response.status_code == 200, (label, response.status_code)
        samples = []
        for _ in range(repeat):
            timer = QueryTimer()
            with connection.execute_wrapper(timer):
                began = time.perf_counter()
                client.get(url)
                samples.append((time.perf_counter() - began, timer))
        samples.sort(key=lambda sample: sample[0])
        total, timer = samples[len(samples) // 2]
        results.append((label, total, len(timer.times), sum(timer.times), max(timer.times)))
    return results


class QueryTimer:
    """Record how long each query of a request takes."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.times.append(time.perf_counter() - began)


def stock_admin_costs() -> list[tuple[str, float]]:
    """Time the queries the stock admin would run on each run changelist view."""
    from django_rocket.models import TaskRun

    def timed(function) -> float:
        function()
        began = time.perf_counter()
        function()
        return time.perf_counter() - began

    since = datetime.now(UTC) - timedelta(days=30)
    return [
        ("full COUNT(*)", timed(lambda: TaskRun.objects.count())),
        ("COUNT(*) of status = fail", timed(lambda: TaskRun.objects.filter(status="fail").count())),
        (
            "date hierarchy: DISTINCT years over all runs",
            timed(lambda: list(TaskRun.objects.datetimes("started_at", "year"))),
        ),
        (
            "date hierarchy: DISTINCT days over the last 30 days",
            timed(
                lambda: list(
                    TaskRun.objects.filter(started_at__gte=since).datetimes("started_at", "day")
                )
            ),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="requests per page (median)")
    parser.add_argument("--keep", action="store_true", help="keep the database for a rerun")
    args = parser.parse_args()
    os.chdir(ROOT)
    where = configure(args.database, args.rows)
    from django.db import connection

    print(f"Database: {connection.display_name} at {where}")
    try:
        fill(args.rows)
        print(f"\n{'page':<30} {'median':>9} {'queries':>8} {'in the DB':>10} {'slowest':>10}")
        for label, median, count, db, slowest in measure(args.repeat):
            print(
                f"{label:<30} {median * 1000:>6.1f} ms {count:>8} "
                f"{db * 1000:>7.1f} ms {slowest * 1000:>7.1f} ms"
            )
        print("\nWhat the stock admin would add per run changelist view:")
        for label, seconds in stock_admin_costs():
            print(f"  {label:<52} {seconds * 1000:>9.1f} ms")
    finally:
        if not args.keep:
            drop(args.database, where)


if __name__ == "__main__":
    main()
