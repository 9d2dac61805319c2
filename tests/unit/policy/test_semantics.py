"""What decisions mean, checked on both engines (the compiled module and the interpreter)."""

from __future__ import annotations

from typing import Any

import pytest

from vsm_mcp.policy import Decision, PolicyRuntime, compile_policy, normalize

RUNTIME = PolicyRuntime()


def decide(source: str, doc: dict[str, Any]) -> Decision:
    policy = compile_policy(source, file="t.policy")
    facts = normalize(doc)
    wasm = RUNTIME.load(policy.wasm).evaluate(facts)
    ref = policy.interpreter().decide(facts)
    assert wasm == ref, (wasm, ref)
    return wasm


WORKING_HOURS = """
policy "hours"
default allow
deny after_hours "storage_delete only 09:00-17:00 UTC on weekdays"
  when tool.name == "storage_delete" and (context.hour < 9 or context.hour >= 17 or context.weekday > 5)
allow admins "admins may always delete" when "admin" in principal.scopes
"""


@pytest.mark.parametrize(
    ("when", "tool", "scopes", "effect", "rule"),
    [
        ("2026-11-26T20:00:00Z", "storage_delete", [], "deny", "after_hours"),
        ("2026-11-26T10:00:00Z", "storage_delete", [], "allow", "default"),
        ("2026-11-28T10:00:00Z", "storage_delete", [], "deny", "after_hours"),  # a Saturday
        ("2026-11-26T20:00:00Z", "storage_get", [], "allow", "default"),
        ("2026-11-26T20:00:00Z", "storage_delete", ["admin"], "deny", "after_hours"),  # deny wins
        ("2026-11-26T10:00:00Z", "storage_delete", ["admin"], "allow", "admins"),
        ("2026-11-26T08:59:59Z", "storage_delete", [], "deny", "after_hours"),
        ("2026-11-26T09:00:00Z", "storage_delete", [], "allow", "default"),
    ],
)
def test_working_hours(when: str, tool: str, scopes: list[str], effect: str, rule: str) -> None:
    d = decide(WORKING_HOURS, {"tool": {"name": tool}, "principal": {"scopes": scopes}, "context": {"time": when}})
    assert (d.effect, d.rule, d.policy) == (effect, rule, "hours")


def test_explicit_default_deny_and_first_matching_rule_reported() -> None:
    src = 'default deny "closed"\nallow a when tool.server == "s"\nallow b when tool.server starts_with "s"'
    assert decide(src, {"tool": {"server": "x"}}).reason == "closed"
    assert decide(src, {"tool": {"server": "s"}}).rule == "a"
    assert decide(src, {"tool": {"server": "sx"}}).rule == "b"


@pytest.mark.parametrize(
    ("cond", "doc", "expected"),
    [
        ('input.p starts_with ""', {"input": {"p": ""}}, True),
        ('input.p contains ""', {"input": {"p": ""}}, True),
        ('input.p contains "bc"', {"input": {"p": "abcd"}}, True),
        ('input.p contains "bd"', {"input": {"p": "abcd"}}, False),
        ('input.p ends_with "cd"', {"input": {"p": "abcd"}}, True),
        ('input.p ends_with "abcde"', {"input": {"p": "abcd"}}, False),
        ('input.p contains "é"', {"input": {"p": "café"}}, True),
        ("input.p == principal.key_id", {"input": {"p": "k1"}, "principal": {"key_id": "k1"}}, True),
        ('input.p == ""', {"input": {}}, True),  # absent string reads as ""
        ("has(input.p)", {"input": {}}, False),
        ("has(input.p)", {"input": {"p": 3}}, False),  # mistyped = absent
        ("input.n == 0", {"input": {"n": True}}, True),  # a boolean is not a number
        ("input.n in [1, 2, 3]", {"input": {"n": 2}}, True),
        ("input.n not in [1, 2, 3]", {"input": {"n": 2.5}}, True),
        ("input.s contains input.p", {"input": {"s": ["x", "y"], "p": "y"}}, True),
        ("input.s intersects tool.tags", {"input": {"s": ["x", "y"]}, "tool": {"tags": ["z", "y"]}}, True),
        ("input.s intersects tool.tags", {"input": {"s": ["x"]}, "tool": {"tags": ["z", "y"]}}, False),
        ("count(input.s) == 2", {"input": {"s": ["x", "y", "x"]}}, True),
        ("input.n > 1e308", {"input": {"n": 10**400}}, False),  # beyond float range: absent
        ("context.rate > 10", {"context": {"rate": 11}}, True),
    ],
)
def test_operators(cond: str, doc: dict[str, Any], expected: bool) -> None:
    cond = cond.replace("1e308", "100000000")
    src = f"default allow\ninput {{ p: string, n: number, s: set }}\ndeny hit when {cond}"
    assert (decide(src, doc).rule == "hit") is expected


def test_explain_lists_every_rule_with_whether_it_fired() -> None:
    policy = compile_policy(WORKING_HOURS)
    decision, trace = policy.interpreter().explain(
        normalize({"tool": {"name": "storage_delete"}, "principal": {"scopes": ["admin"]}, "context": {"time": 0}})
    )
    assert decision.rule == "after_hours"
    assert [(t.rule, t.matched, t.line) for t in trace] == [("after_hours", True, 4), ("admins", True, 6)]
