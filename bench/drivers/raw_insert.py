"""The physical limits for W4: one Python process writing run-shaped rows.

Inserts rows shaped like a run's start into django-rocket's own run-log table (the
database is migrated by the harness), through the DB-API driver with no ORM: first one
row per INSERT + COMMIT for ``seconds`` seconds, then 1,000 rows per transaction (one
``executemany``) for ``seconds`` seconds, and reports both rates. A run costs two row
writes (its start and its finish), so half the batched rate is what one process can
record at most: the "two-writes-a-run limit". Run ids are time-ordered, as django-rocket's;
a third window inserts batches with random (version 4) ids, the limit as measured until
December 2026, when the issues' targets were set against it.

A fourth window records runs as W4 makes them, with nothing else: each transaction
inserts the starts of W4's 100 tasks and finishes the previous transaction's 100 runs
(an UPDATE by run id of what a finish sets), the rows through ``executemany``. Its rate is
the "run-recording limit in W4's batches": a finish is an UPDATE that moves a row's
status and finish time, so every index holding them gets a new entry, and W4's
transactions carry at most 100 runs, not 1,000 rows.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import emit, load_config, write_result  # noqa: E402

BATCH = 1000
W4_TASKS = 100  # W4's task count: at most this many starts and finishes a transaction


def uuid7() -> uuid.UUID:
    """A time-ordered id (UUID version 7) as django-rocket gives its runs (recorder.new_run_ids).

    With random version 4 ids each row would go to a random page of the run id's index,
    which django-rocket's own rows no longer pay: the limit would be measured low.
    """
    value = (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF) << 80
    value |= int.from_bytes(os.urandom(10), "big") & ((1 << 80) - 1)
    value = value & ~(0xF << 76) | 7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant RFC 9562
    return uuid.UUID(int=value)


SQL = (
    "INSERT INTO django_rocket_taskrun (task_id, run_id, status, {q}trigger{q}, started_at, host, "
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
        sql, fmt = SQL.format(p="?", q='"'), "sqlite"
    elif db["engine"] == "mariadb":
        import MySQLdb

        # As django-rocket's connection: utf8mb4, READ COMMITTED, autocommit off.
        con = MySQLdb.connect(
            host="127.0.0.1", port=3306, user="root", database=db["name"], charset="utf8mb4"
        )
        con.cursor().execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        sql, fmt = SQL.format(p="%s", q="`"), "mariadb"
    else:
        import psycopg

        con = psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db['name']}")
        sql, fmt = SQL.format(p="%s", q='"'), "pg"
    cur = con.cursor()
    # Naive UTC on MariaDB, as Django stores an aware datetime in a DATETIME column.
    created = datetime.now(UTC).replace(tzinfo=None) if fmt == "mariadb" else datetime.now(UTC)
    cur.execute(
        "INSERT INTO django_rocket_task (name, func, start_cond, end_cond, start_cond_override,"
        " end_cond_override, source, parameters, timeout, execution, description, enabled,"
        " declared, created_at, updated_at) VALUES ('raw', 'x', 'true', '', '', '', 'settings',"
        " '{}', '', 'thread', '',"
        + (" 1, 1, ?, ?)" if fmt == "sqlite" else " true, true, %s, %s)"),
        (created.isoformat(), created.isoformat()) if fmt == "sqlite" else (created, created),
    )
    if fmt != "sqlite":
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
                cur.execute(sql, (task_id, uuid7().hex, now.isoformat(" ")))
                cur.execute("COMMIT")
            elif fmt == "mariadb":  # hex: what MySQL's char(32) and MariaDB's uuid columns take
                cur.execute(sql, (task_id, uuid7().hex, now.replace(tzinfo=None)))
                con.commit()
            else:
                cur.execute(sql, (task_id, uuid7(), now))
                con.commit()
            n += 1
    elapsed = time.perf_counter() - start
    # The same rows, BATCH to a transaction: with time-ordered ids, then with random ones.
    batched, batched_elapsed = batches(cur, con, sql, fmt, task_id, cfg["seconds"], uuid7)
    batched_v4, batched_v4_elapsed = batches(
        cur, con, sql, fmt, task_id, cfg["seconds"], uuid.uuid4
    )
    recorded, recorded_elapsed = record_runs(cur, con, sql, fmt, task_id, cfg["seconds"])
    floor, floor_elapsed = record_runs(
        cur, con, sql, fmt, task_id, cfg["seconds"], workers=ThreadRuns()
    )
    emit("STOPPING")
    con.close()
    write_result(
        cfg,
        {
            "inserted": n,
            "elapsed": elapsed,
            "batched": batched,
            "batched_elapsed": batched_elapsed,
            "batched_v4": batched_v4,
            "batched_v4_elapsed": batched_v4_elapsed,
            "recorded": recorded,
            "recorded_elapsed": recorded_elapsed,
            "floor": floor,
            "floor_elapsed": floor_elapsed,
            "runs": [],
        },
    )


def batches(
    cur, con, sql: str, fmt: str, task_id: int, seconds: float, make_id
) -> tuple[int, float]:
    """Insert BATCH rows per transaction for ``seconds``; return (rows, elapsed seconds)."""
    end = time.perf_counter() + seconds
    inserted = 0
    start = time.perf_counter()
    while time.perf_counter() < end:
        now = datetime.now(UTC)
        if fmt == "sqlite":
            at = now.isoformat(" ")
            rows = [(task_id, make_id().hex, at) for _ in range(BATCH)]
            cur.execute("BEGIN")
            cur.executemany(sql, rows)
            cur.execute("COMMIT")
        else:
            rows = [(task_id, make_id(), now) for _ in range(BATCH)]
            cur.executemany(sql, rows)
            con.commit()
        inserted += BATCH
    return inserted, time.perf_counter() - start


FINISH_SQL = (
    "UPDATE django_rocket_taskrun SET status = 'success', finished_at = {p}, runtime = {p}, "
    "message = '', exc_text = '', exception_types = '[]' WHERE run_id = {p}"
)


def record_runs(
    cur, con, sql: str, fmt: str, task_id: int, seconds: float, workers: ThreadRuns | None = None
) -> tuple[int, float]:
    """W4's runs with no scheduling: each transaction starts 100 and finishes the last 100.

    With ``workers``, the "thread-run floor": each run's function (one that does nothing)
    is called in a worker thread once its start is committed, as W4's runs are, and a
    transaction starts again the tasks whose runs reported back since the last one and
    finishes those runs. It is the least any scheduler with thread runs does in Python
    while keeping a run's row committed before its function starts.

    Return (runs recorded, elapsed seconds): a run counts once its finish is committed.
    """
    finish = FINISH_SQL.format(p="?" if fmt == "sqlite" else "%s")
    end = time.perf_counter() + seconds
    recorded = 0
    previous: list = []
    due = W4_TASKS
    start = time.perf_counter()
    while time.perf_counter() < end:
        now = datetime.now(UTC)
        ids = [uuid7() for _ in range(due)]
        runtime = timedelta(microseconds=150)
        if fmt == "sqlite":
            at = now.isoformat(" ")
            starts = [(task_id, i.hex, at) for i in ids]
            finishes = [(at, 150, i.hex) for i in previous]
            cur.execute("BEGIN")
            cur.executemany(sql, starts)
            cur.executemany(finish, finishes)
            cur.execute("COMMIT")
        elif fmt == "mariadb":  # naive UTC; a duration is a bigint of microseconds
            at = now.replace(tzinfo=None)
            cur.executemany(sql, [(task_id, i.hex, at) for i in ids])
            if previous:
                cur.executemany(finish, [(at, 150, i.hex) for i in previous])
            con.commit()
        else:
            cur.executemany(sql, [(task_id, i, now) for i in ids])
            if previous:
                cur.executemany(finish, [(now, runtime, i) for i in previous])
            con.commit()
        recorded += len(previous)
        if workers is None:
            previous = ids
            continue
        for i in ids:  # committed: their functions may start
            workers.submit(i)
        previous = workers.ended()
        due = len(previous)
    if workers is not None:
        workers.close()
    return recorded, time.perf_counter() - start


class ThreadRuns:
    """Worker threads that call a run's function and hand back the run ids that ended."""

    THREADS = 16

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._ended: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, daemon=True) for _ in range(self.THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while (run_id := self._jobs.get()) is not None:
            nothing()
            self._ended.put(run_id)

    def submit(self, run_id: uuid.UUID) -> None:
        self._jobs.put(run_id)

    def ended(self) -> list[uuid.UUID]:
        """The runs that ended since the last call, waiting for one if none has."""
        ended = [self._ended.get()]
        while True:
            try:
                ended.append(self._ended.get_nowait())
            except queue.Empty:
                return ended

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


def nothing() -> None:
    """W4's task: it does nothing."""


if __name__ == "__main__":
    main()
