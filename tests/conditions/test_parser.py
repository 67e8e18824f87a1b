"""The Python-expression syntax: every vocabulary entry, operators, errors and safety."""

import re

import pytest

from django_rocket import conditions as c
from django_rocket.conditions import parser
from django_rocket.conditions.custom import unregister
from django_rocket.conditions.errors import ConditionSyntaxError
from django_rocket.conditions.parser import parse

# Each string next to the object the same Python code builds.
PYTHON_FORMS = [
    ("true", lambda: c.true),
    ("false", lambda: c.false),
    ("secondly", lambda: c.secondly),
    ("minutely", lambda: c.minutely),
    ("hourly", lambda: c.hourly),
    ("daily", lambda: c.daily),
    ("weekly", lambda: c.weekly),
    ("monthly", lambda: c.monthly),
    ("daily.between('10:00', '12:00')", lambda: c.daily.between("10:00", "12:00")),
    ("daily.before('12:00')", lambda: c.daily.before("12:00")),
    ("daily.after('10:00')", lambda: c.daily.after("10:00")),
    ("daily.at('10:00')", lambda: c.daily.at("10:00")),
    ("daily.starting('10:00')", lambda: c.daily.starting("10:00")),
    ("hourly.after('45:00')", lambda: c.hourly.after("45:00")),
    ("minutely.before('30')", lambda: c.minutely.before("30")),
    ("weekly.on('Monday')", lambda: c.weekly.on("Monday")),
    ("weekly.between('Mon', 'Fri')", lambda: c.weekly.between("Mon", "Fri")),
    ("monthly.starting('3rd')", lambda: c.monthly.starting("3rd")),
    ("every('10 minutes')", lambda: c.every("10 minutes")),
    ("every('1 hour 30 minutes')", lambda: c.every("1 hour 30 minutes")),
    ("every(600)", lambda: c.every(600)),
    ("every('10 minutes', based='finish')", lambda: c.every("10 minutes", based="finish")),
    ("every('1 hour', based='success')", lambda: c.every("1 hour", based="success")),
    ('every("1 hour", based="fail")', lambda: c.every("1 hour", based="fail")),
    ("cron('0 10 * * 1-5')", lambda: c.cron("0 10 * * 1-5")),
    ("crontime('*/5 * * * *')", lambda: c.crontime("*/5 * * * *")),
    ("time_of_minute.between('10', '20')", lambda: c.time_of_minute.between("10", "20")),
    ("time_of_hour.after('45:00')", lambda: c.time_of_hour.after("45:00")),
    ("time_of_day.between('10:00', '12:00')", lambda: c.time_of_day.between("10:00", "12:00")),
    ("time_of_day.between(10, 13)", lambda: c.time_of_day.between(10, 13)),
    ("time_of_day.before('08:00')", lambda: c.time_of_day.before("08:00")),
    ("time_of_day.at('10:00')", lambda: c.time_of_day.at("10:00")),
    ("time_of_week.on('Mon')", lambda: c.time_of_week.on("Mon")),
    ("time_of_month.starting('1st')", lambda: c.time_of_month.starting("1st")),
    ("started", lambda: c.started),
    ("succeeded", lambda: c.succeeded),
    ("failed", lambda: c.failed),
    ("finished", lambda: c.finished),
    ("terminated", lambda: c.terminated),
    ("inacted", lambda: c.inacted),
    ("succeeded('etl')", lambda: c.succeeded("etl")),
    ("failed.today", lambda: c.failed.today),
    ("failed.this_hour", lambda: c.failed.this_hour),
    ("started.this_minute", lambda: c.started.this_minute),
    ("finished.this_week", lambda: c.finished.this_week),
    ("terminated.this_month", lambda: c.terminated.this_month),
    ("failed.today.between('10:00', '12:00')", lambda: c.failed.today.between("10:00", "12:00")),
    ("inacted('etl').today.after('10:00')", lambda: c.inacted("etl").today.after("10:00")),
    ("succeeded.this_week.before('Fri')", lambda: c.succeeded.this_week.before("Fri")),
    ("failed.today.at('10:00')", lambda: c.failed.today.at("10:00")),
    ("failed.today.starting('10:00')", lambda: c.failed.today.starting("10:00")),
    ("failed.past('10 minutes')", lambda: c.failed.past("10 minutes")),
    ("failed('etl').past('1 hour')", lambda: c.failed("etl").past("1 hour")),
    ("failed.today >= 3", lambda: c.failed.today >= 3),
    ("failed('etl').today < 2", lambda: c.failed("etl").today < 2),
    ("started.this_hour > 1", lambda: c.started.this_hour > 1),
    ("succeeded.today <= 5", lambda: c.succeeded.today <= 5),
    ("running", lambda: c.running),
    ("running('etl')", lambda: c.running("etl")),
    ("running.more_than('10 minutes')", lambda: c.running.more_than("10 minutes")),
    ("running('etl').less_than('1 hour')", lambda: c.running("etl").less_than("1 hour")),
    ("running.between('1 minute', '1 hour')", lambda: c.running.between("1 minute", "1 hour")),
    ("running >= 2", lambda: c.running >= 2),
    ("retry", lambda: c.retry),
    ("retry(3)", lambda: c.retry(3)),
    ("after_success('a')", lambda: c.after_success("a")),
    ("after_fail('a')", lambda: c.after_fail("a")),
    ("after_finish('a')", lambda: c.after_finish("a")),
    ("after_all_success('a', 'b')", lambda: c.after_all_success("a", "b")),
    ("after_all_fail('a', 'b')", lambda: c.after_all_fail("a", "b")),
    ("after_all_finish('a', 'b', 'c')", lambda: c.after_all_finish("a", "b", "c")),
    ("after_any_success('a', 'b')", lambda: c.after_any_success("a", "b")),
    ("after_any_fail('a', 'b')", lambda: c.after_any_fail("a", "b")),
    ("after_any_finish('a', 'b')", lambda: c.after_any_finish("a", "b")),
    ("daily & retry(3)", lambda: c.daily & c.retry(3)),
    ("daily | retry(3)", lambda: c.daily | c.retry(3)),
    ("~running", lambda: ~c.running),
    (
        "(daily | retry(3)) & time_of_day.between('10:00', '12:00')",
        lambda: (c.daily | c.retry(3)) & c.time_of_day.between("10:00", "12:00"),
    ),
    ("after_success('etl') & ~running", lambda: c.after_success("etl") & ~c.running),
    ("(failed.today >= 3) & daily", lambda: (c.failed.today >= 3) & c.daily),
    ("yearly.between('Mar', 'Jun')", lambda: c.yearly.between("Mar", "Jun")),
    ("yearly.on('Dec')", lambda: c.yearly.at("December")),
    (
        "time_of_year.between('Dec 24th', 'Dec 26th')",
        lambda: c.time_of_year.between("Dec 24th", "Dec 26th"),
    ),
    ("time_of_year.after('Nov 1st 18:00')", lambda: c.time_of_year.after("Nov 1st 18:00")),
    ("time_of_year.between(3, 6)", lambda: c.time_of_year.between("Mar", "Jun")),
    (
        "during('2026-12-01', '2027-01-06 12:00')",
        lambda: c.during("2026-12-01", "2027-01-06 12:00"),
    ),
    ("always", lambda: c.true),
    ("never", lambda: c.false),
    ("always & ~never", lambda: c.true & ~c.false),
    ("time_of_second.between('100', '500')", lambda: c.time_of_second.between("100", "500")),
    ("scheduler_running", lambda: c.scheduler_running),
    (
        "scheduler_running(more_than='1 hour')",
        lambda: c.scheduler_running(more_than="1 hour"),
    ),
    (
        "scheduler_running.past('10 minutes')",
        lambda: c.scheduler_running(less_than="10 minutes"),
    ),
    ("scheduler_cycles(less_than=3)", lambda: c.scheduler_cycles(less_than=3)),
    ("scheduler_cycles(more_than=1, less_than=5)", lambda: c.scheduler_cycles(1, 5)),
    ("scheduler_cycles(exactly=0)", lambda: c.scheduler_cycles(exactly=0)),
]


@pytest.mark.parametrize(("text", "build"), PYTHON_FORMS, ids=[t for t, _ in PYTHON_FORMS])
def test_python_form_builds_the_same_condition(text, build):
    assert parse(text) == build()


@pytest.mark.parametrize(("text", "build"), PYTHON_FORMS, ids=[t for t, _ in PYTHON_FORMS])
def test_rendering_parses_back(text, build):
    condition = build()
    assert parse(str(condition)) == condition


def test_every_public_name_of_the_vocabulary_is_covered():
    used = {word for text, _ in PYTHON_FORMS for word in re.findall(r"\w+", text)}
    assert set(c.NAMESPACE) <= used


def test_a_condition_object_is_returned_as_is():
    condition = c.daily & c.retry(3)
    assert parse(condition) is condition


def test_a_non_string_is_a_type_error():
    with pytest.raises(TypeError, match="got int"):
        parse(3)


@pytest.mark.parametrize(
    ("text", "build"),
    [
        (
            "daily | retry(3) & time_of_day.after('10:00')",
            lambda: c.daily | (c.retry(3) & c.time_of_day.after("10:00")),
        ),
        ("~daily & running", lambda: (~c.daily) & c.running),
        ("~(daily & running)", lambda: ~(c.daily & c.running)),
        ("~~daily", lambda: ~~c.daily),
        ("daily & weekly & monthly", lambda: (c.daily & c.weekly) & c.monthly),
        ("daily | weekly | monthly", lambda: (c.daily | c.weekly) | c.monthly),
        (
            "daily | weekly & monthly | hourly",
            lambda: (c.daily | (c.weekly & c.monthly)) | c.hourly,
        ),
        (
            "(daily | weekly) & (monthly | hourly)",
            lambda: (c.daily | c.weekly) & (c.monthly | c.hourly),
        ),
        ("((daily))", lambda: c.daily),
        ("(failed.today >= 3)", lambda: c.failed.today >= 3),
        ("~(failed.today >= 3)", lambda: ~(c.failed.today >= 3)),
    ],
)
def test_precedence_follows_python(text, build):
    assert parse(text) == build()


@pytest.mark.parametrize(
    "text",
    [
        "  daily  ",
        "daily&retry(3)",
        "daily\n  & retry( 3 )",
        "time_of_day . between ( '10:00' , '12:00' , )",
        'every("10 minutes")',
        "every(r'10 minutes')",
        "every('10 ' 'minutes')",
    ],
)
def test_whitespace_and_quotes_as_python_allows(text):
    assert isinstance(parse(text), c.Condition)


def test_string_escapes_follow_python():
    assert parse(r"after_success('it\'s')") == c.after_success("it's")
    assert parse('after_success("it\'s")') == c.after_success("it's")
    assert parse(r"after_success('caf\u00e9')") == c.after_success("café")
    assert parse("after_success('''a''')") == c.after_success("a")


def test_registered_custom_conditions_are_found_by_name():
    @c.condition
    def is_parser_test_day(now):
        return now.weekday() < 5

    try:
        assert parse("daily & is_parser_test_day") == c.daily & is_parser_test_day
        assert parse("is_parser_test_day") is is_parser_test_day
    finally:
        unregister("is_parser_test_day")
    with pytest.raises(ConditionSyntaxError, match="Unknown condition 'is_parser_test_day'"):
        parse("is_parser_test_day")


def test_equal_texts_share_one_condition_until_the_custom_conditions_change():
    text = "daily & is_cached_test_day"
    with pytest.raises(ConditionSyntaxError):
        parse(text)

    @c.condition
    def is_cached_test_day():
        return True

    try:
        first = parse(text)
        assert parse(text) is first
    finally:
        unregister("is_cached_test_day")
    with pytest.raises(ConditionSyntaxError):
        parse(text)


def test_extra_names_are_found():
    custom = c.daily & c.running
    assert parse("weekly & custom", names={"custom": custom}) == c.weekly & custom


def _error(text, **kwargs):
    with pytest.raises(ConditionSyntaxError) as info:
        parse(text, **kwargs)
    return info.value


def test_unknown_name_suggests_the_closest():
    error = _error("dayly & retry(3)")
    assert error.message == "Unknown condition 'dayly'; did you mean 'daily'?"
    assert error.column == 0
    assert str(error) == (
        "Unknown condition 'dayly'; did you mean 'daily'?\n    dayly & retry(3)\n    ^"
    )


def test_unknown_name_in_the_middle():
    error = _error("daily & is_busines_day", names={"is_business_day": c.true})
    assert error.column == 8
    assert "did you mean 'is_business_day'?" in error.message
    assert error.caret_line() == "        ^"


def test_unclosed_parenthesis():
    error = _error("(daily | retry(3) & running")
    assert error.column == len("(daily | retry(3) & running")
    assert error.message == (
        "Expected ')' to close the '(' at column 0, found the end of the condition."
    )
    assert error.expected == "')' to close the '(' at column 0"


def test_unmatched_closing_parenthesis():
    error = _error("daily) | retry")
    assert (error.column, error.message) == (5, "Unmatched ')'.")


@pytest.mark.parametrize("text", ["every(", "retry(3,", "every('1 hour', based=", "daily."])
def test_text_ending_inside_an_operand(text):
    error = _error(text)
    assert error.column == len(text)
    assert error.message.endswith("found the end of the condition.")


def test_missing_operand():
    error = _error("daily & ")
    assert error.column == 8
    assert error.message.startswith("Expected a condition, such as daily")
    assert error.message.endswith("found the end of the condition.")


def test_words_for_operators_get_a_hint():
    assert _error("daily and retry(3)").message.endswith("use & for 'and'.")
    assert _error("daily or retry(3)").message.endswith("use | for 'or'.")
    assert _error("not running").message == "Unexpected 'not'; use ~ for 'not'."


def test_bad_argument_points_at_it():
    error = _error("time_of_day.between('10:00', '25:00')")
    assert error.column == len("time_of_day.between('10:00', ")
    assert error.message.startswith("Invalid arguments for time_of_day.between(): ")
    assert "25:00" in error.message


def test_bad_duration_points_at_it():
    error = _error("daily | every('ten minutes')")
    assert error.column == len("daily | every(")


def test_wrong_arguments_are_a_syntax_error():
    assert _error("retry('three')").column == 6
    assert _error("every('1 hour', based='sometimes')").column == len("every('1 hour', based=")
    error = _error("every('1 hour', color='red')")
    assert error.message.startswith("Invalid arguments for every(): ")
    assert error.column == len("every('1 hour', ")
    assert _error("every()").message.startswith("Invalid arguments")


def test_incomplete_conditions():
    assert _error("every").message == (
        "every is not a condition by itself; call it with its arguments, every(...)."
    )
    assert _error("daily & running.more_than").message == (
        "running.more_than is not a condition by itself; call it with its arguments, "
        "running.more_than(...)."
    )


def test_attribute_outside_the_api():
    error = _error("daily.betwen('10:00', '12:00')")
    assert error.message == "daily has no attribute 'betwen'; did you mean 'between'?"
    assert error.column == 6


def test_comparisons_must_be_parenthesized_next_to_operators():
    error = _error("daily & failed.today >= 3")
    assert error.message.startswith("Put the comparison in parentheses: (failed.today >= 3).")
    assert error.column == len("daily & failed.today ")
    assert _error("~failed.today >= 3").column == len("~failed.today ")
    assert _error("failed.today >= 3 | daily").column == len("failed.today ")


def test_comparison_needs_a_whole_number():
    assert _error("failed.today >= 2.5").message == "Expected a whole number."
    assert _error("failed.today == 3").message.startswith("== cannot be used here")
    assert _error("failed.today >= 'x'").expected == "a whole number"


def test_multi_line_text_shows_the_line():
    error = _error("daily\n& dayly")
    assert error.line == 2
    assert str(error) == (
        "Unknown condition 'dayly'; did you mean 'daily'? (line 2)\n    & dayly\n      ^"
    )


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('x')",
        "daily.__class__",
        "daily.__class__.__bases__",
        "().__class__",
        "daily.between.__globals__",
        "every.__code__",
        "lambda: daily",
        "[daily for x in y]",
        "(x := daily)",
        "f'{daily}'",
        "every(f'{1}0 minutes')",
        "every(b'10 minutes')",
        "every(daily)",
        "every(open('x'))",
        "every(**{'a': 1})",
        "every(*'a')",
        "daily if true else false",
        "daily[0]",
        "{daily}",
        "daily + daily",
        "daily ^ weekly",
        "daily and weekly",
        "not daily",
        "daily; import os",
        "import os",
        "daily # comment",
        "`daily`",
        "__builtins__",
        "globals()",
        "getattr(daily, '__class__')",
        "'daily'",
        "3",
        "running.__ge__(3)",
        "retry(3).__dict__",
        "yield daily",
        "await daily",
        "daily @ weekly",
        "-daily",
        "daily.today",
    ],
)
def test_anything_but_the_condition_language_is_rejected(text):
    error = _error(text)
    assert error.text == text
    assert 0 <= error.column <= len(text)


def test_deep_nesting_is_a_clear_error():
    error = _error("(" * 2000 + "daily" + ")" * 2000)
    assert error.message.startswith("The condition is nested too deeply")
    assert error.column == parser.MAX_DEPTH
    assert _error("~" * 5000 + "daily").message.startswith("The condition is nested too deeply")


def test_nesting_up_to_the_limit_is_fine():
    depth = parser.MAX_DEPTH
    assert parse("(" * depth + "daily" + ")" * depth) == c.daily


def test_huge_input_is_a_clear_error():
    text = " | ".join(["daily"] * 5000)
    error = _error(text)
    assert error.message == (
        f"The condition is too long ({len(text)} characters); the limit is 10000."
    )
    assert len(str(error).splitlines()[1]) < 100


def test_huge_numbers_are_a_clear_error():
    assert _error("retry(" + "9" * 5000 + ")").message.startswith("Invalid number")
