"""Operators, canonical text, equality, explanations and custom conditions."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest

from django_rocket import conditions
from django_rocket.conditions import (
    NAMESPACE,
    All,
    Any,
    Condition,
    Not,
    after_success,
    condition,
    custom_conditions,
    daily,
    every,
    failed,
    false,
    hourly,
    retry,
    running,
    time_of_day,
    time_of_week,
    true,
    weekly,
)
from django_rocket.conditions.custom import unregister

from .helpers import at, ctx, run


@pytest.mark.parametrize(
    ("build", "text"),
    [
        (
            lambda: (daily | retry(3)) & time_of_day.between("10:00", "12:00"),
            "(daily | retry(3)) & time_of_day.between('10:00', '12:00')",
        ),
        (lambda: daily | retry(3) & hourly, "daily | retry(3) & hourly"),
        (lambda: ~daily & ~(hourly | weekly), "~daily & ~(hourly | weekly)"),
        (lambda: ~~daily, "~~daily"),
        (lambda: (failed.today >= 3) & daily, "(failed.today >= 3) & daily"),
        (lambda: ~(running >= 2), "~(running >= 2)"),
        (lambda: (running >= 2) | false, "(running >= 2) | false"),
        (lambda: failed.today >= 3, "failed.today >= 3"),
        (
            lambda: time_of_day.between("10:00:00", "12:00:00"),
            "time_of_day.between('10:00', '12:00')",
        ),
        (
            lambda: time_of_day.between("9:05:30", "24:00"),
            "time_of_day.between('09:05:30', '24:00')",
        ),
        (lambda: time_of_day.between(10, 13), "time_of_day.between('10:00', '14:00')"),
        (lambda: time_of_day.between("22:00", "00:00"), "time_of_day.between('22:00', '24:00')"),
        (lambda: time_of_week.between("monday", "Friday"), "time_of_week.between('Mon', 'Fri')"),
        (lambda: time_of_week.on("Mon"), "time_of_week.on('Mon')"),
        (
            lambda: time_of_week.between("Fri 18:00", "Mon 08:00"),
            "time_of_week.between('Fri 18:00', 'Mon 08:00')",
        ),
        (lambda: daily.at(10), "daily.at('10:00')"),
        (lambda: every(600), "every('10 minutes')"),
        (lambda: true & false, "true & false"),
    ],
)
def test_canonical_text(build, text):
    assert str(build()) == text


def test_and_or_flatten_so_grouping_does_not_matter():
    a, b, c = daily, hourly, weekly
    assert (a & b) & c == a & (b & c) == All((a, b, c))
    assert (a | b) | c == a | (b | c) == Any((a, b, c))
    assert (a & b) | c == Any((All((a, b)), c))
    assert ~a == Not(a)


def test_conditions_are_hashable_values():
    first = (daily | retry(3)) & time_of_day.between("10:00", "12:00")
    second = (daily | retry(3)) & time_of_day.between("10:00:00", "12:00")
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second, daily}) == 2
    assert daily != hourly
    assert repr(first) == "All(Any(daily, retry(3)), time_of_day.between('10:00', '12:00'))"
    with pytest.raises(AttributeError):
        daily.span = None


def test_python_boolean_operators_are_refused():
    with pytest.raises(TypeError, match=r"combine conditions with & \| ~"):
        bool(daily)
    with pytest.raises(TypeError, match="combine"):
        daily and hourly  # noqa: B018
    with pytest.raises(TypeError):
        daily & True


def test_values_and_next_change_of_the_operators():
    # reasoned from SEMANTICS.md
    now = at("2026-03-02 09:00")
    window = time_of_day.between("10:00", "12:00")
    assert (daily & window).next_change(ctx(now)) == at("2026-03-02 10:00")
    assert (daily | window).next_change(ctx(now)) == at("2026-03-03 00:00")
    assert (~window).is_true(ctx(now))
    assert (~window).next_change(ctx(now)) == at("2026-03-02 10:00")
    after = [run(at("2026-03-02 09:00"), at("2026-03-02 09:00"), "success")]
    # False until every false part may be true: daily at midnight, the window at 10:00.
    late = ctx(at("2026-03-02 13:00"), *after)
    assert (daily & window).next_change(late) == at("2026-03-03 10:00")
    assert true.next_change(late) is None


def test_depends_on_and_children():
    condition_ = (daily | after_success("a")) & ~failed("b").today & time_of_day.between(10, 11)
    assert condition_.depends_on("t") == frozenset({"t", "a", "b"})
    assert time_of_day.between(10, 11).depends_on("t") == frozenset()
    assert condition_.children()[0] == daily | after_success("a")


def test_explain_tree_is_json():
    # reasoned from SEMANTICS.md
    condition_ = (daily | retry(3)) & time_of_day.between("10:00", "12:00")
    history = [run(at("2026-03-02 10:00"), at("2026-03-02 10:01"), "fail")]
    explanation = condition_.explain(ctx(at("2026-03-02 10:30"), *history))
    assert explanation.value is True
    assert [child.text for child in explanation.children] == [
        "daily | retry(3)",
        "time_of_day.between('10:00', '12:00')",
    ]
    daily_, retry_ = explanation.children[0].children
    assert (daily_.value, retry_.value) == (False, True)
    assert retry_.facts == {"failed_in_chain": 1}
    assert explanation.next_change == at("2026-03-02 12:00")
    data = json.loads(json.dumps(explanation.to_dict()))
    assert data["children"][0]["children"][1]["text"] == "retry(3)"
    assert "TRUE  retry(3)" in explanation.render()


def test_namespace_lists_the_vocabulary():
    assert NAMESPACE["daily"] is daily
    assert NAMESPACE["every"] is every
    assert set(NAMESPACE) >= {"after_all_success", "time_of_month", "inacted", "crontime"}
    assert all(name in conditions.__all__ for name in NAMESPACE)


# Custom conditions -----------------------------------------------------------------


@pytest.fixture
def registered():
    names = []
    yield names
    for name in names:
        unregister(name)


def test_custom_condition_gets_task_and_now(registered):
    seen = []

    @condition
    def is_business_day(task, now):
        seen.append((task, now))
        return now.weekday() < 5

    registered.append("is_business_day")
    assert isinstance(is_business_day, Condition)
    assert custom_conditions()["is_business_day"] is is_business_day
    monday = ctx(at("2026-03-02 10:00"))
    assert (daily & is_business_day).is_true(monday)
    assert not is_business_day.is_true(ctx(at("2026-03-07 10:00")))
    assert seen[0] == ("t", at("2026-03-02 10:00"))
    assert str(daily & is_business_day) == "daily & is_business_day"
    assert is_business_day.next_change(monday) == at("2026-03-02 10:00:01")


def test_custom_condition_names_and_recheck(registered):
    @condition("quiet_hours", recheck="1 minute")
    def _quiet():
        return True

    @condition(name="flag")
    def _flag(task):
        return task == "t"

    registered.extend(["quiet_hours", "flag"])
    assert str(_quiet) == "quiet_hours"
    assert _quiet.next_change(ctx(at("2026-03-02 10:00"))) == at("2026-03-02 10:01")
    assert _flag.is_true(ctx(at("2026-03-02 10:00")))
    assert set(custom_conditions()) >= {"quiet_hours", "flag"}


def test_custom_condition_errors(registered):
    with pytest.raises(ValueError, match="built-in"):
        condition("daily")(lambda: True)
    with pytest.raises(TypeError, match="only take the parameters"):
        condition("two_args")(lambda task, other: True)

    @condition("answer")
    def _answer():
        return "yes"

    registered.append("answer")
    with pytest.raises(TypeError, match="must return True or False"):
        _answer.is_true(ctx(at("2026-03-02 10:00")))


def test_custom_condition_name_clash_from_another_function(registered):
    @condition("clash")
    def _first():
        return True

    registered.append("clash")

    def _second():
        return False

    with pytest.raises(ValueError, match="already registered"):
        condition("clash")(_second)


def test_context_needs_an_aware_now():
    with pytest.raises(ValueError, match="aware"):
        ctx(at("2026-03-02 10:00").replace(tzinfo=None))


def test_importing_the_package_loads_no_django():
    code = (
        "import sys, django_rocket.conditions as c; "
        'c.parse(\'daily & time_of_day.between("10:00", "12:00")\'); '
        "print(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert output.strip() == "[]"


def test_explanation_datetimes_are_local():
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    explanation = daily.explain(ctx(at("2026-03-02 10:00", berlin), tz=berlin))
    assert explanation.facts["window"][0].utcoffset() == timedelta(hours=1)
    assert explanation.to_dict()["next_change"] == "2026-03-03T00:00:00+01:00"


def test_custom_condition_recheck_must_be_positive():
    with pytest.raises(ValueError, match="longer than zero"):
        condition("never_again", recheck=0)(lambda: True)
