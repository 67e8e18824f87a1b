"""SQLite on a disk that fills up: no run starts without its row, none is lost.

SQLite refuses a write it has no room for ("database or disk is full"), at a statement
or at the commit. The scheduler must take it as it takes a database outage: runs whose
rows could not be written do not start, finishes wait (and are spooled, to another
disk), and once there is room again every run that started is recorded, by the same
process or by the next one. Tested with a real filesystem that fills: an 8 MB tmpfs
(mounting needs root; CI sets ROCKET_TMPFS=required), the spool on the usual disk.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import ROOT, wait_until, waiting_task

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "sqlite", reason="the database on a small disk is SQLite's file"
    ),
]


def tasks(tmp_path: Path) -> dict:
    """A run a second, and a long run that ends when the test says (while the disk is full)."""
    return {
        "a": {
            "func": "tests.support.tasks.noop",
            "start_cond": "every('1 second')",
            "execution": "thread",
        },
        "long": waiting_task(tmp_path, "thread"),
    }


def mount_refusal(mountpoint: Path) -> str:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    return done.stderr.strip() or f"mount exited {done.returncode}" if done.returncode else ""


@pytest.fixture
def small_disk(tmp_path):
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    reason = mount_refusal(mountpoint)
    if reason:
        if os.environ.get("ROCKET_TMPFS") == "required":
            pytest.fail(f"ROCKET_TMPFS=required but {reason}")
        pytest.skip(reason)
    yield mountpoint
    subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)


class Deployment:
    """``manage.py`` commands on a SQLite file of their own, spooling to ``spool``."""

    def __init__(self, database: Path, spool: Path, silence: bool, tasks: dict) -> None:
        self.database = database
        self.env = os.environ.copy()
        self.env.update(
            DATABASE_URL=f"sqlite:///{database}",
            DJANGO_SETTINGS_MODULE="tests.settings",
            PYTHONPATH=str(ROOT),
            ROCKET_TEST_TASKS=json.dumps(tasks),
            ROCKET_TEST_SETTINGS=json.dumps(
                {
                    "ROCKET_SPOOL_DIR": str(spool),
                    "ROCKET_LOG_RETRY": {"attempts": 3, "backoff": 0.2, "max_backoff": 0.5},
                    "ROCKET_SILENCE_TASK_LOGGING": silence,
                    "ROCKET_HEARTBEAT": "1 second",
                    # DEBUG: the repeats of an error are logged there, in full.
                    "LOGGING": {
                        "version": 1,
                        "disable_existing_loggers": False,
                        "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
                        "handlers": {
                            "stderr": {"class": "logging.StreamHandler", "formatter": "plain"}
                        },
                        "loggers": {"django_rocket": {"handlers": ["stderr"], "level": "DEBUG"}},
                    },
                }
            ),
            ROCKET_TEST_PARENT=str(os.getpid()),
        )
        self.logs: list[Path] = []

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=self.env, check=True)

    def scheduler(self) -> subprocess.Popen:
        log = self.database.parent.parent / f"scheduler-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("w") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "django", "runscheduler"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return "".join(log.read_text() for log in self.logs)

    def statuses(self) -> dict[str, int]:
        with sqlite3.connect(self.database, timeout=30) as db:
            rows = db.execute(
                "SELECT status, COUNT(*) FROM django_rocket_taskrun GROUP BY status"
            ).fetchall()
        return dict(rows)

    def successes(self) -> int:
        return self.statuses().get("success", 0)


def fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until its filesystem has no room left."""
    filler = directory / "filler"
    chunk = bytes(64 * 1024)
    with filler.open("wb") as out:
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("silence", [True, False], ids=["silenced", "default"])
def test_a_full_disk_starts_no_run_without_its_row_and_loses_none(small_disk, tmp_path, silence):
    spool = tmp_path / "spool"
    deployment = Deployment(small_disk / "db.sqlite3", spool, silence, tasks(tmp_path))
    deployment.manage("migrate", "-v0")
    proc = deployment.scheduler()
    try:
        wait_until((tmp_path / "started").exists, what="the long run to start")
        wait_until(lambda: deployment.successes() >= 2, what="runs before the disk fills")
        filler = fill(small_disk)
        # Writes that fit in pages SQLite has already go on for a while; then none does.
        wait_until(
            lambda: deployment.output().count("Could not record the start") >= 3,
            limit=60,
            what="starts to fail",
        )
        (tmp_path / "release").write_text("go")  # the long run ends: its finish cannot be written
        if silence:
            wait_until(
                lambda: "kept in memory and spooled to" in deployment.output(),
                what="the finish to be spooled",
            )
            assert proc.poll() is None, deployment.output()
        else:  # the run log could not be written: the scheduler stops, the finish spooled
            assert proc.wait(timeout=30) == 1, deployment.output()
            assert "Shutting down: the run log could not be written" in deployment.output()
        assert len(list(spool.glob("spool-*"))) == 1
        filler.unlink()
        if not silence:
            proc = deployment.scheduler()  # the next one records what was spooled
        wait_until(
            lambda: deployment.statuses().get("running", 0) == 0, what="the long run's finish"
        )
        after = deployment.successes()
        wait_until(lambda: deployment.successes() >= after + 3, what="runs once there is room")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    output = deployment.output()
    assert code == 0, output
    statuses = deployment.statuses()
    # Every run that started (its "run" line is logged once its row is committed) is
    # recorded, and with its own outcome: none left running, none taken for a crash.
    assert set(statuses) == {"success"}, (statuses, output)
    assert statuses["success"] == output.count("' run\n"), output
    with sqlite3.connect(deployment.database) as db:
        (result,) = db.execute(
            "SELECT r.result FROM django_rocket_taskrun r JOIN django_rocket_task t "
            "ON r.task_id = t.id WHERE t.name = 'long'"
        ).fetchone()
    assert json.loads(result) == "released"
    assert not list(spool.glob("spool-*")), "the spool was not applied"
    # A failing start a tick, yet one ERROR with its traceback: the repeats went to DEBUG
    # (the outage lasted less than a minute).
    assert output.count("ERROR django_rocket.scheduler: Could not record the start") == 1
