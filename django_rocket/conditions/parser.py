"""Parse condition strings written as Python expressions or as Rocketry's English phrases.

The text is split into tokens, then parsed by precedence climbing over one
grammar shared by both syntaxes::

    condition  := operand_expr ( ("&" | "|") operand_expr )*     "|" < "&"
    operand_expr := "~" operand_expr | "(" condition ")" | operand
    operand    := python_operand | english_phrase
    python_operand := NAME ("." ATTRIBUTE | "(" arguments ")")* [COMPARISON INTEGER]

An operand is read as an English phrase when it starts with one of the
phrases' leading words followed by another word (``daily between ...``,
``every 10 minutes``); otherwise it is a Python operand. Every operand is
built by calling the public vocabulary, so a phrase and its Python form give
equal conditions. Nothing is ever evaluated: names are looked up in the
vocabulary, attributes come from a fixed allow-list and arguments must be
literal strings or numbers.
"""

from __future__ import annotations

import ast
import difflib
import functools
import keyword
import operator
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, NoReturn

from . import english
from .base import Condition
from .custom import custom_conditions
from .errors import ConditionSyntaxError
from .vocabulary import NAMESPACE

__all__ = ["ATTRIBUTES", "MAX_DEPTH", "MAX_LENGTH", "parse"]

#: Longest condition string accepted, in characters.
MAX_LENGTH = 10_000
#: Deepest nesting of parentheses and ``~`` accepted.
MAX_DEPTH = 100
# Longer texts are parsed each time rather than kept in the cache.
_CACHED_LENGTH = 1_000

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

_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_COMPARISON_TOKENS = frozenset([*_COMPARISONS, "==", "!="])
_BINARY = {"|": (1, operator.or_), "&": (2, operator.and_)}

# One pass of the regular expression splits the whole text; ``other`` takes
# any character no other kind does, so tokenizing never fails. Strings are
# matched whole (escapes included) with linear-time patterns; a name is never
# a string prefix (the r of r'...').
_TOKENS = re.compile(
    r"""
    \s*(?:
      (?P<name>(?![rRuUbBfF]{1,2}['"])[^\W\d]\w*)
    | (?P<op>==|!=|>=|<=|[&|~().,=<>\[\]])
    | (?P<string>[rRuUbBfF]{0,2}(?:
          '''[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*'''
        | \"\"\"[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*\"\"\"
        | '[^'\\\n]*(?:\\.[^'\\\n]*)*'
        | "[^"\\\n]*(?:\\.[^"\\\n]*)*"
      ))
    | (?P<number>(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)
    | (?P<other>\S)
    )
    """,
    re.VERBOSE | re.DOTALL,
)
_QUOTE = re.compile(r"""'''|\"\"\"|'|\"""")

# Tokens that end a bare value in an English phrase.
STOP_TOKENS = frozenset("&|()~")
# What may follow a leading word for it to be read as Python rather than as a phrase.
# The end of the text (an empty token) counts as one.
_PYTHON_FOLLOWERS = frozenset(["", ".", "(", "&", "|", ")", ",", "=", *_COMPARISON_TOKENS])

_OPERAND = "a condition, such as daily, every('10 minutes') or after_success('etl')"
_END = "&, | or the end of the condition"
_KEYWORD_HINTS = {
    "and": "use & for 'and'",
    "or": "use | for 'or'",
    "not": "use ~ for 'not'",
}
_LITERAL_NAMES = {"True": True, "False": False, "None": None}


class Token(NamedTuple):
    kind: str  # space is dropped; "end" marks the end of the text
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


def parse(text: str | Condition, *, names: Mapping[str, object] | None = None) -> Condition:
    """Return the condition a string describes, or the condition itself if given one.

    ``names`` adds custom conditions to the vocabulary for this call, on top
    of those registered with ``@condition``. Raise ``ConditionSyntaxError``
    for text that does not describe a condition.
    """
    if isinstance(text, Condition):
        return text
    if not isinstance(text, str):
        raise TypeError(f"Expected a condition or a string, got {type(text).__name__}.")
    if names or len(text) > _CACHED_LENGTH:
        return Parser(text, names or {}).parse()
    # Conditions are immutable, so equal texts can share one; the registered
    # custom conditions are part of the key since they change what names mean.
    return _parse_cached(text, frozenset(custom_conditions().items()))


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str, custom: frozenset[tuple[str, object]]) -> Condition:
    """Parse ``text`` with the custom conditions ``custom`` (the cache key) registered."""
    return Parser(text, {}).parse()


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, without spaces, ending with an ``end`` token."""
    tokens = []
    for match in _TOKENS.finditer(text):
        kind = match.lastgroup
        assert kind is not None  # every alternative of _TOKENS is a named group
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
    tokens.append(Token("end", "", len(text)))
    return tokens


class Parser:
    """Precedence-climbing parser over the tokens of one condition string."""

    def __init__(self, text: str, names: Mapping[str, object]) -> None:
        self.text = text
        self.condition_class = Condition
        self.vocabulary: Mapping[str, object] = NAMESPACE
        self.custom = custom_conditions()
        self.names = names
        self.tokens: list[Token] = []
        self.index = 0
        self.depth = 0

    # -- entry point -------------------------------------------------------

    def parse(self) -> Condition:
        if len(self.text) > MAX_LENGTH:
            self.fail(
                f"The condition is too long ({len(self.text)} characters); "
                f"the limit is {MAX_LENGTH}.",
                MAX_LENGTH,
                f"at most {MAX_LENGTH} characters",
            )
        self.tokens = tokenize(self.text)
        condition, _ = self.parse_expression(1)
        token = self.token
        if token.kind != "end":
            if token.text == ")":
                self.fail("Unmatched ')'.", token.start, _END)
            self.fail_expected(_END)
        return condition

    # -- errors ------------------------------------------------------------

    def fail(self, message: str, column: int, expected: str = "") -> NoReturn:
        raise ConditionSyntaxError(message, text=self.text, column=column, expected=expected)

    def fail_expected(self, expected: str) -> NoReturn:
        token = self.token
        if token.kind == "end":
            found = "the end of the condition"
        else:
            found = repr(token.text if len(token.text) <= 30 else token.text[:27] + "...")
        message = f"Expected {expected}, found {found}."
        if token.kind == "name" and token.text in _KEYWORD_HINTS:
            message = f"{message[:-1]}; {_KEYWORD_HINTS[token.text]}."
        self.fail(message, token.start, expected)

    # -- tokens ------------------------------------------------------------

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    @property
    def column(self) -> int:
        """Return where the current token starts."""
        return self.tokens[self.index].start

    @property
    def previous(self) -> Token:
        return self.tokens[self.index - 1]

    def following(self) -> Token:
        """Return the token after the current one (the end token at the end)."""
        return self.tokens[min(self.index + 1, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def peek(self) -> str:
        """Return the current token's text: '' at the end."""
        return self.tokens[self.index].text

    def accept(self, symbol: str) -> bool:
        token = self.tokens[self.index]
        if token.kind == "op" and token.text == symbol:
            self.index += 1
            return True
        return False

    def peek_word(self) -> str | None:
        token = self.tokens[self.index]
        return token.text if token.kind == "name" else None

    def accept_word(self, *words: str) -> str | None:
        """Consume and return the current word if it is one of ``words``."""
        token = self.tokens[self.index]
        if token.kind == "name" and token.text in words:
            self.index += 1
            return token.text
        return None

    def expect_word(self, *words: str, expected: str) -> str:
        word = self.accept_word(*words)
        if word is None:
            self.fail_expected(expected)
        return word

    def at_string(self) -> bool:
        return self.token.kind == "string" or (
            self.token.kind == "other" and self.token.text in "'\""
        )

    def read_string(self, expected: str) -> str:
        """Read a quoted string with Python's rules for quotes and escapes."""
        token = self.token
        if token.kind == "other" and token.text in "'\"":
            self.fail("Unterminated string.", token.start, f"a closing {token.text}")
        if token.kind != "string":
            self.fail_expected(expected)
        quote = _QUOTE.search(token.text)
        assert quote is not None  # the token pattern requires one
        prefix = token.text[: quote.start()].lower()
        if "f" in prefix:
            self.fail("f-strings are not allowed; write a plain string.", token.start, "a string")
        if "b" in prefix:
            self.fail("Bytes are not allowed; write a plain string.", token.start, "a string")
        if prefix not in ("", "r", "u"):
            self.fail_expected(expected)
        self.index += 1
        body = token.text[quote.end() : len(token.text) - len(quote.group())]
        if "\\" not in body:
            return body
        try:
            # A lone string literal: literal_eval only decodes it, it runs nothing.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = ast.literal_eval(token.text)
        except (SyntaxError, ValueError) as exc:
            reason = exc.args[0] if exc.args else exc
            self.fail(f"Invalid string: {reason}.", token.start, "a string")
        assert isinstance(value, str)
        return value

    def read_value(
        self, expected: str, stop_word: str | tuple[str, ...] | None = None
    ) -> tuple[str, int]:
        """Read a phrase value: a quoted string, or bare text up to an operator.

        Bare text runs to the next ``& | ( ) ~`` or the end, or to
        ``stop_word`` (the ``and`` of ``between ... and ...``). Return the
        value and its column.
        """
        first = self.token
        if self.at_string():
            return self.read_string(expected), first.start
        last = None
        while True:
            token = self.token
            if token.kind == "end" or (token.kind == "op" and token.text in STOP_TOKENS):
                break
            if token.kind == "name" and token.text in _stop_words(stop_word):
                break
            last = self.advance()
        if last is None:
            self.fail_expected(expected)
        return self.text[first.start : last.end], first.start

    # -- operators ---------------------------------------------------------

    def parse_expression(self, min_precedence: int) -> tuple[Condition, Token | None]:
        """Parse operands joined by ``&`` and ``|`` binding at least ``min_precedence``.

        The second item returned is the operator token of a comparison left
        unparenthesized in the operand (``failed.today >= 3``), which may not
        be combined with other operators.
        """
        left, comparison = self.parse_unary()
        while True:
            token = self.token
            if token.kind != "op" or token.text not in _BINARY:
                return left, comparison
            precedence, function = _BINARY[token.text]
            if precedence < min_precedence:
                return left, comparison
            self.index += 1
            right, right_comparison = self.parse_expression(precedence + 1)
            self.forbid_bare_comparison(comparison, right_comparison)
            left, comparison = self.combine(function, left, right, token.start), None

    def parse_unary(self) -> tuple[Condition, Token | None]:
        token = self.token
        if self.accept("~"):
            self.enter(token.start)
            operand, comparison = self.parse_unary()
            self.depth -= 1
            self.forbid_bare_comparison(comparison)
            return self.combine(operator.inv, operand, None, token.start), None
        if self.accept("("):
            self.enter(token.start)
            condition, _ = self.parse_expression(1)
            self.depth -= 1
            if not self.accept(")"):
                self.fail_expected(f"')' to close the '(' at column {token.start}")
            return condition, None
        return self.parse_operand()

    def enter(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(
                f"The condition is nested too deeply (more than {MAX_DEPTH} levels of "
                "parentheses and ~).",
                column,
                "less nesting",
            )

    def forbid_bare_comparison(self, *comparisons: Token | None) -> None:
        for comparison in comparisons:
            if comparison is not None:
                self.fail(
                    f"Put the comparison in parentheses: ({comparison.text}). In Python "
                    "a comparison binds more loosely than &, | and ~.",
                    comparison.start,
                    "a comparison in parentheses",
                )

    def combine(
        self, function: Callable[..., Any], left: Any, right: Any, column: int
    ) -> Condition:
        try:
            made: Condition = function(left) if right is None else function(left, right)
            return made
        except Exception as exc:
            self.fail(f"These conditions cannot be combined: {exc}", column, "conditions")

    # -- operands ----------------------------------------------------------

    def parse_operand(self) -> tuple[Condition, Token | None]:
        token = self.token
        if token.kind != "name":
            self.fail_expected(_OPERAND)
        word = token.text
        if word in english.LEADING_WORDS and (
            not self.is_name(word) or self.following().text not in _PYTHON_FOLLOWERS
        ):
            return english.parse_phrase(self, word), None
        if word in _KEYWORD_HINTS:
            self.fail(f"Unexpected '{word}'; {_KEYWORD_HINTS[word]}.", token.start, _OPERAND)
        if keyword.iskeyword(word) and word not in _LITERAL_NAMES:
            self.fail(
                f"{word!r} is not allowed: a condition is made of condition names, calls "
                "with literal arguments, &, |, ~ and parentheses.",
                token.start,
                _OPERAND,
            )
        return self.parse_python_operand()

    def is_name(self, name: str) -> bool:
        return name in self.vocabulary or name in self.names or name in self.custom

    def lookup(self, token: Token) -> object:
        name = token.text
        for names in (self.vocabulary, self.names, self.custom):
            if name in names:
                return names[name]
        candidates = [*self.vocabulary, *self.names, *self.custom, *english.LEADING_WORDS]
        close = difflib.get_close_matches(name, [c for c in candidates if c != name], n=1)
        if close:
            message = f"Unknown condition {name!r}; did you mean {close[0]!r}?"
        else:
            message = (
                f"Unknown condition {name!r}. Custom conditions must be registered "
                "with @condition before the string is parsed."
            )
        self.fail(message, token.start, _OPERAND)

    def builtin(self, name: str) -> Any:
        """Return a vocabulary object by name, for phrases."""
        return self.vocabulary[name]

    def parse_python_operand(self) -> tuple[Condition, Token | None]:
        first = self.advance()
        obj: Any = self.lookup(first)
        while True:
            if self.accept("."):
                obj = self.read_attribute(obj, first.start)
            elif self.token.text == "(" and self.token.kind == "op":
                obj = self.read_call(obj, first.start)
            else:
                break
        described = self.text[first.start : self.previous.end]
        if not isinstance(obj, self.condition_class):
            self.fail_incomplete(obj, described, first.start)
        token = self.token
        if token.kind != "op" or token.text not in _COMPARISON_TOKENS:
            return obj, None
        result = self.read_comparison(obj, described)
        span = Token("comparison", self.text[first.start : self.previous.end], token.start)
        return result, span

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
        described = self.text[start : self.previous.start]
        token = self.token
        if token.kind != "name":
            self.fail_expected(f"an attribute of {described}")
        name = token.text
        if name not in ATTRIBUTES or not _has(obj, name):
            available = [attr for attr in ATTRIBUTES if _has(obj, attr)]
            close = difflib.get_close_matches(name, available, n=1)
            message = f"{described} has no attribute {name!r}"
            if close:
                message += f"; did you mean {close[0]!r}?"
            elif available:
                message += f"; it has {_join_choices(available)}."
            else:
                message += "."
            self.fail(message, token.start, _join_choices(available) or "no attribute")
        self.index += 1
        try:
            return getattr(obj, name)
        except Exception as exc:
            self.fail(f"{described}.{name} failed: {exc}", token.start, "a condition")

    def read_call(self, function: object, start: int) -> object:
        described = self.text[start : self.token.start].strip()
        opening = self.advance()
        if not callable(function):
            self.fail(f"{described} cannot be called.", opening.start, _END)
        args: list[object] = []
        kwargs: dict[str, object] = {}
        columns: list[tuple[object, int]] = []
        keyword_columns: dict[str, int] = {}
        while not self.accept(")"):
            token = self.token
            following = self.following()
            if token.kind == "name" and following.kind == "op" and following.text == "=":
                if token.text in kwargs:
                    self.fail(f"Argument {token.text!r} is given twice.", token.start, "once")
                self.index += 2
                keyword_columns[token.text] = token.start
                column = self.column
                kwargs[token.text] = value = self.read_constant()
            else:
                if kwargs:
                    self.fail(
                        "A positional argument cannot follow a keyword argument.",
                        token.start,
                        "a keyword argument",
                    )
                column = token.start
                args.append(value := self.read_constant())
            columns.append((value, column))
            if not self.accept(","):
                if self.accept(")"):
                    break
                self.fail_expected("',' or ')'")
        columns = columns or [(None, opening.start)]
        return self.call(function, described, args, kwargs, columns, keyword_columns)

    def read_constant(self) -> object:
        """Read a literal argument: a string, a number, True, False, None or a list of strings."""
        expected = "a string or a number, such as '10 minutes' or 3"
        if self.accept("["):
            items: list[object] = []
            while not self.accept("]"):
                items.append(self.read_string("a string, such as 'ConnectionError'"))
                if not self.accept(","):
                    if self.accept("]"):
                        break
                    self.fail_expected("',' or ']'")
            return items
        if self.at_string():
            value = self.read_string(expected)
            while self.at_string():  # Python joins adjacent literals: 'a' 'b' is 'ab'
                value += self.read_string(expected)
            return value
        word = self.accept_word(*_LITERAL_NAMES)
        if word is not None:
            return _LITERAL_NAMES[word]
        return self.read_number(expected)

    def read_number(self, expected: str) -> int | float:
        token = self.token
        if token.kind != "number":
            self.fail_expected(expected)
        literal = token.text.replace("_", "")
        try:
            number: int | float = (
                float(literal) if any(c in literal for c in ".eE") else int(literal)
            )
        except ValueError:
            self.fail(f"Invalid number {token.text!r}.", token.start, expected)
        self.index += 1
        return number

    def read_comparison(self, obj: Any, described: str) -> Condition:
        token = self.advance()
        if token.text not in _COMPARISONS:
            self.fail(
                f"{token.text} cannot be used here: compare a count with >=, >, <= or <, "
                f"as in {described} >= 3.",
                token.start,
                ">=, >, <= or <",
            )
        number_column = self.column
        number = self.read_number("a whole number")
        if not isinstance(number, int):
            self.fail("Expected a whole number.", number_column, "a whole number")
        try:
            result = _COMPARISONS[token.text](obj, number)
        except Exception:
            result = None
        if not isinstance(result, self.condition_class):
            self.fail(
                f"{described} cannot be compared with a number; only counts such as "
                "failed.today and running can.",
                token.start,
                _END,
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
            column = _blamed_column(str(exc), columns, keyword_columns or {})
            self.fail(
                f"Invalid arguments for {described}(): {reason}.",
                self.inside_value(column, columns, getattr(exc, "position", None)),
                "valid arguments",
            )

    def inside_value(self, column: int, columns: list[tuple[object, int]], position: object) -> int:
        """Return the column of ``position`` within the string argument at ``column``.

        An error that knows where in its value it lies (a cron field) is pointed
        at there, as long as the value is written as is: bare, or quoted without
        escapes.
        """
        if not isinstance(position, int):
            return column
        for value, start in columns:
            if start == column and isinstance(value, str) and 0 <= position <= len(value):
                for skip in (0, 1):
                    if self.text.startswith(value, start + skip):
                        return start + skip + position
        return column


def _stop_words(stop_word: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if stop_word is None:
        return ()
    return (stop_word,) if isinstance(stop_word, str) else stop_word


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
