"""Rocketry's English phrases: each means exactly what its Python form means."""

from pathlib import Path

import pytest

from django_rocket.conditions.errors import ConditionSyntaxError
from django_rocket.conditions.parser import parse

# Each phrase next to its Python form. The documentation's table lists them all.
PHRASES = [
    ("true", "true"),
    ("false", "false"),
    ("always true", "true"),
    ("always false", "false"),
    ("secondly", "secondly"),
    ("minutely", "minutely"),
    ("hourly", "hourly"),
    ("daily", "daily"),
    ("weekly", "weekly"),
    ("monthly", "monthly"),
    ("daily between 10:00 and 12:00", "daily.between('10:00', '12:00')"),
    ("daily between 22:00 and 02:00", "daily.between('22:00', '02:00')"),
    ("daily after 10:00", "daily.after('10:00')"),
    ("daily before 12:00", "daily.before('12:00')"),
    ("daily starting 10:00", "daily.starting('10:00')"),
    ("daily on 10:00", "daily.on('10:00')"),
    ("daily at 10:00", "daily.at('10:00')"),
    ("hourly after 45:00", "hourly.after('45:00')"),
    ("minutely before 30", "minutely.before('30')"),
    ("weekly on Monday", "weekly.on('Monday')"),
    ("weekly between Mon and Fri", "weekly.between('Mon', 'Fri')"),
    ("monthly starting 3rd", "monthly.starting('3rd')"),
    ("monthly on 1st", "monthly.on('1st')"),
    ("every 10 minutes", "every('10 minutes')"),
    ("every 1 hour 30 minutes", "every('1 hour 30 minutes')"),
    ("every 00:10:00", "every('00:10:00')"),
    ("cron * * * * *", "cron('* * * * *')"),
    ("cron 0 10 * * 1-5", "cron('0 10 * * 1-5')"),
    ("cron */15 8-18 1,15 * MON-FRI", "cron('*/15 8-18 1,15 * MON-FRI')"),
    ("time of day between 10:00 and 12:00", "time_of_day.between('10:00', '12:00')"),
    ("time of day after 10:00", "time_of_day.after('10:00')"),
    ("time of day before 08:00", "time_of_day.before('08:00')"),
    ("time of day at 10:00", "time_of_day.at('10:00')"),
    ("time of week on Monday", "time_of_week.on('Monday')"),
    ("time of week between Mon and Fri", "time_of_week.between('Mon', 'Fri')"),
    ("time of month on 1st", "time_of_month.on('1st')"),
    ("time of month starting 15th", "time_of_month.starting('15th')"),
    ("time of hour after 45:00", "time_of_hour.after('45:00')"),
    ("time of minute between 10 and 20", "time_of_minute.between('10', '20')"),
    ("after task 'a'", "after_success('a')"),
    ("after task 'a' succeeded", "after_success('a')"),
    ("after task 'a' failed", "after_fail('a')"),
    ("after task 'a' finished", "after_finish('a')"),
    ("after tasks 'a', 'b'", "after_all_success('a', 'b')"),
    ("after tasks 'a', 'b' succeeded", "after_all_success('a', 'b')"),
    ("after tasks 'a', 'b' failed", "after_all_fail('a', 'b')"),
    ("after tasks 'a', 'b' finished", "after_all_finish('a', 'b')"),
    ("after any tasks 'a', 'b'", "after_any_success('a', 'b')"),
    ("after any tasks 'a', 'b' succeeded", "after_any_success('a', 'b')"),
    ("after any tasks 'a', 'b' failed", "after_any_fail('a', 'b')"),
    ("after any tasks 'a', 'b' finished", "after_any_finish('a', 'b')"),
    ("has succeeded", "succeeded"),
    ("has failed", "failed"),
    ("has started", "started"),
    ("has finished", "finished"),
    ("has terminated", "terminated"),
    ("has inacted", "inacted"),
    ("has failed today", "failed.today"),
    ("has failed this hour", "failed.this_hour"),
    ("has failed this minute", "failed.this_minute"),
    ("has failed this week", "failed.this_week"),
    ("has failed this month", "failed.this_month"),
    ("has failed today between 10:00 and 12:00", "failed.today.between('10:00', '12:00')"),
    ("has failed today after 10:00", "failed.today.after('10:00')"),
    ("has failed today before 12:00", "failed.today.before('12:00')"),
    ("has failed today starting 10:00", "failed.today.starting('10:00')"),
    ("has failed today at 10:00", "failed.today.at('10:00')"),
    ("has succeeded this week between Mon and Fri", "succeeded.this_week.between('Mon', 'Fri')"),
    ("has failed past 10 minutes", "failed.past('10 minutes')"),
    ("has failed in past 10 minutes", "failed.past('10 minutes')"),
    ("task 'a' has failed", "failed('a')"),
    ("task 'a' has failed today", "failed('a').today"),
    ("task 'a' has started this hour after 15:00", "started('a').this_hour.after('15:00')"),
    ("task 'a' has succeeded past 1 hour", "succeeded('a').past('1 hour')"),
    ("is running", "running"),
    ("task 'a' is running", "running('a')"),
    ("while task 'a' is running", "running('a')"),
    ("is running more than 10 minutes", "running.more_than('10 minutes')"),
    ("is running less than 1 hour", "running.less_than('1 hour')"),
    ("task 'a' is running more than 2 hours", "running('a').more_than('2 hours')"),
    ("is running between 1 minute and 1 hour", "running.between('1 minute', '1 hour')"),
]


@pytest.mark.parametrize(("phrase", "python"), PHRASES, ids=[p for p, _ in PHRASES])
def test_phrase_means_its_python_form(phrase, python):
    assert parse(phrase) == parse(python)


def test_the_reference_page_lists_every_phrase():
    page = Path(__file__).parents[2] / "docs" / "reference" / "condition-syntax.rst"
    text = page.read_text()
    missing = [
        (phrase, python)
        for phrase, python in PHRASES
        if f"``{phrase}``" not in text or f"``{python}``" not in text
    ]
    assert not missing


@pytest.mark.parametrize(
    ("text", "python"),
    [
        (
            "(daily | has failed) & time of day between 10:00 and 12:00",
            "(daily | failed) & time_of_day.between('10:00', '12:00')",
        ),
        ("daily between 10:00 and 12:00 | retry(3)", "daily.between('10:00', '12:00') | retry(3)"),
        ("daily & ~has failed today", "daily & ~failed.today"),
        ("~is running & every 10 minutes", "~running & every('10 minutes')"),
        ("after task 'a' & after task 'b' failed", "after_success('a') & after_fail('b')"),
        (
            "every 1 hour|time of day between 08:00 and 18:00&~is running",
            "every('1 hour') | time_of_day.between('08:00', '18:00') & ~running",
        ),
        ("(cron 0 10 * * 1-5)", "cron('0 10 * * 1-5')"),
        ("  daily   between   10:00   and   12:00  ", "daily.between('10:00', '12:00')"),
        ("daily between '10:00' and \"12:00\"", "daily.between('10:00', '12:00')"),
        ("cron '0 10 * * *'", "cron('0 10 * * *')"),
        ("after task 'a & b'", "after_success('a & b')"),
        ('after task "it\'s"', 'after_success("it\'s")'),
        ("after tasks 'a','b' , 'c'", "after_all_success('a', 'b', 'c')"),
        ("after tasks 'a'", "after_all_success('a')"),
        ("daily\nbetween 10:00\nand 12:00", "daily.between('10:00', '12:00')"),
    ],
)
def test_phrases_combine_with_operators_and_python(text, python):
    assert parse(text) == parse(python)


def _error(text):
    with pytest.raises(ConditionSyntaxError) as info:
        parse(text)
    return info.value


def test_window_needs_a_keyword():
    error = _error("time of day")
    assert error.message == (
        "Expected between, after, before, starting, on or at, found the end of the condition."
    )
    assert error.column == len("time of day")


def test_unknown_word_after_a_phrase():
    error = _error("daily from 10:00")
    assert error.column == len("daily ")
    assert error.message == (
        "Expected between, after, before, starting, on, at, &, | or the end of the condition,"
        " found 'from'."
    )


def test_between_needs_and():
    error = _error("daily between 10:00")
    assert error.column == len("daily between 10:00")
    assert error.expected == "'and', as in between 10:00 and 12:00"
    assert _error("is running between 1 minute").expected == (
        "'and', as in between 1 minute and 1 hour"
    )


def test_bad_time_points_at_the_value():
    error = _error("daily between 10:00 and 25:00")
    assert error.column == len("daily between 10:00 and ")
    assert error.message.startswith("Invalid arguments for daily.between(): ")


def test_task_name_must_be_quoted():
    error = _error("after task etl")
    assert error.column == len("after task ")
    assert error.message == "Expected a task name in quotes, such as 'etl', found 'etl'."


def test_unterminated_task_name():
    error = _error("after task 'etl")
    assert (error.column, error.message) == (len("after task "), "Unterminated string.")


def test_misspelt_leading_word():
    error = _error("dayly between 10:00 and 12:00")
    assert error.message == "Unknown condition 'dayly'; did you mean 'daily'?"
    assert error.column == 0


def test_missing_value():
    error = _error("every")
    assert "every(...)" in error.message
    error = _error("has failed past & daily")
    assert error.column == len("has failed past ")
    assert error.message == "Expected a duration, such as 10 minutes, found '&'."
    assert _error("has failed past").expected == "a duration, such as 10 minutes"


@pytest.mark.parametrize(
    "text",
    [
        "time of year between 1 and 2",
        "time day between 10:00 and 12:00",
        "after 'a'",
        "after any task 'a'",
        "after tasks 'a', b",
        "after task 'a' crashed",
        "has crashed",
        "has failed yesterday",
        "has failed this year",
        "has failed in 10 minutes",
        "task 'a' was running",
        "is walking",
        "always maybe",
        "daily between and 12:00",
        "daily between 10:00 and",
        "every 10 minutes daily",
        "is running more 10 minutes",
        "env 'prod'",
        "has failed more than 3 times today",
        "daily 'x'",
        "true false",
    ],
)
def test_malformed_phrases_are_syntax_errors(text):
    error = _error(text)
    assert 0 <= error.column <= len(text)
