"""A long run: does the scheduler's memory stay flat with uptime and with the number of runs?

1,000 tasks on ``every('1 second')`` (thread runs) for ``--minutes`` (default 60), with
and without a counting condition, on SQLite (WAL) and PostgreSQL; the scheduler's RSS
is printed every minute. Target: flat within 10 MB after the first two minutes.
Configurations run one after the other, each in a fresh process on a fresh database::

    .venv/bin/python bench/memory_soak.py                          # 4 configurations x 60 min
    .venv/bin/python bench/memory_soak.py --minutes 10 --db sqlite --counting no

The counting condition is ``every('1 second') & (failed.today < 1000000) &
(started.this_hour >= 0)``: it starts as often, but its task's conditions count runs
per period (which, before issue 23, made the snapshot keep 35 days of runs).

Each line also gives the process's thread count and, with ``--traced``, the memory
Python objects hold (tracemalloc with one frame; it costs CPU and about 30 MB of RSS of
its own). When RSS moves and the traced total does not, it is not the scheduler's
objects that grow: RSS follows the number of worker threads (about 20 KB each), and the
allocator keeps part of a burst of threads' memory after they exit (issue 23).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PG_SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
PLAIN = "every('1 second')"
COUNTING = "every('1 second') & (failed.today < 1000000) & (started.this_hour >= 0)"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(cfg: dict) -> None:
    """Run one configuration in this process; print one JSON line a minute."""
    if cfg.get("traced"):
        tracemalloc.start(1)
    sys.path.insert(0, str(BENCH / "drivers"))
    sys.path.insert(0, str(ROOT))
    from rocket import configure, migrate  # the benchmark driver's settings

    tasks = {"prefix": "soak", "n": cfg["tasks"], "cond": cfg["cond"], "execution": "thread"}
    configure({"db": cfg["db"], "tasks": tasks})
    migrate()
    from django_rocket.engine.scheduler import Scheduler
    from django_rocket.models import TaskRun

    started = time.monotonic()
    stop = threading.Event()

    def sample() -> None:
        minute = 0
        while not stop.wait(60.0 - (time.monotonic() - started) % 60.0):
            minute += 1
            scheduler = holder.get("scheduler")
            history = scheduler.planner.history if scheduler is not None else None
            size = history.size() if history is not None and hasattr(history, "size") else None
            line = {
                "minute": minute,
                "rss_mb": round(rss_mb(), 1),
                "snapshot_items": size,
                "threads": threading.active_count(),
            }
            if tracemalloc.is_tracing():
                line["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
            print(json.dumps(line), flush=True)

    holder: dict[str, Scheduler] = {}
    sampler = threading.Thread(target=sample, daemon=True)
    print(json.dumps({"minute": 0, "rss_mb": round(rss_mb(), 1)}), flush=True)
    sampler.start()
    scheduler = holder["scheduler"] = Scheduler(duration=cfg["minutes"] * 60.0 + 1.0)
    scheduler.run()
    stop.set()
    runs = TaskRun.objects.count()
    print(json.dumps({"done": True, "runs": runs, "seconds": time.monotonic() - started}))


def pg_database(name: str, create: bool) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG_SERVER) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')


def run_configuration(
    db: str, counting: bool, minutes: float, tasks: int, traced: bool = False
) -> dict:
    label = f"{db}, {'counting' if counting else 'plain'}"
    print(f"== {label}: {tasks} tasks on {COUNTING if counting else PLAIN}, {minutes} min")
    workdir = tempfile.mkdtemp(prefix="rocket-soak-")
    if db == "sqlite":
        database = {"engine": "sqlite", "path": os.path.join(workdir, "soak.sqlite3")}
    else:
        name = f"rocket_soak_{os.getpid()}"
        pg_database(name, create=True)
        database = {"engine": "pg", "name": name}
    cfg = {
        "db": database,
        "tasks": tasks,
        "cond": COUNTING if counting else PLAIN,
        "minutes": minutes,
        "traced": traced,
    }
    samples: list[dict] = []
    done: dict = {}
    try:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(cfg)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            data = json.loads(line)
            if data.get("done"):
                done = data
                continue
            samples.append(data)
            traced_mb = f"  traced {data['traced_mb']:6.1f} MB" if "traced_mb" in data else ""
            print(
                f"   minute {data['minute']:3d}: RSS {data['rss_mb']:7.1f} MB{traced_mb}"
                f"  snapshot items {data.get('snapshot_items')}  threads {data.get('threads')}",
                flush=True,
            )
        proc.wait()
    finally:
        if db == "pg":
            pg_database(database["name"], create=False)
    settled = [s["rss_mb"] for s in samples if s["minute"] >= 2]
    summary = {
        "label": label,
        "minutes": minutes,
        "runs": done.get("runs"),
        "runs_per_s": round(done["runs"] / done["seconds"], 1) if done else None,
        "rss_at_2": settled[0] if settled else None,
        "rss_last": settled[-1] if settled else None,
        "spread_after_2": round(max(settled) - min(settled), 1) if settled else None,
        "threads_after_2": [
            min(s["threads"] for s in samples if s["minute"] >= 2),
            max(s["threads"] for s in samples if s["minute"] >= 2),
        ]
        if settled
        else None,
    }
    traced_mbs = [s["traced_mb"] for s in samples if s["minute"] >= 2 and "traced_mb" in s]
    if traced_mbs:
        summary["traced_spread_after_2"] = round(max(traced_mbs) - min(traced_mbs), 1)
    print(f"   {json.dumps(summary)}", flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--db", choices=["sqlite", "pg", "both"], default="both")
    parser.add_argument("--counting", choices=["no", "yes", "both"], default="both")
    parser.add_argument(
        "--traced", action="store_true", help="also report tracemalloc's traced total"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    dbs = ["sqlite", "pg"] if args.db == "both" else [args.db]
    modes = [False, True] if args.counting == "both" else [args.counting == "yes"]
    results = [
        run_configuration(db, counting, args.minutes, args.tasks, args.traced)
        for db in dbs
        for counting in modes
    ]
    print("\nconfiguration            runs/s   RSS@2min   RSS last   spread after 2 min")
    for r in results:
        print(
            f"{r['label']:<24} {r['runs_per_s']!s:>6}   {r['rss_at_2']!s:>8}   "
            f"{r['rss_last']!s:>8}   {r['spread_after_2']!s:>8} MB"
        )


if __name__ == "__main__":
    main()
