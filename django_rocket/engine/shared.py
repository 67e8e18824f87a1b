"""Work done once per condition object for the many tasks that share it.

Runtime tasks share their parsed conditions (``registry.parse_runtime`` parses each
text once): 100,000 reminders hold a few thousand objects. What such an object reads
(:class:`Shapes`) is worked out once, and at one instant its answer for the tasks with
no runs in the snapshot is worked out once (:class:`Answers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from django_rocket.conditions import Condition, Context
from django_rocket.conditions.bounded import BoundedHistory
from django_rocket.conditions.history import MemoryHistory
from django_rocket.conditions.needs import Needs
from django_rocket.engine import snapshot
from django_rocket.registry import TaskSpec

# Stands for the task itself while a shape is worked out: conditions use the task's
# name only as a name, so putting the real one in its place gives what they would say.
_OWNER = "\x00owner"
# How many shapes are kept (the parse cache of runtime tasks keeps 65,536 conditions).
MAX_SHAPES = 1 << 16

# A start condition's answer at one instant: due, its next change, whether a retry.
Answer = tuple[bool, datetime | None, bool]


@dataclass(frozen=True)
class Shape:
    """What a task's pair of conditions reads; ``generic``: with ``_OWNER`` for the task."""

    start: Condition
    end: Condition | None
    needs: dict[str, Needs]
    depends: frozenset[str]
    retry_depth: int
    generic: bool

    def needs_of(self, owner: str) -> dict[str, Needs]:
        """Return, per task, what the history must keep for ``owner``'s conditions."""
        if not self.generic:
            return self.needs
        out: dict[str, Needs] = {}
        for name, needs in self.needs.items():
            name = owner if name == _OWNER else name
            out[name] = out[name] | needs if name in out else needs
        return out

    def depends_of(self, owner: str) -> frozenset[str]:
        """Return the tasks whose runs ``owner``'s conditions read."""
        if not self.generic or _OWNER not in self.depends:
            return self.depends
        return (self.depends - {_OWNER}) | {owner}


def shape_of(spec: TaskSpec, owner: str) -> Shape:
    """Work out what ``spec``'s conditions read when ``owner`` evaluates them."""
    conds = [cond for cond in (spec.start_cond, spec.end_cond) if cond is not None]
    return Shape(
        spec.start_cond,
        spec.end_cond,
        snapshot.needs_of({owner: conds}),
        frozenset().union(*(cond.depends_on(owner) for cond in conds)),
        max(snapshot.retry_depth(spec.start_cond), snapshot.retry_depth(spec.end_cond)),
        owner == _OWNER,
    )


class Shapes:
    """The shapes of the pairs of condition objects seen, by the objects' ids."""

    def __init__(self) -> None:
        self._shapes: dict[tuple[int, int], Shape] = {}

    def of(self, spec: TaskSpec) -> Shape:
        """Return what ``spec``'s conditions read, worked out once per pair of objects.

        Worked out for the task alone if a condition names a task ``_OWNER``: every
        condition that reads a task's runs lists that task in ``depends_on``.
        """
        start, end = spec.start_cond, spec.end_cond
        key = (id(start), id(end))
        shape = self._shapes.get(key)
        if shape is not None and shape.start is start and shape.end is end:
            return shape
        if any(_OWNER in cond.depends_on("\x00other") for cond in (start, end) if cond is not None):
            return shape_of(spec, spec.name)
        if len(self._shapes) >= MAX_SHAPES:
            self._shapes.clear()
        shape = self._shapes[key] = shape_of(spec, _OWNER)
        return shape


class Answers:
    """Start conditions' answers at one instant, shared by the tasks with no runs.

    A task the snapshot holds nothing of gets the answer an earlier such task with the
    same condition object got, unless the condition reads the task's name itself
    (``Condition.reads_task_name``: a hashed cron, a custom condition). Made for one
    pass over the due tasks, during which neither the instant nor the history changes.
    """

    def __init__(self, history: BoundedHistory | MemoryHistory | None) -> None:
        self.history = history
        self._answers: dict[int, tuple[Condition, Answer]] = {}

    def start(self, spec: TaskSpec, context: Callable[[], Context]) -> Answer:
        """Evaluate ``spec``'s start condition in ``context()``: due, next change, a retry?"""
        cond = spec.start_cond
        blank = self.history is not None and not self.history.holds(spec.name)
        if blank:
            hit = self._answers.get(id(cond))
            if hit is not None and hit[0] is cond:
                return hit[1]
        ctx = context()
        due, next_change = cond.evaluate(ctx)
        retry = due and cond.has_retry() and not cond.is_true(replace(ctx, retry_disabled=True))
        answer = (due, next_change, retry)
        if blank and not cond.reads_task_name():
            self._answers[id(cond)] = (cond, answer)
        return answer
