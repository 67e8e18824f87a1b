"""Parse condition strings written as Python expressions or as Rocketry's English phrases.

Both syntaxes share one grammar for the operators::

    condition  := or_expr
    or_expr    := and_expr ("|" and_expr)*
    and_expr   := not_expr ("&" not_expr)*
    not_expr   := "~" not_expr | "(" or_expr ")" | operand
    operand    := python_operand | english_phrase
    python_operand := NAME ("." ATTRIBUTE | "(" arguments ")")* [COMPARISON INTEGER]

An operand is read as an English phrase when it starts with one of the
phrase's leading words followed by another word (``daily between ...``,
``every 10 minutes``); otherwise it is a Python operand. Every operand is
built by calling the public vocabulary, so a phrase and its Python form give
equal conditions. Nothing is ever evaluated: names are looked up in the
vocabulary, attributes come from a fixed allow-list and arguments must be
literal strings or numbers.
"""

from __future__ import annotations

import ast
import difflib
import keyword
import operator
import re
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from . import english
from .errors import ConditionSyntaxError

if TYPE_CHECKING:
    from . import Condition

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "parse"]

#: Longest condition string accepted, in characters.
MAX_LENGTH = 10_000
#: Deepest nesting of parentheses and ``~`` accepted.
MAX_DEPTH = 100

#: The only attributes a Python operand may read: the public condition API,
#: in the order error messages suggest them.
ATTRIBUTES = (
    "between",
    "before",
    "after",
    "at",
    "on",
    "starting",
    "today",
    "this_hour",
    "this_minute",
    "this_week",
    "this_month",
    "past",
    "more_than",
    "less_than",
)

# Where an unparenthesized comparison is: its start, its operator and its end.
_Span = tuple[int, int, int]

_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}

_NAME = re.compile(r"[^\W\d]\w*")
_NUMBER = re.compile(r"(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?")
_COMPARISON = re.compile(r"==|!=|>=|<=|>|<")
_KEYWORD_ARGUMENT = re.compile(r"([^\W\d]\w*)\s*=(?!=)")
_STRING_START = re.compile(r"""([A-Za-z]{0,2})('''|\"\"\"|'|")""")
_TOKEN = re.compile(r"[^\W\d]\w*|\d[\w.]*|'[^']*'?|\"[^\"]*\"?|\S")

# Characters that end a bare value in an English phrase.
STOP_CHARACTERS = frozenset("&|()~")
# What may follow a name for it to be read as Python rather than as a phrase.
_PYTHON_FOLLOWERS = frozenset(".(&|)<>=!,")

_OPERAND = "a condition, such as daily, every('10 minutes') or after_success('etl')"
_KEYWORD_HINTS = {
    "and": "use & for 'and'",
    "or": "use | for 'or'",
    "not": "use ~ for 'not'",
}


def parse(text: str | Condition, *, names: Mapping[str, object] | None = None) -> Condition:
    """Return the condition a string describes, or the condition itself if given one.

    ``names`` adds custom conditions to the vocabulary for this call, on top
    of those registered with ``@condition``. Raise ``ConditionSyntaxError``
    for text that does not describe a condition.
    """
    from . import Condition

    if isinstance(text, Condition):
        return text
    if not isinstance(text, str):
        raise TypeError(f"Expected a condition or a string, got {type(text).__name__}.")
    return Parser(text, names or {}).parse()


def _vocabulary() -> Mapping[str, object]:
    from . import NAMESPACE

    return NAMESPACE


def _custom_names(names: Mapping[str, object]) -> Mapping[str, object]:
    """Return the registered custom conditions, overlaid with ``names``."""
    from . import custom_conditions

    return {**custom_conditions(), **names}


class Parser:
    """Recursive-descent parser over one condition string."""

    def __init__(self, text: str, names: Mapping[str, object]) -> None:
        from . import Condition

        self.text = text
        self.pos = 0
        self.depth = 0
        self.condition_class = Condition
        self.vocabulary = _vocabulary()
        self.names = _custom_names(names)

    # -- entry point -------------------------------------------------------

    def parse(self) -> Condition:
        if len(self.text) > MAX_LENGTH:
            self.fail(
                f"The condition is too long ({len(self.text)} characters); "
                f"the limit is {MAX_LENGTH}.",
                MAX_LENGTH,
                f"at most {MAX_LENGTH} characters",
            )
        condition, _ = self.parse_or()
        self.skip_space()
        if self.pos < len(self.text):
            if self.text[self.pos] == ")":
                self.fail("Unmatched ')'.", self.pos, "&, | or the end of the condition")
            self.fail_expected("&, | or the end of the condition")
        return condition

    # -- errors ------------------------------------------------------------

    def fail(self, message: str, column: int, expected: str = "") -> NoReturn:
        raise ConditionSyntaxError(message, text=self.text, column=column, expected=expected)

    def describe_next(self) -> str:
        """Describe the token at the current position, for error messages."""
        if self.pos >= len(self.text):
            return "the end of the condition"
        token = _TOKEN.match(self.text, self.pos)
        assert token is not None  # \S matches any non-space character
        shown = token.group()
        if len(shown) > 30:
            shown = shown[:27] + "..."
        return repr(shown)

    def fail_expected(self, expected: str) -> NoReturn:
        self.skip_space()
        found = self.describe_next()
        message = f"Expected {expected}, found {found}."
        word = self.peek_word()
        if word in _KEYWORD_HINTS:
            message = f"{message[:-1]}; {_KEYWORD_HINTS[word]}."
        self.fail(message, self.pos, expected)

    # -- scanning ----------------------------------------------------------

    def skip_space(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos].isspace():
            pos += 1
        self.pos = pos

    def peek(self) -> str:
        """Return the next non-space character, or '' at the end."""
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def accept(self, symbol: str) -> bool:
        self.skip_space()
        if self.text.startswith(symbol, self.pos):
            self.pos += len(symbol)
            return True
        return False

    def peek_word(self) -> str | None:
        self.skip_space()
        match = _NAME.match(self.text, self.pos)
        return match.group() if match else None

    def accept_word(self, *words: str) -> str | None:
        """Consume and return the next word if it is one of ``words``."""
        word = self.peek_word()
        if word is not None and word in words:
            self.pos += len(word)
            return word
        return None

    def expect_word(self, *words: str, expected: str) -> str:
        word = self.accept_word(*words)
        if word is None:
            self.fail_expected(expected)
        return word

    def read_name(self) -> str:
        word = self.peek_word()
        if word is None:
            self.fail_expected("a name")
        self.pos += len(word)
        return word

    def at_string(self) -> bool:
        self.skip_space()
        return _STRING_START.match(self.text, self.pos) is not None

    def read_string(self, expected: str) -> str:
        """Read a quoted string with Python's rules for quotes and escapes."""
        self.skip_space()
        start = self.pos
        match = _STRING_START.match(self.text, start)
        if match is None:
            self.fail_expected(expected)
        prefix, quote = match.groups()
        lowered = prefix.lower()
        if "f" in lowered:
            self.fail("f-strings are not allowed; write a plain string.", start, "a plain string")
        if "b" in lowered:
            self.fail("Bytes are not allowed; write a plain string.", start, "a plain string")
        if lowered not in ("", "r", "u"):
            self.fail_expected(expected)
        pos = match.end()
        text = self.text
        while True:
            if pos >= len(text) or (len(quote) == 1 and text[pos] == "\n"):
                self.fail("Unterminated string.", start, f"a closing {quote}")
            if text.startswith(quote, pos):
                break
            pos += 2 if text[pos] == "\\" else 1
        end = pos + len(quote)
        body = text[match.end() : pos]
        self.pos = end
        if "\\" not in body:
            return body
        try:
            # A lone string literal: literal_eval only decodes it, it runs nothing.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = ast.literal_eval(text[start:end])
        except (SyntaxError, ValueError) as exc:
            self.fail(f"Invalid string: {exc.args[0] if exc.args else exc}.", start, "a string")
        assert isinstance(value, str)
        return value

    def read_value(self, expected: str, stop_word: str | None = None) -> tuple[str, int]:
        """Read a phrase value: a quoted string, or bare text up to an operator.

        Bare text runs to the next ``& | ( ) ~`` or the end, or to
        ``stop_word`` (the ``and`` of ``between ... and ...``). Return the
        value and its column.
        """
        self.skip_space()
        start = self.pos
        if self.at_string():
            return self.read_string(expected), start
        text = self.text
        pos = end = start
        while pos < len(text) and text[pos] not in STOP_CHARACTERS:
            if text[pos].isspace():
                pos += 1
                continue
            word_start = pos
            while pos < len(text) and not text[pos].isspace() and text[pos] not in STOP_CHARACTERS:
                pos += 1
            if stop_word is not None and text[word_start:pos] == stop_word:
                pos = word_start
                break
            end = pos
        if end == start:
            self.fail_expected(expected)
        self.pos = end
        return text[start:end], start

    # -- operators ---------------------------------------------------------

    def enter(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(
                f"The condition is nested too deeply (more than {MAX_DEPTH} levels of "
                "parentheses and ~).",
                column,
                "less nesting",
            )

    def parse_or(self) -> tuple[Condition, _Span | None]:
        left, comparison = self.parse_and()
        while self.accept("|"):
            column = self.pos - 1
            right, right_comparison = self.parse_and()
            self.forbid_bare_comparison(comparison, right_comparison)
            left, comparison = self.combine(operator.or_, left, right, column), None
        return left, comparison

    def parse_and(self) -> tuple[Condition, _Span | None]:
        left, comparison = self.parse_not()
        while self.accept("&"):
            column = self.pos - 1
            right, right_comparison = self.parse_not()
            self.forbid_bare_comparison(comparison, right_comparison)
            left, comparison = self.combine(operator.and_, left, right, column), None
        return left, comparison

    def parse_not(self) -> tuple[Condition, _Span | None]:
        """Parse a negation, a parenthesized group or an operand.

        The second item returned is the column of a comparison operator left
        unparenthesized in the operand (``failed.today >= 3``), which may not
        be combined with other operators.
        """
        self.skip_space()
        start = self.pos
        if self.accept("~"):
            self.enter(start)
            operand, comparison = self.parse_not()
            self.depth -= 1
            self.forbid_bare_comparison(comparison)
            return self.combine(operator.inv, operand, None, start), None
        if self.accept("("):
            self.enter(start)
            condition, _ = self.parse_or()
            self.depth -= 1
            if not self.accept(")"):
                self.fail_expected(f"')' to close the '(' at column {start}")
            return condition, None
        return self.parse_operand()

    def forbid_bare_comparison(self, *comparisons: _Span | None) -> None:
        for comparison in comparisons:
            if comparison is not None:
                start, operator_column, end = comparison
                self.fail(
                    f"Put the comparison in parentheses: ({self.text[start:end]}). In Python "
                    "a comparison binds more loosely than &, | and ~.",
                    operator_column,
                    "a comparison in parentheses",
                )

    def combine(
        self, function: Callable[..., Any], left: Any, right: Any, column: int
    ) -> Condition:
        try:
            result = function(left) if right is None else function(left, right)
        except Exception as exc:
            self.fail(f"These conditions cannot be combined: {exc}", column, "conditions")
        return result

    # -- operands ----------------------------------------------------------

    def parse_operand(self) -> tuple[Condition, _Span | None]:
        self.skip_space()
        start = self.pos
        word = self.peek_word()
        if word is None:
            self.fail_expected(_OPERAND)
        if word in english.LEADING_WORDS and (
            not self.is_name(word) or not self.followed_by_python(start + len(word))
        ):
            return english.parse_phrase(self, word), None
        if word in _KEYWORD_HINTS:
            self.fail(f"Unexpected '{word}'; {_KEYWORD_HINTS[word]}.", start, _OPERAND)
        if keyword.iskeyword(word) and word not in ("True", "False", "None"):
            self.fail(
                f"{word!r} is not allowed: a condition is made of condition names, calls "
                "with literal arguments, &, |, ~ and parentheses.",
                start,
                _OPERAND,
            )
        return self.parse_python_operand()

    def followed_by_python(self, pos: int) -> bool:
        text = self.text
        while pos < len(text) and text[pos].isspace():
            pos += 1
        return pos == len(text) or text[pos] in _PYTHON_FOLLOWERS

    def is_name(self, name: str) -> bool:
        return name in self.vocabulary or name in self.names

    def lookup(self, name: str, column: int) -> object:
        if name in self.vocabulary:
            return self.vocabulary[name]
        if name in self.names:
            return self.names[name]
        candidates = [*self.vocabulary, *self.names, *english.LEADING_WORDS]
        candidates = [candidate for candidate in candidates if candidate != name]
        close = difflib.get_close_matches(name, candidates, n=1)
        if close:
            message = f"Unknown condition {name!r}; did you mean {close[0]!r}?"
        else:
            message = (
                f"Unknown condition {name!r}. Custom conditions must be registered "
                "with @condition before the string is parsed."
            )
        self.fail(message, column, _OPERAND)

    def builtin(self, name: str) -> Any:
        """Return a vocabulary object by name, for phrases."""
        return self.vocabulary[name]

    def parse_python_operand(self) -> tuple[Condition, _Span | None]:
        self.skip_space()
        start = self.pos
        name = self.read_name()
        obj: Any = self.lookup(name, start)
        while True:
            self.skip_space()
            if self.accept("."):
                obj = self.read_attribute(obj, start)
            elif self.peek() == "(":
                obj = self.read_call(obj, start)
            else:
                break
        described = self.text[start : self.pos].strip()
        if not isinstance(obj, self.condition_class):
            self.fail_incomplete(obj, described, start)
        self.skip_space()
        comparison = _COMPARISON.match(self.text, self.pos)
        if comparison is None:
            return obj, None
        result = self.read_comparison(obj, described, comparison.group())
        return result, (start, comparison.start(), self.pos)

    def fail_incomplete(self, obj: object, described: str, column: int) -> NoReturn:
        methods = [f".{name}(...)" for name in ATTRIBUTES if _has(obj, name)]
        if methods:
            hint = f"add a window such as {described}{methods[0]}"
        elif callable(obj):
            hint = f"call it with its arguments, {described}(...)"
        else:
            hint = "only conditions can be combined"
        self.fail(f"{described} is not a condition by itself; {hint}.", column, "a condition")

    def read_attribute(self, obj: object, start: int) -> object:
        self.skip_space()
        column = self.pos
        described = self.text[start : column - 1].strip()
        name = self.peek_word()
        if name is None:
            self.fail_expected(f"an attribute of {described}")
        available = [attr for attr in ATTRIBUTES if _has(obj, attr)]
        if name not in available:
            close = difflib.get_close_matches(name, available, n=1)
            message = f"{described} has no attribute {name!r}"
            if close:
                message += f"; did you mean {close[0]!r}?"
            elif available:
                message += f"; it has {_join_choices(available)}."
            else:
                message += "."
            self.fail(message, column, _join_choices(available) or "no attribute")
        self.pos += len(name)
        try:
            return getattr(obj, name)
        except Exception as exc:
            self.fail(f"{described}.{name} failed: {exc}", column, "a condition")

    def read_call(self, function: object, start: int) -> object:
        described = self.text[start : self.pos].strip()
        self.accept("(")
        open_column = self.pos - 1
        if not callable(function):
            self.fail(f"{described} cannot be called.", open_column, "&, | or the end")
        args: list[object] = []
        kwargs: dict[str, object] = {}
        columns: list[tuple[object, int]] = []
        keyword_columns: dict[str, int] = {}
        while not self.accept(")"):
            self.skip_space()
            column = self.pos
            keyword_argument = _KEYWORD_ARGUMENT.match(self.text, column)
            if keyword_argument:
                name = keyword_argument.group(1)
                if name in kwargs:
                    self.fail(f"Argument {name!r} is given twice.", column, "each argument once")
                keyword_columns[name] = column
                self.pos = keyword_argument.end()
                self.skip_space()
                column = self.pos
                kwargs[name] = value = self.read_constant()
            else:
                if kwargs:
                    self.fail(
                        "A positional argument cannot follow a keyword argument.",
                        column,
                        "a keyword argument",
                    )
                args.append(value := self.read_constant())
            columns.append((value, column))
            if not self.accept(","):
                if self.accept(")"):
                    break
                self.fail_expected("',' or ')'")
        columns = columns or [(None, open_column)]
        return self.call(function, described, args, kwargs, columns, keyword_columns)

    def read_constant(self) -> object:
        """Read a literal argument: a string, a number, True, False or None."""
        expected = "a string or a number, such as '10 minutes' or 3"
        self.skip_space()
        if self.at_string():
            value = self.read_string(expected)
            while self.at_string():  # Python joins adjacent literals: 'a' 'b' is 'ab'
                value += self.read_string(expected)
            return value
        word = self.accept_word("True", "False", "None")
        if word is not None:
            return {"True": True, "False": False, "None": None}[word]
        return self.read_number(expected)

    def read_number(self, expected: str) -> int | float:
        self.skip_space()
        match = _NUMBER.match(self.text, self.pos)
        if match is None:
            self.fail_expected(expected)
        literal = match.group().replace("_", "")
        try:
            number: int | float = (
                float(literal) if any(c in literal for c in ".eE") else int(literal)
            )
        except ValueError:
            self.fail(f"Invalid number {match.group()!r}.", self.pos, expected)
        self.pos = match.end()
        return number

    def read_comparison(self, obj: Any, described: str, symbol: str) -> Condition:
        column = self.pos
        if symbol not in _COMPARISONS:
            self.fail(
                f"{symbol} cannot be used here: compare a count with >=, >, <= or <, "
                f"as in {described} >= 3.",
                column,
                ">=, >, <= or <",
            )
        self.pos += len(symbol)
        self.skip_space()
        number_column = self.pos
        number = self.read_number("a whole number")
        if not isinstance(number, int):
            self.fail("Expected a whole number.", number_column, "a whole number")
        try:
            result = _COMPARISONS[symbol](obj, number)
        except Exception:
            result = None
        if not isinstance(result, self.condition_class):
            self.fail(
                f"{described} cannot be compared with a number; only counts such as "
                "failed.today and running can.",
                column,
                "&, | or the end of the condition",
            )
        return result

    def call(
        self,
        function: Any,
        described: str,
        args: list[object],
        kwargs: dict[str, object],
        columns: list[tuple[object, int]],
        keyword_columns: Mapping[str, int] | None = None,
    ) -> object:
        """Call a vocabulary function, turning its errors into syntax errors."""
        try:
            return function(*args, **kwargs)
        except ConditionSyntaxError:
            raise
        except Exception as exc:
            reason = str(exc).rstrip(".") or type(exc).__name__
            self.fail(
                f"Invalid arguments for {described}(): {reason}.",
                _blamed_column(str(exc), columns, keyword_columns or {}),
                "valid arguments",
            )


def _blamed_column(
    reason: str, columns: list[tuple[object, int]], keyword_columns: Mapping[str, int]
) -> int:
    """Return the column of the argument an error message names, else the first one."""
    for name, column in keyword_columns.items():
        if f"'{name}'" in reason:
            return column
    for value, column in columns:
        if value is not None and str(value) and (repr(value) in reason or str(value) in reason):
            return column
    return columns[0][1]


def _has(obj: object, name: str) -> bool:
    # Only ever called with names from ATTRIBUTES, never with user text.
    try:
        return hasattr(obj, name)
    except Exception:
        return False


def _join_choices(choices: list[str]) -> str:
    if len(choices) <= 1:
        return "".join(choices)
    return f"{', '.join(choices[:-1])} or {choices[-1]}"
