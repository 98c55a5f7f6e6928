"""Matchers mean here what they mean in Alertmanager 0.25 (REFERENCE.md 9, Alertmanager pkg/labels tests)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recoverlink.domain.matchers import (
    Matcher,
    MatcherError,
    MatchType,
    matches_all,
    parse_matcher,
    parse_matchers,
)

EQ, NE, RE, NRE = MatchType.EQUAL, MatchType.NOT_EQUAL, MatchType.REGEX, MatchType.NOT_REGEX


# --- matching: same inputs, same answers as Alertmanager ---------------------------------------------

MATCHING = [
    # Regexes are fully anchored (REFERENCE.md 9, verified with amtool on 0.25).
    ('service=~"pay"', {"service": "payments-api"}, False),
    ('service=~"pay"', {"service": "pay"}, True),
    ('service=~"pay.*"', {"service": "payments-api"}, True),
    ('env=~"dev|test"', {"env": "development"}, False),
    ('env=~"dev|test"', {"env": "test"}, True),
    ('statuscode=~"5.."', {"statuscode": "503"}, True),
    ('statuscode=~"5.."', {"statuscode": "5031"}, False),
    # A missing label counts as the empty string.
    ('env!~"dev|test"', {}, True),
    ('env!~"dev|test"', {"env": "dev"}, False),
    ('env!~"dev|test"', {"env": "prod"}, True),
    ('team!=""', {}, False),
    ('team!=""', {"team": ""}, False),
    ('team!=""', {"team": "payments"}, True),
    ('team=""', {}, True),
    ('team=""', {"team": "payments"}, False),
    ('instance=~".*"', {}, True),
    ('instance=~".+"', {}, False),
    # The route and inhibit examples of REFERENCE.md 9.
    ('severity=~"critical|major"', {"severity": "major"}, True),
    ('severity=~"critical|major"', {"severity": "warning"}, False),
    ('service!~"test-.*"', {"service": "test-payments"}, False),
    ('service!~"test-.*"', {"service": "payments"}, True),
    ('severity="critical"', {"severity": "critical"}, True),
    ('severity="critical"', {"severity": "Critical"}, False),
    ('severity!="critical"', {"severity": "warning"}, True),
    # RE2 details: \d is ASCII-only, (?i) works.
    ('code=~"\\\\d+"', {"code": "404"}, True),
    ('code=~"\\\\d+"', {"code": "\u0664\u0660\u0664"}, False),
    ('service=~"(?i)PAY.*"', {"service": "payments"}, True),
]


@pytest.mark.parametrize(
    ("text", "labels", "expected"), MATCHING, ids=[f"{text} {labels}" for text, labels, _ in MATCHING]
)
def test_matches_like_alertmanager(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_regex_is_anchored_like_alertmanager() -> None:
    assert not parse_matcher('service=~"pay"').matches({"service": "payments-api"})
    assert parse_matcher('service=~"pay.*"').matches({"service": "payments-api"})


def test_negative_regex_matches_an_alert_without_the_label() -> None:
    assert parse_matcher('env!~"dev|test"').matches({"alertname": "HighLatency"})


def test_not_equal_empty_means_label_is_set_and_not_empty() -> None:
    team_set = parse_matcher('team!=""')
    assert [team_set.matches(labels) for labels in ({}, {"team": ""}, {"team": "payments"})] == [
        False,
        False,
        True,
    ]


def test_matcher_list_is_an_and() -> None:
    route = parse_matchers('severity=~"critical|major", team!="", service!~"test-.*"')
    assert matches_all(route, {"severity": "critical", "team": "payments", "service": "payments-api"})
    assert not matches_all(route, {"severity": "critical", "service": "payments-api"})


def test_empty_matcher_list_matches_every_alert() -> None:
    assert matches_all(parse_matchers("{}"), {"alertname": "Anything"})
    assert matches_all([], {})


# --- parsing ------------------------------------------------------------------------------------------

PARSING = [
    # Alertmanager pkg/labels/parse_test.go, TestMatchers.
    ('{foo="bar"}', [("foo", EQ, "bar")]),
    ('{foo=~"bar.*"}', [("foo", RE, "bar.*")]),
    ('{foo!="bar"}', [("foo", NE, "bar")]),
    ('{foo!~"bar.*"}', [("foo", NRE, "bar.*")]),
    ('{foo="bar", baz!="quux"}', [("foo", EQ, "bar"), ("baz", NE, "quux")]),
    (
        '{foo="bar",baz!~".*quux", derp="wat"}',
        [("foo", EQ, "bar"), ("baz", NRE, ".*quux"), ("derp", EQ, "wat")],
    ),
    ('{foo="bar", instance=~"some-api.*"}', [("foo", EQ, "bar"), ("instance", RE, "some-api.*")]),
    ('{foo=""}', [("foo", EQ, "")]),
    ('{foo="bar,quux", job="job1"}', [("foo", EQ, "bar,quux"), ("job", EQ, "job1")]),
    ('{foo = "bar", dings != "bums", }', [("foo", EQ, "bar"), ("dings", NE, "bums")]),
    ("foo=bar,dings!=bums", [("foo", EQ, "bar"), ("dings", NE, "bums")]),
    (
        '{quote="She said: \\"Hi, ladies! That\'s gender-neutral…\\""}',
        [("quote", EQ, 'She said: "Hi, ladies! That\'s gender-neutral…"')],
    ),
    ('statuscode=~"5.."', [("statuscode", RE, "5..")]),
    ("tricky=~~~", [("tricky", RE, "~~")]),
    ('trickier==\\\\=\\=\\"', [("trickier", EQ, '=\\=\\="')]),
    (
        'contains_quote != "\\"" , contains_comma !~ "foo,bar" , ',
        [("contains_quote", NE, '"'), ("contains_comma", NRE, "foo,bar")],
    ),
    # REFERENCE.md 9.
    ('{a="b", c=~"d|e"}', [("a", EQ, "b"), ("c", RE, "d|e")]),
    ('a="b", c=~"d|e",', [("a", EQ, "b"), ("c", RE, "d|e")]),
    ('severity =~ "critical|major"', [("severity", RE, "critical|major")]),
    ('msg="line one\\nline two"', [("msg", EQ, "line one\nline two")]),
    ('path="C:\\\\temp"', [("path", EQ, "C:\\temp")]),
    ('code=~"\\\\d+"', [("code", RE, "\\d+")]),
    ('code=~"\\d+"', [("code", RE, "\\d+")]),  # a spurious escape stays a literal backslash
    (
        '{\n  service = "payments-api",\n\tteam != "" ,\n}',
        [("service", EQ, "payments-api"), ("team", NE, "")],
    ),
    ('  { a = "  padded  " }  ', [("a", EQ, "  padded  ")]),
    ("{}", []),
    ("", []),
    ("  ", []),
]


@pytest.mark.parametrize(("text", "expected"), PARSING, ids=[t for t, _ in PARSING])
def test_parses_like_alertmanager(text: str, expected: list[tuple[str, MatchType, str]]) -> None:
    assert parse_matchers(text) == tuple(Matcher(*m) for m in expected)


def test_brace_form_accepts_one_trailing_comma() -> None:
    assert parse_matchers('{a="b", c=~"d|e",}') == (Matcher("a", EQ, "b"), Matcher("c", RE, "d|e"))


def test_single_matcher_keeps_commas_in_an_unquoted_value_as_the_classic_parser_does() -> None:
    assert parse_matcher("foo=bar,baz") == Matcher("foo", EQ, "bar,baz")


def test_canonical_form_quotes_and_escapes_the_value() -> None:
    assert str(parse_matcher("severity =~ critical|major")) == 'severity=~"critical|major"'
    assert str(Matcher("q", NE, 'say "hi"\\\nbye')) == 'q!="say \\"hi\\"\\\\\\nbye"'


def test_matchers_are_equal_and_hashable_by_name_type_and_value() -> None:
    assert parse_matcher('a=~"x|y"') == Matcher("a", RE, "x|y")
    assert len({parse_matcher('a="b"'), parse_matcher('a = "b"'), parse_matcher("a=b")}) == 1


# --- errors: what an SRE reads after `file:line: ` ----------------------------------------------------

OPERATORS = "(hint: use one of =, !=, =~, !~)"
RE2 = "is not supported in Alertmanager regexes (Go RE2)"

ERRORS = [
    ('service=>"x"', f"unknown operator at column 9 in 'service=>\"x\"' {OPERATORS}"),
    ('service=="x"', f"unknown operator at column 9 in 'service==\"x\"' {OPERATORS}"),
    ('service~="x"', f"unknown operator at column 8 in 'service~=\"x\"' {OPERATORS}"),
    ("service", f"missing operator at column 8 in 'service' {OPERATORS}"),
    (
        'service="pay',
        "unterminated quoted value at column 9 in 'service=\"pay' "
        '(hint: end the value with "; write \\" for a quote inside it)',
    ),
    (
        'service="pay\\"',
        "unterminated quoted value at column 9 in 'service=\"pay\\\\\"' "
        '(hint: end the value with "; write \\" for a quote inside it)',
    ),
    (
        "job=",
        "missing value at column 5 in 'job=' (hint: write \"\" to match a missing or empty label)",
    ),
    (
        'job=value"',
        "unexpected '\"' in an unquoted value at column 10 in 'job=value\"' "
        '(hint: quote the whole value and write \\" for a quote inside it)',
    ),
    (
        'trickier==\\\\=\\=\\""',
        "unexpected '\"' in an unquoted value at column 18 in 'trickier==\\\\\\\\=\\\\=\\\\\"\"' "
        '(hint: quote the whole value and write \\" for a quote inside it)',
    ),
    (
        '{invalid-name = "valid label"}',
        "invalid label name 'invalid-name' at column 2 in '{invalid-name = \"valid label\"}' "
        "(hint: label names match [a-zA-Z_][a-zA-Z0-9_]*)",
    ),
    (
        '"foo=\\"bar\\""',
        'expected a label name, found \'"\' at column 1 in \'"foo=\\\\"bar\\\\""\' '
        "(hint: label names are not quoted; if the whole matcher is quoted twice, drop the outer quotes)",
    ),
    ('=~"x"', "expected a label name, found '=' at column 1 in '=~\"x\"'"),
    (
        'service=~"(a"',
        'invalid regex "(a": missing ), unterminated subpattern at column 11 in \'service=~"(a"\'',
    ),
    (
        '{foo=~"invalid[regexp"}',
        'invalid regex "invalid[regexp": unterminated character set at column 15 '
        "in '{foo=~\"invalid[regexp\"}'",
    ),
    ('{a="b"', "unclosed '{' at column 1 in '{a=\"b\"' (hint: braces come in pairs)"),
    ('a="b"}', "unexpected '}' at column 6 in 'a=\"b\"}' (hint: braces come in pairs)"),
    ('a="b",,', "empty matcher at column 7 in 'a=\"b\",,'"),
    ('a="b", ,c="d"', 'empty matcher at column 8 in \'a="b", ,c="d"\''),
    ("{,}", "empty matcher at column 2 in '{,}'"),
    (
        'a="b" c="d"',
        "unexpected 'c' after the closing quote at column 7 in 'a=\"b\" c=\"d\"' "
        '(hint: separate matchers with ","; write \\" for a quote inside a value)',
    ),
    # Constructs Python's re accepts and Go's RE2 rejects.
    (
        'x=~"(a)\\\\1"',
        f'invalid regex "(a)\\\\1": backreference \\1 {RE2} at column 8 in \'x=~"(a)\\\\\\\\1"\'',
    ),
    (
        'env=~"(?!dev).*"',
        f'invalid regex "(?!dev).*": negative lookahead (?!...) {RE2} at column 7 '
        "in 'env=~\"(?!dev).*\"' (hint: use a separate !~ matcher)",
    ),
    ('x=~"(?=a)a"', f'invalid regex "(?=a)a": lookahead (?=...) {RE2} at column 5 in \'x=~"(?=a)a"\''),
    ('x=~"(?<=a)b"', f'invalid regex "(?<=a)b": lookbehind (?<=...) {RE2} at column 5 in \'x=~"(?<=a)b"\''),
    (
        'x=~"(?<!a)b"',
        f'invalid regex "(?<!a)b": negative lookbehind (?<!...) {RE2} at column 5 in \'x=~"(?<!a)b"\'',
    ),
    (
        'x=~"(?>a+)b"',
        f'invalid regex "(?>a+)b": atomic group (?>...) {RE2} at column 5 '
        "in 'x=~\"(?>a+)b\"' (hint: use (?:...))",
    ),
    (
        'x=~"a++"',
        f'invalid regex "a++": possessive quantifier {RE2} at column 7 in \'x=~"a++"\' '
        "(hint: drop the extra '+')",
    ),
    (
        'x=~"(a)?(?(1)b|c)"',
        f'invalid regex "(a)?(?(1)b|c)": conditional group (?(...) {RE2} at column 9 '
        "in 'x=~\"(a)?(?(1)b|c)\"'",
    ),
    (
        'x=~"(?x)a b"',
        f'invalid regex "(?x)a b": inline flag (?x) {RE2} at column 5 in \'x=~"(?x)a b"\' '
        "(hint: RE2 knows the flags i, m, s, U)",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[t for t, _ in ERRORS])
def test_rejects_with_a_message_naming_problem_and_column(text: str, message: str) -> None:
    with pytest.raises(MatcherError) as caught:
        parse_matchers(text)
    assert str(caught.value) == message


def test_error_carries_reason_column_and_text_for_file_line_reports() -> None:
    with pytest.raises(MatcherError) as caught:
        parse_matcher('service=>"x"')
    error = caught.value
    assert (error.reason, error.column, error.text) == ("unknown operator", 9, 'service=>"x"')
    assert isinstance(error, ValueError)


def test_regex_error_column_counts_escapes_in_the_text() -> None:
    with pytest.raises(MatcherError, match=r"at column 8 "):
        parse_matcher('x=~"\\\\d\\\\1"')  # the text is  x=~"\\d\\1"  and its "\\1" starts at column 8


def test_classic_label_names_only() -> None:
    for text in ('foo.bar="x"', 'foo:bar="x"', '1abc="x"', "\"utf8 name\"='x'"):
        with pytest.raises(MatcherError):
            parse_matcher(text)


def test_constructing_a_matcher_validates_name_and_regex() -> None:
    with pytest.raises(MatcherError, match=r"^invalid label name 'bad-name' "):
        Matcher("bad-name", EQ, "x")
    with pytest.raises(MatcherError, match=r'^invalid regex "\(a": missing \), unterminated subpattern'):
        Matcher("service", RE, "(a")


@pytest.mark.parametrize("pattern", ["[(?=]", "a{2}", "[]+]+", "\\++", "(?i:pay)-.*", "(?P<x>a)b", "[^]]"])
def test_re2_check_leaves_valid_regexes_alone(pattern: str) -> None:
    assert Matcher("x", RE, pattern).value == pattern


def test_literal_values_name_the_only_values_a_positive_matcher_accepts() -> None:
    assert parse_matcher('severity=~"critical|major"').literal_values() == frozenset({"critical", "major"})
    assert parse_matcher('team="payments"').literal_values() == frozenset({"payments"})
    assert parse_matcher('service=~"pay.*"').literal_values() is None
    assert parse_matcher('env!~"dev|test"').literal_values() is None
    assert parse_matcher('team!="payments"').literal_values() is None


# --- properties ---------------------------------------------------------------------------------------

label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]*", fullmatch=True)
any_values = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
literal_words = st.text("abcxyz-_09 .", max_size=6).map(re.escape)
regex_values = st.lists(literal_words, min_size=1, max_size=4).map("|".join) | st.sampled_from(
    ["pay.*", "5..", "\\d+", "(?i)crit.*", "[a-c]+x?", "a{1,3}", "(dev|test)-[0-9]+", ""]
)
matchers = st.one_of(
    st.builds(Matcher, label_names, st.sampled_from([EQ, NE]), any_values),
    st.builds(Matcher, label_names, st.sampled_from([RE, NRE]), regex_values),
)


@given(matchers)
def test_canonical_form_round_trips(matcher: Matcher) -> None:
    assert parse_matcher(str(matcher)) == matcher


@given(st.lists(matchers, max_size=5), st.booleans())
def test_brace_form_of_a_list_round_trips(ms: list[Matcher], trailing_comma: bool) -> None:
    text = "{" + ", ".join(str(m) for m in ms) + ("," if trailing_comma and ms else "") + "}"
    assert parse_matchers(text) == tuple(ms)


@given(regex_values, st.text("abcxyz-_09 .", max_size=8))
def test_regex_matching_is_python_fullmatch_of_the_pattern(pattern: str, value: str) -> None:
    expected = re.fullmatch(pattern, value, re.ASCII) is not None
    assert Matcher("x", RE, pattern).matches({"x": value}) is expected
    assert Matcher("x", NRE, pattern).matches({"x": value}) is not expected


def test_literal_prefixes_name_the_fixed_starts_a_wildcard_regex_requires() -> None:
    def prefixes(text: str) -> frozenset[str] | None:
        return parse_matcher(text).literal_prefixes()

    assert prefixes('service=~"svc-04.*"') == frozenset({"svc-04"})
    assert prefixes('alertname=~"Disk.*|Node.+|Watchdog"') == frozenset({"Disk", "Node", "Watchdog"})
    assert prefixes('instance=~"10\\\\.1\\\\..*"') == frozenset({"10.1."})
    assert prefixes('alertname=~"Disk.*|DiskIO.*|Dis.+"') == frozenset({"Dis"})  # nested ones dropped


@pytest.mark.parametrize(
    "text",
    [
        'a=~"pay.*-api"',  # more after the wildcard
        'a=~".*"',
        'a=~"x.*|.*"',  # an alternative without a prefix
        'a=~"x.*|"',
        'a=~"(?i)pay.*"',  # a flag
        'a=~"(pay|bill).*"',  # a group
        'a=~"p[ae]y.*"',  # a class
        'a=~"pay.*?"',
        'a=~"pays?.*"',
        'a=~"^pay.*"',
        'a=~"\\\\dpay.*"',  # an escape that is not a literal
        'a=~"critical|major"',  # plain alternatives: literal_values, not prefixes
        'a!~"pay.*"',
        'a="pay.*"',
    ],
)
def test_literal_prefixes_is_none_unless_certain(text: str) -> None:
    assert parse_matcher(text).literal_prefixes() is None


@given(
    st.lists(st.tuples(st.text(max_size=4), st.sampled_from(("", ".*", ".+"))), min_size=1, max_size=3),
    st.text(max_size=8),
)
def test_every_value_a_prefix_regex_accepts_starts_with_one_of_its_prefixes(
    parts: list[tuple[str, str]], value: str
) -> None:
    matcher = Matcher("a", RE, "|".join(re.escape(literal) + tail for literal, tail in parts))
    prefixes = matcher.literal_prefixes()
    if prefixes is not None and matcher.matches({"a": value}):
        assert value.startswith(tuple(prefixes))


@given(st.sampled_from(["a", 'a="x"', 'a!="x"', 'a=~"x|y"', 'a!~"x.*"', 'a=~"x.+"']), st.text(max_size=3))
def test_check_means_what_matches_means(text: str, value: str) -> None:
    matcher = parse_matcher(text) if "=" in text else Matcher("a", EQ, "")
    name, literals, fullmatch, negative = matcher.check()
    found = value in literals if fullmatch is None else fullmatch(value) is not None
    assert name == "a"
    assert (found != negative) == matcher.matches({"a": value})
