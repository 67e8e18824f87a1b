"""``explaintask`` and ``showtasks`` through call_command, with captured output."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun

pytestmark = pytest.mark.django_db

WINDOW = "(daily | retry(3)) & time_of_day.between('10:00', '12:00')"
PARIS_0930_UTC = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # 10:30 in Paris


@pytest.fixture(autouse=True)
def tasks(settings):
    settings.ROCKET_TIME_ZONE = "Europe/Paris"
    settings.ROCKET_TASKS = {
        "report": {"func": "tests.support.tasks.noop", "start_cond": WINDOW},
        "notify": {"func": "tests.support.tasks.noop", "start_cond": "after_success('report')"},
        "sync": {"func": "tests.support.tasks.noop", "start_cond": "every('10 minutes')"},
    }
    return settings


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def explain_json(*args: str) -> dict:
    return json.loads(run("explaintask", *args, "--json"))


def record(name: str, status: str, started: datetime, minutes: float = 1, **extra) -> TaskRun:
    task, _ = Task.objects.get_or_create(name=name, defaults={"func": "tests.support.tasks.noop"})
    finished = started + timedelta(minutes=minutes) if status not in ("running", "queued") else None
    return TaskRun.objects.create(
        task=task,
        status=status,
        started_at=started if status != "queued" else None,
        finished_at=finished,
        **extra,
    )


# ---------------------------------------------------------------------- explaintask


def test_due_task_in_its_window_as_text():
    out = run("explaintask", "report", "--at", "2026-03-02T10:30")
    assert "Task 'report' at 2026-03-02 10:30:00+01:00 (Europe/Paris)" in out
    assert f"Condition: {WINDOW}" in out
    assert "Due: the condition is true; the scheduler starts it at its next tick." in out
    assert "Next change: 2026-03-02 12:00:00+01:00 (in 1 h 30 min)" in out
    # Every node of the tree with its value, and the facts it used.
    assert "TRUE  daily | retry(3)" in out
    assert "false retry(3)" in out
    assert "TRUE  time_of_day.between('10:00', '12:00')" in out
    assert "window=[2026-03-02 10:00:00+01:00, 2026-03-02 12:00:00+01:00]" in out
    assert "Run history the conditions read:" in out
    assert "last success: —" in out


def test_json_has_the_promised_keys_and_a_naive_at_is_local_time():
    data = explain_json("report", "--at", "2026-03-02T10:30")
    assert data["task"] == "report"
    assert data["at"] == "2026-03-02T10:30:00+01:00"
    assert data["time_zone"] == "Europe/Paris"
    assert data["condition"] == WINDOW
    assert data["condition_true"] is True
    assert data["due"] is True
    assert data["trigger"] == "scheduled"
    assert data["next_change"] == "2026-03-02T12:00:00+01:00"
    assert data["tree"]["value"] is True
    assert [c["text"] for c in data["tree"]["children"]] == [
        "daily | retry(3)",
        "time_of_day.between('10:00', '12:00')",
    ]


def test_an_at_with_an_offset_is_that_instant():
    data = explain_json("report", "--at", "2026-03-02T09:30:00Z")
    assert data["at"] == "2026-03-02T10:30:00+01:00"
    data = explain_json("report", "--at", "2026-03-02")  # a date alone is local midnight
    assert data["at"] == "2026-03-02T00:00:00+01:00"
    assert data["condition_true"] is False
    assert data["next_change"] == "2026-03-02T10:00:00+01:00"


def test_outside_the_window_is_not_due_and_says_when_it_changes():
    data = explain_json("report", "--at", "2026-03-02T13:00")
    assert (data["condition_true"], data["due"], data["trigger"]) == (False, False, None)
    assert data["reason"] == "Not due: the condition is false."
    assert data["next_change"] == "2026-03-03T10:00:00+01:00"


def test_a_failure_makes_it_due_as_a_retry_and_the_history_shows_why():
    record("report", RunStatus.FAIL, PARIS_0930_UTC - timedelta(minutes=25))
    data = explain_json("report", "--at", "2026-03-02T10:30")
    assert data["due"] is True
    assert data["trigger"] == "retry"
    assert "as a retry" in data["reason"]
    facts = data["history"]["report"]
    assert facts["last_fail"] == "2026-03-02T10:06:00+01:00"
    assert facts["last_start"] == "2026-03-02T10:05:00+01:00"
    assert facts["retry_chain"] == 1
    retry_node = data["tree"]["children"][0]["children"][1]
    assert (retry_node["text"], retry_node["value"]) == ("retry(3)", True)


def test_a_success_today_is_not_due_until_tomorrow():
    record("report", RunStatus.SUCCESS, PARIS_0930_UTC - timedelta(minutes=20))
    out = run("explaintask", "report", "--at", "2026-03-02T10:30")
    assert "Not due: the condition is false." in out
    assert "false daily  [window=" in out
    assert "finished_in_window=2026-03-02 10:11:00+01:00" in out
    assert "last success: 2026-03-02 10:11:00+01:00" in out


def test_a_paused_task_is_not_due_even_when_its_condition_is_true():
    Task.objects.create(name="report", func="tests.support.tasks.noop", enabled=False)
    data = explain_json("report", "--at", "2026-03-02T10:30")
    assert (data["condition_true"], data["enabled"], data["due"]) == (True, False, False)
    assert data["reason"] == "Not due: the task is paused."
    assert "Enabled: no (paused)" in run("explaintask", "report", "--at", "2026-03-02T10:30")


def test_a_run_in_progress_blocks_unless_multilaunch(settings):
    settings.ROCKET_TASKS["sync"]["start_cond"] = "true"
    record("sync", RunStatus.RUNNING, PARIS_0930_UTC - timedelta(minutes=5))
    data = explain_json("sync", "--at", "2026-03-02T10:30")
    assert (data["condition_true"], data["due"]) == (True, False)
    assert data["running"] == ["2026-03-02T10:25:00+01:00"]
    assert "a run started at 2026-03-02 10:25:00+01:00 is in progress" in data["reason"]
    settings.ROCKET_TASKS["sync"]["multilaunch"] = True
    assert explain_json("sync", "--at", "2026-03-02T10:30")["due"] is True


def test_a_queued_manual_run_is_mentioned():
    record("report", RunStatus.QUEUED, PARIS_0930_UTC, trigger=RunTrigger.MANUAL)
    data = explain_json("report", "--at", "2026-03-02T13:00")
    assert data["queued"] is True
    assert "A manual run is queued" in data["reason"]


def test_a_pipeline_has_no_next_change_and_shows_its_dependency():
    data = explain_json("notify", "--at", "2026-03-02T10:30")
    assert data["condition_true"] is False
    assert data["next_change"] is None
    assert set(data["history"]) == {"notify", "report"}
    out = run("explaintask", "notify", "--at", "2026-03-02T10:30")
    assert "Next change: only when a run starts or finishes" in out
    record("report", RunStatus.SUCCESS, PARIS_0930_UTC - timedelta(minutes=20))
    assert explain_json("notify", "--at", "2026-03-02T10:30")["due"] is True


def test_condition_option_evaluates_another_expression_on_the_task_history():
    record("report", RunStatus.FAIL, PARIS_0930_UTC - timedelta(minutes=25))
    data = explain_json("report", "--at", "2026-03-02T10:30", "--condition", "failed.today >= 2")
    assert data["condition"] == "failed.today >= 2"
    assert data["is_start_condition"] is False
    assert data["condition_true"] is False
    data = explain_json("report", "--at", "2026-03-02T10:30", "--condition", "failed.today")
    assert data["condition_true"] is True
    out = run("explaintask", "report", "--condition", "daily between 10:00 and 12:00")
    assert "Condition (from --condition): daily.between('10:00', '12:00')" in out


def test_condition_option_reaches_tasks_known_only_from_the_run_log():
    record("old_task", RunStatus.SUCCESS, PARIS_0930_UTC)
    data = explain_json("old_task", "--at", "2026-03-02T12:00", "--condition", "succeeded.today")
    assert data["condition_true"] is True
    with pytest.raises(CommandError, match="There is no task 'old_task'"):
        run("explaintask", "old_task")


def test_bad_condition_text_points_at_the_column():
    with pytest.raises(CommandError, match="--condition does not parse") as info:
        run("explaintask", "report", "--condition", "daily &")
    assert "^" in str(info.value)


def test_unknown_task_suggests_the_closest_name():
    with pytest.raises(CommandError, match=r"There is no task 'reprot' in ROCKET_TASKS\. Did you "):
        run("explaintask", "reprot")
    with pytest.raises(CommandError, match="Known tasks: 'notify', 'report', 'sync'"):
        run("explaintask", "zzz")


def test_no_tasks_declared(settings):
    settings.ROCKET_TASKS = {}
    with pytest.raises(CommandError, match="ROCKET_TASKS declares no task"):
        run("explaintask", "report")


@pytest.mark.parametrize("value", ["tomorrow", "2026-13-01", "10:30 2026-03-02", ""])
def test_bad_at_is_a_command_error(value):
    with pytest.raises(CommandError, match="is not an ISO 8601 date and time"):
        run("explaintask", "report", "--at", value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("report", "--at", "0001-01-01T00:00+05:00"), r"in the year 1; give a date from 1970"),
        (("report", "--at", "9999-12-31T23:59"), r"in the year 9999"),
        (("report\udcff",), r"not UTF-8 text: character 7 stands for a byte that is not UTF-8"),
        (("report\x00", "--condition", "daily"), r"contains a NUL character"),
        (("report", "--condition", "daily\x00"), r"contains a NUL character; give text"),
        (("report", "--condition", "x" * 10_001), r"has 10001 characters; the limit is 10000"),
        (("report", "--at=--"), r"--at needs a value; '--' is not one"),
    ],
)
def test_absurd_values_are_one_line_errors(args, message):
    with pytest.raises(CommandError, match=message) as info:
        run("explaintask", *args)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("command", [("explaintask", "report"), ("showtasks",)])
def test_an_unknown_time_zone_is_one_line(command, settings):
    settings.ROCKET_TIME_ZONE = "Mars/Olympus"
    with pytest.raises(CommandError, match=r"ROCKET_TIME_ZONE 'Mars/Olympus' is not a known"):
        run(*command)


def test_a_retry_past_the_bound_is_explained_as_unlimited():
    # It overflowed the database's integers; the history read is capped (check E014's bound).
    data = explain_json("report", "--condition", "retry(100000000000000000000)")
    assert data["condition"] == "retry(100000000000000000000)"
    assert data["condition_true"] is False  # no failed run to retry


def test_a_declared_retry_past_the_bound_is_check_e014(settings):
    settings.ROCKET_TASKS["huge"] = {
        "func": "tests.support.tasks.noop",
        "start_cond": "daily | retry(100000000000000000000)",
    }
    with pytest.raises(CommandError, match=r"E014: Task 'huge'.*retry limit above 1000"):
        run("explaintask", "huge")
    shown = json.loads(run("showtasks", "--json"))["tasks"]
    assert "huge" in {t["task"] for t in shown}


def test_the_bounds_of_at_are_explained():
    assert explain_json("report", "--at", "1970-01-01T00:00+23:59")["at"].startswith("1969-12-31")
    assert explain_json("sync", "--at", "9000-12-31T23:59:59-23:59")["due"] is True


def test_a_misdeclared_task_says_what_is_wrong(settings):
    settings.ROCKET_TASKS["broken"] = {"func": "tests.support.tasks.nope", "start_cond": "daily"}
    with pytest.raises(CommandError, match=r"declared but invalid.*\n.*django_rocket.E005"):
        run("explaintask", "broken")
    # The other tasks are still explained.
    assert explain_json("report", "--at", "2026-03-02T10:30")["due"] is True


def test_a_raising_condition_is_a_command_error(settings):
    settings.ROCKET_CONDITION_MODULES = ["tests.support.conditions_for_tests"]
    settings.ROCKET_TASKS["boom"] = {
        "func": "tests.support.tasks.noop",
        "start_cond": "daily & explodes",
    }
    with pytest.raises(CommandError, match="raised RuntimeError: this condition always raises"):
        run("explaintask", "boom", "--at", "2026-03-02T10:30")


@pytest.mark.parametrize(
    "command",
    ["explaintask", "showtasks", "runtask", "exportruns", "pruneruns", "checkscheduler"],
)
def test_every_command_has_help_with_an_example(command):
    from django.core.management import load_command_class

    cmd = load_command_class("django_rocket", command)
    text = cmd.create_parser("manage.py", command).format_help()
    assert "Example: python manage.py " + command in " ".join(text.split())


# ---------------------------------------------------------------------- showtasks


def test_showtasks_one_line_per_task(settings):
    settings.ROCKET_TASKS["broken"] = {"func": "tests.support.tasks.nope", "start_cond": "daily"}
    Task.objects.create(name="sync", func="tests.support.tasks.noop", enabled=False)
    record("report", RunStatus.FAIL, datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    record("report", RunStatus.SUCCESS, datetime(2026, 3, 1, 9, 10, tzinfo=UTC))
    out = run("showtasks").splitlines()
    header, lines = out[0], out[1:]
    assert header.split() == [
        "TASK",
        "ENABLED",
        "STATUS",
        "LAST",
        "RUN",
        "LAST",
        "SUCCESS",
        "LAST",
        "FAILURE",
        "NEXT",
        "CONDITION",
    ]
    assert [line.split()[0] for line in lines] == ["report", "notify", "sync", "broken"]
    report, notify, sync, broken = lines
    assert "success" in report
    assert "2026-03-01 10:11" in report  # last success, local time
    assert "2026-03-01 10:01" in report  # last failure
    assert WINDOW in report
    assert "never run" in notify
    assert "paused" in sync
    assert "invalid" in broken
    assert "cannot be imported" in broken


def test_showtasks_json():
    record("report", RunStatus.SUCCESS, datetime(2026, 3, 1, 9, 10, tzinfo=UTC))
    data = json.loads(run("showtasks", "--json"))
    assert data["time_zone"] == "Europe/Paris"
    by_name = {t["task"]: t for t in data["tasks"]}
    assert list(by_name) == ["report", "notify", "sync"]
    report = by_name["report"]
    assert report["status"] == "success"
    assert report["last_run"] == "2026-03-01T10:10:00+01:00"
    assert report["last_success"] == "2026-03-01T10:11:00+01:00"
    assert report["last_failure"] is None
    assert report["enabled"] is True
    assert set(report) >= {"condition", "condition_true", "due", "next", "next_change"}
    notify = by_name["notify"]
    # report succeeded after notify last started (never): notify is due now.
    assert (notify["condition_true"], notify["due"], notify["next"]) == (True, True, "due")
    assert by_name["sync"]["next"] == "due"


def test_showtasks_without_tasks(settings):
    settings.ROCKET_TASKS = {}
    assert run("showtasks") == "ROCKET_TASKS declares no task.\n"
    assert json.loads(run("showtasks", "--json"))["tasks"] == []


def test_showtasks_queries_do_not_grow_with_tasks(settings):
    def queries(count: int) -> int:
        settings.ROCKET_TASKS = {
            f"t{i}": {"func": "tests.support.tasks.noop", "start_cond": "daily | retry(2)"}
            for i in range(count)
        }
        for i in range(count):
            record(f"t{i}", RunStatus.FAIL, PARIS_0930_UTC - timedelta(hours=i + 1))
        with CaptureQueriesContext(connection) as ctx:
            run("showtasks")
        Task.objects.all().delete()
        return len(ctx.captured_queries)

    assert queries(2) == queries(25)


def test_a_waiting_retry_says_which_of_how_many_and_when(settings):
    cond = (
        "(daily | retry(3, delay='10 minutes', backoff=2)) & time_of_day.between('10:00', '12:00')"
    )
    settings.ROCKET_TASKS["report"]["start_cond"] = cond
    first = record("report", RunStatus.FAIL, PARIS_0930_UTC - timedelta(minutes=25))
    record(
        "report",
        RunStatus.FAIL,
        PARIS_0930_UTC - timedelta(minutes=16),
        minutes=1.25,
        trigger=RunTrigger.RETRY,
        retry_of=first,
    )
    # The retry failed at 10:15:15 Paris time: retry 2 waits twice 10 minutes.
    text = run("explaintask", "report", "--at", "2026-03-02T10:30")
    assert "Retry: retry 2 of 3 due at 10:35:15 (backoff 2\N{MULTIPLICATION SIGN})" in text
    assert "Next change: 2026-03-02 10:35:15+01:00" in text
    data = explain_json("report", "--at", "2026-03-02T10:30")
    assert data["due"] is False
    assert data["retry"] == {
        "attempt": 2,
        "limit": 3,
        "due_at": "2026-03-02T10:35:15+01:00",
        "backoff": 2.0,
        "jitter": 0.0,
        "text": "retry 2 of 3 due at 10:35:15 (backoff 2\N{MULTIPLICATION SIGN})",
    }
    assert explain_json("report", "--at", "2026-03-02T10:36")["trigger"] == "retry"


def test_no_retry_line_when_none_is_coming():
    record("report", RunStatus.SUCCESS, PARIS_0930_UTC - timedelta(minutes=25))
    assert "Retry:" not in run("explaintask", "report", "--at", "2026-03-02T10:30")
    assert explain_json("report", "--at", "2026-03-02T10:30")["retry"] is None
