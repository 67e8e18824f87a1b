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

import dataclasses
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_rocket.clock import FakeClock
from django_rocket.conditions import RunRecord
from django_rocket.models import RunStatus, RunTrigger, Task, TaskRun
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
# the admin, or a task's conditions replaced (an override, a runtime task rescheduled), a
# run queued (run now; run at a later instant), another process's run of a task starting
# (runtask) or ending, as the poll hands them over.
change_strategy = st.one_of(
    st.none(),
    st.none(),
    st.tuples(st.sampled_from(["pause", "resume"]), st.sampled_from(NAMES)),
    st.tuples(st.just("queue"), st.sampled_from(NAMES), st.sampled_from([None, 0, 7, 30])),
    st.tuples(st.just("external"), st.sampled_from(NAMES), st.sampled_from(OUTCOMES)),
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


def make_spec(name: str, start: str, end: str | None, other: str, multilaunch: bool = False):
    made = spec(name, start.format(other=other), end=end.format(other=other) if end else None)
    return dataclasses.replace(made, multilaunch=multilaunch)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks=tasks_strategy, steps=steps_strategy, multilaunch=st.sets(st.sampled_from(NAMES)))
def test_the_planner_starts_and_stops_what_evaluating_everything_would(tasks, steps, multilaunch):
    specs = [
        make_spec(name, start, end, other, name in multilaunch)
        for name, (start, end, other) in zip(NAMES, tasks, strict=True)
    ]
    clock = FakeClock(START + timedelta(seconds=5))
    planner = planner_of(*specs, at=clock.now())
    ids = iter(range(1_000_000))
    external: list[tuple[str, str]] = []  # another process's runs in progress

    for advance, ending, change in steps:
        clock.advance(advance)
        now = clock.now()
        if ending is not None and planner.running:
            position, outcome = ending
            run_id = sorted(planner.running)[position % len(planner.running)]
            planner.finished(run_id, now, outcome)
        kind = change[0] if change is not None else None
        if kind == "replace":
            _, name, start, end, other = change
            multi = planner.specs[name].multilaunch
            planner.put_task(make_spec(name, start, end, other, multi), planner.enabled[name])
        elif kind == "queue":
            _, name, later = change
            pk = next(ids)
            due_at = None if later is None else now + timedelta(seconds=later)
            run = TaskRun(pk=pk, task=Task(name=name), status=RunStatus.QUEUED, due_at=due_at)
            planner.add_queued(run)
        elif kind == "external":
            _, name, outcome = change
            ended = [run for run in external if run[0] == name]
            if ended:  # its run ends; else one starts
                external.remove(ended[0])
                planner.history.record_finish(name, ended[0][1], now, outcome)
            else:
                run_id = f"x{next(ids)}"
                external.append((name, run_id))
                planner.history.record_start(RunRecord(name, run_id, now, trigger="manual"))
            planner.history_changed(name)
        elif kind is not None:
            planner.set_enabled(change[1], kind == "resume")

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

        # Every task, looked at directly: a queued run that is due, if the task may start
        # one (first come first), else its start condition, if enabled; either only while
        # no run of it is in progress, unless it allows more than one.
        expected_starts = {}
        for s in planner.specs.values():
            free = s.multilaunch or s.name not in planner.running_by_task
            ready = [
                q for q in planner.queued.get(s.name, []) if q.due_at is None or q.due_at <= now
            ]
            if ready and free:
                expected_starts[s.name] = (RunTrigger.MANUAL, ready[0].pk)
            elif (
                planner.enabled[s.name]
                and free
                and s.start_cond.evaluate(planner.context(s.name, now))[0]
            ):
                expected_starts[s.name] = (RunTrigger.SCHEDULED, None)
        due = planner.due(now, slots=0)
        got = {
            s.name: (RunTrigger.MANUAL if queued else RunTrigger.SCHEDULED, queued and queued.pk)
            for s, trigger, queued in due
        }
        assert got == expected_starts, f"at {now}"
        for s, trigger, queued in due:
            run_id = f"r{next(ids)}" if queued is None else f"q{queued.pk}"
            planner.started(s, run_id, trigger, now)


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
