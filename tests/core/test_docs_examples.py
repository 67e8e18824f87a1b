"""The code examples of the docs are run, so that they stay true.

For each page below (and the README's quick look):

* every Python block compiles, and runs in one namespace per page, in order;
  a block preceded by the RST comment ``.. example: illustrative`` (in Markdown
  ``<!-- example: illustrative -->``) shows another library's code and is only
  compiled;
* after a block that assigns ``ROCKET_*`` settings, those settings pass the
  system checks, with a stand-in for each task function from a module that
  does not exist here (such as ``reports.tasks``);
* every condition in a table whose first column is *Condition* parses;
* every ``manage.py`` command line in a code block parses with that command's
  own argument parser;
* every test a page names as ``tests/…py::test_name`` exists.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import textwrap
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import checks as django_checks
from django.core.management import get_commands, load_command_class
from django.test import override_settings
from django.utils import timezone
from django.utils.module_loading import import_string

from django_rocket import checks
from django_rocket.conditions import custom, parse
from django_rocket.models import RunStatus, Task, TaskRun

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [
    "reference/commands.rst",
    "reference/models.rst",
    "howto/conditions.rst",
    "howto/retries-in-windows.rst",
    "howto/silencing-errors.rst",
    "howto/deployment.rst",
    "howto/migrating-from-rocketry.rst",
    "howto/migrating-from-celery-beat.rst",
    "explanation/guarantees.rst",
    "explanation/architecture.rst",
]
ILLUSTRATIVE = "example: illustrative"


@dataclass
class Block:
    source: str  # "page:line"
    language: str
    code: str
    illustrative: bool


def rst_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)\.\. code-block::\s*(\S+)\s*$", line)
        if not match:
            continue
        indent = len(match[1])
        body = []
        index = number + 1
        while index < len(lines) and re.match(r"^\s+:\w[\w-]*:", lines[index]):
            index += 1  # directive options
        while index < len(lines):
            text = lines[index]
            if text.strip() and len(text) - len(text.lstrip()) <= indent:
                break
            body.append(text)
            index += 1
        before = [text.strip() for text in lines[:number] if text.strip()]
        marked = bool(before) and before[-1] == f".. {ILLUSTRATIVE}"
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        blocks.append(Block(f"{path.name}:{number + 1}", match[2], code, marked))
    return blocks


def readme_quick_look() -> list[Block]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick look", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for match in re.finditer(
        r"(<!-- example: illustrative -->\s*)?```(\w+)\n(.*?)```", section, re.S
    ):
        blocks.append(Block("README.md (Quick look)", match[2], match[3], bool(match[1])))
    return blocks


def assigns_settings(code: str) -> bool:
    for node in ast.walk(ast.parse(code)):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id.startswith("ROCKET_") for t in targets):
            return True
    return False


def stand_in(**kwargs: object) -> None:
    """Takes the place of an example's task function from a project that is not here."""


async def async_stand_in(**kwargs: object) -> None:
    """The same, for ``execution: "async"``."""


def importable(path: object) -> bool:
    try:
        import_string(str(path))
    except ModuleNotFoundError:
        return False
    except ImportError:
        return True  # the module exists: let the check report the missing name
    return True


def with_stand_ins(tasks: object) -> object:
    """Point functions in modules that do not exist here at stand-ins; keep everything else."""
    if not isinstance(tasks, dict):
        return tasks
    replaced = {}
    for name, entry in tasks.items():
        if isinstance(entry, dict) and "func" in entry and not importable(entry["func"]):
            stand = "async_stand_in" if entry.get("execution") == "async" else "stand_in"
            entry = {**entry, "func": f"{__name__}.{stand}"}
        replaced[name] = entry
    return replaced


def tolerated(message: django_checks.CheckMessage) -> bool:
    """A condition module of an example lives in a project that is not here."""
    return message.id == "django_rocket.E020" and "No module named" in message.msg


def check_settings(namespace: dict, where: str) -> None:
    rocket = {name: value for name, value in namespace.items() if name.startswith("ROCKET_")}
    if "ROCKET_TASKS" in rocket:
        rocket["ROCKET_TASKS"] = with_stand_ins(rocket["ROCKET_TASKS"])
    with override_settings(**rocket):
        messages = checks.check_tasks() + checks.check_settings()
    errors = [m for m in messages if m.is_serious() and not tolerated(m)]
    assert not errors, f"{where}: the settings do not pass the checks: {errors}"


def run_python(blocks: list[Block]) -> int:
    """Compile every block, run the runnable ones in one namespace; return how many ran."""
    namespace: dict = {"__name__": "docs_example", "INSTALLED_APPS": []}
    registered = set(custom.custom_conditions())
    ran = 0
    try:
        for block in blocks:
            if block.language not in ("python", "python3", "py"):
                continue
            compiled = compile(block.code, block.source, "exec")
            if block.illustrative:
                continue
            exec(compiled, namespace)
            ran += 1
            if assigns_settings(block.code):
                check_settings(namespace, block.source)
    finally:
        for name in set(custom.custom_conditions()) - registered:
            custom.unregister(name)
    return ran


@pytest.fixture
def example_data():
    """The rows that examples reading the database expect."""
    task = Task.objects.create(name="nightly_report", func="reports.tasks.build_report")
    now = timezone.now()
    TaskRun.objects.create(
        task=task,
        status=RunStatus.FAIL,
        started_at=now - timedelta(hours=2),
        finished_at=now - timedelta(hours=2) + timedelta(seconds=3),
        message="ConnectionError: the warehouse did not answer",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("page", PAGES)
def test_python_examples_run(page, example_data):
    blocks = rst_blocks(DOCS / page)
    run_python(blocks)


@pytest.mark.django_db
def test_readme_quick_look_runs():
    blocks = readme_quick_look()
    assert run_python(blocks) >= 1


def test_illustrative_blocks_are_rare():
    """Only code of other libraries is exempt from running."""
    marked = [b.source for page in PAGES for b in rst_blocks(DOCS / page) if b.illustrative]
    assert len(marked) <= 3, marked


def condition_cells(path: Path) -> list[tuple[str, str]]:
    """First-column literals of list-tables whose first header is 'Condition'."""
    cells = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line.strip() != ".. list-table::":
            continue
        rows = lines[number + 1 :]
        header = next((r for r in rows if r.strip().startswith("* - ")), "")
        if header.strip() != "* - Condition":
            continue
        for offset, row in enumerate(rows):
            if row and not row.startswith(" "):
                break
            match = re.match(r"^\s+\* - ``(.+)``\s*$", row)
            if match:
                cells.append((f"{path.name}:{number + offset + 2}", match[1]))
    return cells


@pytest.mark.parametrize("page", PAGES)
def test_conditions_in_tables_parse(page):
    for where, text in condition_cells(DOCS / page):
        try:
            parse(text)
        except ValueError as exc:
            pytest.fail(f"{where}: {text!r} does not parse: {exc}")


def manage_py_calls(block: Block) -> list[list[str]]:
    calls = []
    for line in block.code.splitlines():
        array = re.search(r'\[\s*"python",\s*"manage\.py",(.*?)\]', line)
        if array:
            calls.append(json.loads(f"[{array[1]}]"))
            continue
        shell = re.search(r"manage\.py\s+(.*)$", line)
        if not shell or "[" in shell[1] or "<" in shell[1]:
            continue  # a synopsis such as "pruneruns --older-than DURATION [--dry-run]"
        words = []
        for word in shlex.split(shell[1], comments=True):
            if word in ("|", "&&", ";", ">", "2>&1"):
                break
            words.append(word)
        calls.append(words)
    return calls


@pytest.mark.parametrize("page", PAGES)
def test_command_lines_parse(page):
    commands = get_commands()
    for block in rst_blocks(DOCS / page):
        for name, *args in manage_py_calls(block):
            assert name in commands, f"{block.source}: no command {name!r}"
            command = load_command_class(commands[name], name)
            parser = command.create_parser("manage.py", name)
            parser.parse_args(args)  # raises CommandError on an unknown option or a bad value


def test_the_command_reference_has_every_command():
    text = (DOCS / "reference/commands.rst").read_text(encoding="utf-8")
    ours = [
        path.stem
        for path in (ROOT / "django_rocket/management/commands").glob("*.py")
        if not path.stem.startswith("_")
    ]
    missing = [name for name in ours if f"\n{name}\n{'-' * len(name)}\n" not in text]
    assert not missing, f"docs/reference/commands.rst lacks a section for {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_named_tests_exist(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    for path, name in re.findall(r"``(tests/[\w/]+\.py)::(\w+)``", text):
        source = (ROOT / path).read_text(encoding="utf-8") if (ROOT / path).exists() else ""
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{page}: {path}::{name}"
