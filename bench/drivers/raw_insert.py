"""The physical limit for W4: one Python process, one row per INSERT + COMMIT.

Inserts rows shaped like a run's start into django-rocket's own run-log table (the
database is migrated by the harness), through the DB-API driver with no ORM, for
``seconds`` seconds, and reports the rate.
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import emit, load_config, write_result  # noqa: E402

SQL = (
    'INSERT INTO django_rocket_taskrun (task_id, run_id, status, "trigger", started_at, host, '
    "pid, message, exc_text) VALUES ({p}, {p}, 'running', 'scheduled', {p}, 'raw', 1, '', '')"
)


def main() -> None:
    cfg = load_config()
    db = cfg["db"]
    if db["engine"] == "sqlite":
        import sqlite3

        con = sqlite3.connect(db["path"], isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        sql, fmt = SQL.format(p="?"), "sqlite"
    else:
        import psycopg

        con = psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db['name']}")
        sql, fmt = SQL.format(p="%s"), "pg"
    cur = con.cursor()
    cur.execute(
        "INSERT INTO django_rocket_task (name, func, start_cond, end_cond, execution, description,"
        " enabled, declared, created_at, updated_at) VALUES ('raw', 'x', 'true', '', 'thread', '',"
        + (" 1, 1, ?, ?)" if fmt == "sqlite" else " true, true, %s, %s)"),
        (datetime.now(UTC).isoformat(), datetime.now(UTC).isoformat())
        if fmt == "sqlite"
        else (datetime.now(UTC), datetime.now(UTC)),
    )
    if fmt == "pg":
        con.commit()
    cur.execute("SELECT id FROM django_rocket_task WHERE name = 'raw'")
    task_id = cur.fetchone()[0]
    emit("READY")
    end = time.perf_counter() + cfg["seconds"]
    n = 0
    start = time.perf_counter()
    while time.perf_counter() < end:
        for _ in range(20):
            now = datetime.now(UTC)
            if fmt == "sqlite":
                cur.execute("BEGIN")
                cur.execute(sql, (task_id, uuid.uuid4().hex, now.isoformat(" ")))
                cur.execute("COMMIT")
            else:
                cur.execute(sql, (task_id, uuid.uuid4(), now))
                con.commit()
            n += 1
    elapsed = time.perf_counter() - start
    emit("STOPPING")
    con.close()
    write_result(cfg, {"inserted": n, "elapsed": elapsed, "runs": []})


if __name__ == "__main__":
    main()
