"""``runscheduler`` through call_command, with the injected clock where time matters."""

import itertools
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count, F

from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun

pytestmark = pytest.mark.django_db(transaction=True)


def task(func: str, cond: str = "every('1 hour')", **extra) -> dict:
    return {"func": func, "start_cond": cond, "execution": "main", **extra}


def test_once_runs_due_tasks_and_records_them(settings):
    settings.ROCKET_TASKS = {
        "ok": task("tests.support.tasks.returns_value", parameters={"n": 2}),
        "bad": task("tests.support.tasks.fails"),
        "idle": task("tests.support.tasks.nothing_to_do"),
        "never": task("tests.support.tasks.noop", "false"),
    }
    call_command("runscheduler", "--once")
    runs = {r.task.name: r for r in TaskRun.objects.select_related("task")}
    assert set(runs) == {"ok", "bad", "idle"}
    ok, bad, idle = runs["ok"], runs["bad"], runs["idle"]
    assert ok.status == RunStatus.SUCCESS
    assert ok.result == {"n": 2, "items": [0, 1]}
    assert ok.trigger == RunTrigger.SCHEDULED
    assert ok.started_at <= ok.finished_at
    assert ok.runtime == ok.finished_at - ok.started_at
    assert ok.host and ok.pid
    assert bad.status == RunStatus.FAIL
    assert "ValueError: boom" in bad.message
    assert "Traceback (most recent call last)" in bad.exc_text
    assert "raise ValueError" in bad.exc_text
    assert idle.status == RunStatus.INACTION
    assert idle.message == "No new files."


@pytest.mark.parametrize("execution", ["thread", "process", "async"])
def test_once_in_each_execution_mode(settings, execution):
    func = (
        "tests.support.tasks.async_noop"
        if execution == "async"
        else "tests.support.tasks.returns_value"
    )
    settings.ROCKET_TASKS = {"t": task(func, execution=execution)}
    call_command("runscheduler", "--once")
    run = TaskRun.objects.get()
    assert run.status == RunStatus.SUCCESS, run.message


def test_process_failure_keeps_traceback(settings):
    settings.ROCKET_TASKS = {"bad": task("tests.support.tasks.fails", execution="process")}
    call_command("runscheduler", "--once")
    run = TaskRun.objects.get()
    assert run.status == RunStatus.FAIL
    assert "boom: the task failed on purpose" in run.exc_text


def test_tasks_are_synced_and_removed_tasks_keep_history(settings):
    settings.ROCKET_TASKS = {
        "a": task("tests.support.tasks.noop"),
        "b": task("tests.support.tasks.noop"),
    }
    call_command("runscheduler", "--once")
    assert TaskRun.objects.count() == 2
    settings.ROCKET_TASKS = {"a": task("tests.support.tasks.noop", "daily")}
    call_command("runscheduler", "--once")
    a, b = Task.objects.order_by("name")
    assert (a.declared, a.start_cond) == (True, "daily")
    assert b.declared is False
    assert b.runs.count() == 1


def test_paused_task_does_not_run(settings):
    settings.ROCKET_TASKS = {"a": task("tests.support.tasks.noop")}
    Task.objects.create(name="a", func="tests.support.tasks.noop", enabled=False)
    call_command("runscheduler", "--once")
    assert not TaskRun.objects.exists()


def test_duration_must_be_positive():
    with pytest.raises(CommandError, match="positive"):
        call_command("runscheduler", "--duration", "0")
    with pytest.raises(CommandError, match="number of seconds"):
        call_command("runscheduler", "--duration", "soon")


def test_invalid_settings_stop_the_command(settings):
    settings.ROCKET_TASKS = {"a": {"func": "tests.support.tasks.noop", "start_cond": "dayly"}}
    with pytest.raises(Exception, match=r"django_rocket\.E006"):
        call_command("runscheduler", "--once")


@pytest.fixture
def quiet(settings):
    """Poll and heartbeat rarely, so that a fake-clock run over days takes few ticks."""
    settings.ROCKET_POLL_INTERVAL = 3600
    settings.ROCKET_HEARTBEAT = "1 hour"
    settings.ROCKET_LEASE_TIMEOUT = "2 hours"


def test_daily_runs_once_a_day_with_the_clock(settings, clock, quiet):
    settings.ROCKET_TASKS = {"d": task("tests.support.tasks.noop", "daily")}
    scheduler = Scheduler(clock=clock, duration=3 * 86400)
    assert scheduler.run() == 0
    # Day 1 at 09:00 (the start), then at midnight on days 2, 3 and 4.
    starts = sorted(r.started_at for r in TaskRun.objects.all())
    assert [s.isoformat() for s in starts] == [
        "2026-03-02T09:00:00+00:00",
        "2026-03-03T00:00:00+00:00",
        "2026-03-04T00:00:00+00:00",
        "2026-03-05T00:00:00+00:00",
    ]


def test_retry_after_failure_is_marked_retry(settings, clock, quiet):
    settings.ROCKET_TASKS = {"f": task("tests.support.tasks.fails", "daily | retry(2)")}
    Scheduler(clock=clock, duration=600).run()
    runs = list(TaskRun.objects.order_by("started_at", "id"))
    assert [r.trigger for r in runs] == ["scheduled", "retry", "retry"]
    assert runs[1].retry_of_id == runs[0].pk
    assert runs[2].retry_of_id == runs[1].pk


def test_missed_windows_are_coalesced_into_one_run(settings, clock, quiet):
    """After three days of downtime a daily task runs once, not once per missed day."""
    settings.ROCKET_TASKS = {
        "d": task("tests.support.tasks.noop", "daily"),
        "c": task("tests.support.tasks.noop", "cron('0 * * * *')"),
    }
    clock.advance(30 * 60)  # 09:30: inside no cron minute
    Scheduler(clock=clock, duration=60).run()
    assert list(TaskRun.objects.values_list("task__name", flat=True)) == ["d"]
    clock.advance(3 * 86400)  # the scheduler was down for three days: 72 hourly slots missed
    Scheduler(clock=clock, duration=60).run()
    counts = dict(
        TaskRun.objects.values("task__name").annotate(n=Count("id")).values_list("task__name", "n")
    )
    # daily: once for today, not once per missed day; cron: missed minutes are not replayed.
    assert counts == {"d": 2}


def test_runs_written_by_another_process_reach_the_conditions(settings, clock, quiet):
    """A run recorded elsewhere (``runtask --wait``) is seen when it starts and when it ends."""
    settings.ROCKET_TASKS = {
        "a": task("tests.support.tasks.noop", "false"),
        "b": task("tests.support.tasks.noop", "after_success('a')"),
    }
    settings.ROCKET_POLL_INTERVAL = 1
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()
    assert not TaskRun.objects.exists()  # a has never succeeded
    clock.advance(1)
    external = TaskRun.objects.create(
        task=Task.objects.get(name="a"),
        status=RunStatus.RUNNING,
        trigger=RunTrigger.MANUAL,
        started_at=clock.now(),
        host="elsewhere",
        pid=1,
    )
    clock.advance(1)
    scheduler.tick()
    assert not TaskRun.objects.filter(task__name="b").exists()  # a is still running
    clock.advance(1)
    external.status, external.finished_at = RunStatus.SUCCESS, clock.now()
    external.save()
    clock.advance(1)
    scheduler.tick()
    scheduler.tick()
    # a's success, seen through the poll, started b.
    assert TaskRun.objects.filter(task__name="b").count() == 1
    scheduler.request_stop()
    scheduler.shutdown()


def test_the_scheduler_applies_run_retention(settings, clock, quiet):
    settings.ROCKET_TASKS = {"d": task("tests.support.tasks.noop", "daily")}
    settings.ROCKET_RUN_RETENTION = "7 days"
    Scheduler(clock=clock, duration=1).run()  # creates the Task row
    d = Task.objects.get(name="d")
    old = [
        TaskRun(
            task=d,
            status=RunStatus.SUCCESS,
            started_at=clock.now() - timedelta(days=30 - i),
            finished_at=clock.now() - timedelta(days=30 - i),
        )
        for i in range(10)
    ]
    TaskRun.objects.bulk_create(old)
    assert TaskRun.objects.count() == 11
    Scheduler(clock=clock, duration=1).run()
    # The runs older than 7 days are gone; today's run is kept.
    assert TaskRun.objects.filter(started_at__lt=clock.now() - timedelta(days=7)).count() == 0
    assert TaskRun.objects.count() == 1


def test_a_run_committed_while_the_snapshot_loads_is_not_lost(settings, clock, quiet, monkeypatch):
    """Becoming active reads the snapshot and the poll's cursor as of one instant.

    Another process commits a finished run of ``a`` right after the snapshot was read:
    the poll must still bring it to the conditions (``b`` follows ``a``'s success).
    """
    from django.db import connection

    from django_rocket.engine import snapshot

    settings.ROCKET_TASKS = {
        "a": task("tests.support.tasks.noop", "false"),
        "b": task("tests.support.tasks.noop", "after_success('a')"),
    }
    settings.ROCKET_POLL_INTERVAL = 1
    real_load = snapshot.load
    writers: list[threading.Thread] = []

    def write_elsewhere() -> None:
        from django.db import connection as own

        try:
            TaskRun.objects.create(
                task=Task.objects.get(name="a"),
                status=RunStatus.SUCCESS,
                trigger=RunTrigger.MANUAL,
                started_at=clock.now() - timedelta(seconds=2),
                finished_at=clock.now() - timedelta(seconds=1),
                host="elsewhere",
                pid=1,
            )
        finally:
            own.close()

    def load_then_another_process_commits(*args, **kwargs):
        result = real_load(*args, **kwargs)
        writer = threading.Thread(target=write_elsewhere)
        writer.start()
        writers.append(writer)
        if connection.vendor in ("postgresql", "mysql"):
            writer.join()  # committed before the cursor is read; REPEATABLE READ hides it
        # SQLite (IMMEDIATE) holds the writer back until the snapshot's transaction ends;
        # there the race is only likely, on PostgreSQL it is certain.
        return result

    monkeypatch.setattr(snapshot, "load", load_then_another_process_commits)
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    assert writers, "the scheduler did not load its snapshot at start-up"
    writers[0].join()
    assert TaskRun.objects.filter(host="elsewhere").count() == 1
    scheduler.tick()
    clock.advance(1)
    scheduler.tick()
    scheduler.tick()
    assert TaskRun.objects.filter(task__name="b").count() == 1
    scheduler.request_stop()
    scheduler.shutdown()


def test_start_up_syncs_changed_declarations_in_one_statement(settings, clock, quiet):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.ROCKET_TASKS = {f"t{i}": task("tests.support.tasks.noop", "daily") for i in range(5)}
    Scheduler(clock=clock).startup()
    Task.objects.filter(name="t0").update(enabled=False)  # the admin's switch
    before = dict(Task.objects.values_list("name", "updated_at"))
    clock.advance(60)
    settings.ROCKET_TASKS = {
        **{f"t{i}": task("tests.support.tasks.noop", "hourly") for i in range(3)},
        "t3": task("tests.support.tasks.noop", "daily"),
    }
    with CaptureQueriesContext(connection) as queries:
        Scheduler(clock=clock).startup()
    tasks = {t.name: t for t in Task.objects.all()}
    assert [tasks[f"t{i}"].start_cond for i in range(4)] == ["hourly"] * 3 + ["daily"]
    assert all(tasks[f"t{i}"].updated_at == clock.now() for i in range(3))
    assert tasks["t3"].updated_at == before["t3"]  # unchanged, untouched
    assert (tasks["t4"].declared, tasks["t4"].updated_at) == (False, clock.now())
    assert tasks["t0"].enabled is False  # a pause made in the admin survives the sync
    table = connection.ops.quote_name("django_rocket_task")
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(f"UPDATE {table}")]
    assert len(updates) == 2  # the three changed rows, then the one no longer declared


@pytest.mark.parametrize(
    ("expression", "depth"),
    [
        ("daily", 0),
        ("every('1 hour') & after_success('a')", 0),
        ("daily | retry(3)", 4),
        ("daily | retry(0)", 1),
        ("daily | retry", 50),
        ("(daily & retry(2)) | ~retry(5)", 6),
        # Past the check's bound (E014): clamped, so the query's LIMIT cannot overflow.
        ("daily | retry(100000000000000000000)", 1001),
    ],
)
def test_the_snapshot_reads_as_many_recent_runs_as_the_deepest_retry_chain(expression, depth):
    from django_rocket.conditions import parse
    from django_rocket.engine import snapshot

    assert snapshot.retry_depth(parse(expression)) == depth
    assert snapshot.retry_depth(None) == 0


def test_a_huge_retry_past_the_check_does_not_stop_the_scheduler(clock):
    """retry(10**20) overflowed the snapshot's query (SQLite and PostgreSQL integers)."""
    from django_rocket.conditions import parse
    from django_rocket.registry import TaskSpec

    cond = parse("daily | retry(100000000000000000000)")
    specs = {"f": TaskSpec("f", "tests.support.tasks.fails", cond, execution="main")}
    scheduler = Scheduler(specs, clock=clock)
    scheduler.startup()
    for _ in range(4):
        scheduler.tick()
        clock.advance(timedelta(seconds=1))
    assert not scheduler.stop_requested and scheduler.exit_code == 0
    runs = list(TaskRun.objects.order_by("started_at").values_list("trigger", "status"))
    assert runs[0] == (RunTrigger.SCHEDULED, RunStatus.FAIL)
    assert len(runs) >= 3 and all(trigger == RunTrigger.RETRY for trigger, _ in runs[1:])
    scheduler.request_stop()
    scheduler.shutdown()


def _chain_before_restart(clock, triggers: list[str], older_successes: int = 0) -> None:
    """Write the log a stopped scheduler left: old successes, then failed runs today."""
    f, _ = Task.objects.get_or_create(
        name="f", defaults={"func": "tests.support.tasks.fails", "start_cond": "daily | retry(2)"}
    )
    now = clock.now()
    rows = [
        TaskRun(
            task=f,
            status=RunStatus.SUCCESS,
            trigger=RunTrigger.SCHEDULED,
            started_at=now - timedelta(days=2 + i),
            finished_at=now - timedelta(days=2 + i),
        )
        for i in range(older_successes)
    ]
    rows += [
        TaskRun(
            task=f,
            status=RunStatus.FAIL,
            trigger=trigger,
            started_at=now - timedelta(minutes=60 - i),
            finished_at=now - timedelta(minutes=59 - i),
        )
        for i, trigger in enumerate(triggers)
    ]
    TaskRun.objects.bulk_create(rows)


@pytest.mark.parametrize(
    ("triggers", "retries_after_restart"),
    [
        (["scheduled"], 2),  # two retries left
        (["scheduled", "retry"], 1),
        (["scheduled", "retry", "retry"], 0),  # chain of 3 > 2: spent
        # Longer than the 3 runs the snapshot reads: still spent, not mistaken for a new chain.
        (["scheduled", "retry", "retry", "retry", "retry"], 0),
    ],
)
def test_a_restarted_scheduler_continues_the_retry_chain_from_the_log(
    settings, clock, quiet, triggers, retries_after_restart
):
    settings.ROCKET_TASKS = {"f": task("tests.support.tasks.fails", "daily | retry(2)")}
    _chain_before_restart(clock, triggers, older_successes=20)
    before = TaskRun.objects.count()
    scheduler = Scheduler(clock=clock, duration=600)
    scheduler.run()
    new = list(TaskRun.objects.order_by("id")[before:])
    assert [r.trigger for r in new] == ["retry"] * retries_after_restart
    # 3 recent runs for retry(2) plus the latest success: the 20 old runs stay in the database.
    assert scheduler.planner.recent_runs == 3
    assert len(scheduler.planner.history.runs("f")) <= 3 + 1 + retries_after_restart


def _always_due(settings, count: int) -> None:
    settings.ROCKET_TASKS = {
        f"t{i}": task("tests.support.tasks.noop", "true") for i in range(count)
    }
    settings.ROCKET_LOG_RETRY = {"attempts": 3, "backoff": 1, "max_backoff": 5}


def test_finishes_written_with_the_starts_survive_a_lost_lease(settings, clock, quiet):
    """Losing the lease rolls back the tick's one transaction; the finishes are still written."""
    from django_rocket.models import SchedulerLease

    _always_due(settings, 3)
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()
    assert TaskRun.objects.filter(status=RunStatus.RUNNING).count() == 3
    SchedulerLease.objects.update(token=F("token") + 1)  # another scheduler took over
    clock.advance(1)
    scheduler.tick()
    assert not scheduler.active
    assert TaskRun.objects.count() == 3  # nothing started without the lease
    assert TaskRun.objects.filter(status=RunStatus.SUCCESS).count() == 3
    assert scheduler.recorder.pending == []
    scheduler.request_stop()
    scheduler.shutdown()


def test_finishes_written_with_the_starts_stay_pending_when_that_write_fails(
    settings, clock, quiet, monkeypatch
):
    """The failed transaction held the finishes too: they are retried alone, with backoff."""
    from django.db import DatabaseError

    from django_rocket.engine import runlog

    _always_due(settings, 3)
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    scheduler.tick()
    real = {name: getattr(runlog, name) for name in ("insert_runs", "write_tick")}

    def fails_once(*args):
        for name, function in real.items():
            monkeypatch.setattr(runlog, name, function)
        raise DatabaseError("injected: the start write failed")

    # The starts' write: inside the tick's transaction, or the tick's one statement
    # (PostgreSQL, runlog.write_tick).
    for name in real:
        monkeypatch.setattr(runlog, name, fails_once)
    clock.advance(1)
    scheduler.tick()
    # Rolled back together: the finishes are not in the log yet, nor lost.
    assert TaskRun.objects.count() == 3
    assert TaskRun.objects.filter(status=RunStatus.RUNNING).count() == 3
    assert len(scheduler.recorder.pending) == 3
    assert scheduler.recorder.write_attempts == 1
    clock.advance(0.5)
    scheduler.tick()  # inside the 1 s backoff: still pending, starts wait for their retry
    assert TaskRun.objects.filter(status=RunStatus.SUCCESS).count() == 0
    clock.advance(1)
    scheduler.tick()
    assert TaskRun.objects.filter(status=RunStatus.SUCCESS).count() == 3
    assert scheduler.recorder.pending == [] and scheduler.recorder.write_attempts == 0
    scheduler.request_stop()
    scheduler.shutdown()
    assert TaskRun.objects.exclude(status=RunStatus.SUCCESS).count() == 0


def _once_by_task() -> dict[str, TaskRun]:
    """``runscheduler --once``, then each task's run."""
    call_command("runscheduler", "--once")
    return {r.task.name: r for r in TaskRun.objects.select_related("task")}


def _statuses(runs: dict[str, TaskRun]) -> dict[str, str]:
    return {name: run.status for name, run in runs.items()}


def test_values_a_database_cannot_store_do_not_block_the_run_log(settings):
    """NaN results and NUL characters are refused by PostgreSQL (and NaN by SQLite's JSON check).

    One such run must not make the batch it is written with fail, again and again, until
    the scheduler stops: the result is not kept and the text shows the NUL escaped.
    """
    settings.ROCKET_TASKS = {
        "nan": task("tests.support.tasks.returns_not_a_number"),
        "nul": task("tests.support.tasks.returns_nul"),
        "bad": task("tests.support.tasks.fails_with_nul"),
        "name": task("tests.support.tasks.returns_not_utf8"),
        "badname": task("tests.support.tasks.fails_with_not_utf8"),
        "ok": task("tests.support.tasks.returns_value"),
    }
    runs = _once_by_task()
    assert _statuses(runs) == {
        "nan": "success",
        "nul": "success",
        "bad": "fail",
        "name": "success",
        "badname": "fail",
        "ok": "success",
    }
    assert runs["nan"].result is None
    assert "not JSON-serialisable" in runs["nan"].message
    assert runs["nul"].result is None
    assert "NUL" in runs["nul"].message
    assert "\x00" not in runs["bad"].message
    assert runs["bad"].message.endswith("bad byte \\x00 in the input")
    assert "\\x00" in runs["bad"].exc_text
    assert runs["name"].result is None
    assert "lone surrogate" in runs["name"].message
    # A file name that is not UTF-8 shows its undecodable byte as an escape.
    assert runs["badname"].message.endswith("cannot import caf\\udce9.csv")
    assert "caf\\udce9.csv" in runs["badname"].exc_text
    assert runs["ok"].result == {"n": 1, "items": [0]}


def test_text_no_driver_can_encode_holds_back_no_other_run(settings, monkeypatch):
    """A lone surrogate that slipped past ``storable``: the drivers cannot encode it at all.

    Before, the UnicodeEncodeError it raised was not a database error: it stopped the
    scheduler. Now it is refused like a value the database refuses.
    """
    from django_rocket.executors import runner

    monkeypatch.setattr(runner, "storable", lambda text: text)
    settings.ROCKET_TASKS = {
        "a": task("tests.support.tasks.returns_value"),
        "badname": task("tests.support.tasks.fails_with_not_utf8"),
    }
    runs = _once_by_task()
    assert _statuses(runs) == {"a": "success", "badname": "fail"}
    assert runs["a"].result == {"n": 1, "items": [0]}
    assert runs["badname"].message.startswith("Recorded without its message, traceback and result")
    assert runs["badname"].exc_text == ""


def test_a_value_the_database_refuses_holds_back_no_other_run(settings, monkeypatch):
    """Whatever slips through: the refused run is recorded without it, the others as they are."""
    from django_rocket.executors import outcome

    # SQLite's JSON check nor PostgreSQL's jsonb takes).
    monkeypatch.setattr(outcome, "encode_result", lambda value, max_bytes: (value, ""))
    settings.ROCKET_TASKS = {
        "a": task("tests.support.tasks.returns_value"),
        "nan": task("tests.support.tasks.returns_not_a_number"),
        "z": task("tests.support.tasks.returns_value", parameters={"n": 2}),
    }
    runs = _once_by_task()
    assert _statuses(runs) == {"a": "success", "nan": "success", "z": "success"}
    assert runs["a"].result == {"n": 1, "items": [0]}
    assert runs["z"].result == {"n": 2, "items": [0, 1]}
    assert runs["nan"].result is None
    assert runs["nan"].message.startswith("Recorded without its message, traceback and result")


@pytest.mark.parametrize(
    ("func", "bypass", "status"),
    [
        # A lone surrogate: UnicodeEncodeError, which used to stop the scheduler.
        ("tests.support.tasks.fails_with_not_utf8", "storable", RunStatus.FAIL),
        # NaN: a DataError, which used to be retried with the starts on every tick.
        ("tests.support.tasks.returns_not_a_number", "encode_result", RunStatus.SUCCESS),
    ],
)
def test_a_refused_finish_written_with_the_starts_holds_back_neither(
    settings, clock, quiet, func, bypass, status
):
    """A busy tick writes its finishes with its starts; one refused finish rolls both back.

    The finishes are then written on their own (run by run, the refused one without its
    text) and the runs start in the same tick.
    """
    from django_rocket.executors import outcome, runner

    _always_due(settings, 3)
    settings.ROCKET_TASKS["refused"] = task(func, "true")
    module, let_through = {
        "storable": (runner, lambda text: text),
        "encode_result": (outcome, lambda value, max_bytes: (value, "")),
    }[bypass]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, bypass, let_through)
        scheduler = Scheduler(clock=clock)
        scheduler.startup()
        scheduler.tick()
        assert TaskRun.objects.filter(status=RunStatus.RUNNING).count() == 4
        clock.advance(1)
        scheduler.tick()
    assert scheduler.recorder.pending == [] and scheduler.recorder.write_attempts == 0
    assert TaskRun.objects.count() == 8  # the second round started in the same tick
    assert TaskRun.objects.filter(task__name__startswith="t", status=RunStatus.SUCCESS).count() == 3
    refused = TaskRun.objects.get(task__name="refused", status=status)
    assert refused.message.startswith("Recorded without its message, traceback and result")
    scheduler.request_stop()
    scheduler.shutdown()


def test_a_snapshot_that_cannot_be_read_on_taking_the_lease_is_read_again(
    settings, clock, monkeypatch
):
    """A database error while becoming active leaves the lease held and retries at the
    next heartbeat; before, the next tick met an empty snapshot and stopped the loop."""
    from django.db import OperationalError

    from django_rocket.engine import snapshot

    settings.ROCKET_TASKS = {
        "a": {
            "func": "tests.support.tasks.noop",
            "start_cond": "every('1 second')",
            "execution": "main",
        }
    }
    settings.ROCKET_HEARTBEAT = "1 second"
    real_load = snapshot.load
    calls = []

    def load_fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("the database went away")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(snapshot, "load", load_fails_once)
    scheduler = Scheduler(clock=clock)
    scheduler.startup()
    assert not scheduler.active  # holds the lease, has no snapshot yet
    for _ in range(3):
        clock.advance(1)
        scheduler.tick()
    assert not scheduler.stop_requested
    assert scheduler.active and len(calls) == 2
    assert TaskRun.objects.filter(task__name="a", status=RunStatus.SUCCESS).exists()
    scheduler.request_stop()
    scheduler.shutdown()


def test_a_waiting_retry_starts_when_due_and_not_before(settings, clock, quiet):
    """Issue 22: the scheduler sleeps until the retry is due, with backoff and jitter."""
    from django_rocket.conditions.retrying import jitter_offset

    settings.ROCKET_TASKS = {
        "f": task(
            "tests.support.tasks.fails",
            "daily | retry(2, delay='5 minutes', backoff=2, jitter=True)",
        )
    }
    Scheduler(clock=clock, duration=3600).run()
    runs = list(TaskRun.objects.order_by("started_at", "id"))
    assert [r.trigger for r in runs] == ["scheduled", "retry", "retry"]
    for attempt, (failed, retried) in enumerate(itertools.pairwise(runs), start=1):
        wait = timedelta(minutes=5) * 2 ** (attempt - 1)
        due = failed.finished_at + wait * (1 + 0.25 * jitter_offset(str(failed.run_id)))
        # Not before it is due, and no later than the clock's resolution after.
        assert due <= retried.started_at <= due + timedelta(milliseconds=1)


CONNECTION_REFUSED = [
    "builtins.ConnectionRefusedError",
    "builtins.ConnectionError",
    "builtins.OSError",
    "builtins.Exception",
    "builtins.BaseException",
]


@pytest.mark.parametrize("execution", ["main", "thread", "process", "async"])
def test_a_failed_run_keeps_its_exception_class_and_bases(settings, execution):
    func = "async_refuses_connection" if execution == "async" else "refuses_connection"
    settings.ROCKET_TASKS = {"f": task(f"tests.support.tasks.{func}", execution=execution)}
    call_command("runscheduler", "--once")
    run = TaskRun.objects.get()
    assert run.status == RunStatus.FAIL, run.message
    assert run.exception_types == CONNECTION_REFUSED


@pytest.mark.parametrize(
    ("on", "triggers"),
    [
        ("['ConnectionError']", ["scheduled", "retry", "retry"]),
        ("['builtins.OSError', 'TimeoutError']", ["scheduled", "retry", "retry"]),
        ("['TimeoutError']", ["scheduled"]),
    ],
)
def test_retry_on_retries_only_the_named_exceptions(settings, clock, quiet, on, triggers):
    cond = f"daily | retry(2, delay='1 minute', on={on})"
    settings.ROCKET_TASKS = {"f": task("tests.support.tasks.refuses_connection", cond)}
    Scheduler(clock=clock, duration=600).run()
    runs = list(TaskRun.objects.order_by("started_at", "id"))
    assert [r.trigger for r in runs] == triggers


def test_a_restarted_scheduler_reads_the_exception_types_from_the_log(settings, clock, quiet):
    """The snapshot loads exception_types: retry(on=...) decides the same after a restart."""
    cond = "daily | retry(2, delay='10 minutes', on=['ConnectionError'])"
    settings.ROCKET_TASKS = {"f": task("tests.support.tasks.refuses_connection", cond)}
    Scheduler(clock=clock, duration=60).run()  # stops before the first retry is due
    assert TaskRun.objects.count() == 1
    scheduler = Scheduler(clock=clock, duration=3600)
    scheduler.run()
    runs = list(TaskRun.objects.order_by("started_at", "id"))
    assert [r.trigger for r in runs] == ["scheduled", "retry", "retry"]
    assert runs[1].started_at - runs[0].finished_at >= timedelta(minutes=10)


def test_a_value_the_database_refuses_at_start_up_stops_it_saying_why(caplog):
    """A task setting past the checks (--skip-checks) that the database will not store.

    Before, start-up took the refusal for an outage on PostgreSQL: "The database is not
    reachable; retrying" for ever. MySQL and MariaDB cut the name short without an error
    (INSERT IGNORE), and the scheduler failed later, at the task's first run. SQLite
    stores a name of any length.
    """
    from django.db import connection

    from django_rocket.conditions import parse
    from django_rocket.models import SchedulerInstance, SchedulerRole
    from django_rocket.registry import TaskSpec

    if connection.vendor == "sqlite":
        pytest.skip("SQLite stores text of any length")
    name = "n" * 201
    spec = TaskSpec(name=name, func="tests.support.tasks.noop", start_cond=parse("false"))
    scheduler = Scheduler({name: spec}, duration=5)
    # Were the refusal taken for an outage again, start-up would retry until stopped.
    guard = threading.Timer(20, scheduler.request_stop, ("the test's guard",))
    guard.start()
    try:
        assert scheduler.run() == 1
    finally:
        guard.cancel()
    assert "The database refused a value at start-up, so the scheduler stops" in caplog.text
    assert "manage.py check" in caplog.text
    assert "not reachable" not in caplog.text
    assert SchedulerInstance.objects.get().role == SchedulerRole.STOPPED
    assert not Task.objects.filter(name=name).exists()  # MySQL keeps a row cut short
