"""W5's peer: django-celery-beat's DatabaseScheduler on the same 100,000 daily tasks.

Run with a throwaway virtualenv holding django-celery-beat (not this project's)::

    python3 -m venv /tmp/cb && /tmp/cb/bin/pip install django-celery-beat "Django>=5.2,<6"
    /tmp/cb/bin/python bench/w5_celery_beat.py --tasks 100000

Same shape as bench/w5_runtime_tasks.py: 100,000 periodic tasks at a minute staggered
over the day (1,320 crontabs), SQLite WAL. Prints one JSON line per step: start-up (the
scheduler built and its first tick), RSS, a quiet tick, and a tick after one task
changed (beat then reloads its whole schedule).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="rocket-w5-beat-")
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=["django_celery_beat"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(tmp, "beat.sqlite3"),
                "OPTIONS": {
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                    "timeout": 30,
                },
            }
        },
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    from celery import Celery
    from django.core.management import call_command
    from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks
    from django_celery_beat.schedulers import DatabaseScheduler

    call_command("migrate", verbosity=0)
    now = time.gmtime()
    crontabs = {}
    batch = []
    for i in range(args.tasks):
        minute = 120 + (i * 22 * 60) // args.tasks
        at = (now.tm_hour * 60 + now.tm_min + minute) % 1440
        key = (at // 60, at % 60)
        if key not in crontabs:
            crontabs[key] = CrontabSchedule.objects.create(
                minute=str(key[1]), hour=str(key[0]), timezone="UTC"
            )
        batch.append(PeriodicTask(name=f"w5-{i:06d}", task="bench.noop", crontab=crontabs[key]))
        if len(batch) == 5000:
            PeriodicTask.objects.bulk_create(batch)
            batch = []
    PeriodicTask.objects.bulk_create(batch)
    PeriodicTasks.update_changed()

    app = Celery("bench", broker="memory://")
    app.conf.beat_max_loop_interval = 5
    before = rss_mb()
    started = time.perf_counter()
    scheduler = DatabaseScheduler(app=app, lazy=False)
    scheduler.tick()
    startup = time.perf_counter() - started
    print(
        json.dumps(
            {
                "step": "startup",
                "tasks": args.tasks,
                "seconds": round(startup, 2),
                "rss_mb": round(rss_mb(), 1),
                "rss_before_mb": round(before, 1),
            }
        ),
        flush=True,
    )
    walls = []
    for _ in range(10):
        w = time.perf_counter()
        scheduler.tick()
        walls.append(time.perf_counter() - w)
    print(json.dumps({"step": "quiet_tick", "wall_ms": round(statistics.median(walls) * 1000, 3)}))
    changed = []
    for i in range(3):
        task = PeriodicTask.objects.get(name=f"w5-{i:06d}")
        task.enabled = not task.enabled
        task.save()  # beat's signal marks the schedule changed
        w = time.perf_counter()
        scheduler.tick()
        changed.append(time.perf_counter() - w)
    print(
        json.dumps(
            {
                "step": "tick_after_one_change",
                "wall_ms": round(statistics.median(changed) * 1000, 1),
                "rss_mb": round(rss_mb(), 1),
            }
        ),
        flush=True,
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
