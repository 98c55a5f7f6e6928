"""Alertmanager label matchers (`severity=~"critical|major"`), parsed and evaluated as Alertmanager does.

Enrichment rules and catalog selectors reuse Alertmanager's matcher syntax (REFERENCE.md 9), so a matcher
must mean here exactly what it means in a route: the classic 0.25 parser, a missing label read as "",
and regexes fully anchored and limited to what Go's RE2 accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NAME_HINT = "label names match [a-zA-Z_][a-zA-Z0-9_]*"
_OPERATOR = re.compile(r"=~|!=|!~|=")
_OPERATOR_HINT = "use one of =, !=, =~, !~"
_MISTYPED_OPERATOR = re.compile(r'[=!~<>]+[ \t\n\r\f]*"')  # `a=>"x"`, `a=="x"`: not an unquoted value
_NAME_TOKEN = re.compile(r'[^\s=!~<>",{}]*')
_SPACE = " \t\n\r\f"  # Go's \s, which Alertmanager trims around each token
_ESCAPES = {"n": "\n", '"': '"', "\\": "\\"}
_REGEX_SPECIAL = re.compile(r"[\\.^$*+?{}\[\]()]")


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"

    @property
    def is_regex(self) -> bool:
        return self in (MatchType.REGEX, MatchType.NOT_REGEX)

    @property
    def is_negative(self) -> bool:
        return self in (MatchType.NOT_EQUAL, MatchType.NOT_REGEX)


class MatcherError(ValueError):
    """A matcher that cannot be parsed or compiled; `column` (1-based) points into `text`."""

    code = "matcher-invalid"

    def __init__(
        self, reason: str, *, text: str | None = None, column: int | None = None, hint: str | None = None
    ) -> None:
        self.reason = reason
        self.text = text
        self.column = column
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        """`reason at column N in 'text' (hint: ...)`, ready to follow `file:line: `."""
        message = self.reason
        if self.column is not None:
            message += f" at column {self.column}"
        if self.text is not None:
            message += f" in {self.text!r}"
        if self.hint:
            message += f" (hint: {self.hint})"
        return message


@dataclass(frozen=True)
class Matcher:
    """One label condition. A missing label counts as "", so `team!=""` means "team is set"."""

    name: str
    type: MatchType
    value: str
    # Compiled once here, since every alert is checked against every rule. Equality and plain
    # alternatives such as "critical|major" are set lookups; other regexes use `_pattern`.
    _literals: frozenset[str] = field(init=False, repr=False, compare=False)
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _negative: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _LABEL_NAME.fullmatch(self.name):
            raise MatcherError(f"invalid label name {self.name!r}", hint=_NAME_HINT)
        literals, pattern = frozenset({self.value}), None
        if self.type.is_regex:
            literals, pattern = _compile_regex(self.value)
        object.__setattr__(self, "_literals", literals)
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_negative", self.type.is_negative)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when the alert's labels satisfy this matcher."""
        value = labels.get(self.name, "")
        pattern = self._pattern
        found = value in self._literals if pattern is None else pattern.fullmatch(value) is not None
        return found != self._negative

    def literal_values(self) -> frozenset[str] | None:
        """The finite set of values this matcher accepts (`=`, or `=~` over plain alternatives), else None.

        An index can then file a rule under the label values it needs instead of trying it on every alert.
        """
        if self._negative or self._pattern is not None:
            return None
        return self._literals

    def literal_prefixes(self) -> frozenset[str] | None:
        """Non-empty fixed prefixes one of which every value this matcher accepts starts with, else None.

        Only for a positive regex that is, with certainty, a top-level alternation of literals each
        optionally followed by `.*` or `.+` (`svc-04.*`, `Disk.*|Node.*`, `10\\.1\\..*`); anything else
        (groups, classes, other quantifiers, flags, an empty literal) gives None. Prefixes that extend
        another one are dropped, so a value starts with at most one of them.
        """
        if self.type is not MatchType.REGEX or self._pattern is None:
            return None
        prefixes = _regex_prefixes(self.value)
        if prefixes is None:
            return None
        return frozenset(p for p in prefixes if not any(q != p and p.startswith(q) for q in prefixes))

    def check(self) -> MatcherCheck:
        """(name, literals, fullmatch or None, negative): this matcher as data for a tight loop.

        The matcher holds when `(value in literals if fullmatch is None else fullmatch(value) is not None)`
        differs from `negative`, where value is the label's value or "" (see `matches`).
        """
        pattern = self._pattern
        return self.name, self._literals, pattern.fullmatch if pattern else None, self._negative

    def __str__(self) -> str:
        """The canonical `name="value"` (\\, " and newline escaped), which parses back to an equal matcher."""
        return f"{self.name}{self.type}{_quote(self.value)}"


# See `Matcher.check`.
MatcherCheck = tuple[str, frozenset[str], Callable[[str], object] | None, bool]

# Characters that stand for themselves after a backslash (never a class such as \d or an escape \n).
_ESCAPED_LITERAL = frozenset("\\.^$*+?{}[]()|-/ ")


def _regex_prefixes(value: str) -> set[str] | None:
    """The literal prefixes of `lit(.*|.+)?|lit(.*|.+)?|...`, or None when the regex is anything else."""
    prefixes: set[str] = set()
    literal: list[str] = []
    i, end = 0, len(value)
    while True:
        if i < end and value[i] == "\\":
            if i + 1 >= end or value[i + 1] not in _ESCAPED_LITERAL:
                return None
            literal.append(value[i + 1])
            i += 2
            continue
        if value.startswith((".*", ".+"), i):
            i += 2
            if i < end and value[i] != "|":
                return None  # more after the wildcard (or `.*?`, `.**`): not a plain prefix
        if i == end or value[i] == "|":
            if not literal:
                return None  # an alternative that accepts any start
            prefixes.add("".join(literal))
            literal = []
            if i == end:
                return prefixes
            i += 1
            continue
        if _REGEX_SPECIAL.match(value, i):
            return None
        literal.append(value[i])
        i += 1


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """A list of matchers is an AND; an empty list matches every alert, as in Alertmanager."""
    return all(matcher.matches(labels) for matcher in matchers)


def parse_matcher(text: str) -> Matcher:
    """Parse one `name op value`, e.g. `service =~ "pay.*"`; the value may be unquoted, as in Alertmanager."""
    return _parse_one(text, 0, len(text))


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """Parse `{a="b", c=~"d|e"}`: braces optional (both or neither), one trailing comma allowed.

    `{}` and "" give no matchers, which match every alert.
    """
    start, end = _strip_braces(text)
    commas = [i for i in _outside_quotes(text, start, end) if text[i] == ","]
    bounds = [start - 1, *commas, end]
    spans = [(bounds[k] + 1, bounds[k + 1]) for k in range(len(bounds) - 1)]
    if _skip_space(text, *spans[-1]) == spans[-1][1]:
        if len(spans) == 1:
            return ()
        spans.pop()  # the one trailing comma
    return tuple(_parse_one(text, span_start, span_end) for span_start, span_end in spans)


def _parse_one(text: str, start: int, end: int) -> Matcher:
    i = _skip_space(text, start, end)
    end = _rstrip_space(text, i, end)
    if i == end:
        raise MatcherError("empty matcher", text=text, column=i + 1)
    name, i = _read_name(text, i, end)
    match_type, i = _read_operator(text, _skip_space(text, i, end), end)
    value, offsets = _read_value(text, _skip_space(text, i, end), end)
    try:
        return Matcher(name, match_type, value)
    except MatcherError as err:  # only the regex can fail here: point into the whole text
        column = offsets[err.column - 1] + 1 if err.column else None
        raise MatcherError(err.reason, text=text, column=column, hint=err.hint) from None


def _read_name(text: str, i: int, end: int) -> tuple[str, int]:
    if text[i] in "\"'":
        hint = "label names are not quoted; if the whole matcher is quoted twice, drop the outer quotes"
        raise MatcherError(f"expected a label name, found {text[i]!r}", text=text, column=i + 1, hint=hint)
    token = _NAME_TOKEN.match(text, i, end)
    name = token.group() if token else ""
    if not name:
        raise MatcherError(f"expected a label name, found {text[i]!r}", text=text, column=i + 1)
    if not _LABEL_NAME.fullmatch(name):
        raise MatcherError(f"invalid label name {name!r}", text=text, column=i + 1, hint=_NAME_HINT)
    return name, i + len(name)


def _read_operator(text: str, i: int, end: int) -> tuple[MatchType, int]:
    operator = _OPERATOR.match(text, i, end)
    if operator is None:
        reason = "missing operator" if i == end else "unknown operator"
        raise MatcherError(reason, text=text, column=i + 1, hint=_OPERATOR_HINT)
    return MatchType(operator.group()), operator.end()


def _read_value(text: str, i: int, end: int) -> tuple[str, list[int]]:
    """Decode the value; also return the text index of each value character (plus one past the end)."""
    if i == end:
        hint = 'write "" to match a missing or empty label'
        raise MatcherError("missing value", text=text, column=i + 1, hint=hint)
    if text[i] == '"':
        return _read_quoted(text, i, end)
    if _MISTYPED_OPERATOR.match(text, i, end):
        raise MatcherError("unknown operator", text=text, column=i + 1, hint=_OPERATOR_HINT)
    value, offsets, stop = _unescape(text, i, end)
    if stop < end:
        hint = 'quote the whole value and write \\" for a quote inside it'
        raise MatcherError("unexpected '\"' in an unquoted value", text=text, column=stop + 1, hint=hint)
    return value, offsets


def _read_quoted(text: str, quote: int, end: int) -> tuple[str, list[int]]:
    value, offsets, stop = _unescape(text, quote + 1, end)
    if stop == end:
        hint = 'end the value with "; write \\" for a quote inside it'
        raise MatcherError("unterminated quoted value", text=text, column=quote + 1, hint=hint)
    after = _skip_space(text, stop + 1, end)
    if after < end:
        hint = 'separate matchers with ","; write \\" for a quote inside a value'
        reason = f"unexpected {text[after]!r} after the closing quote"
        raise MatcherError(reason, text=text, column=after + 1, hint=hint)
    return value, offsets


def _unescape(text: str, i: int, end: int) -> tuple[str, list[int], int]:
    """Decode \\", \\\\ and \\n up to the first unescaped '"' (or `end`); other backslashes stay literal."""
    chars: list[str] = []
    offsets: list[int] = []
    while i < end and text[i] != '"':
        offsets.append(i)
        if text[i] == "\\" and i + 1 < end and text[i + 1] in _ESCAPES:
            chars.append(_ESCAPES[text[i + 1]])
            i += 2
        else:
            chars.append(text[i])
            i += 1
    offsets.append(i)
    return "".join(chars), offsets, i


def _strip_braces(text: str) -> tuple[int, int]:
    start = _skip_space(text, 0, len(text))
    end = _rstrip_space(text, start, len(text))
    opened = text.startswith("{", start)
    closed = end > start + (1 if opened else 0) and text[end - 1] == "}"
    if opened and not closed:
        raise MatcherError("unclosed '{'", text=text, column=start + 1, hint="braces come in pairs")
    if not opened:
        if closed and end - 1 in _outside_quotes(text, start, end):
            raise MatcherError("unexpected '}'", text=text, column=end, hint="braces come in pairs")
        return start, end  # a '}' inside an unterminated quote is reported with the value
    return start + 1, end - 1


def _outside_quotes(text: str, start: int, end: int) -> Iterator[int]:
    """Indices of characters outside double quotes; an escaped \\" neither opens nor closes a quote."""
    inside = escaped = False
    for i in range(start, end):
        char = text[i]
        if char == '"' and not escaped:
            inside = not inside
        elif not inside:
            yield i
        escaped = char == "\\" and not escaped


def _skip_space(text: str, i: int, end: int) -> int:
    while i < end and text[i] in _SPACE:
        i += 1
    return i


def _rstrip_space(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in _SPACE:
        end -= 1
    return end


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# Constructs Python's `re` accepts but Go's RE2 rejects: (prefix, what it is, hint).
_NOT_IN_RE2 = (
    ("(?<=", "lookbehind (?<=...)", None),
    ("(?<!", "negative lookbehind (?<!...)", None),
    ("(?=", "lookahead (?=...)", None),
    ("(?!", "negative lookahead (?!...)", "use a separate !~ matcher"),
    ("(?>", "atomic group (?>...)", "use (?:...)"),
    ("(?(", "conditional group (?(...)", None),
    ("(?P=", "named backreference (?P=...)", None),
    ("(?#", "comment group (?#...)", None),
)
_NOT_SUPPORTED = "is not supported in Alertmanager regexes (Go RE2)"
_INLINE_FLAGS = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?[:)]")
_QUANTIFIER_END = re.compile(r"(?<!\\)(?:[*+?]|\{\d+(?:,\d*)?\})\Z")
_OPEN_LOWER_BOUND = re.compile(r"\{,\d*\}")
_POSIX_CLASS = re.compile(r"\[:\^?[a-z]+:\]")


class _RegexProblem(Exception):
    def __init__(self, reason: str, index: int, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.index, self.hint = reason, index, hint


def _compile_regex(value: str) -> tuple[frozenset[str], re.Pattern[str] | None]:
    """Literal alternatives ("critical|major") become a set; anything else is compiled for `fullmatch`."""
    if not _REGEX_SPECIAL.search(value):
        return frozenset(value.split("|")), None
    try:
        _check_re2(value)
        return frozenset(), re.compile(value, re.ASCII)  # RE2's \d, \w, \s and \b are ASCII-only
    except _RegexProblem as problem:
        reason, index, hint = problem.reason, problem.index, problem.hint
    except re.error as err:
        reason, index, hint = err.msg, err.pos or 0, None
    raise MatcherError(f"invalid regex {_quote(value)}: {reason}", text=value, column=index + 1, hint=hint)


def _check_re2(pattern: str) -> None:
    """Reject what RE2 lacks, so a rule behaves as the same matcher would in Alertmanager."""
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            _check_escape(pattern, i)
            i += 2
            continue
        if in_class:
            if _POSIX_CLASS.match(pattern, i):
                raise _RegexProblem("POSIX classes like [[:alpha:]] are not supported", i, "use [a-zA-Z]")
            in_class = char != "]"
        elif char == "[":
            in_class = True
            i += 2 if pattern.startswith("[^", i) else 1
            i += 1 if pattern.startswith("]", i) else 0  # a leading ']' is a literal
            continue
        elif char in "(+{":
            _check_construct(pattern, i)
        i += 1


def _check_escape(pattern: str, i: int) -> None:
    escaped = pattern[i + 1 : i + 2]
    if escaped and escaped in "123456789":
        raise _RegexProblem(f"backreference \\{escaped} {_NOT_SUPPORTED}", i)
    if escaped == "Z":
        raise _RegexProblem(f"\\Z {_NOT_SUPPORTED}", i, "matchers are anchored already")


def _check_construct(pattern: str, i: int) -> None:
    for prefix, what, hint in _NOT_IN_RE2:
        if pattern.startswith(prefix, i):
            raise _RegexProblem(f"{what} {_NOT_SUPPORTED}", i, hint)
    flags = _INLINE_FLAGS.match(pattern, i)
    if flags and set(flags[1] + (flags[2] or "")) - set("imsU"):
        raise _RegexProblem(f"inline flag {flags[0]} {_NOT_SUPPORTED}", i, "RE2 knows the flags i, m, s, U")
    if pattern[i] == "+" and _QUANTIFIER_END.search(pattern, 0, i):
        raise _RegexProblem(f"possessive quantifier {_NOT_SUPPORTED}", i, "drop the extra '+'")
    if _OPEN_LOWER_BOUND.match(pattern, i):
        raise _RegexProblem("{,n} is a literal in RE2, not a repetition", i, "write {0,n}")
