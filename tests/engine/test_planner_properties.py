"""The planner looks only where something changed; it must decide as if it looked everywhere.

Rocketry evaluates every condition on every cycle. The planner instead evaluates a task
when its wake-up comes (the condition's own next change) or when the runs its conditions
read change (``dependents``). A missing dependency or a wrong wake-up shows up as a task
that is due but not started, or a run whose end condition holds but goes on (issue found
this way: end conditions that read another task were never looked at again).

Each example declares a few tasks with conditions that read each other, then drives a
random sequence of events (the clock moving, runs ending with an outcome) through the
planner, as the scheduler's tick does. Before each pass it evaluates every condition
of every task directly, from the same history and instant: the runs the planner starts
and stops must be exactly those.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_rocket.clock import FakeClock
from django_rocket.models import RunStatus, RunTrigger
from tests.engine.test_planner import START, planner_of, spec

NAMES = ["a", "b", "c"]

START_CONDITIONS = [
    "every('20 seconds')",
    "after_success('{other}')",
    "after_fail('{other}')",
    "after_finish('{other}')",
    "running('{other}')",
    "~running('{other}') & every('30 seconds')",
    "after_any_success('a', 'b')",
    "time_of_minute.between('10', '40')",
    "minutely & ~running('{other}')",
    "retry(2)",
    "every('15 seconds') | retry(1)",
    "succeeded('{other}').this_minute & every('10 seconds')",
    "running('{other}').more_than('10 seconds')",
    "daily.after('09:01') | every('40 seconds') & after_fail('{other}')",
    "cron('*/2 * * * *')",
    "(started('{other}').this_minute >= 2)",
    "~succeeded.this_minute & time_of_minute.after('20')",
    "after_all_success('a', 'c') & ~running",
    "false",
]
END_CONDITIONS = [
    None,
    None,
    "running('{other}')",
    "after_success('{other}')",
    "running.more_than('25 seconds')",
    "time_of_minute.after('50')",
    "failed('{other}').this_minute",
    "(running('{other}') >= 1) & running.more_than('5 seconds')",
]
OUTCOMES = [RunStatus.SUCCESS, RunStatus.FAIL, RunStatus.FAIL, RunStatus.INACTION]

tasks_strategy = st.lists(
    st.tuples(
        st.sampled_from(START_CONDITIONS),
        st.sampled_from(END_CONDITIONS),
        st.sampled_from(NAMES),
    ),
    min_size=len(NAMES),
    max_size=len(NAMES),
)
# A change an operator or a deploy makes while the scheduler runs: a pause or a resume in
# the admin, or a task's conditions replaced (an override, a runtime task rescheduled).
change_strategy = st.one_of(
    st.none(),
    st.none(),
    st.tuples(st.sampled_from(["pause", "resume"]), st.sampled_from(NAMES)),
    st.tuples(
        st.just("replace"),
        st.sampled_from(NAMES),
        st.sampled_from(START_CONDITIONS),
        st.sampled_from(END_CONDITIONS),
        st.sampled_from(NAMES),
    ),
)
# One step: seconds the clock moves, which run in progress ends (by position) how, and
# what changes.
steps_strategy = st.lists(
    st.tuples(
        st.integers(0, 25),
        st.one_of(st.none(), st.tuples(st.integers(0, 5), st.sampled_from(OUTCOMES))),
        change_strategy,
    ),
    min_size=1,
    max_size=30,
)


def make_spec(name: str, start: str, end: str | None, other: str):
    return spec(name, start.format(other=other), end=end.format(other=other) if end else None)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks=tasks_strategy, steps=steps_strategy)
def test_the_planner_starts_and_stops_what_evaluating_everything_would(tasks, steps):
    specs = [
        make_spec(name, start, end, other)
        for name, (start, end, other) in zip(NAMES, tasks, strict=True)
    ]
    clock = FakeClock(START + timedelta(seconds=5))
    planner = planner_of(*specs, at=clock.now())
    ids = iter(range(1_000_000))

    for advance, ending, change in steps:
        clock.advance(advance)
        now = clock.now()
        if ending is not None and planner.running:
            position, outcome = ending
            run_id = sorted(planner.running)[position % len(planner.running)]
            planner.finished(run_id, now, outcome)
        if change is not None and change[0] == "replace":
            _, name, start, end, other = change
            planner.put_task(make_spec(name, start, end, other), planner.enabled[name])
        elif change is not None:
            planner.set_enabled(change[1], change[0] == "resume")

        # Every end condition of every task with a run in progress, evaluated directly.
        expected_stops = {
            run_id
            for run_id, state in planner.running.items()
            if (cond := planner.specs[state.task].end_cond) is not None
            and cond.evaluate(planner.context(state.task, now))[0]
        }
        stopped: list[str] = []
        planner.check_end_conditions(now, lambda run_id, why, into=stopped: into.append(run_id))
        assert set(stopped) == expected_stops, f"at {now}: stopped {stopped}"
        for run_id in stopped:  # a terminated run ends at once here
            planner.finished(run_id, now, RunStatus.TERMINATE)

        # Every start condition, evaluated directly: due, and no run in progress.
        expected_starts = {
            s.name
            for s in planner.specs.values()
            if planner.enabled[s.name]
            and s.name not in planner.running_by_task
            and s.start_cond.evaluate(planner.context(s.name, now))[0]
        }
        due = planner.due(now, slots=0)
        assert {s.name for s, _, _ in due} == expected_starts, f"at {now}"
        for s, trigger, _ in due:
            planner.started(s, f"r{next(ids)}", trigger, now)


def test_the_reference_itself_starts_and_stops_runs():
    """The comparison above is not empty: with these conditions runs start and end."""
    clock = FakeClock(START + timedelta(seconds=5))
    planner = planner_of(
        spec("a", "every('20 seconds')"),
        spec("b", "after_success('a')", end="running('a')"),
        spec("c", "false"),
    )
    planner.started(planner.specs["a"], "a0", RunTrigger.SCHEDULED, clock.now())
    clock.advance(1)
    planner.finished("a0", clock.now(), RunStatus.SUCCESS)
    assert [s.name for s, _, _ in planner.due(clock.now(), slots=0)] == ["b"]
    planner.started(planner.specs["b"], "b0", RunTrigger.SCHEDULED, clock.now())
    clock.advance(20)
    assert [s.name for s, _, _ in planner.due(clock.now(), slots=0)] == ["a"]
    planner.started(planner.specs["a"], "a1", RunTrigger.SCHEDULED, clock.now())
    stopped: list[str] = []
    planner.check_end_conditions(clock.now(), lambda run_id, why: stopped.append(run_id))
    assert stopped == ["b0"]
