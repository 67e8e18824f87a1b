"""Why a task is or is not due: the service behind ``explaintask`` and ``showtasks``.

Both read the run history through :func:`django_rocket.engine.snapshot.load`, the
snapshot the scheduler itself loads when it becomes active, so they see what
the scheduler sees: the latest start and finish of each outcome, the recent
runs, the runs in progress, and the recent events that counting conditions
look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from typing import Any

from django.db.models import Q
from django.utils import timezone

from django_rocket import RocketError, registry
from django_rocket.conditions import Condition, Context, Explanation, parse
from django_rocket.conditions.bounded import BoundedHistory
from django_rocket.conf import conf
from django_rocket.display import format_runtime
from django_rocket.engine import snapshot
from django_rocket.models import FINISHED_STATUSES, Task, TaskRun
from django_rocket.ops.overview import RetryDue, retry_due, task_overview
from django_rocket.ops.schedules import effective_spec
from django_rocket.registry import OVERRIDE, RUNTIME, TaskSpec

NOTHING = "—"


class ConditionFailed(RocketError):
    """Evaluating a condition raised; the message names the task and the error."""


def _snapshot(now: datetime, conditions: dict[str, list[Condition | None]]) -> BoundedHistory:
    recent = max(
        (snapshot.retry_depth(cond) for conds in conditions.values() for cond in conds), default=0
    )
    needs = snapshot.needs_of(conditions)
    return snapshot.load(now, needs=needs, tz=registry.scheduler_zone(), recent=recent)[0]


@dataclass(frozen=True)
class Verdict:
    """A start condition evaluated for one task at one instant, with what else decides."""

    condition_true: bool
    next_change: datetime | None
    enabled: bool
    running: tuple[datetime, ...]
    multilaunch: bool
    retry: bool = False

    @property
    def blocked(self) -> bool:
        return bool(self.running) and not self.multilaunch

    @property
    def due(self) -> bool:
        return self.condition_true and self.enabled and not self.blocked

    @property
    def state(self) -> str:
        """``due``, ``busy``, ``paused``, ``at`` (see next_change) or ``event``."""
        if not self.enabled:
            return "paused"
        if self.condition_true:
            return "busy" if self.blocked else "due"
        return "at" if self.next_change is not None else "event"


def _verdict(
    spec: TaskSpec, cond: Condition, enabled: bool, snapshot: BoundedHistory, at: datetime
) -> tuple[Verdict, Context]:
    tz = registry.scheduler_zone()
    ctx = Context(task=spec.name, now=at.astimezone(tz), history=snapshot, tz=tz)
    try:
        value, change = cond.evaluate(ctx)
        # As the scheduler decides the trigger: a retry if only a retry node made it true.
        retry = value and cond.has_retry() and not cond.is_true(replace(ctx, retry_disabled=True))
    except Exception as exc:
        raise ConditionFailed(
            f"The condition {str(cond)!r} of task {spec.name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    verdict = Verdict(
        condition_true=value,
        next_change=change.astimezone(tz) if change is not None else None,
        enabled=enabled,
        running=tuple(t.astimezone(tz) for t in snapshot.running(spec.name)),
        multilaunch=spec.multilaunch,
        retry=retry,
    )
    return verdict, ctx


# ---------------------------------------------------------------------- explaintask


@dataclass(frozen=True)
class TaskExplanation:
    """Why one task is or is not due at one instant."""

    task: str
    at: datetime
    time_zone: str
    condition: str
    is_start_condition: bool
    declared: bool
    queued: bool
    verdict: Verdict
    tree: Explanation
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Where the start condition came from: "settings", "override" (the admin) or "runtime".
    condition_source: str = "settings"
    declared_condition: str = ""
    retry: RetryDue | None = None

    @property
    def due(self) -> bool:
        return self.verdict.due

    @property
    def reason(self) -> str:
        """One sentence saying whether the task is due and why."""
        v = self.verdict
        if v.due:
            kind = " as a retry" if v.retry else ""
            return f"Due: the condition is true; the scheduler starts it{kind} at its next tick."
        reasons = []
        if not v.condition_true:
            reasons.append("the condition is false")
        if not v.enabled:
            reasons.append("the task is paused")
        if v.condition_true and v.blocked:
            started = _when(v.running[-1])
            reasons.append(f"a run started at {started} is in progress and multilaunch is off")
        if not self.declared:
            reasons.append("the task is no longer in ROCKET_TASKS")
        text = "Not due: " + "; ".join(reasons) + "."
        if self.queued:
            text += " A manual run is queued; the scheduler starts it whatever the condition."
        return text

    def to_dict(self) -> dict[str, Any]:
        """Return the explanation as JSON-able data."""
        v = self.verdict
        return {
            "task": self.task,
            "at": self.at.isoformat(),
            "time_zone": self.time_zone,
            "condition": self.condition,
            "is_start_condition": self.is_start_condition,
            "condition_source": self.condition_source,
            "condition_true": v.condition_true,
            "enabled": v.enabled,
            "declared": self.declared,
            "multilaunch": v.multilaunch,
            "running": [t.isoformat() for t in v.running],
            "queued": self.queued,
            "due": v.due,
            "trigger": ("retry" if v.retry else "scheduled") if v.due else None,
            "reason": self.reason,
            "next_change": _iso(v.next_change),
            "retry": None if self.retry is None else _retry_dict(self.retry, self.at),
            "tree": self.tree.to_dict(),
            "history": {
                name: {key: _jsonable(value) for key, value in facts.items()}
                for name, facts in self.history.items()
            },
        }

    def render(self) -> str:
        """Return the explanation as text for a terminal."""
        v = self.verdict
        which = "Condition" if self.is_start_condition else "Condition (from --condition)"
        lines = [
            f"Task {self.task!r} at {_when(self.at)} ({self.time_zone})",
            f"{which}: {self.condition}{_source_note(self)}",
            f"Enabled: {'yes' if v.enabled else 'no (paused)'}"
            + ("" if self.declared else "; not declared in ROCKET_TASKS"),
            self.reason,
            *([f"Retry: {self.retry.describe(self.at)}"] if self.retry is not None else []),
            f"Next change: {_change(v.next_change, self.at)}",
            "",
            "Condition tree (value, condition, facts it used, when it may change):",
            _render_tree(self.tree, "  "),
            "",
            "Run history the conditions read:",
        ]
        for name, facts in self.history.items():
            lines.append(f"  {name}:")
            for key, value in facts.items():
                lines.append(f"    {key.replace('_', ' ')}: {_fact(value)}")
        return "\n".join(lines)


def explain_task(
    spec: TaskSpec, *, at: datetime | None = None, condition: Condition | str | None = None
) -> TaskExplanation:
    """Explain ``spec``'s start condition (or ``condition``) at ``at`` (default: now).

    ``at`` may be naive: it is then wall time in ``ROCKET_TIME_ZONE``. The run
    log is read as stored, so runs after ``at`` are not hidden.
    """
    tz = registry.scheduler_zone()
    if at is None:
        at = timezone.now()
    elif at.utcoffset() is None:
        at = at.replace(tzinfo=tz)
    at = at.astimezone(tz)
    if isinstance(condition, str):
        condition = parse(condition)
    cond = condition if condition is not None else spec.start_cond
    row = Task.objects.filter(name=spec.name).only("enabled", "declared", "start_cond").first()
    enabled = row.enabled if row is not None else spec.enabled
    declared = row.declared if row is not None else True
    snapshot = _snapshot(at, {spec.name: [cond]})
    verdict, ctx = _verdict(spec, cond, enabled, snapshot, at)
    try:
        tree = cond.explain(ctx)
        retry = retry_due(cond, ctx)
    except Exception as exc:
        raise ConditionFailed(
            f"Explaining the condition {str(cond)!r} of task {spec.name!r} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    queued = TaskRun.objects.queued().filter(task__name=spec.name).exists()
    names = [spec.name, *sorted(cond.depends_on(spec.name) - {spec.name})]
    return TaskExplanation(
        task=spec.name,
        at=at,
        time_zone=str(tz),
        condition=str(cond),
        is_start_condition=condition is None,
        declared=declared,
        queued=queued,
        verdict=verdict,
        tree=tree,
        history={name: _history_facts(snapshot, name, tz) for name in names},
        condition_source=spec.condition_source,
        declared_condition=row.start_cond if row is not None else "",
        retry=retry,
    )


def _source_note(explanation: TaskExplanation | TaskState) -> str:
    """Say where a start condition came from, when it is not simply settings.py."""
    if explanation.condition_source == OVERRIDE:
        declared = explanation.declared_condition or "—"
        return f" (override set in the admin; ROCKET_TASKS declares: {declared})"
    if explanation.condition_source == RUNTIME:
        return " (runtime task, created by schedule())"
    return ""


def _history_facts(snapshot: BoundedHistory, name: str, tz: tzinfo) -> dict[str, Any]:
    def local(value: datetime | None) -> datetime | None:
        return value.astimezone(tz) if value is not None else None

    facts: dict[str, Any] = {"last_start": local(snapshot.last_start(name))}
    for outcome in FINISHED_STATUSES:
        kind = str(outcome.value)
        facts[f"last_{kind}"] = local(snapshot.last_finish(name, frozenset({kind})))
    facts["running_since"] = [local(t) for t in snapshot.running(name)]
    facts["retry_chain"] = snapshot.retry_chain(name)
    return facts


# ---------------------------------------------------------------------- showtasks


@dataclass(frozen=True)
class TaskState:
    """One line of ``showtasks``."""

    task: str
    condition: str
    enabled: bool | None = None
    status: str = ""
    last_run: datetime | None = None
    last_success: datetime | None = None
    last_failure: datetime | None = None
    verdict: Verdict | None = None
    problem: str = ""
    condition_source: str = "settings"
    declared_condition: str = ""

    @property
    def next(self) -> str:
        if self.problem:
            return "invalid"
        return self.verdict.state if self.verdict is not None else "unknown"

    def to_dict(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "task": self.task,
            "enabled": self.enabled,
            "condition": self.condition,
            "condition_source": self.condition_source,
            "status": self.status or None,
            "last_run": _iso(self.last_run),
            "last_success": _iso(self.last_success),
            "last_failure": _iso(self.last_failure),
            "condition_true": v.condition_true if v is not None else None,
            "due": v.due if v is not None else False,
            "next": self.next,
            "next_change": _iso(v.next_change) if v is not None else None,
            "problem": self.problem or None,
        }


def task_states(at: datetime | None = None) -> list[TaskState]:
    """Return the state of every task in ``ROCKET_TASKS``, in declaration order, then runtime tasks.

    Each with the condition the scheduler applies: the admin's override, if set.
    """
    tz = registry.scheduler_zone()
    at = (at or timezone.now()).astimezone(tz)
    raw = conf.tasks
    if not isinstance(raw, dict):
        return []
    declared, problems = registry.collect()
    rows = {
        t.name: t
        for t in Task.objects.filter(
            Q(name__in=[str(n) for n in raw]) | Q(source=RUNTIME, declared=True)
        ).order_by("name")
    }
    specs = {
        name: spec
        for name in [*(n for n in raw if n in declared), *(n for n in rows if n not in raw)]
        if (spec := _effective(name, rows.get(name), declared)) is not None
    }
    overview = task_overview(list(rows.values()), now=at)
    snapshot = _snapshot(
        at, {name: [spec.start_cond, spec.end_cond] for name, spec in specs.items()}
    )
    states = []
    for name in [*raw, *(n for n in specs if n not in raw)]:
        spec = specs.get(name)
        if spec is None:
            own = [p for p in problems if p.obj == name and p.is_serious()]
            text = raw[name].get("start_cond", "") if isinstance(raw[name], dict) else ""
            states.append(
                TaskState(
                    task=str(name),
                    condition=str(text),
                    problem=own[0].msg if own else "invalid; run manage.py check",
                )
            )
            continue
        row = rows.get(name)
        enabled = row.enabled if row is not None else spec.enabled
        info = overview.get(row.pk) if row is not None else None
        try:
            verdict, _ = _verdict(spec, spec.start_cond, enabled, snapshot, at)
        except ConditionFailed as exc:
            states.append(TaskState(task=name, condition=str(spec.start_cond), problem=str(exc)))
            continue
        states.append(
            TaskState(
                task=name,
                condition=str(spec.start_cond),
                condition_source=spec.condition_source,
                declared_condition=row.start_cond if row is not None else "",
                enabled=enabled,
                status=info.status if info else "",
                last_run=_local(info.last_run.started_at, tz) if info and info.last_run else None,
                last_success=(
                    _local(info.last_success.finished_at, tz)
                    if info and info.last_success
                    else None
                ),
                last_failure=(
                    _local(info.last_failure.finished_at, tz)
                    if info and info.last_failure
                    else None
                ),
                verdict=verdict,
            )
        )
    return states


def _effective(name: str, row: Task | None, declared: dict[str, TaskSpec]) -> TaskSpec | None:
    if row is None:
        return declared.get(name)
    return effective_spec(row, declared)


def render_table(states: list[TaskState], at: datetime) -> str:
    """Return the states as an aligned text table."""
    header = ("TASK", "ENABLED", "STATUS", "LAST RUN", "LAST SUCCESS", "LAST FAILURE", "NEXT")
    rows = []
    for s in states:
        if s.problem:
            problem = s.problem.splitlines()[0]
            rows.append((s.task, NOTHING, "invalid", NOTHING, NOTHING, NOTHING, "—", problem))
            continue
        rows.append(
            (
                s.task,
                "yes" if s.enabled else "paused",
                s.status or "never run",
                _short(s.last_run),
                _short(s.last_success),
                _short(s.last_failure),
                _next(s, at),
                s.condition + _source_note(s),
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  CONDITION"]
    for row in rows:
        cells = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
        lines.append(f"{cells}  {row[-1]}".rstrip())
    return "\n".join(lines)


def _next(state: TaskState, at: datetime) -> str:
    v = state.verdict
    if v is None:
        return "unknown"
    return {
        "due": "now (retry)" if v.retry else "now",
        "busy": "after the run in progress",
        "paused": "paused",
        "event": "after a run",
        "at": _short(v.next_change),
    }[v.state]


# ---------------------------------------------------------------------- formatting


def _local(value: datetime | None, tz: tzinfo) -> datetime | None:
    return value.astimezone(tz) if value is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _retry_dict(retry: RetryDue, at: datetime) -> dict[str, Any]:
    return {
        "attempt": retry.attempt,
        "limit": retry.limit,
        "due_at": retry.at.astimezone(at.tzinfo).isoformat(),
        "backoff": retry.backoff,
        "jitter": retry.jitter,
        "text": retry.describe(at),
    }


def _when(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="seconds")


def _short(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else NOTHING


def _change(value: datetime | None, at: datetime) -> str:
    if value is None:
        return "only when a run starts or finishes"
    return f"{_when(value)} (in {format_runtime(value - at)})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _fact(value: Any) -> str:
    if value is None:
        return NOTHING
    if isinstance(value, datetime):
        return _when(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fact(item) for item in value) + "]" if value else "none"
    return str(value)


def _render_tree(node: Explanation, indent: str) -> str:
    line = f"{indent}{'TRUE ' if node.value else 'false'} {node.text}"
    if node.facts:
        line += "  [" + ", ".join(f"{k}={_fact(v)}" for k, v in node.facts.items()) + "]"
    if node.next_change is not None:
        line += f"  (changes {_when(node.next_change)})"
    return "\n".join([line, *(_render_tree(child, indent + "    ") for child in node.children)])
