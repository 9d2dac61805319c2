"""Reference interpreter: evaluates the AST directly in Python.

It defines what a policy means: the compiled WebAssembly must agree with it on every input
(tests/unit/policy/test_differential.py), and ``explain`` uses it to show which rules fired.
Deny wins: the first matching ``deny`` rule decides; otherwise the first matching ``allow``;
otherwise the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vsm_mcp.policy.ast import (
    Bool,
    BoolOp,
    Call,
    Compare,
    Expr,
    Match,
    Not,
    Num,
    Path,
    PolicyDoc,
    SetLit,
    Str,
    Type,
)
from vsm_mcp.policy.decision import Decision
from vsm_mcp.policy.facts import Value, read_fact


@dataclass(frozen=True)
class RuleTrace:
    rule: str
    effect: str
    reason: str
    matched: bool
    line: int


class Interpreter:
    """Evaluate one checked policy. ``types`` is the fact table returned by ``checker.check``."""

    def __init__(self, doc: PolicyDoc, types: Mapping[str, Type]) -> None:
        self.doc = doc
        self.types = types

    def decide(self, facts: Mapping[str, Any]) -> Decision:
        rules = self.doc.rules
        for effect in ("deny", "allow"):
            for rule in rules:
                if rule.effect == effect and self.eval(rule.when, facts) is True:
                    return Decision(rule.effect, rule.id, rule.reason, self.doc.name)
        d = self.doc.default
        return Decision(d.effect, "default", d.reason, self.doc.name)

    def explain(self, facts: Mapping[str, Any]) -> tuple[Decision, list[RuleTrace]]:
        """The decision plus, for every rule in source order, whether its condition held."""
        trace = [
            RuleTrace(r.id, r.effect, r.reason, self.eval(r.when, facts) is True, r.pos.line) for r in self.doc.rules
        ]
        return self.decide(facts), trace

    def eval(self, e: Expr, facts: Mapping[str, Any]) -> Value:
        if isinstance(e, Str | Num | Bool):
            return e.value
        if isinstance(e, Path):
            return read_fact(facts, e.dotted, self.types[e.dotted])[0]
        if isinstance(e, Not):
            return not self.eval(e.operand, facts)
        if isinstance(e, BoolOp):
            left = self.eval(e.left, facts)
            if e.op == "and":
                return bool(left) and bool(self.eval(e.right, facts))
            return bool(left) or bool(self.eval(e.right, facts))
        if isinstance(e, Compare):
            return _compare(e.op, self.eval(e.left, facts), self.eval(e.right, facts))
        if isinstance(e, Match):
            return self._match(e, facts)
        if isinstance(e, Call):
            if e.name == "has":
                assert isinstance(e.arg, Path)
                return read_fact(facts, e.arg.dotted, self.types[e.arg.dotted])[1]
            value = self.eval(e.arg, facts)
            assert isinstance(value, frozenset)
            return float(len(value))
        raise TypeError(f"not an expression: {e!r}")  # SetLit is only evaluated inside _match

    def _items(self, e: Expr, facts: Mapping[str, Any]) -> frozenset[Any] | tuple[Any, ...]:
        if isinstance(e, SetLit):
            if any(isinstance(i, Num) for i in e.items):
                return tuple(i.value for i in e.items)  # numbers: compared with ==, as f64.eq does
            return frozenset(str(i.value) for i in e.items)
        value = self.eval(e, facts)
        assert isinstance(value, frozenset)
        return value

    def _match(self, e: Match, facts: Mapping[str, Any]) -> bool:
        left = self.eval(e.left, facts) if not isinstance(e.left, SetLit) else None
        if e.op in ("in", "not in"):
            items = self._items(e.right, facts)
            found = any(left == x for x in items) if isinstance(items, tuple) else left in items
            return found if e.op == "in" else not found
        if e.op == "intersects":
            a, b = self._items(e.left, facts), self._items(e.right, facts)
            return bool(frozenset(a) & frozenset(b))
        right = self.eval(e.right, facts)
        if e.op == "contains":
            return right in left  # type: ignore[operator]  # str in str, or str in set
        assert isinstance(left, str) and isinstance(right, str)
        return left.startswith(right) if e.op == "starts_with" else left.endswith(right)


def _compare(op: str, a: Value, b: Value) -> bool:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    assert isinstance(a, float) and isinstance(b, float)
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b
