"""Type checker: every fact a policy reads must exist with the type it is used at.

Input facts (``input.*``) come from the policy's ``input { … }`` block and/or a JSON Schema
of the tool's arguments; built-in facts are listed in ``facts.BUILTIN_FACTS``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal

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
    Pos,
    SetLit,
    Str,
    Type,
)
from vsm_mcp.policy.diagnostics import PolicyTypeError
from vsm_mcp.policy.facts import BUILTIN_FACTS, ROOTS

# "numset" is a literal list of numbers; it only appears on the right of `in`.
ExprType = Type | Literal["numset"]


def schema_inputs(schema: Mapping[str, Any] | None, prefix: str = "input") -> dict[str, Type]:
    """Input facts from a JSON Schema object: string, number/integer, boolean, array of strings
    (a set); nested objects become dotted paths. Other shapes are not readable by policies."""
    out: dict[str, Type] = {}
    if not schema:
        return out
    props = schema.get("properties") or {}
    if not isinstance(props, Mapping):
        return out
    for name, sub in props.items():
        if not isinstance(sub, Mapping):
            continue
        path = f"{prefix}.{name}"
        ty = sub.get("type")
        if ty == "string":
            out[path] = "string"
        elif ty in ("number", "integer"):
            out[path] = "number"
        elif ty == "boolean":
            out[path] = "bool"
        elif ty == "array" and isinstance(sub.get("items"), Mapping) and sub["items"].get("type") == "string":
            out[path] = "set"
        elif ty == "object":
            out.update(schema_inputs(sub, path))
    return out


class Checker:
    def __init__(self, facts: dict[str, Type]) -> None:
        self.facts = facts

    def type_of(self, e: Expr) -> ExprType:
        if isinstance(e, Str):
            return "string"
        if isinstance(e, Num):
            return "number"
        if isinstance(e, Bool):
            return "bool"
        if isinstance(e, SetLit):
            return self._set_literal(e)
        if isinstance(e, Path):
            return self._path(e)
        if isinstance(e, Not):
            self.expect(e.operand, "bool", "the operand of 'not'")
            return "bool"
        if isinstance(e, BoolOp):
            self.expect(e.left, "bool", f"the left side of '{e.op}'")
            self.expect(e.right, "bool", f"the right side of '{e.op}'")
            return "bool"
        if isinstance(e, Compare):
            return self._compare(e)
        if isinstance(e, Match):
            return self._match(e)
        return self._call(e)

    def expect(self, e: Expr, ty: ExprType, what: str) -> None:
        got = self.type_of(e)
        if got != ty:
            raise PolicyTypeError(f"{what} must be a {ty}, got a {got}", _pos(e))

    def _set_literal(self, e: SetLit) -> ExprType:
        kinds = {type(i) for i in e.items}
        if len(kinds) > 1:
            raise PolicyTypeError("a list must hold only strings or only numbers", e.pos)
        return "numset" if kinds == {Num} else "set"

    def _path(self, e: Path) -> Type:
        name = e.dotted
        if e.parts[0] not in ROOTS:
            raise PolicyTypeError(
                f"unknown name {e.parts[0]!r}; facts start with principal., tool., input. or context.", e.pos
            )
        if name in self.facts:
            return self.facts[name]
        if e.parts[0] == "input":
            hint = "declare it in an `input { … }` block (e.g. `input { size: number }`) or pass the tool's input schema"
            raise PolicyTypeError(f"{name} is not in the input schema; {hint}", e.pos)
        close = difflib.get_close_matches(name, list(self.facts), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise PolicyTypeError(f"unknown fact {name}{hint}", e.pos)

    def _compare(self, e: Compare) -> ExprType:
        lt, rt = self.type_of(e.left), self.type_of(e.right)
        if e.op in ("==", "!="):
            if lt != rt or lt not in ("string", "number", "bool"):
                raise PolicyTypeError(
                    f"'{e.op}' compares two strings, numbers or booleans, not a {lt} with a {rt}", e.pos
                )
        elif lt != "number" or rt != "number":
            raise PolicyTypeError(f"'{e.op}' compares numbers, not a {lt} with a {rt}", e.pos)
        return "bool"

    def _match(self, e: Match) -> ExprType:
        lt, rt = self.type_of(e.left), self.type_of(e.right)
        ok = {
            "in": (lt, rt) in (("string", "set"), ("number", "numset")) or (lt == "number" and _empty(e.right)),
            "contains": (lt, rt) in (("string", "string"), ("set", "string")),
            "starts_with": (lt, rt) == ("string", "string"),
            "ends_with": (lt, rt) == ("string", "string"),
            "intersects": lt == "set" and rt == "set",
        }
        ok["not in"] = ok["in"]
        if not ok[e.op]:
            usage = {
                "in": "a string in a set (or a number in a list of numbers)",
                "not in": "a string not in a set (or a number not in a list of numbers)",
                "contains": "a string containing a string, or a set containing a string",
                "starts_with": "a string starts_with a string",
                "ends_with": "a string ends_with a string",
                "intersects": "a set intersects a set",
            }[e.op]
            raise PolicyTypeError(f"'{e.op}' expects {usage}, not a {lt} and a {rt}", e.pos)
        return "bool"

    def _call(self, e: Call) -> ExprType:
        if e.name == "has":
            if not isinstance(e.arg, Path):
                raise PolicyTypeError("has(...) takes a fact such as has(input.size)", e.pos)
            self.type_of(e.arg)
            return "bool"
        self.expect(e.arg, "set", "the argument of count(...)")
        return "number"


def _empty(e: Expr) -> bool:
    return isinstance(e, SetLit) and not e.items


def _pos(e: Expr) -> Pos:
    return e.pos


def check(doc: PolicyDoc, input_schema: Mapping[str, Any] | None = None) -> dict[str, Type]:
    """Check ``doc``; return the fact table it was checked against. Raises PolicyTypeError."""
    facts: dict[str, Type] = dict(BUILTIN_FACTS)
    facts.update(schema_inputs(input_schema))
    for f in doc.inputs:
        path = f"input.{f.path}"
        if path in facts and facts[path] != f.type and path in schema_inputs(input_schema):
            raise PolicyTypeError(f"{path} is declared {f.type} but the input schema says {facts[path]}", f.pos)
        facts[path] = f.type
    seen: dict[str, Pos] = {}
    checker = Checker(facts)
    for rule in doc.rules:
        if rule.id in seen:
            raise PolicyTypeError(f"rule id {rule.id!r} is already used at {seen[rule.id]}", rule.pos)
        seen[rule.id] = rule.pos
        checker.expect(rule.when, "bool", f"the condition of rule {rule.id!r}")
    return facts
