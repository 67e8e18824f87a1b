"""Drive Rocketry 2.5.1 for the benchmark (runs in its own venv, installed by bench/run.py).

The SQL log is set up as Rocketry's documentation shows: a redbird ``SQLRepo`` over a
SQLAlchemy engine on a SQLite file, a ``log`` table (id, created, task_name, run_id,
action) and ``MinimalRunRecord``. The in-memory log is a redbird ``MemoryRepo``.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import emit, load_config, write_result  # noqa: E402

CREATE_LOG = """CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    created FLOAT,
    task_name TEXT,
    run_id TEXT,
    action TEXT
)"""


def condition(text: str):
    from rocketry.conds import daily, every, retry, true

    if text == "true":
        return true
    if text.startswith("every:"):
        return every(text.split(":", 1)[1])
    if text.startswith("daily_at:"):
        return daily.at(text.split(":", 1)[1])
    if text == "daily|retry(3)":
        return daily | retry(3)
    raise ValueError(text)


def sqlite_engine(path: str):
    import sqlalchemy.orm  # noqa: F401  (redbird uses sqlalchemy.orm without importing it)
    from sqlalchemy import create_engine, event

    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # the same WAL settings django-rocket gets
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def prefill(cfg: dict) -> None:
    """Fill the log table with (run, success|fail) pairs over the past year, ending yesterday."""
    spec = cfg["tasks"]
    names = [f"{spec['prefix']}{i:05d}" for i in range(spec["n"])]
    con = sqlite3.connect(cfg["db"]["path"])
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(CREATE_LOG)
    runs = cfg["rows"] // 2 // len(names)
    end = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = (end - timedelta(days=365)).timestamp()
    step = (end.timestamp() - start) / max(runs, 1)
    rng = random.Random(8)
    batch = []
    for k in range(runs):
        at = start + step * k
        for name in names:
            run_id = str(uuid.uuid4())
            outcome = "fail" if rng.random() < 0.1 and k != runs - 1 else "success"
            batch.append((at, name, run_id, "run"))
            batch.append((at + 1.0, name, run_id, outcome))
        if len(batch) >= 50_000:
            con.executemany(
                "INSERT INTO log (created, task_name, run_id, action) VALUES (?, ?, ?, ?)", batch
            )
            con.commit()
            batch.clear()
    if batch:
        con.executemany(
            "INSERT INTO log (created, task_name, run_id, action) VALUES (?, ?, ?, ?)", batch
        )
    con.commit()
    con.close()


def reset(cfg: dict) -> None:
    con = sqlite3.connect(cfg["db"]["path"])
    con.execute("DELETE FROM log WHERE created >= ?", (cfg["since"],))
    con.commit()
    con.close()


def run(cfg: dict) -> None:
    from redbird.repos import MemoryRepo, SQLRepo
    from rocketry import Rocketry
    from rocketry.core.schedule import Scheduler
    from rocketry.log import MinimalRunRecord

    if cfg["db"]["engine"] == "memory":
        repo = MemoryRepo(model=MinimalRunRecord)
    else:
        engine = sqlite_engine(cfg["db"]["path"])
        with engine.begin() as conn:
            conn.exec_driver_sql(CREATE_LOG)
        repo = SQLRepo(engine=engine, table="log", model=MinimalRunRecord, id_field="id")
    app = Rocketry(logger_repo=repo, config={"execution": "thread"})

    from bench_tasks import noop

    spec = cfg["tasks"]
    cond = condition(spec["cond"])
    for i in range(spec["n"]):
        app.session.create_task(
            func=noop, name=f"{spec['prefix']}{i:05d}", start_cond=cond, execution="thread"
        )

    cpu: list[float] = []
    wall: list[float] = []
    original = Scheduler.run_cycle

    def stop_later() -> None:
        time.sleep(cfg["seconds"])
        emit("STOPPING")
        app.session.shut_down()

    async def run_cycle(self):
        if not cpu and not wall:
            emit("READY")
            threading.Thread(target=stop_later, daemon=True).start()
        c, w = time.thread_time(), time.perf_counter()
        await original(self)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)

    Scheduler.run_cycle = run_cycle
    t_run = time.time()
    app.run()
    emit("STOPPED")
    write_result(cfg, {"tick_cpu": cpu, "tick_wall": wall, "runs": runs(cfg, repo, t_run)})


def runs(cfg: dict, repo, since: float) -> list:
    """Successful runs started by this process with the instant each became due."""
    if cfg["db"]["engine"] == "memory":
        records = [(r.task_name, r.run_id, r.action, r.created) for r in repo.filter_by().all()]
    else:
        con = sqlite3.connect(cfg["db"]["path"])
        records = con.execute(
            "SELECT task_name, run_id, action, created FROM log WHERE created >= ?", (since,)
        ).fetchall()
        con.close()
    records = [r for r in records if r[3] >= since]
    records.sort(key=lambda r: r[3])
    succeeded = {r[1] for r in records if r[2] == "success"}
    interval = cfg.get("interval")
    previous: dict[str, float] = {}
    out = []
    for task, run_id, action, created in records:
        if action != "run":
            continue
        # every(d): due once d has passed since the task's previous start (Rocketry's rule too).
        due = previous[task] + interval if interval and task in previous else None
        previous[task] = created
        if run_id in succeeded:
            out.append((created, due))
    return out


def main() -> None:
    cfg = load_config()
    {"prefill": prefill, "reset": reset, "run": run}[cfg["mode"]](cfg)


if __name__ == "__main__":
    main()
