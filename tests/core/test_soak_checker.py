"""The soak test's invariant checker (bench/soak.py) finds each kind of violation.

Fed a made-up ledger, run log and scheduler exits: each test plants one violation
and checks that exactly that class reports it, so a checker that silently passes
everything cannot hide behind a green soak.
"""

import importlib.util
import json
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("soak", ROOT / "bench" / "soak.py")
assert spec is not None and spec.loader is not None
soak = importlib.util.module_from_spec(spec)
sys.modules["soak"] = soak
spec.loader.exec_module(soak)

T0 = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)
TASKS = [
    soak.SoakTask("ok10", "ok", "thread", 10, frozenset({"success"})),
    soak.SoakTask("q_ok10", "ok", "tasks", 10, frozenset({"success"})),
]


@dataclass
class FakeSoak:
    """What check() reads of a Soak: its tasks, ledger, rows and scheduler exits."""

    work: Path
    run_rows: list[dict[str, Any]] = field(default_factory=list)
    incarnations: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ledger = self.work / "ledger.jsonl"
        self.ledger.touch()
        self.tasks = TASKS
        self.seed = 1
        self.args = SimpleNamespace(minutes=1)
        self.with_worker = True
        self.smtp = SimpleNamespace(inbox=SimpleNamespace(messages=[]))
        self.fault_log: list[Any] = []

    def rows(self) -> list[dict[str, Any]]:
        return self.run_rows

    def run(
        self,
        seconds: float,
        status: str = "success",
        task: str = "ok10",
        *,
        ledger: bool = True,
        end: float | None = 0.1,
        message: str = "",
    ) -> str:
        """Add one row started ``seconds`` after T0 and, unless told not, its ledger lines."""
        run_id = str(uuid.uuid4())
        started = T0 + timedelta(seconds=seconds)
        finished = started + timedelta(seconds=end or 0.1)
        self.run_rows.append(
            {
                "run_id": run_id,
                "task": task,
                "status": status,
                "trigger": "scheduled",
                "started_at": started,
                "finished_at": None if status in ("running", "queued") else finished,
                "message": message,
                "host": "h",
                "pid": 1,
            }
        )
        if ledger:
            self.line(run_id, task, started.timestamp() + 0.01, "start")
            if end is not None:
                self.line(run_id, task, started.timestamp() + end, "end")
        return run_id

    def line(self, run_id: str, task: str, t: float, phase: str) -> None:
        with self.ledger.open("a") as fh:
            fh.write(json.dumps({"run": run_id, "task": task, "t": t, "phase": phase}) + "\n")

    def check(self, **kwargs: Any) -> dict[str, int]:
        options = {"faults_planned": [], "final": [], "open_after_stop": [], "drain_code": 0}
        report = soak.check(self, **{**options, **kwargs})
        return report["violations"]


@pytest.fixture
def fake(tmp_path) -> FakeSoak:
    return FakeSoak(tmp_path)


def test_a_clean_history_has_no_violation(fake):
    for i in range(5):
        fake.run(i * 10.5)
    fake.run(60, "crash", end=None)  # killed mid-run: a crash with a ledger line is fine
    fake.run(71, "crash", ledger=False)  # killed before the call: fine too
    fake.run(82, "terminate", ledger=False, message="Terminated at scheduler shutdown.")
    assert fake.check() == {}


def test_two_runs_inside_one_every_slot(fake):
    fake.run(0)
    fake.run(9.5)  # every('10 seconds'): started inside the first run's slot
    assert fake.check() == {"slot_started_twice": 1}


def test_a_run_id_executed_twice(fake):
    run_id = fake.run(0)
    fake.line(run_id, "ok10", T0.timestamp() + 1, "start")
    assert fake.check() == {"executed_twice": 1}


def test_an_execution_missing_from_the_log(fake):
    fake.line(str(uuid.uuid4()), "ok10", T0.timestamp(), "start")
    fake.line("", "ok10", T0.timestamp() + 20, "start")  # a run id the task could not find
    assert fake.check() == {"missing_from_log": 2}


def test_runs_left_open(fake):
    local = fake.run(0, "running", end=None)
    remote = fake.run(0, "queued", "q_ok10", ledger=False)
    after_stop = [(local, "ok10", "running"), (remote, "q_ok10", "queued")]
    # The worker's run may wait for the drain; the thread run may not.
    assert fake.check(open_after_stop=after_stop) == {
        "left_open_after_stop": 1,
        "left_open_at_end": 2,
    }


@pytest.mark.parametrize(
    ("status", "message", "violation"),
    [
        ("success", "", True),
        ("inaction", "", True),
        ("fail", "ValueError: boom", True),
        ("fail", "The child process was killed by signal SIGKILL.", False),
        ("crash", "", False),
        ("terminate", "Timed out after 0:00:03.", False),
    ],
)
def test_rows_with_no_execution(fake, status, message, violation):
    fake.run(0, status, ledger=False, message=message)
    assert fake.check() == ({"row_without_execution": 1} if violation else {})


def test_an_outcome_the_function_did_not_have(fake):
    fake.run(0, "fail", message="Could not import the task function.")
    fake.run(10, "terminate", message="Timed out after 0:00:20.")
    fake.run(20, "terminate", message="Terminated at scheduler shutdown.")  # allowed
    assert fake.check() == {"wrong_outcome": 2}


def test_an_outcome_a_clean_stop_gave_up_on(fake):
    stop = "Terminated at scheduler shutdown. No result arrived from backend 'default'"
    fake.run(0, "crash", "q_ok10", message=stop)  # the worker's function had returned
    fake.run(10, "crash", "q_ok10", end=None, message=stop)  # still going: nobody knows
    assert fake.check() == {"outcome_lost_at_stop": 1}


def test_a_finish_recorded_long_after_the_function_ended(fake):
    fake.run(0, end=0.5)
    fake.run_rows[-1]["finished_at"] += timedelta(seconds=soak.FINISH_TOLERANCE + 1)
    assert fake.check() == {"finish_time_off": 1}


def test_two_executions_of_one_task_at_the_same_time(fake):
    fake.run(0, end=15)  # still running when the next one starts
    fake.run(10.5)
    fake.run(30, "crash", end=None)  # no end line: killed, left out
    fake.run(40.5)
    assert fake.check() == {"overlapping_runs": 1}


def test_scheduler_exits_that_were_not_injected(fake):
    def incarnation(code: int, injected: str = "") -> Any:
        proc = SimpleNamespace(pid=100 + len(fake.incarnations))
        inc = soak.Incarnation(0, 1, proc, fake.work / "none.log", 0.0, injected, code)
        fake.incarnations.append(inc)
        return inc

    incarnation(-9, "kill9")  # expected
    incarnation(0, "sigterm")  # expected
    incarnation(1, "sigterm")  # a SIGTERM must stop it cleanly
    incarnation(1)  # died by itself
    final = incarnation(0)
    assert fake.check(final=[final], drain_code=1) == {"unexpected_exit": 3}


def test_the_fault_plan_is_a_function_of_the_seed():
    import random

    first = soak.plan_faults(random.Random(19), 120)
    again = soak.plan_faults(random.Random(19), 120)
    other = soak.plan_faults(random.Random(20), 120)
    assert [vars(f) for f in first] == [vars(f) for f in again] != [vars(f) for f in other]
    assert {f.kind for f in first} == set(soak.FAULT_KINDS)  # the CI seed has every kind
    for fault in first:
        assert fault.at < 110
        assert fault.kind not in ("db_cut", "smtp_stop") or 5 <= fault.duration <= 30


def test_the_run_id_is_found_on_the_executor_frames(tmp_path, monkeypatch):
    """django-rocket gives a task no run id: the soak's tasks read it off the executor's frame."""
    from django_rocket.executors.local import thread_job
    from django_rocket.executors.outcome import ActiveRun, Launch
    from tests.support import soak_tasks

    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(soak_tasks.LEDGER_ENV, str(ledger))
    endings: list[Any] = []
    active = ActiveRun(Launch("run-1", "t", "f", {"task": "t", "period": 10}, "thread"), "thread")
    job = thread_job(active, soak_tasks.ok, 1000, lambda run_id, ending: endings.append(ending))
    # In a thread of its own, as a worker runs it: the job renames its thread.
    worker = threading.Thread(target=job)
    worker.start()
    worker.join(30)
    assert endings[0]["status"] == "success"
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [(line["run"], line["task"], line["phase"]) for line in lines] == [
        ("run-1", "t", "start"),
        ("run-1", "t", "end"),
    ]
