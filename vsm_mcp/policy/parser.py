"""Recursive-descent parser: tokens → ``PolicyDoc``.

Grammar (newlines are insignificant)::

    file     := ["policy" (STRING | IDENT)] item*
    item     := "default" effect [STRING]
              | "input" "{" (name ":" type [","])* "}"
              | effect IDENT [STRING] "when" expr
    expr     := and ("or" and)*
    and      := unary ("and" unary)*
    unary    := "not" unary | compare
    compare  := operand [op operand]      op: == != < <= > >= in "not in" contains
                                              starts_with ends_with intersects
    operand  := STRING | ["-"] NUMBER | true | false | "[" [literal ("," literal)*] "]"
              | path | "(" expr ")" | ("has" | "count") "(" expr ")"
"""

from __future__ import annotations

from typing import cast

from vsm_mcp.policy.ast import (
    Bool,
    BoolOp,
    Call,
    Compare,
    CompareOp,
    Default,
    Effect,
    Expr,
    InputField,
    Match,
    MatchOp,
    Not,
    Num,
    Path,
    PolicyDoc,
    Rule,
    SetLit,
    Str,
    Type,
)
from vsm_mcp.policy.diagnostics import PolicySyntaxError
from vsm_mcp.policy.lexer import Token, tokenize

TYPES: tuple[Type, ...] = ("string", "number", "bool", "set")
COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=")
MATCH_OPS = ("in", "contains", "starts_with", "ends_with", "intersects")


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def at(self, text: str) -> bool:
        return self.tok.kind in ("keyword", "symbol") and self.tok.text == text

    def expect(self, text: str, what: str | None = None) -> Token:
        if not self.at(text):
            self.fail(what or repr(text))
        return self.advance()

    def fail(self, expected: str) -> None:
        raise PolicySyntaxError(f"expected {expected}, found {self.tok.describe()}", self.tok.pos)

    def ident(self, what: str) -> Token:
        if self.tok.kind != "ident":
            self.fail(what)
        return self.advance()

    # --- top level ------------------------------------------------------------------
    def parse_file(self, file: str, default_name: str) -> PolicyDoc:
        name = default_name
        if self.at("policy"):
            self.advance()
            if self.tok.kind not in ("string", "ident"):
                self.fail("a policy name after 'policy'")
            name = str(self.advance().value)
        default: Default | None = None
        rules: list[Rule] = []
        inputs: list[InputField] = []
        while self.tok.kind != "eof":
            if self.at("default"):
                pos = self.advance().pos
                if default is not None:
                    raise PolicySyntaxError(f"a second 'default' line (the first is at {default.pos})", pos)
                effect = self.effect()
                reason = str(self.advance().value) if self.tok.kind == "string" else f"default {effect}"
                default = Default(effect, reason, pos)
            elif self.tok.kind == "ident" and self.tok.text == "input":
                inputs.extend(self.input_block())
            elif self.at("allow") or self.at("deny"):
                rules.append(self.rule())
            else:
                self.fail("'default', 'input {', 'allow' or 'deny'")
        if default is None:
            raise PolicySyntaxError(
                "expected a 'default allow' or 'default deny' line (an explicit default is required)",
                self.tok.pos,
            )
        return PolicyDoc(name=name, default=default, rules=rules, inputs=inputs, file=file)

    def effect(self) -> Effect:
        if not (self.at("allow") or self.at("deny")):
            self.fail("'allow' or 'deny'")
        return cast(Effect, self.advance().text)

    def input_block(self) -> list[InputField]:
        self.advance()
        self.expect("{", "'{' after 'input'")
        fields: list[InputField] = []
        while not self.at("}"):
            if self.tok.kind == "string":
                start = self.advance()
                name = str(start.value)
            else:
                start = self.ident("an input field name or '}'")
                parts = [start.text]
                while self.at("."):
                    self.advance()
                    parts.append(self.ident("a field name after '.'").text)
                name = ".".join(parts)
            self.expect(":", "':' after the input field name")
            ty = self.tok
            if ty.kind != "ident" or ty.text not in TYPES:
                self.fail("a type: string, number, bool or set")
            self.advance()
            fields.append(InputField(name, cast(Type, ty.text), start.pos))
            if self.at(","):
                self.advance()
        self.advance()
        return fields

    def rule(self) -> Rule:
        start = self.tok
        effect = self.effect()
        rid = self.ident(f"a rule id after '{effect}' (letters, digits, _)")
        reason = str(self.advance().value) if self.tok.kind == "string" else f"rule {rid.text}"
        self.expect("when", f"'when' after the rule id {rid.text!r}")
        return Rule(rid.text, effect, reason, self.expr(), start.pos)

    # --- expressions ----------------------------------------------------------------
    def expr(self) -> Expr:
        left = self.conj()
        while self.at("or"):
            pos = self.advance().pos
            left = BoolOp("or", left, self.conj(), pos)
        return left

    def conj(self) -> Expr:
        left = self.unary()
        while self.at("and"):
            pos = self.advance().pos
            left = BoolOp("and", left, self.unary(), pos)
        return left

    def unary(self) -> Expr:
        if self.at("not"):
            pos = self.advance().pos
            return Not(self.unary(), pos)
        return self.compare()

    def compare(self) -> Expr:
        left = self.operand()
        tok = self.tok
        if tok.kind == "symbol" and tok.text in COMPARE_OPS:
            self.advance()
            return Compare(cast(CompareOp, tok.text), left, self.operand(), tok.pos)
        if tok.kind == "keyword" and tok.text in MATCH_OPS:
            self.advance()
            return Match(cast(MatchOp, tok.text), left, self.operand(), tok.pos)
        if self.at("not"):
            self.advance()
            self.expect("in", "'in' after 'not' (as in: x not in [...])")
            return Match("not in", left, self.operand(), tok.pos)
        return left

    def operand(self) -> Expr:
        tok = self.tok
        if tok.kind == "string":
            self.advance()
            return Str(str(tok.value), tok.pos)
        if tok.kind == "number" or self.at("-"):
            return self.number()
        if self.at("true") or self.at("false"):
            self.advance()
            return Bool(tok.text == "true", tok.pos)
        if self.at("["):
            return self.set_literal()
        if self.at("("):
            self.advance()
            inner = self.expr()
            self.expect(")", "')'")
            return inner
        if self.at("has") or self.at("count"):
            self.advance()
            self.expect("(", f"'(' after {tok.text}")
            arg = self.expr()
            self.expect(")", "')'")
            return Call("has" if tok.text == "has" else "count", arg, tok.pos)
        if tok.kind == "ident":
            return self.path()
        self.fail("a value: a string, number, true/false, [list], a fact like tool.name, or '('")
        raise AssertionError("unreachable")

    def number(self) -> Num:
        pos = self.tok.pos
        sign = 1.0
        if self.at("-"):
            self.advance()
            sign = -1.0
        if self.tok.kind != "number":
            self.fail("a number")
        return Num(sign * float(self.advance().value), pos)

    def set_literal(self) -> SetLit:
        pos = self.advance().pos
        items: list[Str | Num] = []
        while not self.at("]"):
            if self.tok.kind == "string":
                tok = self.advance()
                items.append(Str(str(tok.value), tok.pos))
            elif self.tok.kind == "number" or self.at("-"):
                items.append(self.number())
            else:
                self.fail("a string or number in the list, or ']'")
            if not self.at("]"):
                self.expect(",", "',' or ']'")
        self.advance()
        return SetLit(tuple(items), pos)

    def path(self) -> Path:
        first = self.advance()
        parts = [first.text]
        while self.at("."):
            self.advance()
            if self.tok.kind not in ("ident", "keyword"):
                self.fail("a field name after '.'")
            parts.append(self.advance().text)
        return Path(tuple(parts), first.pos)


def parse(source: str, file: str = "<policy>", name: str = "policy") -> PolicyDoc:
    """Parse ``source``; a syntax error raises PolicySyntaxError with file:line:col and what was expected."""
    return _Parser(tokenize(source, file)).parse_file(file, name)
