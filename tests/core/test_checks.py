"""Every check ID, triggered by the setting it guards, with the task name and the fix."""

import pytest
from django.conf import settings as django_settings
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from django_rocket.checks import check_settings, check_tasks

GOOD = {"func": "tests.support.tasks.noop", "start_cond": "daily"}


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def run_task_checks(settings, tasks):
    settings.ROCKET_TASKS = tasks
    return check_tasks()


def test_valid_tasks_pass(settings):
    assert (
        run_task_checks(settings, {"a": GOOD, "b": {**GOOD, "start_cond": "after_success('a')"}})
        == []
    )


def test_e001_tasks_not_a_dict(settings):
    messages = run_task_checks(settings, [GOOD])
    assert ids(messages) == ["django_rocket.E001"]
    assert "ROCKET_TASKS" in messages[0].msg
    assert "start_cond" in messages[0].hint


@pytest.mark.parametrize("tasks", [{"": GOOD}, {"a": "tests.support.tasks.noop"}])
def test_e002_malformed_entry(settings, tasks):
    assert ids(run_task_checks(settings, tasks)) == ["django_rocket.E002"]


def test_e002_a_bare_function_path_is_kept_in_the_hint(settings):
    (message,) = run_task_checks(settings, {"a": "tests.support.tasks.noop"})
    assert message.hint == (
        'Declare it as "a": {"func": "tests.support.tasks.noop", "start_cond": "daily"} '
        "(with the condition you need)."
    )
    (message,) = run_task_checks(settings, {"a": 5})
    assert '"func": "app.tasks.a"' in message.hint


def test_e003_unknown_key_suggests_close_match(settings):
    messages = run_task_checks(settings, {"report": {**GOOD, "timout": 5}})
    assert ids(messages) == ["django_rocket.E003"]
    assert "'report'" in messages[0].msg and "'timout'" in messages[0].msg
    assert "Did you mean 'timeout'?" in messages[0].hint


@pytest.mark.parametrize("missing", ["func", "start_cond"])
def test_e004_missing_key(settings, missing):
    entry = dict(GOOD)
    del entry[missing]
    messages = run_task_checks(settings, {"report": entry})
    assert ids(messages) == ["django_rocket.E004"]
    assert missing in messages[0].msg


@pytest.mark.parametrize(
    ("func", "fragment"),
    [
        ("tests.support.tasks.nope", "cannot be imported"),
        ("no_such_module.f", "cannot be imported"),
        ("tests.support.tasks.CALLS", "not callable"),
        (42, "dotted path"),
    ],
)
def test_e005_bad_function(settings, func, fragment):
    messages = run_task_checks(settings, {"report": {**GOOD, "func": func}})
    assert ids(messages) == ["django_rocket.E005"]
    assert "'report'" in messages[0].msg and fragment in messages[0].msg


def test_e006_condition_does_not_parse(settings):
    messages = run_task_checks(settings, {"report": {**GOOD, "start_cond": "dayly | retry(3)"}})
    assert ids(messages) == ["django_rocket.E006"]
    msg = messages[0].msg
    assert "'report'" in msg
    assert "dayly | retry(3)" in msg
    assert "^" in msg  # the caret line points at the column


def test_e006_condition_of_wrong_type(settings):
    assert ids(run_task_checks(settings, {"report": {**GOOD, "start_cond": 5}})) == [
        "django_rocket.E006"
    ]


def test_e007_unknown_task_in_condition(settings):
    messages = run_task_checks(
        settings, {"report": {**GOOD, "start_cond": "after_success('nope')"}}
    )
    assert ids(messages) == ["django_rocket.E007"]
    assert "'nope'" in messages[0].msg and "'report'" in messages[0].msg


def test_e008_end_condition_does_not_parse(settings):
    messages = run_task_checks(settings, {"report": {**GOOD, "end_cond": "daily &"}})
    assert ids(messages) == ["django_rocket.E008"]


@pytest.mark.parametrize(
    ("key", "cond", "quoted", "bound"),
    [
        (
            "start_cond",
            "daily | retry(100000000000000000000)",
            "retry(100000000000000000000)",
            "1000",
        ),
        ("start_cond", "daily | retry(1001)", "retry(1001)", "1000"),
        ("start_cond", "(failed.today >= 3000000) & daily", "failed.today >= 3000000", "1,000,000"),
        (
            "start_cond",
            "daily & (running('other') < 100000000000000000000)",
            "running('other') <",
            "1,000,000",
        ),
        ("start_cond", "every('999999999 days')", "every('999999999 days')", "100 years"),
        (
            "start_cond",
            "daily & failed.past('36501 days')",
            "failed.past('36501 days')",
            "100 years",
        ),
        ("end_cond", "running.more_than('999999999 days')", "running.more_than(", "100 years"),
        ("end_cond", "running.between('1 hour', '40000 days')", "running.between(", "100 years"),
    ],
)
def test_e014_numeric_argument_out_of_bounds(settings, key, cond, quoted, bound):
    tasks = {"report": {**GOOD, key: cond}, "other": GOOD}
    messages = run_task_checks(settings, tasks)
    assert ids(messages) == ["django_rocket.E014"]
    msg, hint = messages[0].msg, messages[0].hint
    assert "'report'" in msg and key in msg
    assert quoted in msg
    assert bound in msg and bound in hint
    assert messages[0].obj == "report"


def test_e014_python_condition_objects_are_bounded_too(settings):
    from datetime import timedelta

    from django_rocket.conditions import Custom, every, retry

    slow = Custom("slow", lambda: True, timedelta(days=999_999_999))
    tasks = {
        "a": {**GOOD, "start_cond": every(timedelta(days=999_999_999))},
        "b": {**GOOD, "start_cond": retry(10**20) | slow},
    }
    messages = run_task_checks(settings, tasks)
    assert ids(messages) == ["django_rocket.E014"] * 3
    assert [m.obj for m in messages] == ["a", "b", "b"]
    assert "recheck" in messages[2].msg


@pytest.mark.parametrize(
    "cond",
    [
        "daily | retry(1000)",
        "retry",
        "(failed.today >= 1000000) & daily",
        "every('36500 days')",
        "failed.past('100 days') | daily",
        "running.more_than('36500 days') | daily",
    ],
)
def test_e014_values_at_the_bound_pass(settings, cond):
    assert run_task_checks(settings, {"report": {**GOOD, "start_cond": cond}}) == []


def test_e014_makes_the_task_invalid_for_the_scheduler(settings):
    from django.core.exceptions import ImproperlyConfigured

    from django_rocket import registry

    settings.ROCKET_TASKS = {"report": {**GOOD, "start_cond": "daily | retry(10000)"}}
    with pytest.raises(ImproperlyConfigured, match="E014"):
        registry.tasks()


@pytest.mark.parametrize(
    ("cond", "fragment"),
    [
        ("daily | retry(3, backoff=0.5)", "backoff must be a number >= 1"),
        ("daily | retry(3, delay='0 seconds')", "delay must be a positive duration"),
        ("daily | retry 3 times after soon", "Cannot read the duration 'soon'"),
        ("daily | retry(3, jitter=2)", "jitter must be True"),
        ("daily | retry(3, on='OSError')", "on must be a list"),
    ],
)
def test_e006_bad_retry_options_name_the_option(settings, cond, fragment):
    messages = run_task_checks(settings, {"report": {**GOOD, "start_cond": cond}})
    assert ids(messages) == ["django_rocket.E006"]
    assert fragment in messages[0].msg and "'report'" in messages[0].msg


def test_e014_retry_delays_are_bounded(settings):
    cond = "daily | retry(3, delay='1 minute', max_delay='36501 days')"
    messages = run_task_checks(settings, {"report": {**GOOD, "start_cond": cond}})
    assert ids(messages) == ["django_rocket.E014"]
    assert "a retry max_delay of" in messages[0].msg


def test_known_retry_exceptions_pass(settings):
    cond = "daily | retry(3, on=['ConnectionError', 'json.JSONDecodeError', 'OSError'])"
    assert run_task_checks(settings, {"report": {**GOOD, "start_cond": cond}}) == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ConectionError", "not a built-in exception"),
        ("nowhere.module.Error", "cannot be imported here"),
    ],
)
def test_w003_unresolvable_retry_exception_warns(settings, name, reason):
    cond = f"daily | retry(3, on=[{name!r}])"
    messages = run_task_checks(settings, {"report": {**GOOD, "start_cond": cond}})
    assert ids(messages) == ["django_rocket.W003"]
    assert not messages[0].is_serious()
    assert repr(name) in messages[0].msg and reason in messages[0].msg
    assert "dotted path" in messages[0].hint and messages[0].obj == "report"


@pytest.mark.parametrize("name", ["print", "json.dumps", "os.path"])
def test_e015_retry_on_something_not_an_exception(settings, name):
    from django.core.exceptions import ImproperlyConfigured

    from django_rocket import registry

    cond = f"daily | retry(3, on=[{name!r}])"
    settings.ROCKET_TASKS = {"report": {**GOOD, "start_cond": cond}}
    messages = run_task_checks(settings, {"report": {**GOOD, "start_cond": cond}})
    assert ids(messages) == ["django_rocket.E015"]
    assert repr(name) in messages[0].msg and "not an exception class" in messages[0].msg
    with pytest.raises(ImproperlyConfigured, match="E015"):
        registry.tasks()


def test_e009_bad_execution(settings):
    messages = run_task_checks(settings, {"report": {**GOOD, "execution": "celery"}})
    assert ids(messages) == ["django_rocket.E009"]
    assert "'celery'" in messages[0].msg


@pytest.mark.parametrize("timeout", ["soon", -5, "0 seconds"])
def test_e010_bad_timeout(settings, timeout):
    assert ids(run_task_checks(settings, {"r": {**GOOD, "timeout": timeout}})) == [
        "django_rocket.E010"
    ]


@pytest.mark.parametrize("timeout", ["never", "10 minutes", 30, "00:10:00"])
def test_good_timeouts(settings, timeout):
    assert run_task_checks(settings, {"r": {**GOOD, "timeout": timeout}}) == []


def test_e011_parameters(settings):
    assert ids(run_task_checks(settings, {"r": {**GOOD, "parameters": [1]}})) == [
        "django_rocket.E011"
    ]
    messages = run_task_checks(
        settings,
        {
            "r": {
                "func": "tests.support.tasks.returns_value",
                "start_cond": "daily",
                "parameters": {"m": 1},
            }
        },
    )
    assert ids(messages) == ["django_rocket.E011"]
    assert "signature" in messages[0].msg


def test_e012_flags_must_be_bool(settings):
    assert ids(run_task_checks(settings, {"r": {**GOOD, "multilaunch": "yes"}})) == [
        "django_rocket.E012"
    ]


def test_e013_async_needs_coroutine(settings):
    assert ids(run_task_checks(settings, {"r": {**GOOD, "execution": "async"}})) == [
        "django_rocket.E013"
    ]
    ok = {"func": "tests.support.tasks.async_noop", "start_cond": "daily", "execution": "async"}
    assert run_task_checks(settings, {"r": ok}) == []


def test_e020_condition_module(settings):
    settings.ROCKET_CONDITION_MODULES = ["tests.no_such_conditions"]
    messages = run_task_checks(settings, {})
    assert ids(messages) == ["django_rocket.E020"]


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("ROCKET_TIME_ZONE", "Mars/Olympus", "django_rocket.E021"),
        ("ROCKET_EXECUTION", "celery", "django_rocket.E022"),
        ("ROCKET_TIMEOUT", "later", "django_rocket.E023"),
        ("ROCKET_SHUTDOWN_GRACE", "-1", "django_rocket.E024"),
        ("ROCKET_HEARTBEAT", 0, "django_rocket.E025"),
        ("ROCKET_LEASE_TIMEOUT", "x", "django_rocket.E026"),
        ("ROCKET_RUN_RETENTION", "forever", "django_rocket.E027"),
        ("ROCKET_MAX_PROCESSES", 0, "django_rocket.E028"),
        ("ROCKET_MAX_THREADS", 0, "django_rocket.E037"),
        ("ROCKET_MAX_THREADS", "50", "django_rocket.E037"),
        ("ROCKET_MAX_THREADS", True, "django_rocket.E037"),
        ("ROCKET_POLL_INTERVAL", "1", "django_rocket.E029"),
        ("ROCKET_LOG_RETRY", {"attempts": 0}, "django_rocket.E030"),
        ("ROCKET_SILENCE_COND_CHECK", "yes", "django_rocket.E031"),
        ("ROCKET_HEALTH_MAX_AGE", -1, "django_rocket.E032"),
        ("ROCKET_STOP_REMOTE_RUNS_AT_SHUTDOWN", "no", "django_rocket.E034"),
        ("ROCKET_LISTEN_DATABASE", "replica", "django_rocket.E035"),
        ("ROCKET_LISTEN_DATABASE", True, "django_rocket.E035"),
        ("ROCKET_TASK_FUNCTIONS", "myapp.tasks.*", "django_rocket.E060"),
        ("ROCKET_TASK_FUNCTIONS", ["myapp.tasks.*", "*"], "django_rocket.E060"),
        ("ROCKET_TASK_FUNCTIONS", ["myapp..tasks"], "django_rocket.E060"),
    ],
)
def test_setting_checks(settings, setting, value, check_id):
    setattr(settings, setting, value)
    messages = check_settings()
    assert ids(messages) == [check_id]
    assert setting in messages[0].msg
    assert messages[0].hint


@pytest.mark.parametrize(
    ("heartbeat", "lease", "expected"),
    [
        ("1 minute", "30 seconds", ["django_rocket.E038"]),  # the lease ends between beats
        ("30 seconds", "30 seconds", ["django_rocket.E038"]),
        ("15 seconds", "30 seconds", ["django_rocket.W004"]),  # one late beat loses it
        ("10 seconds", "30 seconds", []),
        ("5 seconds", "30 seconds", []),  # the defaults
        (0, "30 seconds", ["django_rocket.E025"]),  # said once, by the check of its own
        ("1 minute", "soon", ["django_rocket.E026"]),
    ],
)
def test_the_lease_must_outlast_heartbeats(settings, heartbeat, lease, expected):
    settings.ROCKET_HEARTBEAT, settings.ROCKET_LEASE_TIMEOUT = heartbeat, lease
    messages = check_settings()
    assert ids(messages) == expected
    if expected and expected[0] in ("django_rocket.E038", "django_rocket.W004"):
        assert f"ROCKET_LEASE_TIMEOUT {lease!r}" in messages[0].msg
        assert f"ROCKET_HEARTBEAT {heartbeat!r}" in messages[0].msg
        assert messages[0].hint == (
            "Make ROCKET_LEASE_TIMEOUT at least three heartbeats long (the defaults are "
            "'5 seconds' and '30 seconds')."
        )


def test_e035_names_the_aliases_there_are(settings):
    settings.ROCKET_LISTEN_DATABASE = "direct"
    (message,) = check_settings()
    assert message.msg == (
        "ROCKET_LISTEN_DATABASE 'direct' is not an alias in DATABASES ('default')."
    )
    assert "PgBouncer" in message.hint
    assert "None" in message.hint


def test_e035_the_listen_database_is_postgresql_when_the_run_log_is(settings, monkeypatch):
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    monkeypatch.setitem(django_settings.DATABASES, "other", sqlite)
    settings.ROCKET_LISTEN_DATABASE = "other"
    messages = check_settings()
    if connection.vendor == "postgresql":
        assert ids(messages) == ["django_rocket.E035"]
        assert "is not a PostgreSQL database" in messages[0].msg
    else:  # nothing listens: the setting has no effect
        assert messages == []
    monkeypatch.setitem(django_settings.DATABASES, "other", dict(connection.settings_dict))
    assert check_settings() == []
    settings.ROCKET_LISTEN_DATABASE = None  # the poll alone
    assert check_settings() == []


def test_e036_routers_that_send_the_run_log_to_a_replica(settings):
    settings.DATABASE_ROUTERS = ["tests.support.routers.Replicas"]
    (message,) = check_settings()
    assert message.id == "django_rocket.E036"
    assert message.msg.startswith(
        "DATABASE_ROUTERS send the reads of Task, TaskRun, SchedulerInstance, SchedulerLease, "
        "Counter to 'replica'"
    )
    assert "to 'replica'" in message.msg
    assert "the writes of" not in message.msg  # they go to "default"
    assert "'django_rocket.routers.RunLogRouter' first" in message.hint


def test_e036_routers_that_put_the_run_log_on_another_database(settings):
    settings.DATABASE_ROUTERS = ["tests.support.routers.RocketElsewhere"]
    (message,) = check_settings()
    assert "the reads of" in message.msg and "to 'other'" in message.msg
    assert "the writes of" in message.msg
    assert "the tables of" in message.msg and "another database (allow_migrate)" in message.msg


def test_e036_a_router_that_raises_is_named(settings):
    settings.DATABASE_ROUTERS = ["tests.support.routers.Broken"]
    (message,) = check_settings()
    assert message.id == "django_rocket.E036"
    assert "RuntimeError('no replica configured')" in message.msg


@pytest.mark.parametrize(
    "routers",
    [
        ["django_rocket.routers.RunLogRouter", "tests.support.routers.Replicas"],
        ["django_rocket.routers.RunLogRouter", "tests.support.routers.RocketElsewhere"],
        ["django_rocket.routers.RunLogRouter", "tests.support.routers.Broken"],
    ],
)
def test_run_log_router_first_keeps_the_run_log_on_default(settings, routers):
    settings.DATABASE_ROUTERS = routers
    assert check_settings() == []


def test_runscheduler_does_not_start_with_the_run_log_on_a_replica(settings):
    settings.DATABASE_ROUTERS = ["tests.support.routers.Replicas"]
    with pytest.raises(SystemCheckError, match=r"django_rocket.E036.*to 'replica'"):
        call_command("runscheduler", "--once", skip_checks=False)


def test_run_log_router_leaves_other_models_to_the_next_router(settings):
    from django.contrib.auth.models import User
    from django.db import router

    from django_rocket.models import Task

    settings.DATABASE_ROUTERS = [
        "django_rocket.routers.RunLogRouter",
        "tests.support.routers.Replicas",
    ]
    assert router.db_for_read(User) == "replica"
    assert router.db_for_read(Task) == "default"
    assert router.allow_migrate("replica", "django_rocket") is False
    assert router.allow_migrate("replica", "auth") is True


def test_task_functions_accept_paths_and_prefixes(settings):
    settings.ROCKET_TASK_FUNCTIONS = ["myapp.reminders.send", "myapp.reports.*"]
    assert check_settings() == []


def test_w001_use_tz(settings):
    settings.USE_TZ = False
    messages = check_settings()
    assert ids(messages) == ["django_rocket.W001"]
    assert messages[0].level == checks.WARNING


def test_defaults_pass(settings):
    assert check_settings() == []


def test_manage_py_check_fails_with_the_id_and_task(settings):
    settings.ROCKET_TASKS = {"report": {**GOOD, "func": "tests.support.tasks.nope"}}
    with pytest.raises(SystemCheckError) as exc:
        call_command("check")
    assert "django_rocket.E005" in str(exc.value)
    assert "'report'" in str(exc.value)


# -- Text the database cannot store: the scheduler writes every declared task at start-up.


def test_e002_a_name_longer_than_its_column(settings):
    (message,) = run_task_checks(settings, {"n" * 201: GOOD})
    assert message.id == "django_rocket.E002"
    assert message.msg == (
        f"ROCKET_TASKS has a key {'n' * 60!r}... (201 characters) that cannot be a task "
        "name: it is 201 characters long, and the column holds 200."
    )
    assert "at most 200 characters" in message.hint
    assert run_task_checks(settings, {"n" * 200: GOOD}) == []


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("nightly\x00report", "NUL character"),
        ("caf\udce9", "'\\udce9', a lone surrogate"),
    ],
)
def test_e002_a_name_with_a_character_no_database_stores(settings, name, why):
    (message,) = run_task_checks(settings, {name: GOOD})
    assert message.id == "django_rocket.E002"
    assert repr(name) in message.msg and why in message.msg


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("description", "Sends the\x00report", "NUL character"),
        ("description", "caf\udce9", "lone surrogate"),
        ("queue", "q" * 101, "101 characters long, and the column holds 100"),
    ],
)
def test_e016_task_text_the_database_cannot_store(settings, key, value, why):
    messages = run_task_checks(settings, {"report": {**GOOD, key: value}})
    (message,) = [m for m in messages if m.id == "django_rocket.E016"]
    assert message.msg.startswith(f"Task 'report': {key} ")
    assert why in message.msg
    assert message.obj == "report"
    assert f"Write {key} as text" in message.hint


@pytest.mark.django_db
def test_the_longest_name_and_any_text_the_checks_pass_are_stored(settings):
    """What passes the checks, the database takes: the limits are the columns' own."""
    from django.utils import timezone

    from django_rocket.engine.declarations import sync_tasks
    from django_rocket.models import Task
    from django_rocket.registry import tasks as declared_tasks

    name = "é" * 200  # characters, not bytes: 400 bytes of UTF-8
    text = "Ünïcödé, emoji 🚀, tabs\tand\nnew lines " * 50
    settings.ROCKET_TASKS = {name: {**GOOD, "description": text}}
    assert check_tasks() == []
    sync_tasks(declared_tasks(), timezone.now())
    assert Task.objects.values_list("name", "description").get() == (name, text)
