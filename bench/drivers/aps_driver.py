"""Drive django-apscheduler 0.7 (APScheduler 3) for the benchmark, in its own venv.

Set up as its README shows: a scheduler with ``DjangoJobStore`` as the default job
store (which records every execution in ``DjangoJobExecution``) and the default
thread-pool executor; jobs added with ``replace_existing=True``.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import emit, load_config, write_result  # noqa: E402


def configure(cfg: dict) -> None:
    import django
    from django.conf import settings

    db = cfg["db"]
    if db["engine"] == "sqlite":
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": db["path"],
            # The same WAL settings django-rocket gets.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    else:
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": db["name"],
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": 5432,
        }
    settings.configure(
        SECRET_KEY="bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django_apscheduler",
        ],
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler"}},
            "loggers": {"apscheduler": {"handlers": ["stderr"], "level": "ERROR"}},
        },
    )
    django.setup()


def trigger(text: str):
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if text.startswith("every:"):
        return IntervalTrigger(seconds=float(text.split(":", 1)[1]))
    if text.startswith("daily_at:"):
        hour, minute = text.split(":", 1)[1].split(":")
        return CronTrigger(hour=int(hour), minute=int(minute))
    raise ValueError(text)


def run(cfg: dict) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler
    from django_apscheduler.jobstores import DjangoJobStore

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_jobstore(DjangoJobStore(), "default")
    spec = cfg["tasks"]
    for i in range(spec["n"]):
        scheduler.add_job(
            "bench_tasks:noop",
            trigger=trigger(spec["cond"]),
            id=f"{spec['prefix']}{i:05d}",
            max_instances=1,
            replace_existing=True,
        )
    t_run = time.time()
    scheduler.start()
    emit("READY")
    time.sleep(cfg["seconds"])
    emit("STOPPING")
    scheduler.shutdown(wait=True)
    emit("STOPPED")
    write_result(cfg, {"tick_cpu": [], "tick_wall": [], "runs": runs(t_run)})


def runs(since: float) -> list:
    """Successful executions: (finish, scheduled run time). The job does nothing, so the
    finish time stands for the start (an upper bound on it)."""
    from django_apscheduler.models import DjangoJobExecution

    rows = DjangoJobExecution.objects.filter(
        status=DjangoJobExecution.SUCCESS,
        run_time__gte=datetime.fromtimestamp(since, UTC) - timedelta(seconds=5),
    ).values_list("finished", "run_time")
    return [(float(finished), run_time.timestamp()) for finished, run_time in rows]


def main() -> None:
    cfg = load_config()
    configure(cfg)
    if cfg["mode"] == "migrate":
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
    else:
        run(cfg)


if __name__ == "__main__":
    main()
