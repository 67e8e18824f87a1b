"""The spool: private, written atomically, read defensively; a bad file is never fatal.

Every fault here once broke the spool: a symlink planted at its path, a directory
another user owns, a torn or planted line, a status the database refuses, a crash
between writing and renaming.
"""

import json
import os
import stat
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from django_rocket.checks import check_settings
from django_rocket.engine import spool
from django_rocket.engine.recorder import Recorder
from django_rocket.engine.scheduler import Scheduler
from django_rocket.executors.outcome import Outcome
from django_rocket.models import RunStatus, Task, TaskRun
from tests.support.triggers import allow_run_updates, refuse_run_updates

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED = datetime(2026, 3, 2, 9, 5, tzinfo=UTC)
OTHER_UID = 12345  # a user that is not this one (the tests run as root, who can chown)


@pytest.fixture
def spool_dir(settings, tmp_path):
    path = tmp_path / "spool"
    settings.ROCKET_SPOOL_DIR = str(path)
    return path


def running_run(name: str = "t", status: str = RunStatus.RUNNING) -> TaskRun:
    task, _ = Task.objects.get_or_create(
        name=name, defaults={"func": "tests.support.tasks.noop", "start_cond": "false"}
    )
    return TaskRun.objects.create(
        task=task, run_id=uuid.uuid4(), status=status, started_at=FINISHED - timedelta(minutes=5)
    )


def line(run: TaskRun, **changes: object) -> str:
    data = {
        "run_id": str(run.run_id),
        "task": run.task.name,
        "status": "success",
        "finished_at": FINISHED.isoformat(),
        "message": "",
        "exc_text": "",
        "result": {"rows": 3},
        **changes,
    }
    return json.dumps(data) + "\n"


def plant(directory, text: str | bytes, name: str = "spool-host-1-1.jsonl"):
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def apply(clock) -> None:
    Recorder(clock, on_fatal=lambda what, exc: pytest.fail(f"fatal: {what}")).apply_spools()


def scheduler_logs(caplog, level: str = "ERROR") -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "django_rocket.scheduler" and r.levelname == level
    ]


def status(run: TaskRun) -> str:
    return TaskRun.objects.get(pk=run.pk).status


# -- writing


def test_created_directory_and_files_are_private(settings, tmp_path, monkeypatch):
    settings.ROCKET_SPOOL_DIR = None
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    written = spool.Spool()
    written.open_for("host", 1, 1)
    written.write([Outcome(str(uuid.uuid4()), "t", "success", FINISHED)])
    assert written.path is not None
    directory = written.path.parent
    assert directory.parent == tmp_path / "state" / "django-rocket"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(written.path.stat().st_mode) == 0o600
    assert [p.name for p in directory.iterdir()] == [written.path.name]  # no temporary left


def test_the_default_directory_is_one_per_database(settings, tmp_path, monkeypatch):
    settings.ROCKET_SPOOL_DIR = None
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    first = spool.spool_location()
    monkeypatch.setitem(connection.settings_dict, "NAME", "another_project")
    assert spool.spool_location() != first
    monkeypatch.setenv("XDG_STATE_HOME", "relative/path")  # not absolute: ignored (XDG)
    assert str(spool.spool_location()).startswith(os.path.expanduser("~/.local/state/"))


def test_a_symlink_planted_at_the_spool_path_is_replaced_not_followed(spool_dir, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    written = spool.Spool()
    written.open_for("host", 1, 1)
    assert written.path is not None
    spool_dir.mkdir(mode=0o700)
    written.path.symlink_to(victim)
    assert written.write([Outcome(str(uuid.uuid4()), "t", "success", FINISHED)])
    assert victim.read_text() == "precious"
    assert not written.path.is_symlink()
    assert '"status": "success"' in written.path.read_text()
    assert stat.S_IMODE(written.path.stat().st_mode) == 0o600


def test_a_write_replaces_the_file_whole(spool_dir):
    written = spool.Spool()
    written.open_for("host", 1, 1)
    written.write([Outcome(str(uuid.uuid4()), "t", "fail", FINISHED) for _ in range(3)])
    written.write([Outcome(str(uuid.uuid4()), "t", "success", FINISHED)])
    assert written.path is not None
    assert len(written.path.read_text().splitlines()) == 1
    assert [p.name for p in spool_dir.iterdir()] == [written.path.name]
    written.clear()
    assert list(spool_dir.iterdir()) == []


# -- the directory


def test_a_directory_another_user_owns_is_neither_read_nor_written(
    spool_dir, clock, caplog, tmp_path
):
    run = running_run()
    planted = plant(spool_dir, line(run, status="fail"))
    spool_dir.chmod(0o777)
    os.chown(spool_dir, OTHER_UID, OTHER_UID)
    os.chown(planted, OTHER_UID, OTHER_UID)
    apply(clock)
    assert status(run) == RunStatus.RUNNING
    assert planted.exists()
    (error,) = scheduler_logs(caplog)
    assert str(spool_dir) in error and f"uid {OTHER_UID}" in error
    written = spool.Spool()
    written.open_for("host", 1, 1)
    assert not written.write([Outcome(str(run.run_id), "t", "success", FINISHED)])
    assert [p.name for p in spool_dir.iterdir()] == [planted.name]
    assert len(scheduler_logs(caplog)) == 2  # the refused write is logged too
    (warning,) = [m for m in check_settings() if m.id == "django_rocket.W002"]
    assert str(spool_dir) in warning.msg and f"uid {OTHER_UID}" in warning.msg


def test_the_scheduler_starts_with_a_refused_spool_directory(settings, spool_dir, clock):
    spool_dir.mkdir(mode=0o777)
    os.chown(spool_dir, OTHER_UID, OTHER_UID)
    settings.ROCKET_TASKS = {
        "t": {"func": "tests.support.tasks.noop", "start_cond": "daily", "execution": "main"}
    }
    assert Scheduler(clock=clock, once=True).run() == 0
    assert TaskRun.objects.get().status == RunStatus.SUCCESS


def test_an_own_directory_open_to_others_is_made_private(spool_dir, clock, caplog):
    run = running_run()
    plant(spool_dir, line(run))
    spool_dir.chmod(0o777)
    messages = [m for m in check_settings() if m.id == "django_rocket.W002"]
    assert len(messages) == 1 and "0o777" in messages[0].msg
    apply(clock)
    assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
    assert status(run) == RunStatus.SUCCESS
    assert any("0700" in m for m in scheduler_logs(caplog, "WARNING"))
    assert [m for m in check_settings() if m.id == "django_rocket.W002"] == []


def test_a_spool_dir_that_is_not_text_is_an_error(settings):
    settings.ROCKET_SPOOL_DIR = 5
    assert [m.id for m in check_settings()] == ["django_rocket.E033"]
    settings.ROCKET_SPOOL_DIR = ""
    assert [m.id for m in check_settings()] == ["django_rocket.E033"]


# -- reading


def test_a_torn_last_line_is_logged_and_the_scheduler_starts(settings, spool_dir, clock, caplog):
    good, torn = running_run("a"), running_run("b")
    path = plant(spool_dir, line(good) + line(torn)[:40])
    settings.ROCKET_TASKS = {
        "c": {"func": "tests.support.tasks.noop", "start_cond": "daily", "execution": "main"}
    }
    assert Scheduler(clock=clock, once=True).run() == 0
    assert status(good) == RunStatus.SUCCESS
    assert status(torn) == RunStatus.RUNNING
    assert not path.exists()
    assert (spool_dir / f"{path.name}.rejected").exists()
    (error,) = scheduler_logs(caplog)
    assert f"{path.name} line 2" in error


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda run: "this is not JSON\n", "not JSON"),
        (lambda run: "[1, 2, 3]\n", "not an object"),
        (lambda run: line(run, status="bogus"), "status"),
        (lambda run: line(run, status="running"), "status"),
        (lambda run: line(run, run_id="not-a-uuid"), "run_id"),
        (lambda run: line(run, run_id=5), "run_id"),
        (lambda run: line(run, message=["not", "text"]), "message"),
        (lambda run: line(run, finished_at="yesterday"), "finished_at"),
        (lambda run: line(run, finished_at="2026-03-02T09:05:00"), "finished_at"),  # naive
        (lambda run: line(run, pwned=True), "pwned"),
        (lambda run: line(run, exception_types="builtins.OSError"), "exception_types"),
        (lambda run: line(run, exception_types=[1, 2]), "exception_types"),
        (lambda run: '{"run_id": ' * 100_000 + "\n", "not JSON"),  # RecursionError
        (lambda run: b"\xff\xfe not UTF-8\n", "UTF-8"),
        (lambda run: line(run, message="x" * 3_000_000), "longer than"),
    ],
)
def test_a_bad_line_is_logged_with_its_number_and_its_file_moved_aside(
    spool_dir, clock, caplog, monkeypatch, make, reason
):
    monkeypatch.setattr(spool, "MAX_LINE_BYTES", 2_000_000)
    good, bad = running_run("a"), running_run("b")
    made = make(bad)
    path = plant(
        spool_dir, line(good).encode() + (made if isinstance(made, bytes) else made.encode())
    )
    apply(clock)
    assert status(good) == RunStatus.SUCCESS  # the good lines are still written
    assert status(bad) == RunStatus.RUNNING
    assert not path.exists() and (spool_dir / f"{path.name}.rejected").exists()
    (error,) = scheduler_logs(caplog)
    assert f"{path.name} line 2" in error and reason in error


def test_a_spooled_failure_keeps_its_exception_types(spool_dir, clock):
    run = running_run()
    written = spool.Spool()
    written.open_for("host", 1, 1)
    outcome = Outcome(str(run.run_id), "t", "fail", FINISHED, exception_types=("m.E", "b.B"))
    assert written.write([outcome])
    apply(clock)
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.status, row.exception_types) == (RunStatus.FAIL, ["m.E", "b.B"])


def test_a_line_from_before_exception_types_is_read(spool_dir, clock):
    run = running_run()
    plant(spool_dir, line(run, status="fail"))
    apply(clock)
    assert TaskRun.objects.get(pk=run.pk).status == RunStatus.FAIL


def test_a_planted_line_for_a_finished_run_changes_nothing(spool_dir, clock, caplog):
    done = running_run(status=RunStatus.SUCCESS)
    unknown = running_run("u")
    TaskRun.objects.filter(pk=unknown.pk).delete()
    path = plant(spool_dir, line(done, status="fail", message="planted") + line(unknown))
    apply(clock)
    row = TaskRun.objects.get(pk=done.pk)
    assert (row.status, row.message) == (RunStatus.SUCCESS, "")
    warnings = scheduler_logs(caplog, "WARNING")
    assert any(str(done.run_id) in m and "success" in m for m in warnings)
    assert any(str(unknown.run_id) in m and "not in the run log" in m for m in warnings)
    assert not path.exists()


@pytest.fixture
def test_after_an_oversized_line_the_next_line_is_read(spool_dir, clock, caplog, monkeypatch):
    monkeypatch.setattr(spool, "MAX_LINE_BYTES", 1000)
    big, good = running_run("a"), running_run("b")
    path = plant(spool_dir, line(big, message="x" * 5000) + line(good))
    apply(clock)
    assert (status(big), status(good)) == (RunStatus.RUNNING, RunStatus.SUCCESS)
    (error,) = scheduler_logs(caplog)
    assert f"{path.name} line 1" in error


def test_a_spooled_finish_is_a_conditional_update(clock):
    """Even past the check of the run's status (a race with crash recovery)."""
    done = running_run(status=RunStatus.CRASH)
    live = running_run("b")
    recorder = Recorder(clock, on_fatal=lambda what, exc: pytest.fail(what))
    outcomes = [Outcome(str(r.run_id), r.task.name, "success", FINISHED) for r in (done, live)]
    assert recorder._write_spooled(outcomes) == []
    assert (status(done), status(live)) == (RunStatus.CRASH, RunStatus.SUCCESS)


@pytest.fixture
def refuse_fail_status():
    """Make the database refuse (an IntegrityError) any run becoming 'fail'."""
    refuse_run_updates("rocket_refuse", "no failures here", only_status="fail")
    yield
    allow_run_updates("rocket_refuse")


def test_a_status_the_database_refuses_does_not_hold_start_up(
    spool_dir, clock, caplog, refuse_fail_status
):
    refused, fine = running_run("a"), running_run("b")
    path = plant(spool_dir, line(refused, status="fail") + line(fine))
    apply(clock)  # returns: before, start-up retried for ever as if the database were down
    assert status(refused) == RunStatus.RUNNING  # left to crash recovery
    assert status(fine) == RunStatus.SUCCESS
    assert any(str(refused.run_id) in m for m in scheduler_logs(caplog))
    assert (spool_dir / f"{path.name}.rejected").exists()


def test_a_temporary_file_left_by_a_crash_is_ignored_then_cleaned(spool_dir, clock, caplog):
    run = running_run()
    stale = plant(spool_dir, line(run, status="fail"), ".spool-host-1-1.jsonl.0a1b2c3d.tmp")
    fresh = plant(spool_dir, line(run, status="fail"), ".spool-host-2-2.jsonl.0a1b2c3d.tmp")
    old = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    os.utime(stale, (old, old))
    apply(clock)
    assert status(run) == RunStatus.RUNNING
    assert not stale.exists()  # a writer that old is gone
    assert fresh.exists()  # perhaps a live scheduler between its write and its rename


def test_a_planted_symlink_or_fifo_is_rejected_without_hanging(spool_dir, clock, tmp_path):
    run = running_run()
    outside = tmp_path / "outside.jsonl"
    outside.write_text(line(run, status="fail"))
    spool_dir.mkdir(mode=0o700)
    (spool_dir / "spool-link.jsonl").symlink_to(outside)
    os.mkfifo(spool_dir / "spool-fifo.jsonl")
    apply(clock)
    assert status(run) == RunStatus.RUNNING
    assert sorted(p.name for p in spool_dir.iterdir()) == [
        "spool-fifo.jsonl.rejected",
        "spool-link.jsonl.rejected",
    ]
    assert outside.exists()


def test_a_file_another_user_owns_is_rejected(spool_dir, clock, caplog):
    run = running_run()
    path = plant(spool_dir, line(run, status="fail"))
    os.chown(path, OTHER_UID, OTHER_UID)
    apply(clock)
    assert status(run) == RunStatus.RUNNING
    assert (spool_dir / f"{path.name}.rejected").exists()
    assert any(f"uid {OTHER_UID}" in m for m in scheduler_logs(caplog))


def test_spooled_finishes_round_trip(spool_dir, clock):
    run = running_run()
    written = spool.Spool()
    written.open_for("host", 1, 1)
    outcome = Outcome(str(run.run_id), "t", "fail", FINISHED, "boom", "Traceback ...", [1, "a"])
    written.write([outcome])
    apply(clock)
    row = TaskRun.objects.get(pk=run.pk)
    assert (row.status, row.finished_at, row.message, row.exc_text, row.result) == (
        "fail",
        FINISHED,
        "boom",
        "Traceback ...",
        [1, "a"],
    )
    assert row.runtime == timedelta(minutes=5)
    assert list(spool_dir.iterdir()) == []


def test_a_relative_spool_dir_stays_where_the_scheduler_started(
    settings, tmp_path, clock, monkeypatch
):
    """A thread run that changes the working directory does not move the spool.

    A relative ``ROCKET_SPOOL_DIR`` was resolved at each write, so finishes spooled after
    a task's ``os.chdir`` went to a directory the next scheduler, started where this one
    was, never reads: runs that happened were missing from the log.
    """
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    settings.ROCKET_SPOOL_DIR = "spool"
    monkeypatch.chdir(project)
    run = running_run()
    written = spool.Spool()
    written.open_for("host", 1, 1)
    os.chdir(elsewhere)  # what a task did, in a thread run of this process
    written.write([Outcome(str(run.run_id), "t", "success", FINISHED)])
    assert not (elsewhere / "spool").exists()
    os.chdir(project)  # the next scheduler starts where this one did
    apply(clock)
    assert status(run) == "success"


def test_an_outcome_too_large_for_a_line_is_spooled_cut(spool_dir, clock, monkeypatch):
    monkeypatch.setattr(spool, "MAX_LINE_BYTES", 200_000)
    run = running_run()
    written = spool.Spool()
    written.open_for("host", 1, 1)
    written.write([Outcome(str(run.run_id), "t", "fail", FINISHED, "m", "e" * 300_000, "r" * 1000)])
    apply(clock)
    row = TaskRun.objects.get(pk=run.pk)
    assert row.status == RunStatus.FAIL
    assert row.result is None and row.exc_text.endswith("eee") and len(row.exc_text) < 200_000
    assert "spool" in row.message


def test_a_file_its_live_scheduler_writes_again_meanwhile_is_left_to_it(spool_dir, clock, caplog):
    """A second scheduler on this host, started during an outage, applies the first's file.

    The first is alive, and spools again (a run ended) while the second writes what it
    read: the file is then another one, with a finish the second never read. It was
    deleted all the same, and that finish lived only in the first's memory.
    """
    first, later = running_run("first"), running_run("later")
    owner = spool.Spool()
    owner.open_for("host", 1, 1)
    ended = Outcome(str(first.run_id), "first", "success", FINISHED, "", "", None)
    also = Outcome(str(later.run_id), "later", "fail", FINISHED, "boom", "Traceback ...", None)
    owner.write([ended])
    recorder = Recorder(clock, on_fatal=lambda what, exc: pytest.fail(f"fatal: {what}"))

    def write_while_the_owner_spools(batch: list[Outcome]) -> list[Outcome]:
        owner.write([ended, also])  # what the live scheduler holds now
        return recorder._write_spooled(batch)

    with caplog.at_level("INFO", "django_rocket.scheduler"):
        spool.apply_spools(write_while_the_owner_spools)
    assert (status(first), status(later)) == (RunStatus.SUCCESS, RunStatus.RUNNING)
    assert owner.path is not None and owner.path.exists()  # left to its live writer
    assert "its scheduler wrote it again meanwhile" in caplog.text
    apply(clock)  # the owner died after all: the next start-up records the rest
    assert status(later) == RunStatus.FAIL
    assert list(spool_dir.iterdir()) == []
