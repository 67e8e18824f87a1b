"""Property tests: rendering parses back, and no input makes the parser misbehave."""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_rocket import conditions as c
from django_rocket.conditions.errors import ConditionSyntaxError
from django_rocket.conditions.parser import parse

# Values each kind of window accepts, by the unit of the period.
WINDOW_VALUES = {
    "minute": ["00", "10", "30", "59"],
    "hour": ["00:00", "15:00", "45:30", "59:59"],
    "day": ["00:00", "08:30", "10:00", "12:00", "22:00", "23:59:59"],
    "week": ["Mon", "Tue", "Friday", "Sun"],
    "month": ["1st", "2nd", "5th", "15", "28th"],
}
PERIODS = {"minutely": "minute", "hourly": "hour", "daily": "day", "weekly": "week"}
PERIODS["monthly"] = "month"
SPANS = {"today": "day", "this_hour": "hour", "this_minute": "minute", "this_week": "week"}
SPANS["this_month"] = "month"
EVENTS = ["started", "succeeded", "failed", "finished", "terminated", "inacted"]
DURATIONS = ["10 seconds", "10 minutes", "1 hour 30 minutes", "00:10:00", "2 days"]
CRONS = ["* * * * *", "0 10 * * 1-5", "*/15 8-18 1,15 * MON-FRI", "30 2 * * *"]

task_names = st.text(min_size=1, max_size=8)
durations = st.sampled_from(DURATIONS)


@st.composite
def windowed(draw, condition, unit):
    """Narrow ``condition`` with one of the window methods, or not at all."""
    values = st.sampled_from(WINDOW_VALUES[unit])
    method = draw(st.sampled_from([None, "between", "before", "after", "at", "on", "starting"]))
    if method is None:
        return condition
    if method == "between":
        return condition.between(draw(values), draw(values))
    return getattr(condition, method)(draw(values))


@st.composite
def periodic(draw):
    name = draw(st.sampled_from(sorted(PERIODS)))
    return draw(windowed(getattr(c, name), PERIODS[name]))


@st.composite
def time_windows(draw):
    unit = draw(st.sampled_from(sorted(WINDOW_VALUES)))
    window = getattr(c, f"time_of_{unit}")
    values = st.sampled_from(WINDOW_VALUES[unit])
    method = draw(st.sampled_from(["between", "before", "after", "at", "on", "starting"]))
    if method == "between":
        return window.between(draw(values), draw(values))
    return getattr(window, method)(draw(values))


@st.composite
def counted(draw, condition):
    """Compare a count with a number, or not."""
    symbol = draw(st.sampled_from([None, ">=", ">", "<=", "<"]))
    number = draw(st.integers(0, 20))
    compare = {">=": lambda x: x >= number, ">": lambda x: x > number}
    compare.update({"<=": lambda x: x <= number, "<": lambda x: x < number})
    return condition if symbol is None else compare[symbol](condition)


@st.composite
def events(draw):
    condition = getattr(c, draw(st.sampled_from(EVENTS)))
    if draw(st.booleans()):
        condition = condition(draw(task_names))
    span = draw(st.sampled_from([None, "past", *sorted(SPANS)]))
    if span == "past":
        condition = condition.past(draw(durations))
    elif span is not None:
        condition = draw(windowed(getattr(condition, span), SPANS[span]))
    return draw(counted(condition))


@st.composite
def running(draw):
    condition = c.running(draw(task_names)) if draw(st.booleans()) else c.running
    age = draw(st.sampled_from([None, "more_than", "less_than", "between"]))
    if age == "between":
        ascending = ["10 seconds", "10 minutes", "1 hour 30 minutes", "2 days"]
        pair = st.lists(st.sampled_from(ascending), min_size=2, max_size=2, unique=True)
        shorter, longer = sorted(draw(pair), key=ascending.index)
        condition = condition.between(shorter, longer)
    elif age is not None:
        condition = getattr(condition, age)(draw(durations))
    return draw(counted(condition))


@st.composite
def pipelines(draw):
    outcome = draw(st.sampled_from(["success", "fail", "finish"]))
    kind = draw(st.sampled_from(["after", "after_all", "after_any"]))
    function = getattr(c, f"{kind}_{outcome}")
    if kind == "after":
        return function(draw(task_names))
    return function(*draw(st.lists(task_names, min_size=1, max_size=3)))


operands = st.one_of(
    st.sampled_from([c.true, c.false, c.secondly, c.retry]),
    periodic(),
    time_windows(),
    events(),
    running(),
    pipelines(),
    st.integers(0, 10).map(c.retry),
    st.builds(c.every, durations, st.sampled_from(["start", "finish", "success", "fail"])),
    st.sampled_from(CRONS).map(c.cron),
    st.sampled_from(CRONS).map(c.crontime),
)

conditions = st.recursive(
    operands,
    lambda inner: st.one_of(
        st.builds(lambda a, b: a & b, inner, inner),
        st.builds(lambda a, b: a | b, inner, inner),
        inner.map(lambda a: ~a),
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conditions)
def test_rendering_parses_back_to_an_equal_condition(condition):
    assert parse(str(condition)) == condition


def _parses_or_fails_cleanly(text):
    error = None
    try:
        result = parse(text)
    except ConditionSyntaxError as exc:
        error = exc
    if error is None:
        assert isinstance(result, c.Condition)
        return
    assert error.text == text
    assert 0 <= error.column <= len(text)
    assert error.message
    assert str(error).splitlines()[-1].endswith("^")


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_arbitrary_text_parses_or_raises_a_syntax_error(text):
    _parses_or_fails_cleanly(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable))
def test_arbitrary_printable_text_parses_or_raises_a_syntax_error(text):
    _parses_or_fails_cleanly(text)


TOKENS = [
    *c.NAMESPACE,
    *EVENTS,
    *(f".{name}" for name in ["between", "after", "today", "past", "more_than", "__class__"]),
    "&", "|", "~", "(", ")", ",", ".", "=", ">=", "<", "==", "based=", "'", '"',
    "'a'", "'10 minutes'", "'10:00'", "\"Mon\"", "3", "-1", "2.5", "10:00", "12:00", "Mon",
    "1st", "10 minutes", "*", "1-5",
    "always", "every", "cron", "time", "of", "day", "week", "hour", "minute", "month",
    "between", "and", "after", "before", "starting", "on", "at", "task", "tasks", "any",
    "has", "is", "running", "while", "today", "this", "past", "in", "more", "less", "than",
    "not", "or", "lambda", "__import__", "f'x'", "\\", "\n",
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=12), st.sampled_from([" ", ""]))
def test_token_soup_parses_or_raises_a_syntax_error(tokens, separator):
    _parses_or_fails_cleanly(separator.join(tokens))


def _documented_examples():
    from tests.conditions.test_english import PHRASES
    from tests.conditions.test_parser import PYTHON_FORMS

    return [text for text, _ in PYTHON_FORMS] + [phrase for phrase, _ in PHRASES]


def test_every_cut_and_deletion_of_the_examples_parses_or_fails_cleanly():
    for text in _documented_examples():
        for index in range(len(text)):
            _parses_or_fails_cleanly(text[:index])
            _parses_or_fails_cleanly(text[:index] + text[index + 1 :])
