"""Execution "thread" reuses worker threads; a run never waits for one to be free."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import connections

from django_rocket.executors import current
from django_rocket.executors import runner as runner_module
from django_rocket.executors.local import ThreadWorkers
from django_rocket.executors.outcome import Launch, Outcome
from django_rocket.executors.runner import Runner
from tests.conftest import wait_until
from tests.support import tasks


class Collect:
    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}
        self.lock = threading.Lock()

    def __call__(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes[outcome.run_id] = outcome


@pytest.fixture
def runner():
    collect = Collect()
    r = Runner(collect, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    r.collected = collect  # type: ignore[attr-defined]
    yield r
    r.close()


def thread_launch(run_id: str, gate: str = "") -> Launch:
    params = {"gate": gate} if gate else {}
    return Launch(run_id, "t", "tests.support.tasks.thread_identity", params, execution="thread")


def test_sequential_thread_runs_share_one_worker(runner):
    for i in range(5):
        runner.launch(thread_launch(f"r{i}"))
        wait_until(lambda i=i: f"r{i}" in runner.collected.outcomes, 10, f"run r{i}")
    outcomes = runner.collected.outcomes
    assert {o.status for o in outcomes.values()} == {"success"}
    assert len({o.result["ident"] for o in outcomes.values()}) == 1
    assert runner._workers.started == 1
    # The thread carries the task's name while it runs it, for logging's %(threadName)s.
    assert {o.result["name"] for o in outcomes.values()} == {"rocket-t"}


@pytest.mark.django_db(transaction=True)
def test_a_thread_run_closes_the_connection_it_opened_and_only_then_reports(runner):
    tasks.QUERIED.clear()
    for i in range(2):  # the second on the same worker: its first run's connection is gone
        launch = Launch(f"q{i}", "t", "tests.support.tasks.queries_the_database", {}, "thread")
        runner.launch(launch)
        wait_until(lambda i=i: f"q{i}" in runner.collected.outcomes, 10, f"run q{i}")
        assert runner.collected.outcomes[f"q{i}"].status == "success"
        connection = tasks.QUERIED[i]
        assert connection is not connections["default"]  # the worker's, not this thread's
        assert connection.connection is None  # closed before the outcome was reported
    runner.launch(thread_launch("plain"))  # a run that opens none leaves them be
    wait_until(lambda: "plain" in runner.collected.outcomes, 10, "the plain run")
    assert runner._workers.started == 1


def test_a_long_run_does_not_hold_up_a_short_one(runner):
    tasks.GATES["long"] = threading.Event()
    try:
        runner.launch(thread_launch("long", gate="long"))
        runner.launch(thread_launch("short"))
        wait_until(lambda: "short" in runner.collected.outcomes, 10, "the short run")
        assert "long" not in runner.collected.outcomes
        assert runner._workers.started == 2
    finally:
        tasks.GATES["long"].set()
    wait_until(lambda: "long" in runner.collected.outcomes, 10, "the long run")
    assert runner.collected.outcomes["long"].status == "success"


def test_concurrent_runs_get_one_worker_each_and_then_reuse_them(runner):
    tasks.GATES["burst"] = threading.Event()
    try:
        for i in range(4):
            runner.launch(thread_launch(f"b{i}", gate="burst"))
        assert runner.in_flight == 4
        assert runner._workers.started == 4
    finally:
        tasks.GATES["burst"].set()
    wait_until(lambda: len(runner.collected.outcomes) == 4, 10, "the burst")
    wait_until(lambda: runner._workers._idle == 4, 10, "four idle workers")
    for i in range(4):
        runner.launch(thread_launch(f"again{i}"))
    wait_until(lambda: len(runner.collected.outcomes) == 8, 10, "the second round")
    assert runner._workers.started == 4


def test_an_idle_worker_retires_and_the_next_run_starts_a_new_one():
    workers = ThreadWorkers(idle_timeout=0.01)
    done = threading.Event()
    workers.submit(done.set)
    assert done.wait(10)
    wait_until(lambda: workers._idle == 0 and workers.started == 1, 10, "the worker to retire")
    idents: list[int] = []
    again = threading.Event()
    workers.submit(lambda: (idents.append(threading.get_ident()), again.set()))
    assert again.wait(10)
    assert workers.started == 2
    workers.close()


def test_no_job_is_lost_when_handed_over_as_a_worker_times_out():
    # A timeout of zero makes every hand-over race the worker's retirement.
    workers = ThreadWorkers(idle_timeout=0.0)
    ran: list[int] = []
    lock = threading.Lock()

    def job(n: int):
        def run() -> None:
            with lock:
                ran.append(n)

        return run

    for n in range(2000):
        workers.submit(job(n))
    wait_until(lambda: len(ran) == 2000, 30, "all 2000 jobs")
    assert sorted(ran) == list(range(2000))
    workers.close()


def test_a_job_that_raises_does_not_kill_its_worker(caplog):
    workers = ThreadWorkers()
    workers.submit(lambda: 1 / 0)
    wait_until(lambda: workers._idle == 1, 10, "the worker to come back")
    done = threading.Event()
    workers.submit(done.set)
    assert done.wait(10)
    assert workers.started == 1
    assert "bookkeeping raised" in caplog.text
    workers.close()


def test_close_releases_idle_workers_and_refuses_new_runs():
    workers = ThreadWorkers()
    done = threading.Event()
    workers.submit(done.set)
    assert done.wait(10)
    wait_until(lambda: workers._idle == 1, 10, "an idle worker")
    before = {t.ident for t in threading.enumerate() if t.name == "rocket-worker"}
    assert before
    workers.close()
    wait_until(
        lambda: not before & {t.ident for t in threading.enumerate() if t.name == "rocket-worker"},
        10,
        "the idle worker to exit",
    )
    with pytest.raises(RuntimeError, match="shutting down"):
        workers.submit(done.set)


def test_the_stop_flag_of_one_run_does_not_leak_into_the_next(runner):
    tasks.GATES["stop"] = threading.Event()
    seen: list[bool] = []
    runner.launch(thread_launch("first", gate="stop"))
    runner.terminate("first", "Stopped by the test.")
    tasks.GATES["stop"].set()
    wait_until(lambda: "first" in runner.collected.outcomes, 10, "the first run")
    assert runner.collected.outcomes["first"].status == "terminate"
    # Same worker, fresh run: the flag it sees is its own, not the stopped one's.
    runner._functions["tests.support.tasks.sees_stop"] = lambda: seen.append(
        current.current_run_should_stop()
    )
    runner.launch(Launch("second", "t", "tests.support.tasks.sees_stop", execution="thread"))
    wait_until(lambda: "second" in runner.collected.outcomes, 10, "the second run")
    assert seen == [False]
    assert runner._workers.started == 1


def test_a_task_function_is_imported_once_per_runner(runner, monkeypatch):
    calls: list[str] = []
    real = runner_module.load_function

    def counting(path: str):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(runner_module, "load_function", counting)
    for i in range(3):
        runner.launch(Launch(f"m{i}", "t", "tests.support.tasks.noop", execution="main"))
    assert calls == ["tests.support.tasks.noop"]
    assert [runner.collected.outcomes[f"m{i}"].status for i in range(3)] == ["success"] * 3


def test_an_unimportable_function_is_not_cached(runner):
    for _ in range(2):
        with pytest.raises(ImportError):
            runner.launch(
                Launch("x", "t", "tests.support.tasks.does_not_exist", execution="thread")
            )
    assert "tests.support.tasks.does_not_exist" not in runner._functions
    assert runner.in_flight == 0


def test_a_thread_the_system_refuses_names_the_cap_and_is_not_counted(runner, monkeypatch):
    """ "can't start new thread" (a container's pids limit, ulimit -u) says what to set."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError) as excinfo:
        runner.launch(thread_launch("refused"))
    assert str(excinfo.value) == (
        "can't start new thread (0 thread run(s) in progress): the system refused another "
        "thread. ROCKET_MAX_THREADS caps how many thread runs go at once; the others wait "
        "for a free thread."
    )
    assert (runner._workers.busy, runner._workers.started) == (0, 0)
    assert not runner.is_running("refused")


def test_busy_counts_threads_until_their_function_returns():
    freed: list[int] = []
    workers = ThreadWorkers(on_free=lambda: freed.append(workers.busy))
    tasks.GATES["busy"] = threading.Event()
    try:
        for _ in range(3):
            workers.submit(lambda: tasks.thread_identity("busy"))
        assert workers.busy == 3
        tasks.GATES["busy"].set()
        wait_until(lambda: len(freed) == 3, 10, "three frees")
        assert workers.busy == 0
        assert sorted(freed) == [0, 1, 2]  # each told after its own thread was counted free
    finally:
        tasks.GATES.pop("busy").set()
        workers.close()
