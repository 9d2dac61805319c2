"""Parser and type checker: what operators write, and the errors they get for mistakes."""

from __future__ import annotations

import pytest

from vsm_mcp.policy import PolicySyntaxError, PolicyTypeError, compile_policy, normalize
from vsm_mcp.policy.parser import parse

GOOD = """
policy "ops"
default deny "nothing is allowed unless a rule says so"

input {
  size: number
  path: string
  meta.owner: string
  labels: set
}

# comments are ignored
allow readers "read-only tools are fine" when tool.annotations.readOnlyHint
allow owners when input.meta.owner == principal.key_id and input.path starts_with "/home/"
deny huge "uploads over 10 MB" when input.size > 10000000
deny tagged "secret labels" when input.labels intersects ["secret", "pii"]
deny outsiders when principal.tenant_name not in ["acme", "globex"] and count(principal.scopes) < 1
"""


def test_a_readable_policy_parses_into_rules_in_source_order() -> None:
    doc = parse(GOOD, "ops.policy")
    assert doc.name == "ops"
    assert doc.default.effect == "deny"
    assert [(r.id, r.effect) for r in doc.rules] == [
        ("readers", "allow"), ("owners", "allow"), ("huge", "deny"), ("tagged", "deny"), ("outsiders", "deny"),
    ]
    assert doc.rules[1].reason == "rule owners"
    assert [f.path for f in doc.inputs] == ["size", "path", "meta.owner", "labels"]


@pytest.mark.parametrize(
    ("source", "where", "expected"),
    [
        ("default allow\ndeny x when tool.name ==\n", "p.policy:3:1", "expected a value"),
        ("default allow\ndeny x tool.name == \"a\"", "p.policy:2:8", "expected 'when' after the rule id 'x'"),
        ("default allow\ndeny when true", "p.policy:2:6", "expected a rule id after 'deny'"),
        ("deny x when true", "p.policy:1:17", "expected a 'default allow' or 'default deny' line"),
        ("default allow\ndefault deny", "p.policy:2:1", "a second 'default' line (the first is at p.policy:1:1)"),
        ("default maybe", "p.policy:1:9", "expected 'allow' or 'deny', found 'maybe'"),
        ('default allow\ndeny x when tool.name == "a', "p.policy:2:26", "unterminated string"),
        ("default allow\ndeny x when tool.name = 1", "p.policy:2:23", "unexpected character '='"),
        ("default allow\nallow x when (true", "p.policy:2:19", "expected ')'"),
        ("default allow\ninput { size number }", "p.policy:2:14", "expected ':' after the input field name"),
        ("default allow\ninput { size: int }", "p.policy:2:15", "expected a type: string, number, bool or set"),
        ("default allow\ndeny x when 1x", "p.policy:2:13", "malformed number"),
    ],
)
def test_syntax_errors_name_file_line_column_and_what_was_expected(source: str, where: str, expected: str) -> None:
    with pytest.raises(PolicySyntaxError) as info:
        parse(source, "p.policy")
    assert str(info.value).startswith(where + ": "), str(info.value)
    assert expected in str(info.value)
    line, col = where.split(":")[1:]
    assert info.value.data == {"file": "p.policy", "line": int(line), "col": int(col)}


@pytest.mark.parametrize(
    ("source", "where", "expected"),
    [
        ("default allow\ndeny x when input.size > 3", "2:13", "input.size is not in the input schema"),
        ("default allow\ndeny x when tool.nmae == \"a\"", "2:13", "unknown fact tool.nmae; did you mean tool.name?"),
        ("default allow\ndeny x when user.name == \"a\"", "2:13", "unknown name 'user'"),
        ("default allow\ndeny x when tool.name > 3", "2:23", "'>' compares numbers, not a string with a number"),
        ("default allow\ndeny x when tool.name == 3", "2:23", "'==' compares two strings, numbers or booleans"),
        ("default allow\ndeny x when tool.name", "2:13", "the condition of rule 'x' must be a bool, got a string"),
        ("default allow\ndeny x when tool.tags starts_with \"a\"", "2:23", "'starts_with' expects a string starts_with"),
        ("default allow\ndeny x when \"a\" in tool.name", "2:17", "'in' expects a string in a set"),
        ("default allow\ndeny x when tool.name in [\"a\", 1]", "2:26", "a list must hold only strings or only numbers"),
        ("default allow\ndeny x when not context.hour", "2:17", "the operand of 'not' must be a bool, got a number"),
        ("default allow\ndeny x when true\nallow x when true", "3:1", "rule id 'x' is already used at p.policy:2:1"),
        ("default allow\ndeny x when count(tool.name) > 1", "2:19", "the argument of count(...) must be a set"),
    ],
)
def test_type_errors_name_the_position_and_the_problem(source: str, where: str, expected: str) -> None:
    with pytest.raises(PolicyTypeError) as info:
        compile_policy(source, file="p.policy")
    assert str(info.value).startswith(f"p.policy:{where}: "), str(info.value)
    assert expected in str(info.value)


def test_input_facts_can_come_from_the_tools_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "bucket": {"type": "string"},
            "size": {"type": "integer"},
            "force": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "opts": {"type": "object", "properties": {"mode": {"type": "string"}}},
        },
    }
    src = (
        'default allow\ndeny x when input.bucket == "prod" and input.size > 5 and input.force '
        'and "t" in input.tags and input.opts.mode == "fast"'
    )
    policy = compile_policy(src, input_schema=schema)
    facts = normalize({"input": {"bucket": "prod", "size": 9, "force": True, "tags": ["t"], "opts": {"mode": "fast"}}})
    assert policy.interpreter().decide(facts).rule == "x"
    with pytest.raises(PolicyTypeError, match="input.size is declared string but the input schema says number"):
        compile_policy("default allow\ninput { size: string }\ndeny x when true", input_schema=schema)


def test_escapes_negative_numbers_and_keywords_in_paths() -> None:
    src = 'default allow\ndeny q "say \\"no\\"" when input.n > -2.5 and context.time >= 0\ninput { n: number }'
    policy = compile_policy(src)
    assert policy.doc.rules[0].reason == 'say "no"'
    assert policy.interpreter().decide(normalize({"input": {"n": -1}, "context": {"time": 5}})).rule == "q"
