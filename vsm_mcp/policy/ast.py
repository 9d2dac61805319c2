"""The policy AST: what the parser produces and the checker, interpreter and compiler consume.

Every node carries its source position (``Pos``) so each later stage can report
``file:line:col`` for what it rejects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Type = Literal["string", "number", "bool", "set"]
Effect = Literal["allow", "deny"]


@dataclass(frozen=True)
class Pos:
    """A position in a policy source: 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Str:
    value: str
    pos: Pos


@dataclass(frozen=True)
class Num:
    value: float
    pos: Pos


@dataclass(frozen=True)
class Bool:
    value: bool
    pos: Pos


@dataclass(frozen=True)
class SetLit:
    """A literal list ``["a", "b"]`` (strings) or ``[1, 2]`` (numbers), used with ``in``/``intersects``."""

    items: tuple[Str | Num, ...]
    pos: Pos


@dataclass(frozen=True)
class Path:
    """A fact such as ``tool.name`` or ``input.size``."""

    parts: tuple[str, ...]
    pos: Pos

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Not:
    operand: Expr
    pos: Pos


@dataclass(frozen=True)
class BoolOp:
    """``and`` / ``or`` over two operands (left-associative chains nest on the left)."""

    op: Literal["and", "or"]
    left: Expr
    right: Expr
    pos: Pos


CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]
MatchOp = Literal["in", "not in", "contains", "starts_with", "ends_with", "intersects"]


@dataclass(frozen=True)
class Compare:
    op: CompareOp
    left: Expr
    right: Expr
    pos: Pos


@dataclass(frozen=True)
class Match:
    """String and set operators: ``x in S``, ``s starts_with "p"``, ``S intersects T`` …"""

    op: MatchOp
    left: Expr
    right: Expr
    pos: Pos


@dataclass(frozen=True)
class Call:
    """Built-in functions: ``has(input.x)`` (is the fact present) and ``count(set)``."""

    name: Literal["has", "count"]
    arg: Expr
    pos: Pos


Expr = Str | Num | Bool | SetLit | Path | Not | BoolOp | Compare | Match | Call


@dataclass(frozen=True)
class Rule:
    id: str
    effect: Effect
    reason: str
    when: Expr
    pos: Pos


@dataclass(frozen=True)
class InputField:
    path: str
    type: Type
    pos: Pos


@dataclass(frozen=True)
class Default:
    effect: Effect
    reason: str
    pos: Pos


@dataclass
class PolicyDoc:
    """One parsed policy file."""

    name: str
    default: Default
    rules: list[Rule] = field(default_factory=list)
    inputs: list[InputField] = field(default_factory=list)
    file: str = "<policy>"
