"""MemoryHistory: the in-memory History the scheduler keeps (reasoned from SEMANTICS.md)."""

from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest

from django_rocket.conditions import History, MemoryHistory, RunRecord

from .helpers import at, run

T0 = at("2026-03-02 10:00")
MINUTE = timedelta(minutes=1)


def test_memory_history_is_a_history():
    assert isinstance(MemoryHistory(), History)


def test_empty_history_answers_nothing():
    history = MemoryHistory()
    assert history.last_start("t") is None
    assert history.last_finish("t", frozenset({"success"})) is None
    assert len(history.events("t", "start", None, None)) == 0
    assert list(history.running("t")) == []
    assert history.retry_chain("t") is None


def test_latest_is_latest_in_time_not_insertion():
    late = run(T0 + 5 * MINUTE, T0 + 6 * MINUTE, "success")
    early = run(T0, T0 + 9 * MINUTE, "success")
    history = MemoryHistory([late, early])
    assert history.last_start("t") == T0 + 5 * MINUTE
    assert history.last_finish("t", frozenset({"success"})) == T0 + 9 * MINUTE


def test_events_are_sorted_and_half_open():
    runs = [run(T0 + k * MINUTE, T0 + k * MINUTE, "fail") for k in (3, 0, 2, 1)]
    history = MemoryHistory(runs)
    found = history.events("t", "fail", T0 + MINUTE, T0 + 3 * MINUTE)
    assert list(found) == [T0 + MINUTE, T0 + 2 * MINUTE]
    assert len(found) == 2
    assert found[-1] == T0 + 2 * MINUTE
    assert list(history.events("t", "start", None, None)) == [T0 + k * MINUTE for k in range(4)]
    assert len(history.events("t", "success", None, None)) == 0


def test_times_in_other_zones_are_compared_as_instants():
    berlin = ZoneInfo("Europe/Berlin")
    history = MemoryHistory([run(at("2026-03-02 11:30", berlin))])
    assert history.last_start("t") == at("2026-03-02 10:30", UTC)
    assert list(history.events("t", "start", at("2026-03-02 10:30"), None)) == [
        at("2026-03-02 10:30")
    ]


def test_running_and_crash():
    history = MemoryHistory()
    history.record_start(RunRecord("t", 1, T0))
    history.record_start(RunRecord("t", 2, T0 + MINUTE))
    assert list(history.running("t")) == [T0, T0 + MINUTE]
    history.record_finish("t", 1, T0 + 2 * MINUTE, "crash")
    assert list(history.running("t")) == [T0 + MINUTE]
    assert history.last_finish("t", frozenset({"crash"})) == T0 + 2 * MINUTE


def test_record_finish_again_replaces_the_finish():
    history = MemoryHistory([RunRecord("t", 1, T0)])
    history.record_finish("t", 1, T0 + MINUTE, "fail")
    history.record_finish("t", 1, T0 + 2 * MINUTE, "success")
    assert history.last_finish("t", frozenset({"fail"})) is None
    assert history.last_finish("t", frozenset({"success"})) == T0 + 2 * MINUTE


def test_unknown_runs_and_bad_values_are_refused():
    history = MemoryHistory([RunRecord("t", 1, T0)])
    with pytest.raises(KeyError):
        history.record_finish("t", 99, T0, "success")
    with pytest.raises(ValueError, match="already recorded"):
        history.record_start(RunRecord("t", 1, T0))
    with pytest.raises(ValueError, match="Unknown outcome"):
        history.record_finish("t", 1, T0, "exploded")
    with pytest.raises(ValueError, match="aware"):
        RunRecord("t", 2, T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="both"):
        RunRecord("t", 2, T0, finished_at=T0)
    with pytest.raises(ValueError, match="trigger"):
        RunRecord("t", 2, T0, trigger="cron")


def _chain(*outcomes_and_triggers):
    history = MemoryHistory()
    for index, (outcome, trigger) in enumerate(outcomes_and_triggers):
        start = T0 + index * MINUTE
        finish = None if outcome is None else start + MINUTE / 2
        history.record_start(RunRecord("t", index, start, finish, outcome, trigger))
    return history.retry_chain("t")


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([("fail", "scheduled")], 1),
        ([("fail", "scheduled"), ("fail", "retry"), ("fail", "retry")], 3),
        # A fresh (non-retry) run starts a new chain even after failures.
        ([("fail", "scheduled"), ("fail", "retry"), ("fail", "scheduled")], 1),
        ([("fail", "scheduled"), ("fail", "retry"), ("fail", "manual"), ("fail", "retry")], 2),
        ([("fail", "scheduled"), ("success", "retry")], None),
        ([("success", "scheduled"), ("fail", "retry")], 1),
        ([("fail", "scheduled"), ("crash", "retry"), ("fail", "retry")], 1),
        ([("fail", "scheduled"), ("terminate", "retry")], None),
        ([("fail", "scheduled"), (None, "retry")], None),
        ([], None),
    ],
)
def test_retry_chain(runs, expected):
    assert _chain(*runs) == expected


def test_retry_chain_with_a_run_in_progress_is_none():
    history = MemoryHistory([RunRecord("t", 1, T0, T0 + MINUTE, "fail")])
    history.record_start(RunRecord("t", 2, T0 - MINUTE))  # an older run still going
    assert history.retry_chain("t") is None


def test_retry_chain_follows_time_order_ties_by_insertion():
    history = MemoryHistory(
        [
            RunRecord("t", "b", T0, T0 + MINUTE, "fail", "retry"),
            RunRecord("t", "a", T0 - MINUTE, T0, "fail", "scheduled"),
            RunRecord("t", "c", T0, T0 + MINUTE, "fail", "retry"),
        ]
    )
    assert history.retry_chain("t") == 3


def test_forget_and_forget_before_keep_the_latest_facts():
    history = MemoryHistory(
        [
            run(T0 - timedelta(days=40), T0 - timedelta(days=40), "success"),
            run(T0 - timedelta(days=39), T0 - timedelta(days=39), "success"),
            run(T0 - timedelta(days=38), T0 - timedelta(days=38), "fail"),
            run(T0 - timedelta(days=2), T0 - timedelta(days=2), "inaction"),
            RunRecord("t", "live", T0 - timedelta(days=50)),
        ]
    )
    assert history.forget_before(T0 - timedelta(days=30)) == 1
    assert history.last_finish("t", frozenset({"success"})) == T0 - timedelta(days=39)
    assert history.last_finish("t", frozenset({"fail"})) == T0 - timedelta(days=38)
    assert list(history.running("t")) == [T0 - timedelta(days=50)]
    assert len(history.runs("t")) == 4
    history.forget("t", "live")
    assert list(history.running("t")) == []


def test_forget_before_leaves_a_consistent_history():
    outcomes = ["success", "fail", "inaction", "terminate", "crash"]
    runs = [
        RunRecord("t", k, T0 + k * MINUTE, T0 + k * MINUTE + MINUTE / 2, outcomes[k % 5], "retry")
        for k in range(200)
    ]
    history = MemoryHistory(runs)
    assert history.forget_before(T0 + 150 * MINUTE) == 150
    fresh = MemoryHistory(history.runs("t"))
    for kind in ["start", *outcomes]:
        assert list(history.events("t", kind, None, None)) == list(
            fresh.events("t", kind, None, None)
        )
    assert history.retry_chain("t") == fresh.retry_chain("t")
    assert history.last_finish("t", frozenset(outcomes)) == T0 + 199 * MINUTE + MINUTE / 2


def test_last_run_carries_the_run_id_and_exception_types():
    history = MemoryHistory()
    assert history.last_run("t") is None
    history.record_start(RunRecord("t", "a", T0))
    history.record_start(RunRecord("t", "b", T0 + MINUTE))
    history.record_finish("t", "b", T0 + 2 * MINUTE, "fail", ["builtins.OSError"])
    latest = history.last_run("t")
    assert latest is not None and latest.run_id == "b"
    assert latest.exception_types == ("builtins.OSError",)
    assert RunRecord("t", 1, T0, exception_types=["x.Y"]).exception_types == ("x.Y",)
    history.forget_before(T0 + timedelta(days=1))
    assert history.last_run("t").exception_types == ("builtins.OSError",)
