"""Tasks created by code: schedule(), unschedule(), the allowlist, the scheduler following them."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import django_rocket
from django_rocket import registry
from django_rocket.engine import tasktable
from django_rocket.engine.scheduler import Scheduler
from django_rocket.models import RunStatus, Task, TaskRun, TaskSource
from tests.support import runtime_tasks

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED = "tests.support.runtime_tasks.*"
REMIND = "tests.support.runtime_tasks.remind"
FORBIDDEN = "tests.support.forbidden_tasks.boom"


@pytest.fixture
def runtime_on(settings):
    settings.ROCKET_TASK_FUNCTIONS = [ALLOWED]
    settings.ROCKET_EXECUTION = "main"
    settings.ROCKET_HEARTBEAT = "1 hour"
    settings.ROCKET_TASKS = {}
    runtime_tasks.CALLS.clear()
    os.environ.pop("ROCKET_TEST_FORBIDDEN_IMPORTED", None)
    sys.modules.pop("tests.support.forbidden_tasks", None)


def field_errors(excinfo: pytest.ExceptionInfo[ValidationError]) -> dict[str, list[str]]:
    return excinfo.value.message_dict


# -- schedule() and its validation


def test_without_the_setting_runtime_tasks_are_off(settings):
    settings.ROCKET_TASK_FUNCTIONS = None
    with pytest.raises(ValidationError, match="ROCKET_TASK_FUNCTIONS is not set"):
        django_rocket.schedule("r", REMIND, "every('1 hour')")
    assert not Task.objects.exists()


def test_schedule_creates_a_runtime_task(runtime_on):
    task = django_rocket.schedule(
        "remind-7", REMIND, "every('1 hour')", parameters={"customer": 7}, timeout=60
    )
    task.refresh_from_db()
    assert (task.source, task.declared, task.enabled) == (TaskSource.RUNTIME, True, True)
    assert (task.func, task.start_cond, task.parameters) == (
        REMIND,
        "every('1 hour')",
        {"customer": 7},
    )
    assert task.timeout == "60 seconds"
    assert task.execution == "main"


def test_every_field_is_validated(runtime_on):
    with pytest.raises(ValidationError) as excinfo:
        django_rocket.schedule(
            "r",
            REMIND,
            "every('1 hour') &",
            end_cond="dayly",
            parameters={"customer": object()},
            execution="fast",
            timeout="soon",
        )
    errors = field_errors(excinfo)
    assert set(errors) == {"start_cond", "end_cond", "parameters", "execution", "timeout"}
    # The parse error keeps its caret under the offending text.
    assert "every('1 hour') &\n" in errors["start_cond"][0]
    assert errors["start_cond"][0].rstrip().endswith("^")
    assert "JSON" in " ".join(errors["parameters"])
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("r" * 201, "201 characters long, and the column holds 200"),
        ("remind\x00", "NUL character"),
        ("caf\udce9", "lone surrogate"),
        ("  ", "use 1 to 200 characters, not only spaces"),
    ],
)
def test_a_name_the_database_cannot_store_is_refused(runtime_on, name, why):
    with pytest.raises(ValidationError) as excinfo:
        django_rocket.schedule(name, REMIND, "daily")
    (message,) = field_errors(excinfo)["name"]
    assert why in message
    assert not Task.objects.exists()


def test_the_longest_name_is_stored(runtime_on):
    django_rocket.schedule("é" * 200, REMIND, "daily")
    assert Task.objects.get().name == "é" * 200


@pytest.mark.parametrize(
    "parameters",
    [{"customer": "7\x00"}, {"customer": ["a", {"nested": "caf\udce9"}]}, {"k\x00": 1}],
)
def test_parameters_the_database_cannot_store_are_refused(runtime_on, parameters):
    # PostgreSQL's jsonb refuses a NUL or a lone surrogate, which json.dumps escapes.
    with pytest.raises(ValidationError) as excinfo:
        django_rocket.schedule("r", REMIND, "daily", parameters=parameters)
    messages = field_errors(excinfo)["parameters"]
    assert any(
        m.startswith("parameters must be JSON values, as they are stored in the database")
        and ("NUL character" in m or "lone surrogate" in m)
        for m in messages
    ), messages
    assert not Task.objects.exists()


@pytest.mark.parametrize("key", ["description", "queue"])
def test_text_fields_the_database_cannot_store_are_refused(runtime_on, key):
    value = "x\x00" if key == "description" else "q" * 101
    extra = {key: value} if key == "description" else {key: value, "execution": "tasks"}
    with pytest.raises(ValidationError) as excinfo:
        django_rocket.schedule("r", REMIND, "daily", **extra)
    assert any("cannot be stored" in m for m in field_errors(excinfo)[key])


def test_parameters_must_fit_the_function(runtime_on):
    with pytest.raises(ValidationError) as excinfo:
        django_rocket.schedule("r", REMIND, "daily", parameters={"client": 1})
    assert "do not fit the signature" in field_errors(excinfo)["parameters"][0]


@pytest.mark.parametrize(
    ("func", "why"),
    [
        (FORBIDDEN, "not allowed by ROCKET_TASK_FUNCTIONS"),
        ("tests.support.runtime_tasks._private", "not allowed"),
        ("tests.support.runtime_tasks.getcwd", "defined in 'posix'"),
        ("tests.support.runtime_tasksx.remind", "not allowed"),
        ("tests.support..runtime_tasks.remind", "not allowed"),
        ("tests.support.runtime_tasks.missing", "cannot be imported"),
    ],
)
def test_the_function_must_be_on_the_allowlist(runtime_on, func, why):
    with pytest.raises(ValidationError) as excinfo:
        django_rocket.schedule("r", func, "daily")
    assert why in field_errors(excinfo)["func"][0]
    assert "ROCKET_TEST_FORBIDDEN_IMPORTED" not in os.environ  # refused before any import


def test_an_exact_path_allows_only_itself(settings, runtime_on):
    settings.ROCKET_TASK_FUNCTIONS = [REMIND]
    assert registry.function_refusal(REMIND) == ""
    assert registry.function_refusal("tests.support.runtime_tasks.remindx") != ""
    assert registry.function_refusal("tests.support.runtime_tasks") != ""


def test_a_declared_name_cannot_be_taken(settings, runtime_on):
    settings.ROCKET_TASKS = {"report": {"func": "tests.support.tasks.noop", "start_cond": "daily"}}
    with pytest.raises(ValidationError) as excinfo:
        django_rocket.schedule("report", REMIND, "daily")
    assert "declared in ROCKET_TASKS" in field_errors(excinfo)["name"][0]
    # Nor the name of a task once declared, whose runs are kept under it.
    settings.ROCKET_TASKS = {}
    Task.objects.create(name="old", func="tests.support.tasks.noop", declared=False)
    with pytest.raises(ValidationError) as excinfo:
        django_rocket.schedule("old", REMIND, "daily", replace=True)
    assert "cannot take it" in field_errors(excinfo)["name"][0]


def test_a_name_is_free_unless_replace(runtime_on):
    django_rocket.schedule("r", REMIND, "daily")
    with pytest.raises(ValidationError) as excinfo:
        django_rocket.schedule("r", REMIND, "hourly")
    assert "already scheduled" in field_errors(excinfo)["name"][0]
    task = django_rocket.schedule("r", REMIND, "hourly", replace=True)
    assert Task.objects.get().start_cond == "hourly" == task.start_cond


def test_a_taken_name_leaves_the_callers_transaction_usable(runtime_on):
    # schedule() tries the insert first: a taken name fails it inside a savepoint.
    django_rocket.schedule("r", REMIND, "daily")
    with transaction.atomic():
        django_rocket.schedule("mine", REMIND, "daily")
        with pytest.raises(ValidationError):
            django_rocket.schedule("r", REMIND, "hourly")
        django_rocket.schedule("r", REMIND, "hourly", replace=True)
    assert dict(Task.objects.values_list("name", "start_cond")) == {
        "mine": "daily",
        "r": "hourly",
    }


def test_unschedule_keeps_the_runs(runtime_on):
    task = django_rocket.schedule("r", REMIND, "daily")
    TaskRun.objects.create(task=task, status=RunStatus.SUCCESS)
    assert django_rocket.unschedule("r") is True
    assert django_rocket.unschedule("r") is False
    assert django_rocket.unschedule("nobody") is False
    task.refresh_from_db()
    assert task.declared is False
    assert task.runs.count() == 1
    # Scheduling the name again continues its history.
    assert django_rocket.schedule("r", REMIND, "daily").pk == task.pk


def test_a_declared_task_cannot_be_unscheduled(runtime_on):
    Task.objects.create(name="report", func="tests.support.tasks.noop")
    with pytest.raises(ValidationError, match=r"settings\.py"):
        django_rocket.unschedule("report")


def test_importing_django_rocket_stays_django_free():
    code = (
        "import sys, django_rocket; "
        "print(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert output.strip() == "[]"
    with pytest.raises(AttributeError):
        django_rocket.reschedule  # noqa: B018


# -- the scheduler


def start(clock) -> Scheduler:
    scheduler = Scheduler(registry.tasks(), clock=clock)
    scheduler.startup()
    scheduler.tick()
    return scheduler


def poll_and_tick(scheduler: Scheduler, clock, seconds: float = 1.0) -> None:
    """Let a poll interval pass (runtime changes are read at the poll), then tick twice."""
    clock.advance(seconds)
    scheduler.tick()
    scheduler.tick()  # a main run's finish is recorded at the next tick


def test_a_running_scheduler_picks_up_schedule_and_unschedule(runtime_on, clock):
    scheduler = start(clock)
    django_rocket.schedule("r", REMIND, "every('1 hour')", parameters={"customer": 3})
    poll_and_tick(scheduler, clock)
    run = TaskRun.objects.get()
    assert (run.task.name, run.status, run.result) == ("r", RunStatus.SUCCESS, {"customer": 3})
    django_rocket.unschedule("r")
    poll_and_tick(scheduler, clock, 3 * 3600)
    assert TaskRun.objects.count() == 1
    scheduler.shutdown()


def test_a_replaced_condition_applies_without_a_restart(runtime_on, clock):
    django_rocket.schedule("r", REMIND, "false")
    scheduler = start(clock)
    assert not TaskRun.objects.exists()
    django_rocket.schedule("r", REMIND, "true", replace=True)
    poll_and_tick(scheduler, clock)
    assert TaskRun.objects.filter(task__name="r").exists()
    scheduler.shutdown()


def test_runtime_tasks_present_at_start_up_run(runtime_on, clock):
    for customer in range(3):
        django_rocket.schedule(
            f"r{customer}", REMIND, "every('1 hour')", parameters={"customer": customer}
        )
    scheduler = start(clock)
    scheduler.tick()
    assert sorted(c["customer"] for c in runtime_tasks.CALLS) == [0, 1, 2]
    scheduler.shutdown()


def test_a_row_off_the_allowlist_fails_and_is_never_imported(runtime_on, clock):
    # Written straight into the database, past schedule()'s validation.
    Task.objects.create(
        name="evil",
        func=FORBIDDEN,
        start_cond="every('1 hour')",
        source=TaskSource.RUNTIME,
        execution="main",
    )
    scheduler = start(clock)
    scheduler.tick()
    run = TaskRun.objects.get(task__name="evil")
    assert run.status == RunStatus.FAIL
    assert "not allowed by ROCKET_TASK_FUNCTIONS" in run.message
    assert "it was not imported" in run.message
    assert "tests.support.forbidden_tasks" not in sys.modules
    assert "ROCKET_TEST_FORBIDDEN_IMPORTED" not in os.environ
    assert scheduler.exit_code == 0 and not scheduler.stop_requested
    scheduler.shutdown()


@pytest.mark.parametrize("execution", ["thread", "process"])
def test_an_off_list_row_is_refused_in_every_execution(runtime_on, clock, execution):
    Task.objects.create(
        name="evil",
        func=FORBIDDEN,
        start_cond="every('1 hour')",
        source=TaskSource.RUNTIME,
        execution=execution,
    )
    scheduler = start(clock)
    scheduler.tick()
    assert TaskRun.objects.get().status == RunStatus.FAIL
    assert "ROCKET_TEST_FORBIDDEN_IMPORTED" not in os.environ
    scheduler.shutdown()


def test_a_re_exported_function_is_refused_at_run_time(runtime_on, clock):
    Task.objects.create(
        name="sly",
        func="tests.support.runtime_tasks.getcwd",
        start_cond="every('1 hour')",
        source=TaskSource.RUNTIME,
        execution="main",
    )
    scheduler = start(clock)
    scheduler.tick()
    run = TaskRun.objects.get()
    assert run.status == RunStatus.FAIL
    assert "defined in 'posix'" in run.message
    scheduler.shutdown()


def test_turning_the_setting_off_stops_runtime_runs(settings, runtime_on, clock):
    django_rocket.schedule("r", REMIND, "every('1 hour')")
    settings.ROCKET_TASK_FUNCTIONS = None
    scheduler = start(clock)
    scheduler.tick()
    run = TaskRun.objects.get()
    assert run.status == RunStatus.FAIL
    assert "ROCKET_TASK_FUNCTIONS is not set" in run.message
    assert runtime_tasks.CALLS == []
    scheduler.shutdown()


def test_a_row_that_does_not_parse_is_skipped_not_fatal(runtime_on, clock, caplog):
    Task.objects.create(name="bad", func=REMIND, start_cond="dayly", source=TaskSource.RUNTIME)
    scheduler = start(clock)
    clock.advance(timedelta(hours=2))
    scheduler.tick()
    assert not TaskRun.objects.exists()
    assert scheduler.exit_code == 0
    assert "Runtime task 'bad' cannot be scheduled" in caplog.text
    scheduler.shutdown()


def test_a_declaration_takes_over_a_runtime_task_of_the_same_name(
    settings, runtime_on, clock, caplog
):
    task = django_rocket.schedule("report", REMIND, "false", parameters={"customer": 1})
    TaskRun.objects.create(task=task, status=RunStatus.SUCCESS)
    settings.ROCKET_TASKS = {
        "report": {"func": "tests.support.tasks.noop", "start_cond": "daily", "execution": "main"}
    }
    scheduler = start(clock)
    task.refresh_from_db()
    assert (task.source, task.func, task.parameters) == (
        TaskSource.SETTINGS,
        "tests.support.tasks.noop",
        {},
    )
    assert task.runs.count() >= 1
    assert "the declaration replaces the runtime task" in caplog.text
    assert scheduler.planner.specs["report"].source == "settings"
    scheduler.shutdown()


def test_runtime_tasks_are_not_retired_with_undeclared_ones(settings, runtime_on, clock):
    django_rocket.schedule("r", REMIND, "false")
    Task.objects.create(name="gone", func="tests.support.tasks.noop")
    scheduler = start(clock)
    assert Task.objects.get(name="r").declared is True
    assert Task.objects.get(name="gone").declared is False
    scheduler.shutdown()


# -- condition overrides of declared tasks


def declare_report(settings, cond: str = "false") -> None:
    settings.ROCKET_TASKS = {
        "report": {"func": "tests.support.tasks.noop", "start_cond": cond, "execution": "main"}
    }


def test_an_override_applies_at_the_next_poll_and_revert_restores(settings, runtime_on, clock):
    declare_report(settings)
    scheduler = start(clock)
    assert not TaskRun.objects.exists()
    Task.objects.filter(name="report").update(
        start_cond_override="every('1 hour')", updated_at=timezone.now()
    )
    poll_and_tick(scheduler, clock, 1.0)  # ROCKET_POLL_INTERVAL: within 2 s
    assert TaskRun.objects.filter(task__name="report").count() == 1
    spec = scheduler.planner.specs["report"]
    assert (str(spec.start_cond), spec.condition_source) == ("every('1 hour')", "override")
    task = Task.objects.get(name="report")
    task.start_cond_override = ""
    task.save()
    poll_and_tick(scheduler, clock, 2 * 3600)
    assert TaskRun.objects.count() == 1  # "false" again
    assert scheduler.planner.specs["report"].condition_source == "settings"
    scheduler.shutdown()


def test_an_override_that_does_not_parse_leaves_the_declared_condition(
    settings, runtime_on, clock, caplog
):
    declare_report(settings, "every('1 hour')")
    Task.objects.create(name="report", func="tests.support.tasks.noop", start_cond_override="dayly")
    scheduler = start(clock)
    assert TaskRun.objects.count() == 1
    assert "the condition override does not parse" in caplog.text
    assert scheduler.exit_code == 0
    scheduler.shutdown()


def test_an_override_present_at_start_up_applies(settings, runtime_on, clock):
    declare_report(settings, "every('1 hour')")
    Task.objects.create(name="report", func="tests.support.tasks.noop", start_cond_override="false")
    scheduler = start(clock)
    poll_and_tick(scheduler, clock, 3 * 3600)
    assert not TaskRun.objects.exists()
    scheduler.shutdown()


def test_a_poll_reads_only_the_task_rows_that_changed_and_each_once(settings, runtime_on, clock):
    """Rows are read by revision: a quiet poll reads none, a change is read once.

    Before, the poll read every row stamped within two seconds of the newest change
    again at each poll: at W1's ten thousand tasks, declared together, 47 ms a poll."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.ROCKET_TASKS = {
        f"t{i}": {"func": "tests.support.tasks.noop", "start_cond": "false", "execution": "main"}
        for i in range(3)
    }
    scheduler = start(clock)
    table, poller = scheduler.task_table, scheduler.poller
    applied: list[str] = []
    apply = table._apply
    table._apply = lambda row: (applied.append(row[2]), apply(row))  # type: ignore[method-assign]

    def read() -> list[str]:
        applied.clear()
        with CaptureQueriesContext(connection) as ctx:
            poller._read_task_changes()
        assert len(ctx.captured_queries) == 1
        return list(applied)

    before = poller.task_cursor
    assert before == Task.objects.order_by("-revision").values_list("revision", flat=True)[0]
    assert read() == []  # the declared tasks, written at start-up: not read again
    Task.objects.filter(name="t1").update(start_cond_override="every('1 hour')")
    assert read() == ["t1"] and poller.task_cursor > before
    assert str(scheduler.planner.specs["t1"].start_cond) == "every('1 hour')"
    assert str(scheduler.planner.specs["t0"].start_cond) == "false"
    assert read() == []  # applied: not read again
    scheduler.shutdown()


def test_rows_loaded_at_start_up_are_not_applied_again_by_the_first_poll(runtime_on, clock):
    """A row changed between the start-up's cursor and its load: read twice, applied once."""
    for customer in range(3):
        django_rocket.schedule(f"r{customer}", REMIND, "every('1 hour')")
    scheduler = Scheduler(registry.tasks(), clock=clock)
    scheduler.startup()
    table = scheduler.task_table
    first = Task.objects.get(name="r0").revision
    table.load(first - 1)  # as if the cursor had been read before r0 was written
    rows = list(Task.objects.filter(revision__gte=first).values_list(*tasktable._COLUMNS))
    assert len(rows) == 3 and table.apply(rows) == 0
    django_rocket.schedule("r1", REMIND, "every('2 hours')", replace=True)
    rows = list(Task.objects.filter(revision__gte=first).values_list(*tasktable._COLUMNS))
    assert table.apply(rows) == 1
    assert str(scheduler.planner.specs["r1"].start_cond) == "every('2 hours')"
    scheduler.shutdown()
