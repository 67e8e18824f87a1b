"""Every option of every command, fed random and hostile text: an error message, never a traceback.

The options are read from each command's parser, so a new command or option is
covered without touching this file. Each value is tried twice: as the command
line parses it (a bad value exits 2 with a usage line; nothing raises) and
through ``call_command`` (the outcome is success, a ``CommandError`` or the
command's own ``SystemExit``, never another exception).
"""

import argparse
import io
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_rocket.management import arguments
from tests.conftest import ROOT, database_url

pytestmark = pytest.mark.django_db

COMMANDS = sorted(name for name, app in get_commands().items() if app == "django_rocket")
# These print and exit 0 before any command code runs.
PRINT_AND_EXIT = {"help", "version"}
TASK = "t"

NASTY = [
    TASK,
    "",
    " ",
    "0",
    "-0",
    "-1",
    "1",
    "60",
    "0.5",
    "1e-300",
    "1e308",
    "-1e308",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "9" * 20,
    "9" * 5000,
    "-" + "9" * 20,
    "1_000",
    "1 day",
    "0 seconds",
    "-3 days",
    "99999999 days",
    "99999999999999999999 weeks",
    "36500 days",
    "36501 days",
    "2026-03-02",
    "2026-03-02T10:15",
    "0001-01-01",
    "0001-01-01T00:00+05:00",
    "0001-01-01T00:00-23:59",
    "9999-12-31",
    "9999-12-31T23:59:59-05:00",
    "9999-12-31T23:59:59+23:59",
    "1970-01-01T00:00+23:59",
    "9000-12-31T23:59:59-23:59",
    "\x00",
    "t\x00",
    "\udcff",
    "t\udcff",
    "\ud800",
    "x" * 201,
    "x" * 100_000,
    "(" * 200 + "daily" + ")" * 200,
    "retry(100000000000000000000)",
    "every('99999999 days')",
    "every('36500 days')",
    "failed.today >= 99999999999999999999",
    "cron('* * * * *')",
    "=1+1",
    "--",
    "-",
    "--json",
    "%s %n {}",
    "'; DROP TABLE django_rocket_task; --",
    "\r\n",
    "\t",
    "é",
    "\u202e",
]


def surrogate_escaped(raw: bytes) -> str:
    """What Python makes of command-line bytes that are not UTF-8."""
    return raw.decode("utf-8", "surrogateescape")


VALUES = st.sampled_from(NASTY) | st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.binary(max_size=20).map(surrogate_escaped),
    st.integers().map(str),
    st.floats().map(repr),
    st.from_regex(
        r"-?\d{1,30}(\.\d{1,5})?(e-?\d{1,4})?( ?(s|seconds|hours|days|weeks))?", fullmatch=True
    ),
    st.datetimes().map(lambda d: d.isoformat()),
)


def own_actions(name: str) -> list[argparse.Action]:
    parser = load_command_class("django_rocket", name).create_parser("manage.py", name)
    return [a for a in parser._actions if a.dest not in PRINT_AND_EXIT]


def sandboxed(value: str, directory: Path) -> str:
    """Keep a file name inside ``directory``, so that no draw writes anywhere else."""
    return str(directory / value.replace("/", "_")) if value else value


@st.composite
def command_lines(draw: Callable[..., Any], name: str, directory: Path) -> list[str]:
    """Draw a command line for ``name``: any of its options, each with a hostile value."""
    options: list[str] = []
    positionals: list[str] = []
    for action in own_actions(name):
        if not action.option_strings:
            positionals.append(draw(VALUES))
            continue
        flag = action.option_strings[-1]
        if action.nargs == 0:
            if draw(st.booleans()):
                options.append(flag)
            continue
        value = draw(st.none() | VALUES)
        if value is None:
            continue
        if action.type is arguments.file_path:
            value = sandboxed(value, directory)
        options.append(f"{flag}={value}")  # "=": a value may start with "-"
    options = draw(st.permutations(options))
    return [*options, "--", *positionals] if positionals else options


class NoScheduler:
    """Stands in for the scheduler: runscheduler's argument handling is what is tested."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def request_stop(self, reason: str) -> None:
        pass

    def run(self) -> int:
        return 0


@pytest.fixture
def quiet_commands(settings, monkeypatch):
    settings.ROCKET_TASKS = {
        TASK: {"func": "tests.support.tasks.noop", "start_cond": "daily", "execution": "main"}
    }
    settings.ROCKET_ALERTS = {}  # sendtestalert and runtask send nothing
    monkeypatch.setattr("django_rocket.management.commands.runscheduler.Scheduler", NoScheduler)


def parse_as_the_command_line_does(name: str, argv: list[str]) -> None:
    """A bad value is a usage error: exit code 2 and a message, no other exception."""
    command = load_command_class("django_rocket", name)
    command._called_from_command_line = True
    parser = command.create_parser("manage.py", name)
    code: object = None
    with redirect_stderr(io.StringIO()) as err:
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            code = exc.code
    assert code in (None, 2), (argv, code)
    assert code is None or "error: " in err.getvalue(), argv
    assert "Traceback" not in err.getvalue(), argv


def call(name: str, argv: list[str]) -> str:
    """Through call_command: success, a CommandError or the command's SystemExit, with a message.

    Return "ok", "usage" (argparse refused a value), "error" or "exit".
    """
    out, err = io.StringIO(), io.StringIO()
    error: str | None = None
    code: object = None
    try:
        with transaction.atomic():  # each draw starts from the same database
            try:
                call_command(name, *argv, stdout=out, stderr=err)
            finally:
                transaction.set_rollback(True)
    except CommandError as exc:
        error = str(exc)
    except SystemExit as exc:
        code = exc.code
    assert "Traceback" not in out.getvalue() + err.getvalue(), argv
    if error is not None:
        assert error.strip() and error.splitlines()[0].strip(), (argv, error)
        return "usage" if error.startswith("Error: ") else "error"
    if code is not None:
        assert code == 1 and err.getvalue().strip(), (argv, code, err.getvalue())
        return "exit"
    return "ok"


def valid_value(action: argparse.Action) -> str:
    """A value the option accepts, for an option or argument that must be given."""
    for value in (TASK, "1 day", "60", "2026-03-02"):
        try:
            parsed = action.type(value) if callable(action.type) else value
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            continue
        if action.choices is None or parsed in action.choices:
            return value
    raise AssertionError(f"No known valid value for {action.dest}; add one to valid_value.")


def command_line(actions: list[argparse.Action], values: dict[str, str]) -> list[str]:
    """The options then, after "--", the positional arguments, each with its value."""
    options = [f"{a.option_strings[-1]}={values[a.dest]}" for a in actions if a.option_strings]
    positionals = [values[a.dest] for a in actions if not a.option_strings]
    return [*options, "--", *positionals] if positionals else options


@pytest.mark.parametrize("name", COMMANDS)
def test_every_nasty_value_in_every_option(name, quiet_commands, tmp_path):
    actions = [a for a in own_actions(name) if a.nargs != 0]
    required = {a.dest: valid_value(a) for a in actions if a.required or not a.option_strings}
    assert call(name, command_line([a for a in actions if a.dest in required], required)) != "usage"
    for action in actions:
        for value in NASTY:
            if action.type is arguments.file_path:
                value = sandboxed(value, tmp_path)
            values = {**required, action.dest: value}
            argv = command_line([a for a in actions if a.dest in values], values)
            parse_as_the_command_line_does(name, argv)
            call(name, argv)


@pytest.mark.parametrize("name", COMMANDS)
@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_option_value_makes_a_traceback(name, data, quiet_commands, tmp_path):
    argv = data.draw(command_lines(name, tmp_path), label="argv")
    parse_as_the_command_line_does(name, argv)
    call(name, argv)


def test_every_command_and_option_is_reached():
    assert set(COMMANDS) >= {
        "checkscheduler",
        "explaintask",
        "exportruns",
        "pruneruns",
        "runscheduler",
        "runtask",
        "sendtestalert",
        "showtasks",
    }
    options = {
        a.option_strings[-1] for name in COMMANDS for a in own_actions(name) if a.option_strings
    }
    assert {
        "--older-than",
        "--batch-size",
        "--since",
        "--chunk-size",
        "--max-age",
        "--duration",
    } <= options


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "'-1' is not positive; give a number of seconds above 0"),
        ("0", "'0' is not positive"),
        ("abc", "'abc' is not a number of seconds; write e.g. 60"),
        ("nan", "'nan' is not a finite number of seconds"),
        ("inf", "'inf' is not a finite number of seconds"),
        ("1e308", "'1e308' is more than 100 years"),
        ("--", "--duration needs a value"),
    ],
)
def test_runscheduler_duration_is_refused_in_one_line(value, message, quiet_commands):
    with pytest.raises(CommandError, match=message) as info:
        call_command("runscheduler", f"--duration={value}")
    assert "\n" not in str(info.value)
    parse_as_the_command_line_does("runscheduler", [f"--duration={value}"])


@pytest.mark.parametrize(
    ("kind", "inside", "outside"),
    [
        (arguments.positive_duration, ["1 second", "36500 days"], ["0", "36501 days", "9" * 30]),
        (arguments.positive_seconds, ["1e-9", "3153600000"], ["0", "3153600001", "nan"]),
        (arguments.row_count, ["1", "10000"], ["0", "10001", "1.5"]),
        (
            arguments.iso_datetime,
            ["1970-01-01T00:00+23:59", "9000-12-31T23:59:59.999999-23:59"],
            ["1969-12-31T23:59:59", "9001-01-01", "0001-01-01T00:00+05:00"],
        ),
        (arguments.task_name, ["t", "é" * 200, "\u202e"], ["", " ", "t\x00", "t\udcff", "x" * 201]),
        (arguments.text, ["daily", "x" * 10_000], ["\x00", "\ud800", "x" * 10_001]),
        (arguments.file_path, ["runs.csv", "r\udcff.csv"], ["", "a\x00", "\ud800"]),
    ],
)
def test_each_kind_of_value_has_its_bounds(kind, inside, outside):
    for value in inside:
        kind(value)
    for value in outside:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(value)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        ([b"runscheduler", b"--duration", b"abc"], 2, b"'abc' is not a number of seconds"),
        ([b"runtask", b"caf\xe9"], 2, b"'caf\\udce9' is not UTF-8 text: character 4"),
        ([b"exportruns", b"--format=--"], 1, b"--format needs a value; '--' is not one."),
    ],
)
def test_from_a_real_command_line(argv, code, message):
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"django", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert b"Traceback" not in done.stderr


@pytest.mark.parametrize(
    "kind",
    [
        arguments.iso_datetime,
        arguments.positive_duration,
        arguments.positive_seconds,
        arguments.row_count,
        arguments.task_name,
        arguments.text,
        arguments.file_path,
    ],
)
@pytest.mark.parametrize("value", ["9" * 100_000, "x" * 100_000 + "\x00", "\udcff" * 100_000])
def test_a_huge_bad_value_is_quoted_short(kind, value):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        kind(value)
    assert len(str(info.value)) < 200, str(info.value)
