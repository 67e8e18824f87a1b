"""Drive django-rocket for the benchmark: migrate, prefill, run the scheduler, read its log.

Run by ``bench/run.py`` with the project's venv: ``python rocket.py CONFIG.json``.
The config names the database, the mode and the tasks; see ``bench/run.py``.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The django-rocket checkout to drive: this repository, or a baseline that has no driver.
TREE = os.environ.get("ROCKET_BENCH_TREE", str(HERE.parent.parent))
sys.path.insert(0, str(HERE))
sys.path.insert(0, TREE)

from common import emit, load_config, write_result  # noqa: E402


def database(db: dict) -> dict:
    if db["engine"] == "sqlite":
        # As the example project and the docs recommend: WAL, synchronous=NORMAL.
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": db["path"],
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    if db["engine"] == "mariadb":
        # As docs/installation.rst recommends: utf8mb4 and READ COMMITTED (Django's
        # defaults, spelled out); the harness created the database in utf8mb4.
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": db["name"],
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": 3306,
            "OPTIONS": {"charset": "utf8mb4", "isolation_level": "read committed"},
        }
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": db["name"],
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": 5432,
    }


def task_settings(spec: dict | None) -> dict:
    if not spec:
        return {}
    return {
        f"{spec['prefix']}{i:05d}": {
            "func": spec.get("func", "bench_tasks.noop"),
            "start_cond": spec["cond"],
            "execution": spec.get("execution", "thread"),
        }
        for i in range(spec["n"])
    }


def configure(cfg: dict) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench",
        DEBUG=False,
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django_rocket",
        ],
        DATABASES={"default": database(cfg["db"])},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ROCKET_TASKS=task_settings(cfg.get("tasks")),
        ROCKET_SPOOL_DIR=tempfile.mkdtemp(prefix="rocket-bench-spool-"),
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler"}},
            # Warnings and errors only: one INFO line per run would measure the console.
            "loggers": {"django_rocket": {"handlers": ["stderr"], "level": "WARNING"}},
        },
    )
    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def prefill(cfg: dict) -> None:
    """Fill the run log with ``rows`` runs of the W3 tasks over the past year, in bulk.

    One executemany (MySQL's driver: multi-row INSERTs) or COPY (PostgreSQL) per 20,000
    rows, values prepared the way Django stores them; every run ended before today, so
    ``daily`` is due at startup; about one run in ten failed.
    """
    from django.db import connection, transaction

    from django_rocket.models import Task

    spec = cfg["tasks"]
    names = [f"{spec['prefix']}{i:05d}" for i in range(spec["n"])]
    # The tasks as the scheduler will declare them, so that its start-up finds nothing to
    # rewrite: the log belongs to this deployment.
    Task.objects.bulk_create(
        [
            Task(
                name=n,
                func=spec.get("func", "bench_tasks.noop"),
                start_cond=spec["cond"],
                execution=spec.get("execution", "thread"),
            )
            for n in names
        ]
    )
    pks = [pk for _, pk in sorted(Task.objects.values_list("name", "pk"))]
    per_task = cfg["rows"] // len(names)
    rng = random.Random(8)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(days=365)
    step = (end - start) / max(per_task, 1)
    sqlite = connection.vendor == "sqlite"
    mysql = connection.vendor == "mysql"
    native_uuid = connection.features.has_native_uuid_field
    adapt = connection.ops.adapt_datetimefield_value
    trigger = connection.ops.quote_name("trigger")  # a reserved word on MySQL
    sql = (
        f"INSERT INTO django_rocket_taskrun (task_id, run_id, status, {trigger}, started_at, "
        "finished_at, host, pid, message, exc_text) VALUES (%s, %s, %s, 'scheduled', %s, %s, "
        "'bench', 1, '', '')"
    )
    batch: list[tuple] = []
    with connection.cursor() as cursor:
        # Bulk load as a DBA would: drop the secondary indexes, insert, build them again
        # (on MySQL they stay: InnoDB needs the foreign key's index).
        indexes: list[tuple[str, str]] = []
        if sqlite:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                "tbl_name = 'django_rocket_taskrun' AND sql IS NOT NULL"
            )
        elif not mysql:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                "'django_rocket_taskrun' AND indexname NOT IN (SELECT conname FROM pg_constraint)"
            )
        if not mysql:
            indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        for k in range(per_task):
            began = start + step * k
            began_db, ended_db = adapt(began), adapt(began + timedelta(seconds=1))
            for pk in pks:
                failed = k != per_task - 1 and rng.random() < 0.1
                run_id = uuid.uuid4()
                batch.append(
                    (
                        pk,
                        run_id if native_uuid else run_id.hex,
                        "fail" if failed else "success",
                        began_db,
                        ended_db,
                    )
                )
            if len(batch) >= 20_000 or k == per_task - 1:
                with transaction.atomic():
                    if connection.vendor != "postgresql":  # MySQL: multi-row INSERTs
                        cursor.executemany(sql, batch)
                    else:  # PostgreSQL's bulk insert: COPY
                        copy_rows(cursor, batch)
                batch.clear()
        for _, definition in indexes:
            cursor.execute(definition)
        analyze = {"postgresql": "VACUUM ANALYZE", "mysql": "ANALYZE TABLE django_rocket_taskrun"}
        cursor.execute(analyze.get(connection.vendor, "ANALYZE"))


def copy_rows(cursor, batch: list[tuple]) -> None:
    columns = (
        "task_id, run_id, status, trigger, started_at, finished_at, host, pid, message, exc_text"
    )
    with cursor.cursor.copy(f"COPY django_rocket_taskrun ({columns}) FROM STDIN") as copy:
        for pk, run_id, status, began, ended in batch:
            copy.write_row((pk, run_id, status, "scheduled", began, ended, "bench", 1, "", ""))


def reset(cfg: dict) -> None:
    """Remove what a W3 repetition added, so the next one starts from the same log."""
    from django_rocket.models import SchedulerInstance, SchedulerLease, TaskRun

    TaskRun.objects.exclude(host="bench").delete()
    SchedulerLease.objects.all().delete()
    SchedulerInstance.objects.all().delete()


def run(cfg: dict) -> None:
    try:
        from django_rocket.engine.scheduler import Scheduler
    except ModuleNotFoundError:  # a --baseline from before the engine/ package
        from django_rocket.scheduler import Scheduler

    cpu: list[float] = []
    wall: list[float] = []

    class BenchScheduler(Scheduler):
        def startup(self) -> None:
            super().startup()
            emit("READY")

        def tick(self) -> float:
            c, w = time.thread_time(), time.perf_counter()
            result = super().tick()
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - w)
            return result

        def shutdown(self) -> None:
            emit("STOPPING")
            super().shutdown()

    t_run = time.time()
    code = BenchScheduler(duration=cfg["seconds"]).run()
    emit("STOPPED")
    write_result(cfg, {"exit_code": code, "tick_cpu": cpu, "tick_wall": wall, **runs(cfg, t_run)})


def runs(cfg: dict, since: float) -> dict:
    """Read the run log: every successful run started by this process, with its due instant."""
    from django_rocket.models import TaskRun

    interval = cfg.get("interval")
    rows = (
        TaskRun.objects.filter(started_at__gte=datetime.fromtimestamp(since, UTC))
        .exclude(host="bench")
        .order_by("task_id", "started_at")
        .values_list("task_id", "started_at", "status")
    )
    out = []
    previous: dict[int, float] = {}
    for task_id, started, status in rows.iterator(chunk_size=10_000):
        start = started.timestamp()
        # every(d): due once d has passed since the task's previous start.
        due = previous[task_id] + interval if interval and task_id in previous else None
        previous[task_id] = start
        if status == "success":
            out.append((start, due))
    return {"runs": out}


def main() -> None:
    cfg = load_config()
    configure(cfg)
    mode = cfg["mode"]
    if mode == "migrate":
        migrate()
    elif mode == "prefill":
        prefill(cfg)
    elif mode == "reset":
        reset(cfg)
    else:
        run(cfg)


if __name__ == "__main__":
    main()
